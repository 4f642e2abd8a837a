"""mobiled daemon: the mobile node. This issue brings the IKEv2 initiator: home agents tried in
order (the next one when IKE_SA_INIT is not answered or authentication fails), the RFC 5026 CFG_REQUEST
(HoA, home prefix, virtual IPv4), HoA autoconfiguration from MIP6_HOME_PREFIX, and USE_ASSIGNED_HoA."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from typing import Any

from mobiled.config import MobiledConfig
from mobiled.fmipshell import FmipShell
from mobility.ike.engine import IkeEngine
from mobility.ike.policy import IkeSaDeleted, IkeSaEstablished, IkeSaFailed, Policy, any_ts, ts_from_network
from mobility.service.ikeconfig import build_policy
from mobility.service.ikeshell import IkeShell, source_for, wall_clock
from mobility.service.runner import DaemonContext
from mobility.service.shell import ServiceShell
from mobility.wire.ikev2 import CfgAttr, CfgAttribute, Notify

log = logging.getLogger("mobiled")


def cp_request(kinds: tuple[str, ...], hint: str) -> tuple[CfgAttribute, ...]:
    out = []
    for k in kinds:
        if k == "ip4":
            out.append(CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS))
        elif k == "ip6":
            value = ip_address(hint).packed + bytes([128]) if hint else b""
            out.append(CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, value))
        elif k in ("dns4", "dns6"):
            out.append(CfgAttribute(CfgAttr.INTERNAL_IP4_DNS if k == "dns4" else CfgAttr.INTERNAL_IP6_DNS))
        elif k == "home_prefix":
            out.append(CfgAttribute(CfgAttr.MIP6_HOME_PREFIX))  # length 0 in a request (RFC 5026 §8.2)
    return tuple(out)


def autoconf_hoa(prefix: IPv6Network, identity: str) -> IPv6Address:
    """A stable interface identifier from our identity inside the home prefix (RFC 5026 §5.3.2)."""
    iid = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:16], "big") & ((1 << (128 - prefix.prefixlen)) - 1)
    return IPv6Address(int(prefix.network_address) | max(iid, 2))


def addresses_from(ev: IkeSaEstablished) -> list[str]:
    """Inner addresses to configure: assigned ones, or one autoconfigured from the home prefix."""
    out: list[str] = []
    for a in ev.attributes:
        if a.type == CfgAttr.INTERNAL_IP4_ADDRESS and len(a.value) == 4:
            out.append(f"{IPv4Address(a.value)}/32")
        elif a.type == CfgAttr.INTERNAL_IP6_ADDRESS and len(a.value) == 17:
            out.append(f"{IPv6Address(a.value[:16])}/128")  # MUST use it (USE_ASSIGNED_HoA, §5.3.2)
    if Notify.USE_ASSIGNED_HOA not in ev.notifies:  # autoconfigure only when the HA allows it
        for a in ev.attributes:
            if a.type == CfgAttr.MIP6_HOME_PREFIX and len(a.value) == 21 and a.value[20] <= 128:
                prefix = IPv6Network((IPv6Address(a.value[4:20]), a.value[20]), strict=False)
                out.append(f"{autoconf_hoa(prefix, ev.local_id)}/128")
    return out


class MobiledDaemon(ServiceShell):
    ROLE = "mobile node (IKEv2 initiator)"

    def __init__(self, cfg: MobiledConfig, ctx: DaemonContext) -> None:
        super().__init__(cfg, ctx)
        self.ike: IkeShell | None = None
        self.policy: Policy | None = None
        self.ha_index = 0
        self.current: bytes | None = None
        self.home: dict[str, Any] = {}
        self.handlers.update({"home": lambda a, c: self.home})
        self.fmip: FmipShell | None = None

    async def start(self) -> None:
        await super().start()
        if self.cfg.fmip.interface:
            self.fmip = FmipShell(self.cfg.fmip, self.ctx.state_dir)
            self.handlers.update(self.fmip.handlers)
            await self.fmip.start()
        c = self.cfg.ike
        if not c.enabled:
            return
        conn = c.connection if c.connection.local_id else replace(c.connection, local_id=self.cfg.fqdn)
        self.policy = build_policy(conn, cp_request(c.request, c.home_address))
        engine = IkeEngine(rand=os.urandom, clock=wall_clock)
        self.ike = IkeShell(
            engine,
            natt_socket=c.natt_socket,
            listen=("0.0.0.0", "::"),
            on_event=self._event,
            fwmark=c.fwmark,
            on_natt_restart=self._natt_restarted,
        )
        self.handlers.update(self.ike.handlers(secrets=False))
        await self.ike.start()
        self._try_next()

    def _natt_restarted(self, status: dict[str, Any]) -> None:
        """natt's TUN device is a new one: the inner addresses the home agent assigned go on it again."""
        assert self.ike is not None
        if self.home.get("state") == "established":
            for a in self.home.get("addresses", []):
                self.ike.natt_command("addr.add", address=a)

    async def stop(self) -> None:
        if self.fmip is not None:
            await self.fmip.stop()
        if self.ike is not None:
            if self.current is not None:
                self.ike.apply(self.ike.engine.delete(self.current, now=self.ike.now()))
                await asyncio.sleep(0.2)
            await self.ike.stop()

    def _try_next(self) -> None:
        assert self.ike is not None and self.policy is not None
        has = self.cfg.home_agents
        if not has:
            log.error("no home agents configured")
            return
        ha = has[self.ha_index % len(has)]
        local = source_for(ha)
        log.info("IKE_SA_INIT to home agent %s from %s", ha, local)
        self.home = {"home_agent": ha, "state": "connecting"}
        self.current, actions = self.ike.engine.initiate(self.policy, (ha, 500), (local, 500), now=self.ike.now())
        self.ike.apply(actions)

    def _event(self, ev: Any) -> None:
        assert self.ike is not None
        if isinstance(ev, IkeSaEstablished):
            addrs = addresses_from(ev)
            log.info("IKE SA with %s established (%s); inner addresses %s", ev.peer, ev.remote_id, ", ".join(addrs))
            dns = [
                str(ip_address(a.value))
                for a in ev.attributes
                if a.type in (CfgAttr.INTERNAL_IP4_DNS, CfgAttr.INTERNAL_IP6_DNS) and len(a.value) in (4, 16)
            ]
            self.home = {
                "home_agent": ev.peer,
                "state": "established",
                "addresses": addrs,
                "dns": dns,
                "nat": ev.nat_local,
                "use_assigned_hoa": Notify.USE_ASSIGNED_HOA in ev.notifies,
            }
            for a in addrs:
                self.ike.natt_command("addr.add", address=a)
            self._child_for_autoconf(ev, addrs)
        elif isinstance(ev, IkeSaFailed):
            log.warning("home agent %s: %s; trying the next one", ev.peer, ev.reason)
            self.home = {"home_agent": ev.peer, "state": "failed", "reason": ev.reason}
            self.ha_index += 1
            self.current = None
            if self.ha_index < 2 * max(1, len(self.cfg.home_agents)):
                asyncio.get_running_loop().call_later(
                    0.5 if self.ha_index % len(self.cfg.home_agents) else 5.0, self._try_next
                )
        elif isinstance(ev, IkeSaDeleted):
            log.info("IKE SA with %s deleted: %s", ev.remote_id, ev.reason)
            self.home = {"state": "down", "reason": ev.reason}

    def _child_for_autoconf(self, ev: IkeSaEstablished, addrs: list[str]) -> None:
        """RFC 5026 §5.3.2: after autoconfiguring a HoA from MIP6_HOME_PREFIX, run CREATE_CHILD_SA for it."""
        assert self.ike is not None and self.policy is not None
        prefixes = [a for a in ev.attributes if a.type == CfgAttr.MIP6_HOME_PREFIX]
        if not prefixes or Notify.USE_ASSIGNED_HOA in ev.notifies or self.current is None:
            return
        hoas = tuple(ts_from_network(a) for a in addrs if ":" in a)
        remote = tuple(t for t in self.policy.remote_ts if t.ts_type == 8) or (any_ts(6),)
        log.info("CREATE_CHILD_SA for the autoconfigured home address %s", ", ".join(addrs))
        self.ike.apply(self.ike.engine.create_child(self.current, hoas, remote, now=self.ike.now()))

    def status(self) -> dict[str, Any]:
        return {"role": self.ROLE, **{k: v for k, v in self.home.items() if not isinstance(v, list)}}
