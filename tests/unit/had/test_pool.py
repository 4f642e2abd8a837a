"""RFC 5026 address assignment (had/pool.py): configured and first-come-first-served modes (§9.2),
home prefix or USE_ASSIGNED_HoA (§5.3.2), leases tied to the identity and persisted, exhaustion."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

import pytest

from had.pool import AddressPool, LeaseStored
from mobility.engine import Persist
from mobility.ike.sa import Refused
from mobility.wire.ikev2 import CP, CfgAttr, CfgAttribute, CfgType
from mobility.wire.ikev2 import Notify as Nt

POLICY: Any = None  # the pool does not look at the connection


def pool(**kw: Any) -> AddressPool:
    args: dict[str, Any] = dict(
        pool4=IPv4Network("10.200.0.0/29"),
        pool6=IPv6Network("fd00:200::/125"),
        home_prefix=IPv6Network("fd00:200::/64"),
        static={"mn1.example.test": (ip_address("fd00:200::5"),)},
        dns=(ip_address("10.100.0.53"),),
    )
    args.update(kw)
    return AddressPool(**args)


def ask6(p: AddressPool, who: str, hint: str = "", now: float = 0.0) -> tuple[IPv6Address, list[Any], list[Any]]:
    value = IPv6Address(hint).packed + bytes([128]) if hint else b""
    attrs, notes, acts = p.assign(
        POLICY, who, CP(CfgType.REQUEST, (CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, value),)), now
    )
    (a,) = [x for x in attrs if x.type == CfgAttr.INTERNAL_IP6_ADDRESS]
    return IPv6Address(a.value[:16]), notes, acts


def test_configured_address_is_returned_and_never_given_to_another_node() -> None:
    p = pool()
    assert ask6(p, "mn1.example.test")[0] == IPv6Address("fd00:200::5")  # configured mode
    # §9.2: "MUST ensure that the requested address is not the authorized address of any other MN"
    got, _, _ = ask6(p, "mn2.example.test", hint="fd00:200::5")
    assert got != IPv6Address("fd00:200::5")
    fresh = pool()  # even before its owner ever came
    assert ask6(fresh, "mn2.example.test", hint="fd00:200::5")[0] != IPv6Address("fd00:200::5")


def test_fcfs_hint_lease_and_persist() -> None:
    p = pool()
    got, _, acts = ask6(p, "mn2.example.test", hint="fd00:200::3")
    assert got == IPv6Address("fd00:200::3")
    assert [a.record for a in acts if isinstance(a, Persist)] == [
        LeaseStored("fd00:200::3", "mn2.example.test", True, 0.0)
    ]
    assert ask6(p, "mn3.example.test", hint="fd00:200::3")[0] != got  # held by mn2
    assert ask6(p, "mn2.example.test")[0] == got  # the same node gets its address back


def test_offline_lease_lingers_then_frees() -> None:
    p = pool(linger_s=100.0)
    got, _, _ = ask6(p, "mn2.example.test", hint="fd00:200::3")
    p.release(POLICY, "mn2.example.test", b"", 10.0)
    assert ask6(p, "mn3.example.test", hint="fd00:200::3", now=50.0)[0] != got  # still reserved
    assert ask6(p, "mn4.example.test", hint="fd00:200::3", now=200.0)[0] == got  # linger over


def test_exhaustion_is_internal_address_failure() -> None:
    p = pool(pool6=IPv6Network("fd00:200::/126"), home_prefix=None, static={})
    for n in range(3):  # hosts() of a /126: ::1 .. ::3
        ask6(p, f"mn{n}.example.test")
    with pytest.raises(Refused) as e:
        ask6(p, "late.example.test")
    assert e.value.notify == Nt.INTERNAL_ADDRESS_FAILURE


def test_home_prefix_or_use_assigned_hoa() -> None:
    req = CP(CfgType.REQUEST, (CfgAttribute(CfgAttr.MIP6_HOME_PREFIX),))
    attrs, notes, _ = pool().assign(POLICY, "mn2.example.test", req, 0.0)
    (hp,) = attrs
    assert hp.type == CfgAttr.MIP6_HOME_PREFIX and len(hp.value) == 21 and hp.value[20] == 64 and notes == []
    attrs, notes, _ = pool(autoconf=False).assign(POLICY, "mn2.example.test", req, 0.0)
    assert [a.type for a in attrs] == [CfgAttr.INTERNAL_IP6_ADDRESS] and [n.type for n in notes] == [
        Nt.USE_ASSIGNED_HOA
    ]


def test_ipv4_and_dns() -> None:
    req = CP(CfgType.REQUEST, (CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS), CfgAttribute(CfgAttr.INTERNAL_IP4_DNS)))
    attrs, _, _ = pool().assign(POLICY, "mn2.example.test", req, 0.0)
    assert [(a.type, a.value) for a in attrs] == [
        (CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 200, 0, 1])),
        (CfgAttr.INTERNAL_IP4_DNS, bytes([10, 100, 0, 53])),
    ]


def test_restore_keeps_identity_binding() -> None:
    p = pool()
    p.restore([{"address": "fd00:200::3", "identity": "mn2.example.test", "since": 0.0}])
    assert ask6(p, "mn3.example.test", hint="fd00:200::3")[0] != IPv6Address("fd00:200::3")
    assert ask6(p, "mn2.example.test")[0] == IPv6Address("fd00:200::3")


def test_claim_of_an_autoconfigured_home_address() -> None:
    """The engine's Claimer hook (RFC 5026 §5.3.2, §9.2): the node's own autoconfigured address is leased
    and persisted; another node's configured or held address, or one outside the home prefix, is not."""
    p = pool()
    acts = p.claim(POLICY, "mn2.example.test", IPv6Address("fd00:200::1:9"), 0.0)
    assert acts is not None and [type(a.record) for a in acts if isinstance(a, Persist)] == [LeaseStored]
    assert p.leases[IPv6Address("fd00:200::1:9")].identity == "mn2.example.test"
    before = dict(p.leases)
    assert p.claim(POLICY, "mn2.example.test", IPv6Address("fd00:200::5"), 0.0) is None  # mn1's configured one
    assert p.claim(POLICY, "mn3.example.test", IPv6Address("fd00:200::1:9"), 0.0) is None  # mn2 holds it
    assert p.claim(POLICY, "mn2.example.test", IPv6Address("fd00:999::1"), 0.0) is None  # not the home prefix
    assert p.leases == before
    assert pool(autoconf=False).claim(POLICY, "mn2.example.test", IPv6Address("fd00:200::1:9"), 0.0) is None


def test_failed_assignment_leaves_no_half_lease() -> None:
    """An IPv4 lease taken before the IPv6 pick fails is rolled back with the refusal."""
    p = pool(pool6=None, home_prefix=None)
    cp = CP(CfgType.REQUEST, (CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS), CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS)))
    with pytest.raises(Refused):
        p.assign(POLICY, "mn2.example.test", cp, 0.0)
    assert p.leases == {}
