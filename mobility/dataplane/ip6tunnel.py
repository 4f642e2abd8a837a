"""FMIPv6 forwarding (RFC 5568 §4): traffic for a previous CoA (PCoA) goes to the new CoA (NCoA) inside
IPv6 (RFC 2473), with the PAR's global address as the outer source. Two backends behind one interface
(`add`, `remove`, `counters`, `close`), chosen by `open_forwarder` (`auto` probes the kernel):

- kernel: one ip6tnl link (mode ip6ip6, no encapsulation limit option) per NCoA, local = the PAR's
  global address, remote = the NCoA, and a PCoA/128 route through it. Links are per NCoA, not per PCoA,
  because the kernel refuses a second ip6tnl with the same (local, remote) (EEXIST). Not one `external`
  (collect_md) link with per-route `encap ip6`: pyroute2 0.9 has no codec for LWTUNNEL_ENCAP_IP6 (we
  would hand-build RTA_ENCAP), and one shared device would give no packet counts per forwarding.
  Link names are `<stem><8 hex of the NCoA's hash>`, the stem derived from `tunnel_name`, so a restart
  after kill -9 recognises its links: stale ones are removed, the restored set is re-created
  (`reconcile`). A clean stop removes them (forwarding state stays in SQLite, like the TUN's routes).
- userspace: a TUN device with the PCoA/128 routes; each packet read there is sent to the NCoA through
  a raw protocol-41 socket bound to the PAR's global address (the kernel's output path adds the outer
  header).

pyroute2's synchronous IPRoute runs its own event loop, so every netlink call runs on one worker thread,
in submission order (a route added and then removed stays removed)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any, Literal, Protocol, TypeVar

from mobility.dataplane.userspace import TunDevice

log = logging.getLogger("mobility.dataplane.ip6tunnel")

IPPROTO_IPV6 = 41  # ip6tnl mode ip6ip6 (IFLA_IP6TNL_PROTO)
IP6_TNL_F_IGN_ENCAP_LIMIT = 0x1  # include/uapi/linux/ip6_tunnel.h: no Tunnel Encapsulation Limit option
ADDR_GEN_MODE = "IFLA_INET6_ADDR_GEN_MODE"  # 1: IN6_ADDR_GEN_MODE_NONE
IFNAMSIZ = 15  # usable bytes of an interface name
HASH_HEX = 8
BATCH = 256  # TUN packets handled per readiness callback
Backend = Literal["auto", "kernel", "userspace"]
R = TypeVar("R")


# ---- names and reconciliation (no I/O) -------------------------------------------------------------


def link_stem(tunnel_name: str) -> str:
    """The name prefix of our ip6tnl links: `tunnel_name` cut to fit, then "-" (fmip0 -> "fmip0-")."""
    return tunnel_name[: IFNAMSIZ - HASH_HEX - 1] + "-"


def link_name(stem: str, ncoa: str) -> str:
    """`stem` + 8 hex digits of a hash of the NCoA: the same name after a restart, at most 15 bytes."""
    packed = IPv6Address(ncoa).packed
    return stem + hashlib.blake2s(packed, digest_size=HASH_HEX // 2).hexdigest()


def is_our_link(name: str, stem: str) -> bool:
    tail = name.removeprefix(stem)
    return tail != name and len(tail) == HASH_HEX and all(c in "0123456789abcdef" for c in tail)


@dataclass(frozen=True, slots=True)
class LinkSeen:
    """One of our ip6tnl links as found in the kernel, with the PCoAs routed through it."""

    name: str
    local: str
    remote: str
    routes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Plan:
    delete_links: tuple[str, ...] = ()  # ours but no longer wanted, or wrong endpoints (re-created)
    create_links: tuple[tuple[str, str], ...] = ()  # (name, NCoA)
    delete_routes: tuple[str, ...] = ()  # PCoAs routed through a kept link without forwarding
    routes: tuple[tuple[str, str], ...] = ()  # (PCoA, link name), replaced


def reconcile(stem: str, local: str, seen: Iterable[LinkSeen], wanted: Mapping[str, str]) -> Plan:
    """From what the kernel has (`seen`, our links only) to `wanted` (PCoA -> NCoA): idempotent."""
    want_links = {link_name(stem, ncoa): ncoa for ncoa in wanted.values()}
    have = {s.name: s for s in seen}
    wrong = [n for n, s in have.items() if n in want_links and _ends(s.remote, s.local) != _ends(want_links[n], local)]
    delete = sorted(n for n in have if n not in want_links) + sorted(wrong)
    create = sorted((n, ncoa) for n, ncoa in want_links.items() if n not in have or n in wrong)
    kept = [s for s in have.values() if s.name in want_links and s.name not in wrong]
    stale_routes = sorted(p for s in kept for p in s.routes if wanted.get(p) is None)
    routes = sorted((p, link_name(stem, ncoa)) for p, ncoa in wanted.items())
    return Plan(tuple(delete), tuple(create), tuple(stale_routes), tuple(routes))


def _ends(remote: str, local: str) -> tuple[IPv6Address, IPv6Address]:
    return IPv6Address(remote or "::"), IPv6Address(local or "::")


# ---- the interface --------------------------------------------------------------------------------------


@dataclass
class Counters:
    totals: dict[str, int] = field(default_factory=dict)  # fwd_packets, ...
    packets: dict[str, int] = field(default_factory=dict)  # per PCoA


class Forwarder(Protocol):
    name: str
    reason: str

    def add(self, pcoa: str, ncoa: str) -> None: ...
    def remove(self, pcoa: str) -> None: ...
    async def counters(self) -> Counters: ...
    async def close(self) -> None: ...


async def open_forwarder(
    wanted: Backend, *, tunnel_name: str, local: IPv6Address | None, forwarding: Mapping[str, str]
) -> Forwarder:
    """Choose the backend, open it and install `forwarding` (PCoA -> NCoA, restored from the state)."""
    from mobility.dataplane.probe import choose_backend, probe_kernel_ip6tnl

    choose = functools.partial(choose_backend, wanted, probe_kernel_ip6tnl, "forward_backend")
    name, why = await asyncio.get_running_loop().run_in_executor(None, choose)
    if name == "kernel":
        k = KernelForwarder(tunnel_name, local, why)
        await k.start(forwarding)
        return k
    u = UserspaceForwarder(tunnel_name, local, why)
    await u.start(forwarding)
    return u


class _Worker:
    """One thread owning one IPRoute: `post` queues a call (errors logged), `run` awaits one."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ip6tunnel")
        self._ipr: Any = None
        self._pending: list[asyncio.Future[Any]] = []

    def _call(self, fn: Callable[..., R], *args: Any) -> R:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return fn(self._ipr, *args)

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn, *args)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        fut = asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn, *args)
        fut.add_done_callback(_log_failure)
        self._pending = [f for f in self._pending if not f.done()] + [fut]

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending)
        if self._ipr is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._ipr.close)
        self._pool.shutdown()


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("forwarding netlink call failed: %s", fut.exception())


def _route(ipr: Any, op: str, pcoa: str, ifname: str | None) -> None:
    kw: dict[str, Any] = {"dst": f"{pcoa}/128", "family": socket.AF_INET6}
    try:
        if ifname is not None:
            kw["oif"] = ipr.link_lookup(ifname=ifname)[0]
        ipr.route(op, **kw)
    except Exception as e:  # pyroute2 raises NetlinkError; IndexError when the link is gone
        if op != "del":
            log.warning("route %s %s via %s: %s", op, pcoa, ifname, e)


# ---- kernel: ip6tnl links -------------------------------------------------------------------------------


class KernelForwarder:
    name = "kernel"

    def __init__(self, tunnel_name: str, local: IPv6Address | None, reason: str) -> None:
        self.reason = reason
        self.stem = link_stem(tunnel_name)
        self.local = str(local) if local is not None else "::"
        self._fwd: dict[str, str] = {}  # PCoA -> NCoA, on the loop thread
        self._w = _Worker()
        self._retired = 0  # packets sent by links already deleted (worker thread)

    async def start(self, forwarding: Mapping[str, str]) -> Plan:
        self._fwd = dict(forwarding)
        plan = await self._w.run(self._reconcile, dict(forwarding))
        if plan.delete_links or plan.delete_routes:
            log.info("removed stale forwarding links %s and routes %s", list(plan.delete_links), plan.delete_routes)
        return plan

    def _reconcile(self, ipr: Any, wanted: dict[str, str]) -> Plan:
        plan = reconcile(self.stem, self.local, self._seen(ipr), wanted)
        for name in plan.delete_links:
            self._delete_link(ipr, name)
        for name, ncoa in plan.create_links:
            self._ensure_link(ipr, name, ncoa)
        for pcoa in plan.delete_routes:
            _route(ipr, "del", pcoa, None)
        for pcoa, name in plan.routes:
            _route(ipr, "replace", pcoa, name)
        return plan

    def _seen(self, ipr: Any) -> list[LinkSeen]:
        links = {}
        for msg in ipr.get_links():
            name = msg.get_attr("IFLA_IFNAME")
            info = msg.get_attr("IFLA_LINKINFO")
            if not is_our_link(name, self.stem) or info is None or info.get_attr("IFLA_INFO_KIND") != "ip6tnl":
                continue
            data = info.get_attr("IFLA_INFO_DATA")
            local = data.get_attr("IFLA_IP6TNL_LOCAL") if data is not None else None
            remote = data.get_attr("IFLA_IP6TNL_REMOTE") if data is not None else None
            links[msg["index"]] = (name, local or "::", remote or "::")
        routes: dict[int, set[str]] = {i: set() for i in links}
        for r in ipr.get_routes(family=socket.AF_INET6):
            oif = r.get_attr("RTA_OIF")
            if oif in routes and r["dst_len"] == 128:
                routes[oif].add(str(IPv6Address(r.get_attr("RTA_DST"))))
        return [LinkSeen(n, lo, re, frozenset(routes[i])) for i, (n, lo, re) in links.items()]

    def _ensure_link(self, ipr: Any, name: str, ncoa: str) -> None:
        if not ipr.link_lookup(ifname=name):
            ipr.link(
                "add",
                ifname=name,
                kind="ip6tnl",
                ip6tnl_local=self.local,
                ip6tnl_remote=ncoa,
                ip6tnl_proto=IPPROTO_IPV6,
                ip6tnl_flags=IP6_TNL_F_IGN_ENCAP_LIMIT,
                ip6tnl_ttl=64,
            )
        idx = ipr.link_lookup(ifname=name)[0]
        # no link-local address, so no MLD reports or RSs of the PAR's own go down the tunnel to the MN
        ipr.link("set", index=idx, IFLA_AF_SPEC={"attrs": [["AF_INET6", {"attrs": [[ADDR_GEN_MODE, 1]]}]]})
        ipr.link("set", index=idx, state="up")

    def _delete_link(self, ipr: Any, name: str) -> None:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return
        self._retired += _tx_packets(ipr.get_links(idx[0])[0])
        ipr.link("del", index=idx[0])

    def _add(self, ipr: Any, pcoa: str, name: str, ncoa: str, drop: str | None) -> None:
        self._ensure_link(ipr, name, ncoa)
        _route(ipr, "replace", pcoa, name)
        if drop is not None:
            self._delete_link(ipr, drop)

    def _remove(self, ipr: Any, pcoa: str, drop: str | None) -> None:
        if drop is not None:
            self._delete_link(ipr, drop)  # its routes go with it
        else:
            _route(ipr, "del", pcoa, None)

    def _unused(self, ncoa: str | None) -> str | None:
        """The link of `ncoa` if no forwarding uses it any more."""
        return link_name(self.stem, ncoa) if ncoa is not None and ncoa not in self._fwd.values() else None

    def add(self, pcoa: str, ncoa: str) -> None:
        old = self._fwd.get(pcoa)
        self._fwd[pcoa] = ncoa
        self._w.post(self._add, pcoa, link_name(self.stem, ncoa), ncoa, self._unused(old) if old != ncoa else None)

    def remove(self, pcoa: str) -> None:
        old = self._fwd.pop(pcoa, None)
        if old is not None:
            self._w.post(self._remove, pcoa, self._unused(old))

    async def counters(self) -> Counters:
        names = {p: link_name(self.stem, n) for p, n in self._fwd.items()}
        return await self._w.run(self._counters, names)

    def _counters(self, ipr: Any, names: dict[str, str]) -> Counters:
        tx = {}
        for msg in ipr.get_links():
            name = msg.get_attr("IFLA_IFNAME")
            if is_our_link(name, self.stem):
                tx[name] = _tx_packets(msg)
        packets = {p: tx.get(n, 0) for p, n in names.items()}
        return Counters({"fwd_packets": self._retired + sum(tx.values())}, packets)

    async def close(self) -> None:
        """A clean stop removes our links (kill -9 leaves them for `start` to reconcile)."""
        self._fwd.clear()
        await self._w.run(self._reconcile, {})
        await self._w.close()


def _tx_packets(msg: Any) -> int:
    stats = msg.get_attr("IFLA_STATS64") or msg.get_attr("IFLA_STATS")
    return int(stats["tx_packets"]) if stats is not None else 0


# ---- userspace: TUN + raw protocol 41 -------------------------------------------------------------------


class UserspaceForwarder:
    name = "userspace"

    def __init__(self, tunnel_name: str, local: IPv6Address | None, reason: str) -> None:
        self.reason = reason
        self.tunnel_name = tunnel_name
        self.local = local
        self._fwd: dict[str, str] = {}
        self._packets: dict[str, int] = {}
        self._totals = {"fwd_packets": 0, "fwd_no_binding": 0, "fwd_not_ipv6": 0}
        self._w = _Worker()
        self.tun: TunDevice | None = None
        self.out: socket.socket | None = None

    async def start(self, forwarding: Mapping[str, str]) -> None:
        from mobility.service.netif import link_up

        loop = asyncio.get_running_loop()
        self.tun = TunDevice(self.tunnel_name)
        await loop.run_in_executor(None, link_up, self.tunnel_name)
        loop.add_reader(self.tun.fd, self._on_tun)
        self.out = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_IPV6)  # IPv6-in-IPv6 (RFC 2473)
        self.out.setblocking(False)
        if self.local is not None:
            # the tunnel's outer source is the address the MN sent its FBU to, so it knows the PAR
            self.out.bind((str(self.local), 0))
        for pcoa, ncoa in forwarding.items():
            self.add(pcoa, ncoa)

    def add(self, pcoa: str, ncoa: str) -> None:
        self._fwd[pcoa] = ncoa
        self._w.post(_route, "replace", pcoa, self.tunnel_name)

    def remove(self, pcoa: str) -> None:
        if self._fwd.pop(pcoa, None) is not None:
            self._packets.pop(pcoa, None)
            self._w.post(_route, "del", pcoa, self.tunnel_name)

    def _on_tun(self) -> None:
        """Packets for previous CoAs: into IPv6 towards the new CoA (RFC 5568 §4 forwarding)."""
        assert self.tun is not None and self.out is not None
        for _ in range(BATCH):
            pkt = self.tun.read()
            if pkt is None:
                return
            if len(pkt) < 40 or pkt[0] >> 4 != 6:
                self._totals["fwd_not_ipv6"] += 1
                continue
            pcoa = str(IPv6Address(pkt[24:40]))
            ncoa = self._fwd.get(pcoa)
            if ncoa is None:
                self._totals["fwd_no_binding"] += 1
                continue
            try:
                self.out.sendto(pkt, (ncoa, 0))
            except OSError as e:
                log.debug("forward to %s: %s", ncoa, e)
                continue
            self._totals["fwd_packets"] += 1
            self._packets[pcoa] = self._packets.get(pcoa, 0) + 1

    async def counters(self) -> Counters:
        return Counters(dict(self._totals), {p: self._packets.get(p, 0) for p in self._fwd})

    async def close(self) -> None:
        """Closing the TUN device removes it and the routes through it."""
        await self._w.close()
        if self.tun is not None:
            asyncio.get_running_loop().remove_reader(self.tun.fd)
            self.tun.close()
        if self.out is not None:
            self.out.close()
