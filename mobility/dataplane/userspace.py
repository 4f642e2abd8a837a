"""Userspace data plane: a TUN device plus policy routing, for kernels without ESP.

Packets for the peers' inner address spaces are routed into the TUN device through a dedicated
routing table selected by `not fwmark <mark>`: everything *except* natt's own UDP 4500 socket
(which carries SO_MARK <mark>) consults that table first. That keeps the encapsulated datagrams
from looping back into the tunnel even in transport mode, where the inner destination is the
peer's outer address.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_interface
from typing import Any, TypeVar

from pyroute2 import IPRoute

from mobility.dataplane.sa import IPAddress, IPNetwork

log = logging.getLogger("mobility.dataplane")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
FIB_RULE_INVERT = 0x2
SO_MARK = 36
R = TypeVar("R")


class _NetlinkThread:
    """pyroute2 0.9's synchronous IPRoute runs its own event loop, which cannot nest in the
    daemon's running loop: keep it on one worker thread and wait for each (rare) call."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self.ipr: Any = self.call(IPRoute)

    def call(self, fn: Callable[..., R], *args: Any, **kw: Any) -> R:
        return self._pool.submit(fn, *args, **kw).result()

    def close(self) -> None:
        self.call(self.ipr.close)
        self._pool.shutdown()


class TunDevice:
    """/dev/net/tun in IFF_TUN | IFF_NO_PI mode: one read or write is one IP packet."""

    def __init__(self, name: str) -> None:
        if len(name.encode()) > 15:
            raise ValueError(f"interface name {name!r} longer than 15 bytes")
        self.name = name
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(self.fd)
            raise

    def read(self) -> bytes | None:
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> None:
        try:
            os.write(self.fd, packet)
        except OSError as e:  # the stack refused it (e.g. a bad inner packet): count, never crash
            if e.errno not in (errno.EINVAL, errno.EAGAIN, errno.ENOBUFS, errno.EIO):
                raise
            log.debug("TUN write refused: %s", e)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class PolicyRouting:
    """The routing table and `not fwmark` rules that steer inner traffic into the TUN device."""

    def __init__(self, ifname: str, *, table: int, mark: int, priority: int, mtu: int) -> None:
        self.ifname, self.table, self.mark, self.priority, self.mtu = ifname, table, mark, priority, mtu
        self._nl = _NetlinkThread()
        self._routes: set[IPNetwork] = set()
        self._index = 0

    def setup(self, addresses: tuple[str, ...] = ()) -> None:
        self._index = self._nl.call(self._nl.ipr.link_lookup, ifname=self.ifname)[0]
        self._nl.call(self._nl.ipr.link, "set", index=self._index, state="up", mtu=self.mtu, txqlen=4000)
        for addr in addresses:
            self.address("replace", addr)
        for path in (f"/proc/sys/net/ipv4/conf/{self.ifname}/rp_filter",):
            try:  # decapsulated packets arrive on the TUN: loose/no reverse-path filtering there
                with open(path, "w") as f:
                    f.write("0")
            except OSError as e:
                log.debug("cannot write %s: %s", path, e)
        self._remove_rules()
        for family in (socket.AF_INET, socket.AF_INET6):
            self._rule("add", family)

    def _rule(self, op: str, family: int) -> None:
        """`not fwmark <mark> lookup <table>` for one family."""
        self._nl.call(
            self._nl.ipr.rule,
            op,
            family=family,
            table=self.table,
            priority=self.priority,
            fwmark=self.mark,
            fwmask=0xFFFFFFFF,
            flags=FIB_RULE_INVERT,
        )

    def _remove_rules(self) -> None:
        for family in (socket.AF_INET, socket.AF_INET6):
            while True:
                try:
                    self._rule("del", family)
                except Exception:  # pyroute2 raises NetlinkError once no such rule is left
                    break

    def address(self, op: str, addr: str) -> None:
        """Add ("replace") or remove ("del") an inner address on the TUN device (e.g. an IKE virtual IP)."""
        iface = ip_interface(addr)
        kw = {"index": self._index, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if iface.version == 6:
            kw["flags"] = 0x02  # IFA_F_NODAD: the address is ours by assignment, not by DAD
        self._nl.call(self._nl.ipr.addr, op, **kw)

    def add_route(self, dst: IPNetwork, src: IPAddress | None) -> None:
        kw: dict[str, object] = {"dst": str(dst), "oif": self._index, "table": self.table}
        if dst.version == 6:
            kw["family"] = socket.AF_INET6
        if src is not None:
            kw["prefsrc"] = str(src)
        try:
            self._nl.call(self._nl.ipr.route, "replace", **kw)
        except Exception as e:
            if src is None:
                raise
            log.warning("route %s with source %s refused (%s); adding it without a source", dst, src, e)
            del kw["prefsrc"]
            self._nl.call(self._nl.ipr.route, "replace", **kw)
        self._routes.add(dst)

    def del_route(self, dst: IPNetwork) -> None:
        self._routes.discard(dst)
        kw: dict[str, object] = {"dst": str(dst), "table": self.table}
        if dst.version == 6:
            kw["family"] = socket.AF_INET6
        try:
            self._nl.call(self._nl.ipr.route, "del", **kw)
        except Exception as e:
            log.debug("route %s already gone: %s", dst, e)

    def teardown(self) -> None:
        for dst in list(self._routes):
            self.del_route(dst)
        self._remove_rules()
        self._nl.close()


def mark_socket(sock: socket.socket, mark: int) -> None:
    """Mark natt's own datagrams so the `not fwmark` rule lets them bypass the tunnel table."""
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
