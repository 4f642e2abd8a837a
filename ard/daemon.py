"""ard daemon: the access router. SEND (RFC 3971) and RFC 5269 handover keys on a raw ICMPv6 socket
(RS/RA, CPS/CPA, RtSolPr/PrRtAdv; hop limit and destination from ancillary data), a link-local CGA of
the router's certified key (kept in the state directory), handover keys, FBU sequence numbers and
forwarding state in SQLite (committed before the answer leaves, so they survive kill -9).

FMIPv6 (RFC 5568): FBUs carry a Home Address option, which this kernel (no MIP6) drops, so they are
read from an AF_PACKET socket; HI/HAck (no Home Address option) use a raw Mobility Header socket.
Forwarding for a previous CoA goes to the new CoA inside IPv6 (RFC 2473) through
mobility.dataplane.ip6tunnel: ip6tnl links when the kernel has them, else a TUN device and a raw
protocol-41 socket (`forward_backend`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ard.config import ArdConfig
from ard.engine import ArdEngine, HkExpired, HkIssued, Neighbor, RouterIdentity, SolicitationRefused
from ard.fmip import FbuSeq, FmipDropped, FmipEngine, Forwarding, ForwardingEnded, Send
from ard.ipsec import ArIpsec
from mobility.crypto import cga, ikeauth, sendsig
from mobility.dataplane.ip6tunnel import Forwarder, open_forwarder
from mobility.engine import Action, Notify, Persist
from mobility.service import netif
from mobility.service.config import read_secret_file
from mobility.service.control import ControlConnection
from mobility.service.logging import RateLimitedLog
from mobility.service.netif import add_address_nodad, link_layer_address
from mobility.service.runner import DaemonContext
from mobility.service.shell import ServiceShell
from mobility.service.state import StateStore
from mobility.wire import mh
from mobility.wire.buffer import DecodeError

log = logging.getLogger("ard")
drop_log = RateLimitedLog(logging.getLogger("ard.drops"))
ETH_P_IPV6, PACKET_OUTGOING = 0x86DD, 4


class ArdDaemon(ServiceShell):
    ROLE = "access router (SEND, RFC 5269 handover keys)"

    def __init__(self, cfg: ArdConfig, ctx: DaemonContext) -> None:
        super().__init__(cfg, ctx)
        self.engine: ArdEngine | None = None
        self.store: StateStore | None = None
        self.sock: socket.socket | None = None
        self.fmip: FmipEngine | None = None
        self.mh_sock: socket.socket | None = None
        self.mh_link: socket.socket | None = None
        self.pkt_sock: socket.socket | None = None
        self.fwd: Forwarder | None = None
        self.ipsec: ArIpsec | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ra_timer: asyncio.TimerHandle | None = None
        self.handlers.update({"keys": self._cmd_keys, "stats": self._cmd_stats, "forwarding": self._cmd_forwarding})

    async def start(self) -> None:
        await super().start()
        c = self.cfg
        if c.key_file is None or not c.interfaces:
            return
        key = ikeauth.load_private_key(read_secret_file(c.key_file))
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the router key must be RSA (RFC 3971 §5.2)")
        self.store = StateStore(self.ctx.state_dir / "ard.sqlite")
        ifname = c.interfaces[0]
        address, params = await self._router_cga(key)
        # pyroute2's synchronous IPRoute runs its own loop: use it from a worker thread
        await asyncio.get_running_loop().run_in_executor(None, add_address_nodad, ifname, address)
        neighbors = tuple(
            Neighbor(
                bytes.fromhex(n.ap_lla.replace(":", "")),
                bytes.fromhex(n.nar_lla.replace(":", "")),
                n.nar_address,
                n.nar_prefix,
            )
            for n in c.neighbors
            if n.nar_address is not None and n.nar_prefix is not None
        )
        certs: tuple[bytes, ...] = ()
        if c.cert_file is not None:
            chain = ikeauth.load_certificates(c.cert_file.read_bytes())  # the router's own first
            if sendsig.public_der(chain[0].public_key()) != sendsig.public_der(key.public_key()):  # type: ignore[arg-type]
                raise ValueError(f"{c.cert_file}: the first certificate is not for key_file's key")
            certs = tuple(x.public_bytes(serialization.Encoding.DER) for x in reversed(chain))
        prefix, glob = await asyncio.get_running_loop().run_in_executor(None, _link_prefix, ifname, c.prefix)
        self.engine = ArdEngine(
            router=RouterIdentity(
                key,
                address,
                params.encode(),
                link_layer_address(ifname),
                certs=certs,
                prefix=prefix,
                global_address=glob,
            ),
            rand=os.urandom,
            neighbors=neighbors,
            hk_lifetime_s=c.hk_lifetime_s,
            rate_per_s=c.rtsolpr_rate,
        )
        self.engine.restore(list(self.store.all("hk").values()))
        self.fmip = FmipEngine(
            self.engine,
            nar_peers={n.nar_address: n.nar_prefix for n in neighbors},
            par_peers=frozenset(c.fmip_peers),
            own_prefixes=(prefix,) if prefix is not None else (),
            forward_s=c.forward_s,
        )
        self.fmip.restore(list(self.store.all("fbu_seq").values()), list(self.store.all("fwd").values()))
        self._open(ifname)
        await self._open_fmip()
        await self._start_ipsec(neighbors)
        self._rearm()
        self._send_ra()
        log.info(
            "ard on %s as %s (prefix %s, %d certificate(s)); %d handover key(s), %d forwarding(s) restored",
            ifname, address, prefix, len(certs), len(self.engine.keys), len(self.fmip.forwarding),
        )  # fmt: skip

    async def _router_cga(self, key: Any) -> tuple[IPv6Address, cga.CgaParams]:
        """The router's link-local CGA, generated once and kept (RFC 3972 §4); the modifier search runs
        off the event loop (Sec 2 takes minutes)."""
        assert self.store is not None
        der = sendsig.public_der(key.public_key())
        rec = self.store.get("router", "cga")
        if rec is not None and bytes.fromhex(rec["params"])[25:].startswith(der):
            params = cga.CgaParams.decode(bytes.fromhex(rec["params"]))
            address = IPv6Address(rec["address"])
        else:
            gen = functools.partial(cga.generate, IPv6Network("fe80::/64"), der, self.cfg.sec, os.urandom)
            address, params = await asyncio.get_running_loop().run_in_executor(None, gen)
            self.store.put("router", "cga", {"address": str(address), "params": params.encode().hex()})
        return address, params

    def _open(self, ifname: str) -> None:
        # RS, CPS and RtSolPr; All-Routers joined (RtSolPr and RS may go there)
        self.sock = netif.nd_socket(ifname, (133, 148, 154), ("ff02::2",))
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._on_icmp)
        self.ifindex = socket.if_nametoindex(ifname)

    def _on_icmp(self) -> None:
        assert self.sock is not None and self.engine is not None
        for _ in range(64):
            d = netif.receive(self.sock)
            if d is None:
                return
            now = time.time()
            if d.data[:1] == b"\x85":  # Router Solicitation
                ra = self.engine.router_solicitation(d.data, d.src, d.hop_limit, now)
                if ra is not None:
                    self._send_icmp(*ra)
            elif d.data[:1] == b"\x94":  # CPS
                for dst, cpa in self.engine.certification_path(d.data, d.src, d.hop_limit, now):
                    self._send_icmp(dst, cpa)
            elif d.data[:1] == b"\x9a" and d.dst is not None:  # FMIPv6
                actions, reply = self.engine.rtsolpr(d.data, d.src, d.dst, d.hop_limit, now=now)
                self._apply(actions)
                if reply is not None:
                    self._send_icmp(d.src, reply)

    def _send_icmp(self, dst: IPv6Address, data: bytes) -> None:
        """From the router's link-local CGA, the address it signed (RFC 5568 §6.1.2, RFC 3971 §5.2)."""
        assert self.sock is not None and self.engine is not None
        netif.send_from(self.sock, data, self.engine.router.address, dst, self.ifindex)

    def _send_ra(self) -> None:
        """Unsolicited signed RA to All-Nodes, every ra_interval_s with ±10 % jitter (RFC 4861 §6.2.4)."""
        if self.engine is None:
            return
        dst = IPv6Address("ff02::1")
        self._send_icmp(dst, self.engine.router_advertisement(dst, b"", time.time()))
        delay = self.cfg.ra_interval_s * (0.9 + 0.2 * os.urandom(1)[0] / 255)
        self._ra_timer = asyncio.get_running_loop().call_later(delay, self._send_ra)

    # ---- FMIPv6 sockets ---------------------------------------------------------------------------

    async def _open_fmip(self) -> None:
        loop = asyncio.get_running_loop()
        m = netif.raw6_socket(mh.IPPROTO_MH)
        loop.add_reader(m.fileno(), self._on_mh)
        self.mh_sock = m
        # the PCoA copies of FBacks: out of the access link even when forwarding for the PCoA is on
        self.mh_link = netif.link_send_socket(mh.IPPROTO_MH, self.cfg.interfaces[0])
        p = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
        p.setblocking(False)
        loop.add_reader(p.fileno(), self._on_packet)
        self.pkt_sock = p
        assert self.engine is not None and self.fmip is not None
        # the tunnel's outer source is the address the MN sent its FBU to, so it knows the PAR;
        # forwarding restored from the state is installed again (stale kernel links removed)
        self.fwd = await open_forwarder(
            self.cfg.forward_backend,
            tunnel_name=self.cfg.tunnel_name,
            local=self.engine.router.global_address,
            forwarding={f.pcoa: f.ncoa for f in self.fmip.forwarding.values()},
        )
        log.info("forwarding backend: %s (%s)", self.fwd.name, self.fwd.reason)

    async def _start_ipsec(self, neighbors: tuple[Neighbor, ...]) -> None:
        """HI/HAck between routers inside ESP (RFC 5568 §10), when configured."""
        assert self.engine is not None
        peers = {n.nar_address for n in neighbors} | set(self.cfg.fmip_peers)
        if not self.cfg.ipsec.enabled:
            if peers:
                log.warning("HI/HAck with %d router(s) are NOT protected: RFC 5568 §10 wants [ipsec]", len(peers))
            return
        own = self.engine.router.global_address
        if own is None:
            raise ValueError("[ipsec] needs a global address on the access link (HI/HAck use it)")
        self.ipsec = ArIpsec(self.cfg.ipsec, own, peers, self._send_raw_mh, self.engine._count)
        await self.ipsec.start()
        assert self.ipsec.shell is not None
        self.handlers.update(self.ipsec.shell.handlers(secrets=False))
        self.handlers["ipsec"] = lambda a, c: self.ipsec.status() if self.ipsec else []

    def _send_raw_mh(self, src: IPv6Address, data: bytes, dst: IPv6Address) -> None:
        assert self.mh_sock is not None
        netif.send_from(self.mh_sock, data, src, dst, 0)

    def _on_mh(self) -> None:
        """HI (as NAR) and HAck (as PAR) on the raw Mobility Header socket."""
        assert self.mh_sock is not None and self.fmip is not None
        for _ in range(64):
            d = netif.receive(self.mh_sock)
            if d is None:
                return
            if d.dst is None:
                continue
            data, src, dst = d.data, d.src, d.dst
            try:
                m = mh.MhMessage.decode(data, src, dst)
            except DecodeError as e:
                self.engine._count("drop_mh_malformed")  # type: ignore[union-attr]
                drop_log.debug("mh", "Mobility Header from %s dropped: %s", src, e)
                continue
            if m.mh_type in (mh.MhType.HI, mh.MhType.HACK) and self.ipsec and not self.ipsec.protected(src, d.ifindex):
                self.engine._count("drop_mh_unprotected")  # type: ignore[union-attr]
                drop_log.debug("unprotected", "%s from %s dropped: not inside ESP with that router", m.mh_type, src)
                continue
            if m.mh_type == mh.MhType.HI:
                acts, sends = self.fmip.hi(src, dst, m)
            elif m.mh_type == mh.MhType.HACK:
                acts, sends = self.fmip.hack(src, m, time.time())
            else:
                continue  # FBUs come with a Home Address option, through _on_packet
            self._apply(acts)
            self._send_mh(sends)

    def _on_packet(self) -> None:
        """FBUs: IPv6 + Destination Options (Home Address) + Mobility Header, addressed to us."""
        assert self.pkt_sock is not None and self.fmip is not None
        for _ in range(256):
            try:
                data, addr = self.pkt_sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("packet recv: %s", e)
                return
            if addr[2] == PACKET_OUTGOING or len(data) < 48 or data[6] != mh.IPPROTO_DSTOPTS or data[24] == 0xFF:
                continue  # not an FBU to one of our unicast addresses
            if not _is_local(data[24:40]):
                continue
            try:
                pkt = mh.parse_ipv6_mh(data)
            except DecodeError as e:
                self.engine._count("drop_fbu_malformed")  # type: ignore[union-attr]
                drop_log.debug("fbu", "FBU dropped: %s", e)
                continue
            acts, sends = self.fmip.fbu(pkt, time.time())
            self._apply(acts)
            self._send_mh(sends)

    def _send_mh(self, sends: list[Send]) -> None:
        assert self.mh_sock is not None
        prefix = self.engine.router.prefix if self.engine is not None else None
        for s in sends:
            if self.ipsec is not None and self.ipsec.is_peer(s.dst):
                self.ipsec.submit(s.dst, s.data, s.src)  # HI/HAck: only inside ESP with that router
                continue
            # on-link destinations (the PCoA copy of an FBack) leave by the access link itself, not by
            # the forwarding /128 route (TUN or ip6tnl) that the FBU has installed (RFC 5568 §6.2.3:
            # the MN may still be on this link, and a retransmitted FBU's answer comes after it)
            if prefix is not None and s.dst in prefix and self.mh_link is not None:
                netif.send_from(self.mh_link, s.data, s.src, s.dst, self.ifindex)
            else:
                netif.send_from(self.mh_sock, s.data, s.src, s.dst)

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Persist):
                self._persist(a.record)
            elif isinstance(a, Notify):
                ev = a.event
                if isinstance(ev, SolicitationRefused):
                    drop_log.debug(ev.reason.split(":")[0], "RtSolPr from %s refused: %s", ev.src, ev.reason)
                elif isinstance(ev, HkIssued):
                    log.info(
                        "handover key %s for %s (AT %d)",
                        "re-sent" if ev.reused else "issued",
                        ev.record.cga,
                        ev.record.at,
                    )
                elif isinstance(ev, HkExpired):
                    log.info("handover key for %s discarded", ev.cga)
                elif isinstance(ev, Forwarding):
                    if self.fwd is not None:
                        self.fwd.add(ev.pcoa, ev.ncoa)
                    log.info("forwarding %s to %s for %d s", ev.pcoa, ev.ncoa, int(ev.expires - time.time()))
                elif isinstance(ev, ForwardingEnded):
                    if self.fwd is not None:
                        self.fwd.remove(ev.pcoa)
                    log.info("forwarding for %s ended", ev.pcoa)
                elif isinstance(ev, FmipDropped):
                    drop_log.debug(ev.reason, "FMIPv6 message from %s dropped: %s", ev.src, ev.reason)
        self._rearm()

    def _persist(self, rec: Any) -> None:
        assert self.store is not None
        if isinstance(rec, HkIssued):
            r = rec.record
            self.store.put(
                "hk",
                r.cga,
                {"cga": r.cga, "key": r.key.hex(), "at": r.at, "expires": r.expires, "cga_key": r.cga_key.hex()},
            )
        elif isinstance(rec, HkExpired):
            self.store.delete("hk", rec.cga)
        elif isinstance(rec, FbuSeq):
            self.store.put("fbu_seq", rec.pcoa, {"pcoa": rec.pcoa, "seq": rec.seq})
        elif isinstance(rec, Forwarding):
            self.store.put("fwd", rec.pcoa, {"pcoa": rec.pcoa, "ncoa": rec.ncoa, "expires": rec.expires})
        elif isinstance(rec, ForwardingEnded):
            self.store.delete("fwd", rec.pcoa)

    def _rearm(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if self.engine is None:
            return
        fmip = self.fmip.next_deadline() if self.fmip is not None else None
        times = [t for t in (self.engine.next_deadline(), fmip) if t is not None]
        if not times:
            return
        d = min(times)
        delay = max(0.0, min(d - time.time(), 86400.0))
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        assert self.engine is not None
        self._timer = None
        now = time.time()
        acts = self.engine.expire(now)
        if self.fmip is not None:
            more, sends = self.fmip.expire(now)
            acts += more
            self._send_mh(sends)
        self._apply(acts)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.ipsec is not None:
            await self.ipsec.stop()
        for t in (self._ra_timer, self._timer):
            if t is not None:
                t.cancel()
        for sk in (self.sock, self.mh_sock, self.pkt_sock):
            if sk is not None:
                loop.remove_reader(sk.fileno())
                sk.close()
        if self.mh_link is not None:
            self.mh_link.close()
        if self.fwd is not None:
            await self.fwd.close()
        if self.store is not None:
            self.store.close()

    async def _cmd_stats(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        fwd = (await self.fwd.counters()).totals if self.fwd is not None else {}
        return {**self.engine.counters, **fwd} if self.engine else {}

    def _cmd_keys(self, args: dict[str, Any], conn: ControlConnection) -> list[dict[str, Any]]:
        if self.engine is None:
            return []
        return [
            {"cga": r.cga, "at": r.at, "expires_in_s": int(r.expires - time.time())} for r in self.engine.keys.values()
        ]

    async def _cmd_forwarding(self, args: dict[str, Any], conn: ControlConnection) -> list[dict[str, Any]]:
        if self.fmip is None:
            return []
        packets = (await self.fwd.counters()).packets if self.fwd is not None else {}
        now = time.time()
        return [
            {
                "pcoa": f.pcoa,
                "ncoa": f.ncoa,
                "expires_in_s": round(f.expires - now, 1),
                "packets": packets.get(f.pcoa, 0),  # kernel backend: the NCoA's ip6tnl link
            }
            for f in self.fmip.forwarding.values()
        ]

    def status(self) -> dict[str, Any]:
        if self.engine is None:
            return {"role": self.ROLE, "handover_keys": "disabled"}
        return {
            "role": self.ROLE,
            "address": str(self.engine.router.address),
            "global_address": str(self.engine.router.global_address or ""),
            "prefix": str(self.engine.router.prefix or ""),
            "keys": len(self.engine.keys),
            "forwarding": len(self.fmip.forwarding) if self.fmip else 0,
            "forwarding_backend": self.fwd.name if self.fwd else "none",
            "forwarding_backend_reason": self.fwd.reason if self.fwd else "",
            "hi_hack": "ipsec" if self.ipsec else "unprotected",
            "counters": dict(self.engine.counters),
        }


def _link_prefix(ifname: str, prefix: IPv6Network | None) -> tuple[IPv6Network | None, IPv6Address | None]:
    """The advertised /64 and the router's global address inside it (the interface's first global)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        for a in ipr.get_addr(family=socket.AF_INET6, index=idx):
            addr = IPv6Address(a.get_attr("IFA_ADDRESS"))
            if addr.is_link_local:
                continue
            if prefix is None:
                return IPv6Network((addr, 64), strict=False), addr
            if addr in prefix:
                return prefix, addr
    return prefix, None


def _is_local(packed: bytes) -> bool:
    """Is this one of our addresses? (binding to a non-local address fails without IP_FREEBIND)"""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(IPv6Address(packed)), 0))
        except OSError:
            return False
    return True
