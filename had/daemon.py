"""had daemon: the home agent. This issue brings the IKEv2 responder with RFC 5026 address
assignment (the VPN-gateway role of RFC 5266 uses the same code); bindings come with their issues."""

from __future__ import annotations

import logging
import os
from ipaddress import ip_address
from typing import Any

from had.config import HadConfig
from had.pool import AddressPool, LeaseStored
from mobility.ike.engine import IkeEngine
from mobility.ike.policy import Identity, IkeSaDeleted, IkeSaEstablished, IkeSaFailed, Policy
from mobility.service.control import ControlConnection
from mobility.service.ikeconfig import build_policy
from mobility.service.ikeshell import IkeShell, wall_clock
from mobility.service.runner import DaemonContext
from mobility.service.shell import ServiceShell
from mobility.service.state import StateStore

log = logging.getLogger("had")


class HadDaemon(ServiceShell):
    ROLE = "home agent (IKEv2 responder with RFC 5026 address assignment)"

    def __init__(self, cfg: HadConfig, ctx: DaemonContext) -> None:
        super().__init__(cfg, ctx)
        self.ike: IkeShell | None = None
        self.pool: AddressPool | None = None
        self.policies: list[Policy] = []
        self.store: StateStore | None = None
        self.handlers.update({"leases": self._cmd_leases})

    async def start(self) -> None:
        await super().start()
        c = self.cfg.ike
        if not c.enabled:
            return
        self.store = StateStore(self.ctx.state_dir / "had.sqlite")
        self.policies = [build_policy(conn) for conn in c.connections]
        static = {s.identity: tuple(ip_address(a) for a in s.addresses) for s in c.assign}
        self.pool = AddressPool(
            pool4=c.pool4,
            pool6=c.pool6,
            home_prefix=c.home_prefix,
            static=static,
            fcfs=c.fcfs,
            autoconf=c.autoconf,
            linger_s=c.lease_linger_s,
            dns=tuple(ip_address(d) for d in c.dns),
        )
        self.pool.restore(list(self.store.all("lease").values()))
        suites = tuple(s for p in self.policies for s in p.ike_suites)
        engine = IkeEngine(
            rand=os.urandom,
            clock=wall_clock,
            suites=suites,
            lookup=self._lookup,
            assigner=self.pool.assign,
            releaser=self.pool.release,
            claimer=self.pool.claim,
            cookie_threshold=c.cookie_threshold,
            signatures=any(p.auth == "pubkey" for p in self.policies),
            local_addr=c.address or c.listen[0],
        )
        self.ike = IkeShell(
            engine,
            natt_socket=c.natt_socket,
            listen=c.listen,
            on_event=self._event,
            on_persist=self._persist,
            fwmark=c.fwmark,
        )
        self.handlers.update(self.ike.handlers(secrets=self.cfg.ike.log_secrets))
        await self.ike.start()
        if c.log_secrets:
            log.warning("log_secrets is on: IKE SA keys are shown over the control socket")
        log.info("IKEv2 responder on %s, %d connection(s)", ", ".join(c.listen), len(self.policies))

    async def stop(self) -> None:
        if self.ike is not None:
            await self.ike.stop()
        if self.store is not None:
            self.store.close()

    def _lookup(self, who: str) -> Policy | None:
        try:
            ident = Identity.parse(who)
        except ValueError:
            return None  # an identity no connection could name: AUTHENTICATION_FAILED
        for p in self.policies:
            if p.remote_id is None or p.remote_id.matches(ident):
                return p
        return None

    def _persist(self, rec: Any) -> None:
        assert self.store is not None
        if isinstance(rec, LeaseStored):  # committed before the IKE_AUTH reply leaves (actions are ordered)
            self.store.put(
                "lease",
                rec.address,
                {"address": rec.address, "identity": rec.identity, "online": rec.online, "since": rec.since},
            )

    def _event(self, ev: Any) -> None:
        if isinstance(ev, IkeSaEstablished):
            log.info(
                "IKE SA %s established with %s (%s:%d)%s",
                ev.name,
                ev.remote_id,
                ev.peer,
                ev.peer_port,
                " behind NAT" if ev.nat_remote else "",
            )
        elif isinstance(ev, IkeSaFailed):
            log.warning("IKE SA %s with %s failed: %s", ev.name, ev.peer, ev.reason)
        elif isinstance(ev, IkeSaDeleted):
            log.info("IKE SA %s with %s deleted: %s", ev.name, ev.remote_id, ev.reason)

    def _cmd_leases(self, args: dict[str, Any], conn: ControlConnection) -> list[dict[str, Any]]:
        if self.pool is None:
            return []
        return [
            {"address": str(a), "identity": lease.identity, "online": lease.online}
            for a, lease in sorted(self.pool.leases.items(), key=lambda kv: (kv[0].version, kv[0]))
        ]

    def status(self) -> dict[str, Any]:
        if self.ike is None:
            return {"role": self.ROLE, "ike": "disabled"}
        sas = self.ike.engine.status()
        return {
            "role": self.ROLE,
            "ike_sas": len(sas),
            "established": sum(s["state"] == "established" for s in sas),
            "leases": len(self.pool.leases) if self.pool else 0,
            "counters": dict(self.ike.engine.counters),
        }
