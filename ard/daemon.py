"""ard daemon: the access router. This issue brings RFC 5269 handover-key provisioning: a raw ICMPv6
socket for RtSolPr (hop limit and destination from ancillary data), a link-local CGA of the router's
key on each interface (kept in the state directory), handover keys in SQLite (committed before the
PrRtAdv leaves, so they survive kill -9)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ard.config import ArdConfig
from ard.engine import ArdEngine, HkExpired, HkIssued, Neighbor, RouterIdentity, SolicitationRefused
from mobility.crypto import cga, ikeauth, sendsig
from mobility.engine import Action, Notify, Persist
from mobility.service.config import read_secret_file
from mobility.service.control import ControlConnection
from mobility.service.logging import RateLimitedLog
from mobility.service.runner import DaemonContext
from mobility.service.shell import ServiceShell
from mobility.service.state import StateStore

log = logging.getLogger("ard")
drop_log = RateLimitedLog(logging.getLogger("ard.drops"))
ICMP6_FILTER = 1
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 51, 52
IPV6_RECVPKTINFO, IPV6_PKTINFO = 49, 50


def icmp6_filter(allowed: tuple[int, ...]) -> bytes:
    """struct icmp6_filter: a set bit blocks the type (linux/icmpv6.h)."""
    words = [0xFFFFFFFF] * 8
    for t in allowed:
        words[t >> 5] &= ~(1 << (t & 31))
    return struct.pack("=8I", *words)


class ArdDaemon(ServiceShell):
    ROLE = "access router (SEND, RFC 5269 handover keys)"

    def __init__(self, cfg: ArdConfig, ctx: DaemonContext) -> None:
        super().__init__(cfg, ctx)
        self.engine: ArdEngine | None = None
        self.store: StateStore | None = None
        self.sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.handlers.update({"keys": self._cmd_keys, "stats": self._cmd_stats})

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
        address, params = self._router_cga(key)
        # pyroute2's synchronous IPRoute runs its own loop: use it from a worker thread
        await asyncio.get_running_loop().run_in_executor(None, _add_address, ifname, address)
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
        self.engine = ArdEngine(
            router=RouterIdentity(key, address, params.encode(), _lla(ifname)),
            rand=os.urandom,
            neighbors=neighbors,
            hk_lifetime_s=c.hk_lifetime_s,
            rate_per_s=c.rtsolpr_rate,
        )
        self.engine.restore(list(self.store.all("hk").values()))
        self._open(ifname)
        self._rearm()
        log.info("ard on %s as %s; %d handover key(s) restored", ifname, address, len(self.engine.keys))

    def _router_cga(self, key: Any) -> tuple[IPv6Address, cga.CgaParams]:
        """The router's link-local CGA, generated once and kept (RFC 3972 §4)."""
        assert self.store is not None
        der = sendsig.public_der(key.public_key())
        rec = self.store.get("router", "cga")
        if rec is not None and bytes.fromhex(rec["params"])[25:].startswith(der):
            params = cga.CgaParams.decode(bytes.fromhex(rec["params"]))
            address = IPv6Address(rec["address"])
        else:
            address, params = cga.generate(IPv6Network("fe80::/64"), der, self.cfg.sec, os.urandom)
            self.store.put("router", "cga", {"address": str(address), "params": params.encode().hex()})
        return address, params

    def _open(self, ifname: str) -> None:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp6_filter((154, 148)))
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        mreq = socket.inet_pton(socket.AF_INET6, "ff02::2") + struct.pack("@I", socket.if_nametoindex(ifname))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)  # All-Routers (RtSolPr may go there)
        s.setblocking(False)
        asyncio.get_running_loop().add_reader(s.fileno(), self._on_icmp)
        self.sock = s
        self.ifindex = socket.if_nametoindex(ifname)

    def _on_icmp(self) -> None:
        assert self.sock is not None and self.engine is not None
        for _ in range(64):
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(4) + socket.CMSG_SPACE(20))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("recv: %s", e)
                return
            hop, dst = -1, IPv6Address("::")
            for level, ctype, cdata in anc:
                if level == socket.IPPROTO_IPV6 and ctype == IPV6_HOPLIMIT:
                    hop = int.from_bytes(cdata[:4], "little")
                elif level == socket.IPPROTO_IPV6 and ctype == IPV6_PKTINFO:
                    dst = IPv6Address(cdata[:16])
            src = IPv6Address(addr[0].split("%")[0])
            if data[:1] != b"\x9a":
                continue  # CPS arrives with the certification-path work
            actions, reply = self.engine.rtsolpr(data, src, dst, hop, now=time.time())
            self._apply(actions)
            if reply is not None:
                # PrRtAdv leaves from the router's link-local CGA, the address it signed (RFC 5568 §6.1.2)
                info = self.engine.router.address.packed + struct.pack("@I", self.ifindex)
                try:
                    self.sock.sendmsg(
                        [reply], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)], 0, (str(src), 0, 0, self.ifindex)
                    )
                except OSError as e:
                    log.debug("PrRtAdv to %s: %s", src, e)

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
                    log.info("handover key for %s expired", ev.cga)
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

    def _rearm(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if self.engine is None or (d := self.engine.next_deadline()) is None:
            return
        delay = max(0.0, min(d - time.time(), 86400.0))
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        assert self.engine is not None
        self._timer = None
        self._apply(self.engine.expire(time.time()))

    async def stop(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
        if self.store is not None:
            self.store.close()

    def _cmd_stats(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        return dict(self.engine.counters) if self.engine else {}

    def _cmd_keys(self, args: dict[str, Any], conn: ControlConnection) -> list[dict[str, Any]]:
        if self.engine is None:
            return []
        return [
            {"cga": r.cga, "at": r.at, "expires_in_s": int(r.expires - time.time())} for r in self.engine.keys.values()
        ]

    def status(self) -> dict[str, Any]:
        if self.engine is None:
            return {"role": self.ROLE, "handover_keys": "disabled"}
        return {
            "role": self.ROLE,
            "address": str(self.engine.router.address),
            "keys": len(self.engine.keys),
            "counters": dict(self.engine.counters),
        }


def _lla(ifname: str) -> bytes:
    try:
        with open(f"/sys/class/net/{ifname}/address") as f:
            return bytes.fromhex(f.read().strip().replace(":", ""))
    except OSError:
        return b""


def _add_address(ifname: str, address: IPv6Address) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        try:
            ipr.addr("replace", index=idx, address=str(address), prefixlen=64, flags=0x02)  # IFA_F_NODAD
        except Exception as e:  # pyroute2 raises NetlinkError
            log.warning("cannot add %s to %s: %s", address, ifname, e)
