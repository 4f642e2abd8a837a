"""Small interface helpers the ND-speaking daemons (ard, mobiled) share: raw ICMPv6 and IPv6 sockets
with ancillary data, the ICMPv6 type filter, the link-layer address, bringing a link up, adding an
address (pyroute2, from a worker thread)."""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
import sys
from dataclasses import dataclass
from ipaddress import IPv6Address

log = logging.getLogger("mobility.netif")


def icmp6_filter(allowed: tuple[int, ...]) -> bytes:
    """struct icmp6_filter: a set bit blocks the type (linux/icmpv6.h)."""
    words = [0xFFFFFFFF] * 8
    for t in allowed:
        words[t >> 5] &= ~(1 << (t & 31))
    return struct.pack("=8I", *words)


def link_layer_address(ifname: str) -> bytes:
    try:
        with open(f"/sys/class/net/{ifname}/address") as f:
            return bytes.fromhex(f.read().strip().replace(":", ""))
    except OSError:
        return b""


def link_up(ifname: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")


def add_address_nodad(ifname: str, address: IPv6Address, prefixlen: int = 64) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        try:
            ipr.addr("replace", index=idx, address=str(address), prefixlen=prefixlen, flags=0x02)  # IFA_F_NODAD
        except Exception as e:  # pyroute2 raises NetlinkError
            log.warning("cannot add %s to %s: %s", address, ifname, e)


RTPROT_STATIC, RTPROT_RA = 4, 9  # linux/rtnetlink.h: set by an administrator / learnt from an RA


def set_route6(
    ifname: str, dst: str, gateway: str, *, expires: int = 0, onlink: bool = False, proto: int = RTPROT_RA
) -> None:
    """Replace the IPv6 route to `dst` ("::/0" for the default) via `gateway` on `ifname`, as the
    kernel's own RA processing would (protocol ra, metric 1024), expiring after `expires` seconds
    when given. `onlink`: the gateway is a neighbour on the link though no prefix route says so."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        kw: dict[str, object] = {"dst": dst, "gateway": gateway, "oif": idx, "priority": 1024, "proto": proto}
        if expires:
            kw["expires"] = expires.to_bytes(4, sys.byteorder)  # RTA_EXPIRES: u32 seconds (pyroute2 passes raw)
        if onlink:
            kw["flags"] = 4  # RTNH_F_ONLINK
        ipr.route("replace", family=socket.AF_INET6, **kw)


def del_route6(ifname: str, dst: str, gateway: str | None = None) -> bool:
    """Remove our route to `dst` on `ifname` (only via `gateway` when given); False if there was none."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        kw: dict[str, object] = {"dst": dst, "oif": idx, "priority": 1024}
        if gateway:
            kw["gateway"] = gateway
        try:
            ipr.route("del", family=socket.AF_INET6, **kw)
        except Exception:  # pyroute2's NetlinkError: no such route
            return False
        return True


ICMP6_FILTER = 1  # linux/icmpv6.h
IPV6_RECVPKTINFO, IPV6_PKTINFO, IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 49, 50, 51, 52  # linux/in6.h


def nd_socket(ifname: str, types: tuple[int, ...], groups: tuple[str, ...] = ()) -> socket.socket:
    """A non-blocking raw ICMPv6 socket on one link for Neighbor Discovery: only `types` pass the
    filter, hop limit and destination come as ancillary data, we send with hop limit 255."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp6_filter(types))
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    for g in groups:
        mreq = socket.inet_pton(socket.AF_INET6, g) + struct.pack("@I", socket.if_nametoindex(ifname))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    s.setblocking(False)
    return s


SO_ATTACH_FILTER = 26  # asm-generic/socket.h
# one classic BPF instruction, BPF_RET|BPF_K 0: keep no byte of any packet (linux/filter.h)
_KEEP_NOTHING = ctypes.create_string_buffer(struct.pack("@HBBI", 0x06, 0, 0, 0))


def link_send_socket(proto: int, ifname: str) -> socket.socket:
    """A send-only raw IPv6 socket for `proto` bound to one link. Bound, its route lookups are strict
    about the interface: a more specific route through another device (a forwarding /128 into a TUN
    or a tunnel link) is passed over for the link's own prefix route. A source address in
    IPV6_PKTINFO alone does not do that, the interface index there is only a preference. It receives
    nothing (a filter that keeps no packet), so it needs no reader."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("@HP", 1, ctypes.addressof(_KEEP_NOTHING)))
    s.setblocking(False)
    return s


def raw6_socket(proto: int) -> socket.socket:
    """A non-blocking raw IPv6 socket for `proto` that reports each datagram's destination."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    s.setblocking(False)
    return s


@dataclass(frozen=True, slots=True)
class Datagram:
    data: bytes
    src: IPv6Address
    dst: IPv6Address | None  # None if the kernel gave no IPV6_PKTINFO
    hop_limit: int  # -1 if not reported
    ifindex: int = 0  # the interface it arrived on (IPV6_PKTINFO), 0 if not reported


def receive(sock: socket.socket) -> Datagram | None:
    """One datagram from a raw IPv6 socket with its ancillary data; None when nothing is queued (or
    the receive failed: logged at DEBUG, never raised)."""
    try:
        data, anc, _flags, addr = sock.recvmsg(65535, socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20))
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as e:
        log.debug("receive: %s", e)
        return None
    hop, dst, ifindex = -1, None, 0
    for level, ctype, cdata in anc:
        if level == socket.IPPROTO_IPV6 and ctype == IPV6_HOPLIMIT:
            hop = int.from_bytes(cdata[:4], "little")
        elif level == socket.IPPROTO_IPV6 and ctype == IPV6_PKTINFO:
            dst = IPv6Address(cdata[:16])
            ifindex = int.from_bytes(cdata[16:20], sys.byteorder)
    return Datagram(data, IPv6Address(addr[0].split("%")[0]), dst, hop, ifindex)


def send_from(sock: socket.socket, data: bytes, src: IPv6Address | None, dst: IPv6Address, ifindex: int = 0) -> None:
    """Send with a chosen source address (IPV6_PKTINFO) and, if given, out of one interface; errors are
    logged at DEBUG (a neighbour that went away is no reason to stop)."""
    cmsg = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, src.packed + struct.pack("@I", ifindex))] if src is not None else []
    try:
        sock.sendmsg([data], cmsg, 0, (str(dst), 0, 0, ifindex))
    except OSError as e:
        log.debug("send to %s: %s", dst, e)
