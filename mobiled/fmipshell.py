"""mobiled's SEND/FMIPv6 shell: sockets and timers around `mobiled.fmip.FmipClient`.

- ICMPv6 raw socket on the access interface: RS at start, RA/CPA/PrRtAdv in, CPS/RtSolPr/UNA out.
- The CGA key and the CGA Parameters (modifier, Sec) live in the state directory: generated once, the
  modifier reused when only the prefix changes (RFC 3972 §4), so no Sec 1/2 search at each start.
- Care-of CGAs are added to the interface (no DAD wait: the lab and the tests run nodad; a collision
  would raise the collision count, RFC 3972 §4 step 8).
- `fmip.handover` (NCoA on the NAR prefix, authenticated FBU from the PCoA, wait for the FBack) and
  `fmip.attached` (the UNA on the new link, RFC 5568 §6.3, and in reactive mode the FBU from the NCoA,
  §3.2) are the link-layer triggers' entry points.
- The interface takes no RAs in the kernel (accept_ra 0: unsecured RAs must not configure it); the
  default route is set from the secured RAs instead, via the router that sent the latest one.
- Forwarded traffic arrives as IPv6-in-IPv6 from the PAR (raw protocol-41 socket); the inner packet,
  addressed to the previous CoA, is handed to the stack through a TUN device. Only packets from a PAR
  whose FBack we accepted, for the PCoA it accepted, go in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import socket
import time
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mobiled.config import FmipSection
from mobiled.fmip import DefaultRouter, Dropped, FastHandover, FmipClient, HandoverKey, IcmpSend, MhSend, RouterFound
from mobility.crypto import cga, ikeauth, sendsig
from mobility.dataplane.userspace import TunDevice
from mobility.engine import Action, Notify, Persist
from mobility.service import netif
from mobility.service.control import ControlConnection
from mobility.service.logging import RateLimitedLog
from mobility.service.netif import RTPROT_STATIC, add_address_nodad, del_route6, link_layer_address, link_up, set_route6
from mobility.service.state import StateStore
from mobility.wire import mh, nd

log = logging.getLogger("mobiled.fmip")
drop_log = RateLimitedLog(logging.getLogger("mobiled.drops"))


class FmipShell:
    def __init__(self, cfg: FmipSection, state_dir: Any) -> None:
        self.cfg = cfg
        self.store = StateStore(state_dir / "fmip.sqlite")
        self.state_dir = state_dir
        self.client: FmipClient | None = None
        self.icmp: socket.socket | None = None
        self.mh_sock: socket.socket | None = None
        self.raw: socket.socket | None = None
        self.t41: socket.socket | None = None
        self.tun: TunDevice | None = None
        self.ifindex = 0
        self.coa: dict[str, tuple[IPv6Address, bytes]] = {}  # prefix -> (care-of CGA, CGA Parameters)
        self.current: tuple[IPv6Address, IPv6Address] | None = None  # (router link-local, our CGA there)
        self.previous: tuple[IPv6Address, IPv6Address] | None = None  # the one before `current`
        # route changes run one at a time, in the order asked (a late RA of the old router must not
        # re-add its default route after the move removed it)
        self._routes = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mobiled-routes")
        self.forwarded: dict[str, str] = {}  # PCoA -> PAR while FMIPv6 forwarding runs
        self.handover: tuple[IPv6Address, IPv6Address, IPv6Address] | None = None  # (PCoA, NCoA, NAR) under way
        self.default_router: str | None = None  # link-local address our default route goes through
        self.collisions = 0
        self.configured: set[str] = set()  # care-of CGAs that passed DAD
        self._waiters: list[asyncio.Future[FastHandover]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.handlers = {
            "fmip.keys": self._cmd_keys,
            "fmip.status": self._cmd_status,
            "fmip.handover": self._cmd_handover,
            "fmip.attached": self._cmd_attached,
        }

    # ---- start --------------------------------------------------------------------------------------

    async def start(self) -> None:
        c = self.cfg
        loop = asyncio.get_running_loop()
        key = self._cga_key()
        anchors = tuple(x for p in c.trust_anchors for x in ikeauth.load_certificates(p.read_bytes()))
        if not anchors:
            raise ValueError("fmip.trust_anchors: at least one SEND trust anchor is required (RFC 5269 §3.2)")
        self.ifindex = socket.if_nametoindex(c.interface)
        self.client = FmipClient(
            key,
            anchors,
            os.urandom,
            lla=link_layer_address(c.interface),
            at=c.algorithm,
            fbu_lifetime=c.fbu_lifetime_s,
            hkepk_lifetime_s=c.hkepk_lifetime_s,
            hkepk_handovers=c.hkepk_handovers,
        )
        self.client.restore(list(self.store.all("hk").values()))
        await loop.run_in_executor(None, _sysctl, c.interface)
        self.icmp = netif.nd_socket(c.interface, (134, 149, 154))  # RA, CPA, PrRtAdv
        loop.add_reader(self.icmp.fileno(), self._on_icmp)
        self.mh_sock = netif.raw6_socket(mh.IPPROTO_MH)  # FBack
        loop.add_reader(self.mh_sock.fileno(), self._on_mh)
        self.raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)  # FBU: our own header
        self.t41 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 41)
        self.t41.setblocking(False)
        loop.add_reader(self.t41.fileno(), self._on_tunnel)
        self.tun = TunDevice(c.tunnel_name)
        await loop.run_in_executor(None, link_up, c.tunnel_name)
        rs = nd.router_solicitation().encode(IPv6Address("::"), IPv6Address("ff02::2"))  # the kernel sums it
        self._send([IcmpSend(None, IPv6Address("ff02::2"), rs)])
        self._rearm()
        log.info("SEND/FMIPv6 on %s: %d trust anchor(s), %d handover key(s) restored", c.interface, len(anchors),
                 len(self.client.keys))  # fmt: skip

    def _cga_key(self) -> rsa.RSAPrivateKey:
        """The CGA key, generated once (mode 0600) and reused, as are the CGA modifier and Sec."""
        path = self.state_dir / "fmip-cga.key"
        if path.exists():
            k = ikeauth.load_private_key(path.read_bytes())
            if isinstance(k, rsa.RSAPrivateKey) and k.key_size == self.cfg.key_bits:
                return k
        k = rsa.generate_private_key(65537, self.cfg.key_bits)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))  # fmt: skip
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.store.delete("cga", "modifier")
        return k

    async def modifier(self) -> int:
        """The CGA modifier (RFC 3972 §4 steps 1-3), searched once for the configured Sec and kept in the
        state dir: it is reused for every prefix and collision count. The search runs off the event
        loop (Sec 2 takes minutes on all cores), with progress in the log."""
        assert self.client is not None
        rec = self.store.get("cga", "modifier")
        if rec is not None and rec["sec"] == self.cfg.sec:
            return int(rec["modifier"])
        der = sendsig.public_der(self.client.sig_key.public_key())
        t0 = time.monotonic()

        def progress(tried: int) -> None:
            log.info("CGA Sec %d: %d hashes tried (%.0f/s)", self.cfg.sec, tried, tried / (time.monotonic() - t0))

        search = functools.partial(cga.find_modifier, der, self.cfg.sec, os.urandom, progress=progress)
        m = await asyncio.get_running_loop().run_in_executor(None, search)
        log.info("CGA modifier for Sec %d found in %.2f s", self.cfg.sec, time.monotonic() - t0)
        self.store.put("cga", "modifier", {"modifier": str(m), "sec": self.cfg.sec})
        return m

    async def care_of(self, prefix: IPv6Network, collision_count: int = 0) -> tuple[IPv6Address, bytes]:
        """Our CGA on `prefix` (collision count 0 unless DAD said otherwise)."""
        assert self.client is not None
        der = sendsig.public_der(self.client.sig_key.public_key())
        modifier = await self.modifier()
        addr, params = cga.generate(
            prefix, der, self.cfg.sec, os.urandom, modifier=modifier, collision_count=collision_count
        )
        return addr, params.encode()

    # ---- I/O ------------------------------------------------------------------------------------------

    def _on_icmp(self) -> None:
        assert self.icmp is not None and self.client is not None
        for _ in range(64):
            d = netif.receive(self.icmp)
            if d is None:
                break
            acts, sends = self.client.icmp(d.data, d.src, d.dst or IPv6Address("::"), d.hop_limit, time.time())
            self._apply(acts)
            self._send(sends)
        self._rearm()

    def _on_mh(self) -> None:
        assert self.mh_sock is not None and self.client is not None
        for _ in range(16):
            d = netif.receive(self.mh_sock)
            if d is None:
                return
            if d.dst is not None:
                self._apply(self.client.fback(d.src, d.dst, d.data, time.time()))

    def _on_tunnel(self) -> None:
        """IPv6-in-IPv6 from the PAR: deliver the inner packet if it is for a PCoA that PAR forwards."""
        assert self.t41 is not None and self.tun is not None
        for _ in range(256):
            try:
                inner, addr = self.t41.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            outer_src = addr[0].split("%")[0]
            if len(inner) < 40 or inner[0] >> 4 != 6:
                continue
            pcoa = str(IPv6Address(inner[24:40]))
            if self.forwarded.get(pcoa) != outer_src:
                drop_log.debug("tunnel", "tunnelled packet from %s for %s: no fast handover", outer_src, pcoa)
                continue
            self.tun.write(inner)

    def _send(self, sends: list[IcmpSend]) -> None:
        assert self.icmp is not None
        for s in sends:
            netif.send_from(self.icmp, s.data, s.src, s.dst, self.ifindex)

    def _send_mh(self, s: MhSend) -> None:
        assert self.raw is not None
        try:
            self.raw.sendto(mh.build_ipv6(s.src, s.dst, s.payload, s.next_header), (str(s.dst), 0))
        except OSError as e:
            log.warning("FBU to %s: %s", s.dst, e)

    def _apply(self, acts: list[Action]) -> None:
        assert self.client is not None
        for a in acts:
            if isinstance(a, Persist) and isinstance(a.record, HandoverKey):
                k = a.record
                self.store.put(
                    "hk", f"{k.ar}|{k.cga}",
                    {"ar": k.ar, "cga": k.cga, "router_ll": k.router_ll, "key": k.key.hex(), "at": k.at,
                     "expires": k.expires, "nars": [list(n) for n in k.nars]},
                )  # fmt: skip
            elif isinstance(a, Notify):
                ev = a.event
                if isinstance(ev, RouterFound):
                    asyncio.get_running_loop().create_task(self._router_found(ev))
                elif isinstance(ev, DefaultRouter):
                    asyncio.get_running_loop().create_task(self._default_router(ev))
                elif isinstance(ev, HandoverKey):
                    log.info("handover key from %s for %s (AT %d, %d s)", ev.ar, ev.cga, ev.at,
                             int(ev.expires - time.time()))  # fmt: skip
                elif isinstance(ev, FastHandover):
                    if ev.status < 128:
                        self.forwarded[ev.pcoa] = ev.par
                        asyncio.get_running_loop().call_later(ev.lifetime + 1, self.forwarded.pop, ev.pcoa, None)
                    log.info("FBack from %s: status %d, %s -> %s for %d s", ev.par, ev.status, ev.pcoa, ev.ncoa,
                             ev.lifetime)  # fmt: skip
                    for w in self._waiters:
                        if not w.done():
                            w.set_result(ev)
                elif isinstance(ev, Dropped):
                    drop_log.debug(ev.what, "%s dropped: %s", ev.what, ev.reason)

    async def _configure(self, prefix: IPv6Network) -> tuple[IPv6Address, bytes] | None:
        """Our care-of CGA on the link, with Duplicate Address Detection: a collision raises the
        collision count and the address is formed again; after three, stop with an error (RFC 3972
        §4 step 8, RFC 3971 §5.1.3 for SEND's DAD)."""
        known = self.coa.get(str(prefix))
        if known is not None:
            return known  # formed for a fast handover and already on the interface
        loop = asyncio.get_running_loop()
        assert self.client is not None
        if any(IPv6Network(n[2]) == prefix for k in self.client.keys.values() for n in k.nars):
            # a NAR that a PrRtAdv named: this is the NCoA, formed in advance and checked by the NAR
            # (HI/HAck, RFC 5568 §4), usable at once (no tentative address under the UNA and the FBU)
            return await self._add_ncoa(prefix)
        for cc in range(cga.MAX_COLLISIONS):
            addr, params = await self.care_of(prefix, cc)
            if await loop.run_in_executor(None, _add_with_dad, self.cfg.interface, addr):
                self.coa[str(prefix)] = (addr, params)
                self.configured.add(str(addr))
                return self.coa[str(prefix)]
            self.collisions += 1
            log.warning("DAD failed for %s (collision count %d): forming the next address", addr, cc)
        log.error("three address collisions on %s: no care-of CGA (RFC 3972 §4)", prefix)
        return None

    async def _add_ncoa(self, prefix: IPv6Network) -> tuple[IPv6Address, bytes]:
        """The NCoA on a NAR's prefix, added without DAD (the NAR checks it, RFC 5568 §4) and known as
        our care-of address there, so the NAR's RA finds it configured (no tentative address again)."""
        addr, params = await self.care_of(prefix)
        await asyncio.get_running_loop().run_in_executor(self._routes, add_address_nodad, self.cfg.interface, addr)
        self.coa[str(prefix)] = (addr, params)
        self.configured.add(str(addr))
        return addr, params

    async def _router_found(self, ev: RouterFound) -> None:
        """A certified router with an authorised prefix: our care-of CGA there, then the handover key."""
        assert self.client is not None
        conf = await self._configure(IPv6Network(ev.prefix))
        if conf is None:
            return
        addr, params = conf
        if self.current is not None and self.current[0] != IPv6Address(ev.link_local):
            self.previous = self.current
        self.current = (IPv6Address(ev.link_local), addr)
        log.info("router %s (%s) on %s: care-of CGA %s", ev.link_local, ev.address, ev.prefix, addr)
        self._send([self.client.rtsolpr(IPv6Address(ev.link_local), addr, params, time.time())])
        self._rearm()

    async def _default_router(self, ev: DefaultRouter) -> None:
        """The default route follows the secured RAs: via the router that sent one, for its Router
        Lifetime; a lifetime of 0 removes it (RFC 4861 §6.3.4). After a move the new router's RA
        replaces the old router's route: the switch of our own traffic to the new link."""
        loop, ifname = asyncio.get_running_loop(), self.cfg.interface
        try:
            if ev.lifetime:
                await loop.run_in_executor(self._routes, functools.partial(set_route6, ifname, "::/0", ev.link_local,
                                                                   expires=ev.lifetime))  # fmt: skip
                if self.default_router != ev.link_local:
                    log.info("default router %s (%d s)", ev.link_local, ev.lifetime)
                self.default_router = ev.link_local
            elif self.default_router == ev.link_local:
                await loop.run_in_executor(self._routes, del_route6, ifname, "::/0", ev.link_local)
                self.default_router = None
        except Exception as e:  # pyroute2's NetlinkError: the link went away meanwhile
            log.warning("default route via %s: %s", ev.link_local, e)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(0.1, self._tick)

    def _tick(self) -> None:
        assert self.client is not None
        now = time.time()
        acts, icmp, mhs = self.client.tick(now)
        self._apply(acts)
        self._send(icmp)
        for m in mhs:
            self._send_mh(m)
        for k in self.client.renewals(now, margin=min(600.0, 0.1 * self.cfg.hkepk_lifetime_s)):
            params = next((p for a, p in self.coa.values() if str(a) == k.cga), None)
            if params is not None:
                self._send([self.client.rtsolpr(IPv6Address(k.router_ll), IPv6Address(k.cga), params, now)])
        self._timer = asyncio.get_running_loop().call_later(0.1 if icmp or mhs else 0.5, self._tick)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        for s in (self.icmp, self.mh_sock, self.t41):
            if s is not None:
                loop.remove_reader(s.fileno())
                s.close()
        if self.raw is not None:
            self.raw.close()
        if self.tun is not None:
            os.close(self.tun.fd)
        self._routes.shutdown(wait=False)
        self.store.close()

    # ---- commands -------------------------------------------------------------------------------------

    def _cmd_keys(self, args: dict[str, Any], conn: ControlConnection) -> list[dict[str, Any]]:
        if self.client is None:
            return []
        now = time.time()
        return [
            {"ar": k.ar, "cga": k.cga, "router": k.router_ll, "at": k.at, "expires_in_s": int(k.expires - now),
             "nars": [list(n) for n in k.nars]}
            for k in self.client.keys.values()
        ]  # fmt: skip

    def _cmd_status(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        if self.client is None:
            return {}
        return {
            "routers": {str(r.link_local): {"prefix": str(r.prefix), "address": str(r.address)}
                        for r in self.client.routers.values()},
            "care_of": {p: str(a) for p, (a, _) in self.coa.items()},
            "forwarded": dict(self.forwarded),
            "dad_collisions": self.collisions,
            "configured": sorted(self.configured),
            "counters": dict(self.client.counters),
        }  # fmt: skip

    async def _cmd_handover(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        """Predictive fast handover (RFC 5568 §3.1): NCoA from the NAR prefix the PrRtAdv gave, FBU from
        the PCoA to the PAR with the handover key, wait for the authenticated FBack."""
        key, pcoa, ncoa = await self._new_care_of(args, self._left())
        return await self._fast_binding(key, pcoa, ncoa, args, reactive=False)

    def _left(self) -> tuple[IPv6Address, IPv6Address]:
        """(router, our CGA) of the link we are leaving or have left: the current one, unless the new
        router's RA came first, which makes the new link current: our CGA there lies on a NAR prefix
        that the previous router's PrRtAdv named."""
        cur, prev = self.current, self.previous
        if cur is None:
            raise ValueError("no access router yet")
        k = self._key(prev[1]) if prev is not None else None
        if prev is not None and k is not None and any(cur[1] in IPv6Network(n[2]) for n in k.nars):
            return prev
        return cur

    def _key(self, cga: IPv6Address) -> HandoverKey | None:
        assert self.client is not None
        return next((k for k in self.client.keys.values() if k.cga == str(cga)), None)

    async def _new_care_of(
        self, args: dict[str, Any], left: tuple[IPv6Address, IPv6Address]
    ) -> tuple[HandoverKey, IPv6Address, IPv6Address]:
        """(handover key, PCoA, NCoA): the NCoA formed on the prefix of the NAR (`nar` or the first) that
        the PrRtAdv named, and added to the interface; remembered as the handover under way."""
        pcoa = left[1]
        key = self._key(pcoa)
        if key is None:
            raise ValueError(f"no handover key for {pcoa}")
        nars = [n for n in key.nars if not args.get("nar") or n[1] == args["nar"]]
        if not nars:
            raise ValueError("the PrRtAdv named no such new access router")
        ncoa, _params = await self._add_ncoa(IPv6Network(nars[0][2]))
        self.handover = (pcoa, ncoa, IPv6Address(nars[0][1]))
        return key, pcoa, ncoa

    async def _fast_binding(
        self, key: HandoverKey, pcoa: IPv6Address, ncoa: IPv6Address, args: dict[str, Any], *, reactive: bool
    ) -> dict[str, Any]:
        """Send the FBU and wait for the authenticated FBack (the FBU is retransmitted meanwhile)."""
        assert self.client is not None
        fut: asyncio.Future[FastHandover] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            self._send_mh(self.client.fbu(IPv6Address(key.ar), pcoa, ncoa, time.time(), reactive=reactive))
            self._rearm()
            ev = await asyncio.wait_for(fut, timeout := float(args.get("timeout", 8.0)))
        except TimeoutError:
            raise ValueError(f"no FBack from {key.ar} within {timeout:g} s") from None
        finally:
            self._waiters.remove(fut)
        return {"par": ev.par, "pcoa": ev.pcoa, "ncoa": ev.ncoa, "status": ev.status, "lifetime": ev.lifetime}

    async def _cmd_attached(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        """The link-layer trigger "now on the NAR's link" (RFC 5568 §3.1, §3.2, §6.3):
        - UNA for the NCoA (O, S, R clear, Target LLA) to All-Nodes, then an RS so the NAR's secured RA
          (our default router from then on) comes at once;
        - the default route via the previous router goes: that router is no longer on our link;
        - reactive mode, when no FBack reached us on the previous link: NCoA formed from the NAR prefix
          the PrRtAdv gave, the FBU sent from it to the PAR through the NAR (whose address the PrRtAdv
          gave too), and the FBack awaited."""
        assert self.client is not None
        loop, ifname = asyncio.get_running_loop(), self.cfg.interface
        left = self._left()
        if self.handover is None or self.handover[0] != left[1]:
            await self._new_care_of(args, left)  # no FBU on the old link: reactive
        assert self.handover is not None
        pcoa, ncoa, nar = self.handover
        key = self._key(pcoa)
        if self.default_router == str(left[0]):  # not the new router's, if its RA came first
            await loop.run_in_executor(self._routes, del_route6, ifname, "::/0", self.default_router)
            self.default_router = None
        dst = IPv6Address("ff02::1")
        una = nd.neighbor_advertisement(ncoa, 0, (nd.TargetLla(self.client.lla),))
        rs = nd.router_solicitation().encode(IPv6Address("::"), IPv6Address("ff02::2"))
        self._send([IcmpSend(ncoa, dst, una.encode(ncoa, dst)), IcmpSend(None, IPv6Address("ff02::2"), rs)])
        out: dict[str, Any] = {"una": str(ncoa)}
        if str(pcoa) in self.forwarded or key is None:
            return out  # predictive: the PAR forwards already (or nothing can authenticate an FBU)
        # reactive (§3.2): the PAR's address is on our old prefix, which the kernel still takes as on-link
        route = functools.partial(set_route6, ifname, f"{key.ar}/128", str(nar), onlink=True, proto=RTPROT_STATIC)
        await loop.run_in_executor(self._routes, route)
        out["fback"] = await self._fast_binding(key, pcoa, ncoa, args, reactive=True)
        return out


def _sysctl(ifname: str) -> None:
    """The kernel must not autoconfigure from the RAs mobiled validates (SEND hosts use CGAs); it does
    run DAD for the CGAs we add (one probe)."""
    for name, value in (("accept_ra", "0"), ("accept_dad", "1"), ("dad_transmits", "1")):
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/{name}", "w") as f:
            f.write(value)


def _add_with_dad(ifname: str, address: IPv6Address, timeout: float = 5.0) -> bool:
    """Add the address and wait for DAD: True when it is no longer tentative, False (address removed)
    when the kernel marks it dadfailed."""
    from pyroute2 import IPRoute

    tentative, dadfailed = 0x40, 0x08  # IFA_F_TENTATIVE, IFA_F_DADFAILED
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        try:
            ipr.addr("replace", index=idx, address=str(address), prefixlen=64)
        except Exception as e:  # pyroute2 raises NetlinkError
            log.warning("cannot add %s to %s: %s", address, ifname, e)
            return False
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [a for a in ipr.get_addr(family=socket.AF_INET6, index=idx)
                     if a.get_attr("IFA_ADDRESS") == str(address)]  # fmt: skip
            flags = (found[0].get_attr("IFA_FLAGS") or found[0]["flags"]) if found else dadfailed
            if flags & dadfailed:
                if found:
                    ipr.addr("del", index=idx, address=str(address), prefixlen=64)
                return False
            if not flags & tentative:
                return True
            time.sleep(0.1)
    return False
