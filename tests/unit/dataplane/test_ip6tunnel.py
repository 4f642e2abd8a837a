"""FMIPv6 forwarding data plane: backend choice, link names and the restart reconciliation, without a
kernel (tests/kernel/test_kernel_fmip.py runs them against Debian's)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mobility.dataplane.ip6tunnel import LinkSeen, Plan, is_our_link, link_name, link_stem, reconcile
from mobility.dataplane.probe import choose_backend

PAR = "2001:db8:10::1"
P1, P2, P3 = "2001:db8:10::a", "2001:db8:10::b", "2001:db8:10::c"
N1, N2 = "2001:db8:20::a", "2001:db8:20::b"
STEM = link_stem("fmip0")


def test_names_fit_ifnamsiz_are_stable_and_recognised() -> None:
    assert STEM == "fmip0-"
    assert link_name(STEM, N1) == link_name(STEM, "2001:0db8:0020:0000::000a")  # any spelling of the NCoA
    assert link_name(STEM, N1) != link_name(STEM, N2)
    long = link_stem("a-very-long-tunnel")
    assert long == "a-very-" and len(link_name(long, N1).encode()) == 15
    assert is_our_link(link_name(STEM, N1), STEM)
    for other in ("fmip0", "fmip0-", "fmip0-1234567", "fmip0-123456789", "fmip0-ABCDEF12", "fmip1-12345678"):
        assert not is_our_link(other, STEM), other
    assert not is_our_link(link_name(STEM, N1), link_stem("fmip1"))


def _probe(result: tuple[bool, str], calls: list[int]) -> Callable[[], tuple[bool, str]]:
    def probe() -> tuple[bool, str]:
        calls.append(1)
        return result

    return probe


def test_auto_takes_the_kernel_when_the_probe_creates_a_link() -> None:
    calls: list[int] = []
    got = choose_backend("auto", _probe((True, "kernel creates ip6tnl"), calls), "forward_backend")
    assert got == ("kernel", "kernel creates ip6tnl")
    assert choose_backend("kernel", _probe((True, "ok"), calls), "forward_backend") == ("kernel", "ok")


def test_auto_falls_back_to_userspace_with_the_reason() -> None:
    why = "kernel cannot create an ip6tnl link: Operation not supported (no ip6_tunnel in this kernel)"
    assert choose_backend("auto", _probe((False, why), []), "forward_backend") == ("userspace", why)


def test_kernel_required_but_missing_is_a_start_error() -> None:
    with pytest.raises(RuntimeError, match="forward_backend = kernel, but no ip6_tunnel"):
        choose_backend("kernel", _probe((False, "no ip6_tunnel"), []), "forward_backend")


def test_userspace_configured_does_not_probe() -> None:
    calls: list[int] = []
    assert choose_backend("userspace", _probe((True, "ok"), calls), "forward_backend") == ("userspace", "configured")
    assert calls == []


def _seen(ncoa: str, *routes: str, local: str = PAR) -> LinkSeen:
    return LinkSeen(link_name(STEM, ncoa), local, ncoa, frozenset(routes))


def test_fresh_start_creates_one_link_per_ncoa_and_a_route_per_pcoa() -> None:
    plan = reconcile(STEM, PAR, [], {P1: N1, P2: N1, P3: N2})
    assert plan.delete_links == () and plan.delete_routes == ()
    assert sorted(plan.create_links) == sorted([(link_name(STEM, N1), N1), (link_name(STEM, N2), N2)])
    assert dict(plan.routes) == {P1: link_name(STEM, N1), P2: link_name(STEM, N1), P3: link_name(STEM, N2)}


def test_restart_keeps_restored_links_and_removes_stale_ones() -> None:
    """After kill -9: the kernel still has links for N1 (still wanted) and N2 (forwarding ended meanwhile)."""
    seen = [_seen(N1, P1, P2), _seen(N2, P3)]
    plan = reconcile(STEM, PAR, seen, {P1: N1})
    assert plan.delete_links == (link_name(STEM, N2),)
    assert plan.create_links == ()
    assert plan.delete_routes == (P2,)  # routed through a kept link, no forwarding any more
    assert plan.routes == ((P1, link_name(STEM, N1)),)


def test_links_with_other_endpoints_are_recreated() -> None:
    """The PAR's global address changed, or the link was made by hand with our name: re-create it."""
    name = link_name(STEM, N1)
    for seen in (_seen(N1, P1, local="2001:db8:10::99"), LinkSeen(name, PAR, N2, frozenset({P1}))):
        plan = reconcile(STEM, PAR, [seen], {P1: N1})
        assert plan.delete_links == (name,) and plan.create_links == ((name, N1),)
        assert plan.delete_routes == () and plan.routes == ((P1, name),)


def test_reconcile_is_idempotent_and_empty_wanted_removes_everything() -> None:
    wanted = {P1: N1, P2: N2}
    first = reconcile(STEM, PAR, [], wanted)
    after = [_seen(ncoa, *[p for p, n in wanted.items() if n == ncoa]) for _name, ncoa in first.create_links]
    assert reconcile(STEM, PAR, after, wanted) == Plan(routes=first.routes)  # only `replace`, no changes
    gone = reconcile(STEM, PAR, after, {})
    assert sorted(gone.delete_links) == sorted(n for n, _ in first.create_links) and gone.routes == ()


def test_unspecified_local_matches_a_link_without_local() -> None:
    plan = reconcile(STEM, "::", [LinkSeen(link_name(STEM, N1), "", N1, frozenset({P1}))], {P1: N1})
    assert plan.delete_links == () and plan.create_links == ()


def test_userspace_forwarder_forwards_bound_pcoas_and_counts_the_rest() -> None:
    """What the TUN gives: an IPv6 packet for a forwarded PCoA goes to its NCoA; one for another address, a
    short read or an IPv4 packet is dropped and counted (the TUN takes whatever the stack routes to it)."""
    from ipaddress import IPv6Address

    from mobility.dataplane.ip6tunnel import UserspaceForwarder

    def v6(dst: str) -> bytes:
        return bytes([0x60]) + bytes(23) + IPv6Address(dst).packed + b"payload"

    class Tun:
        def __init__(self, packets: list[bytes]) -> None:
            self.packets = packets

        def read(self) -> bytes | None:
            return self.packets.pop(0) if self.packets else None

    class Out:
        def __init__(self) -> None:
            self.sent: list[tuple[bytes, tuple[str, int]]] = []

        def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
            self.sent.append((data, addr))

    f = UserspaceForwarder("fmip0", None, "test")
    f._fwd[P1] = N1  # as add() records it (its route is the worker's business)
    out = Out()
    f.tun, f.out = Tun([v6(P1), v6(P2), v6(P1)[:39], bytes([0x45]) + bytes(59)]), out  # type: ignore[assignment]
    f._on_tun()
    assert out.sent == [(v6(P1), (N1, 0))]
    assert f._totals == {"fwd_packets": 1, "fwd_no_binding": 1, "fwd_not_ipv6": 2}
    assert f._packets == {P1: 1}
