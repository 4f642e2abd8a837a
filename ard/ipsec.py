"""HI/HAck protection between access routers (RFC 5568 §10: "the signaling messages between the
access routers MUST be protected"; IPsec ESP with integrity, IKEv2 with shared secrets).

Each pair of routers keeps one IKEv2 SA with one transport-mode Child SA between their global
addresses (the addresses HI/HAck use), identities ID_IPV6_ADDR, a shared secret. The ESP is natt's
(UDP 4500): its userspace data plane hands decapsulated packets to the stack through its TUN device,
its kernel data plane leaves enforcement to XFRM policies.

Who initiates: only the router with the lower address, at start, after a failure or deletion, and
when it has HI/HAck to send. The other side answers. One initiator per pair means no simultaneous
IKE SAs to reconcile; a new IKE SA with a peer replaces the older ones ("unique IDs"), which is
what a restarted peer (kill -9) leaves behind. The initiator checks liveness every `dpd_s`, so a
restarted responder is noticed and the pair re-keyed.

Acceptance: an HI/HAck from peer P counts as protected when a Child SA with P is installed in natt
and the message came out of natt's TUN (userspace); with the kernel data plane the XFRM inbound
policy already drops cleartext from P, so the installed Child SA is the condition. Sends to a peer
without a Child SA wait (bounded) until one is up: nothing leaves in the clear."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address
from typing import Any

from ard.config import IpsecSection
from mobility.ike.engine import IkeEngine
from mobility.ike.policy import (
    Credentials,
    Identity,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    Policy,
    Timers,
    ts_from_network,
)  # fmt: skip
from mobility.ike.proposals import parse_suite
from mobility.service.config import read_secret_file
from mobility.service.ikeshell import IkeShell, wall_clock
from mobility.wire.ikev2 import Protocol

log = logging.getLogger("ard.ipsec")
HOLD_MAX = 16  # messages per peer waiting for its Child SA


class ArIpsec:
    def __init__(
        self,
        cfg: IpsecSection,
        own: IPv6Address,
        peers: Iterable[IPv6Address],
        send: Callable[[IPv6Address, bytes, IPv6Address], None],
        count: Callable[[str], None],
    ) -> None:
        if cfg.psk_file is None:
            raise ValueError("[ipsec] enabled needs psk_file (RFC 5568 §10: shared-secret authentication)")
        self.cfg, self.own, self.send, self.count = cfg, own, send, count
        self.peers = sorted({p for p in peers if p != own})
        psk = read_secret_file(cfg.psk_file).strip()
        self.policies = {str(p): self._policy(p, psk) for p in self.peers}
        self.children: dict[str, set[int]] = {str(p): set() for p in self.peers}  # installed in natt
        self.held: dict[str, deque[tuple[IPv6Address, bytes]]] = {str(p): deque(maxlen=HOLD_MAX) for p in self.peers}
        self.connecting: dict[str, bytes] = {}  # peer → IKE SA key being set up (initiator side)
        self.kernel = False
        self.tun_index = -1
        self.shell: IkeShell | None = None
        self._retry: dict[str, asyncio.TimerHandle] = {}
        self._dpd: asyncio.TimerHandle | None = None

    def _policy(self, peer: IPv6Address, psk: bytes) -> Policy:
        c = self.cfg
        return Policy(
            name=f"ar-{peer}",
            local_id=Identity.parse(str(self.own)),
            remote_id=Identity.parse(str(peer)),
            auth="psk",
            credentials=Credentials(psk=psk),
            ike_suites=tuple(parse_suite(s, Protocol.IKE) for s in c.proposals),
            esp_suites=tuple(parse_suite(s, Protocol.ESP) for s in c.esp_proposals),
            local_ts=(ts_from_network(f"{self.own}/128"),),
            remote_ts=(ts_from_network(f"{peer}/128"),),
            transport=True,
            mobike=False,
            # a neighbour router is one or two hops away: retransmit soon, give up within ~10 s
            timers=Timers(timeout_s=0.5, tries=4, rekey_s=14400.0, child_rekey_s=3600.0),
        )

    def initiator_for(self, peer: str) -> bool:
        return self.own < IPv6Address(peer)

    # ---- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        suites = tuple(s for p in self.policies.values() for s in p.ike_suites)
        engine = IkeEngine(
            rand=os.urandom, clock=wall_clock, suites=suites, lookup=self._lookup, local_addr=str(self.own)
        )
        self.shell = IkeShell(
            engine,
            natt_socket=self.cfg.natt_socket,
            listen=(str(self.own),),
            on_event=self._event,
            fwmark=self.cfg.fwmark,
            on_child=self._child,
            on_natt_restart=self._natt_status,
        )
        await self.shell.start()
        assert self.shell.natt is not None
        self._natt_status(self.shell.natt_status)
        # Child SAs a previous run of ours installed (kill -9 leaves them in natt): theirs keys are gone
        for row in await self.shell.natt.call("sas"):
            if str(row.get("name", "")).startswith("ar-"):
                await self.shell.natt.call("sa.del", spi_in=row["spi_in"])
        for p in self.peers:
            if self.initiator_for(str(p)):
                self._initiate(str(p))
        self._arm_dpd()
        log.info(
            "HI/HAck protected by IKEv2 + ESP (%s data plane) with %s",
            "kernel" if self.kernel else "userspace",
            ", ".join(str(p) for p in self.peers) or "no peers",
        )

    def _natt_status(self, st: dict[str, Any]) -> None:
        """natt's data plane, at start and after natt restarted (its TUN device is a new one then)."""
        self.kernel = st.get("dataplane") == "kernel"
        self.tun_index = -1 if self.kernel else socket.if_nametoindex(str(st["tun"]))

    async def stop(self) -> None:
        for h in [*self._retry.values(), self._dpd]:
            if h is not None:
                h.cancel()
        if self.shell is not None:
            for key in list(self.shell.engine.sas):
                self.shell.apply(self.shell.engine.delete(key, now=self.shell.now()))
            await asyncio.sleep(0.1)
            await self.shell.stop()

    def _lookup(self, who: str) -> Policy | None:
        try:
            return self.policies.get(str(IPv6Address(who)))
        except ValueError:
            return None  # not a neighbour router's address identity: AUTHENTICATION_FAILED

    # ---- HI/HAck ---------------------------------------------------------------------------------

    def is_peer(self, addr: IPv6Address) -> bool:
        return str(addr) in self.children

    def ready(self, peer: IPv6Address) -> bool:
        return bool(self.children.get(str(peer)))

    def protected(self, src: IPv6Address, ifindex: int) -> bool:
        """Did this HI/HAck come out of ESP with that peer? (see the module docstring)"""
        return self.ready(src) and (self.kernel or ifindex == self.tun_index)

    def submit(self, dst: IPv6Address, data: bytes, src: IPv6Address) -> None:
        """Send now if the Child SA with `dst` is up, else hold the message until it is."""
        if self.ready(dst):
            self.send(src, data, dst)
            return
        q = self.held[str(dst)]
        if len(q) == q.maxlen:
            self.count("drop_mh_held_overflow")
        q.append((src, data))
        self.count("mh_held_for_sa")
        if self.initiator_for(str(dst)) and str(dst) not in self.connecting:
            self._initiate(str(dst))

    # ---- IKE -------------------------------------------------------------------------------------

    def _initiate(self, peer: str) -> None:
        assert self.shell is not None
        self._retry.pop(peer, None)
        if peer in self.connecting or self.ready(IPv6Address(peer)):
            return
        key, actions = self.shell.engine.initiate(
            self.policies[peer], (peer, 500), (str(self.own), 500), now=self.shell.now()
        )
        self.connecting[peer] = key
        log.info("IKE_SA_INIT to access router %s", peer)
        self.shell.apply(actions)

    def _again(self, peer: str) -> None:
        if not self.initiator_for(peer) or peer in self._retry:
            return
        self._retry[peer] = asyncio.get_running_loop().call_later(self.cfg.retry_s, self._initiate, peer)

    @staticmethod
    def address_matches_identity(ev: IkeSaEstablished) -> bool:
        """The shared secret is the group's: any router holding it could claim another's identity. Its
        IKE address must be the address it names (transport mode: the ESP runs between the two)."""
        try:
            return IPv6Address(ev.peer) == IPv6Address(ev.remote_id)
        except ValueError:
            return False

    def _event(self, ev: Any) -> None:
        assert self.shell is not None
        if isinstance(ev, IkeSaEstablished):
            peer = ev.remote_id
            if not self.address_matches_identity(ev):
                self.count("drop_ike_identity_not_address")
                log.warning("IKE SA from %s claiming to be %s: deleted", ev.peer, peer)
                eng = self.shell.engine
                for key in [k for k, sa in eng.sas.items() if sa.spi_i == ev.spi_i and sa.spi_r == ev.spi_r]:
                    self.shell.apply(eng.delete(key, now=self.shell.now()))
                return
            self.connecting.pop(peer, None)
            log.info("IKE SA with access router %s established", peer)
            eng = self.shell.engine
            newest = [k for k in eng.find(peer) if eng.sas[k].spi_i == ev.spi_i and eng.sas[k].spi_r == ev.spi_r]
            for key in eng.find(peer):  # unique IDs: the newest IKE SA with a peer replaces older ones
                if key not in newest:
                    log.info("older IKE SA with %s deleted (replaced)", peer)
                    self.shell.apply(eng.delete(key, now=self.shell.now()))
        elif isinstance(ev, IkeSaFailed):
            log.warning("IKE SA with access router %s failed: %s", ev.peer, ev.reason)
            self.connecting.pop(ev.peer, None)
            self._again(ev.peer)
        elif isinstance(ev, IkeSaDeleted):
            log.info("IKE SA with access router %s deleted: %s", ev.remote_id, ev.reason)
            if not self.shell.engine.find(ev.remote_id):
                self._again(ev.remote_id)

    def _child(self, spi_in: int, peer: str, up: bool) -> None:
        kids = self.children.get(peer)
        if kids is None:
            return
        if up:
            kids.add(spi_in)
            q = self.held[peer]
            while q:
                src, data = q.popleft()
                self.send(src, data, IPv6Address(peer))
        else:
            kids.discard(spi_in)

    def _arm_dpd(self) -> None:
        self._dpd = asyncio.get_running_loop().call_later(self.cfg.dpd_s, self._liveness)

    def _liveness(self) -> None:
        assert self.shell is not None
        eng = self.shell.engine
        for p in self.peers:
            if not self.initiator_for(str(p)):
                continue
            keys = eng.find(str(p))
            for key in keys:
                self.shell.apply(eng.liveness(key, now=self.shell.now()))
            if not keys and str(p) not in self.connecting:
                self._again(str(p))
        self._arm_dpd()

    # ---- control ---------------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "peer": str(p),
                "role": "initiator" if self.initiator_for(str(p)) else "responder",
                "child_sas": len(self.children[str(p)]),
                "held": len(self.held[str(p)]),
                "connecting": str(p) in self.connecting,
            }
            for p in self.peers
        ]
