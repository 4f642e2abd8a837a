"""Home address / virtual address assignment through IKEv2 configuration payloads (sans-I/O).

RFC 5026 §5.3.1: an INTERNAL_IP6_ADDRESS request gets an address from the pool (HA-assigned).
RFC 5026 §5.3.2: a MIP6_HOME_PREFIX request gets the home prefix when autoconfiguration is allowed,
  else USE_ASSIGNED_HoA (42) with an INTERNAL_IP6_ADDRESS the MN MUST use.
RFC 5026 §9.2: both authorization modes -- configured addresses per MN identity, and first come
  first served -- and "the home agent MUST ensure that the requested address is not the authorized
  address of any other mobile node". Leases belong to the IKE identity and stay marked used while
  that identity is online and `linger_s` after; they are persisted before the reply is sent.
The same code serves RFC 5266's VPN gateway: INTERNAL_IP4_ADDRESS from the IPv4 pool (VPN-TIA).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from mobility.engine import Action, Persist
from mobility.ike.policy import Policy
from mobility.wire.ikev2 import CP, CfgAttr, CfgAttribute, N, Notify

Addr = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class LeaseStored:
    address: str
    identity: str
    online: bool
    since: float


class AssignmentFailed(Exception):
    pass


class AddressPool:
    def __init__(
        self,
        *,
        pool4: IPv4Network | None,
        pool6: IPv6Network | None,
        home_prefix: IPv6Network | None,
        static: dict[str, tuple[Addr, ...]],
        fcfs: bool = True,
        autoconf: bool = True,
        prefix_lifetime_s: int = 86400,
        linger_s: float = 3600.0,
        dns: tuple[Addr, ...] = (),
    ) -> None:
        self.pool4, self.pool6, self.home_prefix = pool4, pool6, home_prefix
        self.static = {k.lower(): v for k, v in static.items()}
        self.fcfs, self.autoconf, self.prefix_lifetime_s, self.linger_s = fcfs, autoconf, prefix_lifetime_s, linger_s
        self.leases: dict[Addr, LeaseStored] = {}
        self.dns = dns
        self._reserved = {a: who for who, addrs in self.static.items() for a in addrs}

    def restore(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            lease = LeaseStored(r["address"], r["identity"], False, float(r.get("since", 0.0)))
            self.leases[ip_address(lease.address)] = lease

    # ---- the Assigner hook of the IKE engine -----------------------------------------------------

    def assign(
        self, policy: Policy, who: str, cp: CP | None, now: float
    ) -> tuple[list[CfgAttribute], list[N], list[Action]]:
        if cp is None:
            return [], [], []
        attrs: list[CfgAttribute] = []
        notes: list[N] = []
        acts: list[Action] = []
        types = {a.type for a in cp.attributes}
        before = dict(self.leases)  # all or nothing: a failed IPv6 pick must not leave the IPv4 lease behind
        try:
            if CfgAttr.INTERNAL_IP4_ADDRESS in types:
                a4 = self._pick(who, 4, _hint(cp, CfgAttr.INTERNAL_IP4_ADDRESS), now, acts)
                attrs.append(CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, a4.packed))
            if CfgAttr.MIP6_HOME_PREFIX in types and self.autoconf and self.home_prefix is not None:
                hp = self.home_prefix
                value = self.prefix_lifetime_s.to_bytes(4, "big") + hp.network_address.packed + bytes([hp.prefixlen])
                attrs.append(CfgAttribute(CfgAttr.MIP6_HOME_PREFIX, value))  # §5.3.2, §8.2: length 21
            elif CfgAttr.MIP6_HOME_PREFIX in types or CfgAttr.INTERNAL_IP6_ADDRESS in types:
                a6 = self._pick(who, 6, _hint(cp, CfgAttr.INTERNAL_IP6_ADDRESS), now, acts)
                attrs.append(CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, a6.packed + bytes([self._plen(a6)])))
                if CfgAttr.MIP6_HOME_PREFIX in types:
                    notes.append(N(Notify.USE_ASSIGNED_HOA))  # §5.3.2: autoconfiguration not allowed here
            for atype, version in ((CfgAttr.INTERNAL_IP4_DNS, 4), (CfgAttr.INTERNAL_IP6_DNS, 6)):
                if atype in types:  # RFC 7296 §3.15.1: our resolvers, when asked
                    attrs += [CfgAttribute(atype, d.packed) for d in self.dns if d.version == version]
        except AssignmentFailed as e:
            from mobility.ike.sa import Refused

            self.leases = before
            raise Refused(Notify.INTERNAL_ADDRESS_FAILURE, str(e)) from e
        return attrs, notes, acts

    def claim(self, policy: Policy, who: str, address: IPv6Address, now: float) -> list[Action] | None:
        """The Claimer hook: an address the mobile node autoconfigured in the home prefix, proposed in a
        CREATE_CHILD_SA (RFC 5026 §5.3.2). Authorized and leased to `who` unless it is another node's
        configured or held address (§9.2), or autoconfiguration is off."""
        hp = self.home_prefix
        if not self.autoconf or hp is None or address not in hp or not self._may_take(who.lower(), address, now):
            return None
        lease = LeaseStored(str(address), who, True, now)
        self.leases[address] = lease
        return [Persist(lease)]

    def release(self, policy: Policy, who: str, spi: bytes, now: float) -> list[Action]:
        out: list[Action] = []
        for addr, lease in list(self.leases.items()):
            if lease.identity == who and lease.online:
                self.leases[addr] = LeaseStored(lease.address, who, False, now)
                out.append(Persist(self.leases[addr]))
        return out

    # ---- choice ----------------------------------------------------------------------------------

    def _plen(self, a: Addr) -> int:
        hp = self.home_prefix
        return hp.prefixlen if hp is not None and a in hp else 128

    def _pick(self, who: str, version: int, hint: Addr | None, now: float, acts: list[Action]) -> Addr:
        key = who.lower()
        chosen = next((a for a in self.static.get(key, ()) if a.version == version), None)  # configured mode
        if chosen is None and hint is not None and self.fcfs and self._may_take(key, hint, now):
            chosen = hint  # FCFS: the requested address, if nobody else holds or owns it
        if chosen is None:
            chosen = next(
                (
                    a
                    for a, lease in self.leases.items()
                    if lease.identity.lower() == key and a.version == version and self._in_pool(a)
                ),
                None,
            )
        if chosen is None:
            chosen = self._free(key, version, now)
        lease = LeaseStored(str(chosen), who, True, now)
        self.leases[chosen] = lease
        acts.append(Persist(lease))
        return chosen

    def _in_pool(self, a: Addr) -> bool:
        nets = [n for n in (self.pool4, self.pool6, self.home_prefix) if n is not None]
        return any(a.version == n.version and a in n for n in nets)

    def _may_take(self, key: str, a: Addr, now: float) -> bool:
        owner = self._reserved.get(a)
        if owner is not None and owner != key:
            return False  # §9.2: never another MN's configured address
        lease = self.leases.get(a)
        held = lease is not None and lease.identity.lower() != key
        if held and lease is not None and (lease.online or now - lease.since < self.linger_s):
            return False
        return self._in_pool(a) and a not in (getattr(n, "network_address", None) for n in (self.pool4, self.pool6))

    def _free(self, key: str, version: int, now: float) -> Addr:
        net = self.pool4 if version == 4 else (self.pool6 or self.home_prefix)
        if net is None:
            raise AssignmentFailed(f"no IPv{version} pool")
        for i, host in enumerate(net.hosts()):
            a: Addr = IPv4Address(int(host)) if version == 4 else IPv6Address(int(host))
            if i > 65536:
                break
            if self._may_take(key, a, now):
                return a
        raise AssignmentFailed(f"IPv{version} pool exhausted")


def _hint(cp: CP, atype: int) -> Addr | None:
    for v in cp.values(atype):
        if atype == CfgAttr.INTERNAL_IP4_ADDRESS and len(v) == 4 and v != bytes(4):
            return IPv4Address(v)
        if atype == CfgAttr.INTERNAL_IP6_ADDRESS and len(v) == 17 and v[:16] != bytes(16):
            return IPv6Address(v[:16])
    return None
