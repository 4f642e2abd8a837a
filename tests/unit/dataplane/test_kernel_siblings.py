"""Sibling SAs in the kernel backend without a kernel: KernelEspBackend on a fake NETLINK_XFRM that keeps
states by (destination, SPI) and policies by (selector, direction) and answers EEXIST, ESRCH (no such
state) and ENOENT (no such policy) as Linux does.
Siblings (same selectors, same peer: RFC 7296 §2.8 rekey overlap, or a restarted peer's new Child SA)
share one reqid and one set of policies; the policies go with the last; MOBIKE moves them together."""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import replace
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from mobility.dataplane.kernel import KernelEspBackend, SiblingTable, selectors
from mobility.dataplane.sa import Cipher, EspSaPair, Mode
from mobility.dataplane.xfrm import XFRM_POLICY_FWD, XFRM_POLICY_IN, XFRM_POLICY_OUT, Replay, Selector
from natt.engine import NattEngine

LOCAL, PEER, MOVED = ip_address("192.0.2.2"), ip_address("198.51.100.1"), ip_address("203.0.113.9")


class FakeXfrm:
    """The XfrmSocket calls the backend makes, against dicts, with the kernel's errors."""

    def __init__(self) -> None:
        self.states: dict[tuple[Any, int], dict[str, Any]] = {}
        self.policies: dict[tuple[Selector, int], dict[str, Any]] = {}
        self.calls: list[str] = []

    def close(self) -> None:
        pass

    def add_state(
        self, *, src: Any, dst: Any, spi: int, reqid: int, oseq: int = 0, replay: Replay | None = None, **kw: Any
    ) -> None:
        self.calls.append("add_state")
        if (dst, spi) in self.states:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        window = replay or Replay(0, bytes(4))
        self.states[(dst, spi)] = {"src": src, "reqid": reqid, "oseq": oseq, "packets": 0, "window": window}

    def del_state(self, dst: Any, spi: int) -> None:
        self.calls.append("del_state")
        if self.states.pop((dst, spi), None) is None:
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))  # Linux: no such SA

    def get_state(self, dst: Any, spi: int) -> dict[str, Any]:
        st = self.states.get((dst, spi))
        if st is None:
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))  # Linux: no such SA
        return {
            "bytes": 0,
            "packets": st["packets"],
            "replay": 0,
            "integrity_failed": 0,
            "reqid": st["reqid"],
            "oseq": st["oseq"] + st["packets"],  # the last number sent: where it started, and one per packet
            "window": st["window"],
        }

    def add_policy(
        self, sel: Selector, direction: int, tmpl: bytes, priority: int = 1000, update: bool = False
    ) -> None:
        self.calls.append("update_policy" if update else "add_policy")
        if not update and (sel, direction) in self.policies:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        # struct xfrm_user_tmpl: daddr at 0, saddr at 28, reqid at 44
        dst = ip_address(tmpl[:16] if len(sel.dst.network_address.packed) == 16 else tmpl[:4])
        self.policies[(sel, direction)] = {"dst": dst, "reqid": int.from_bytes(tmpl[44:48], sys.byteorder)}

    def del_policy(self, sel: Selector, direction: int) -> None:
        self.calls.append("del_policy")
        if self.policies.pop((sel, direction), None) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))


def child(spi_in: int, spi_out: int, **kw: Any) -> EspSaPair:
    """A gateway's tunnel-mode Child SA with 10.200.0.1 behind the peer."""
    sa = EspSaPair(
        spi_in=spi_in,
        spi_out=spi_out,
        local=LOCAL,
        peer=PEER,
        cipher=Cipher.AES_GCM_16,
        key_in=os.urandom(20),
        key_out=os.urandom(20),
        peer_port=40000,
        local_ts=(ip_network("10.100.0.0/24"),),
        remote_ts=(ip_network("10.200.0.1/32"),),
    )
    return replace(sa, **kw)


def transport(spi_in: int, spi_out: int, **kw: Any) -> EspSaPair:
    return child(spi_in, spi_out, mode=Mode.TRANSPORT, local_ts=(), remote_ts=(), peer_port=4500, **kw)


def backend() -> tuple[KernelEspBackend, FakeXfrm]:
    x = FakeXfrm()
    return KernelEspBackend(xfrm=x), x  # type: ignore[arg-type]


def reqids(x: FakeXfrm) -> set[int]:
    return {p["reqid"] for p in x.policies.values()} | {s["reqid"] for s in x.states.values()}


def test_sibling_shares_the_reqid_and_the_policies_which_go_with_the_last() -> None:
    k, x = backend()
    old, new = child(0x1001, 0x2001), child(0x1002, 0x2002)
    rid = k.add_sa(old)
    assert rid == 0x1001  # the first SA's reqid: derived from its inbound SPI
    assert sorted(d for _, d in x.policies) == [XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_POLICY_FWD]
    x.calls.clear()
    # the successor (same selectors, same peer): its states join, no policy is added again (no EEXIST)
    assert k.reqid_for(new) == rid and k.add_sa(new) == rid
    assert x.calls == ["add_state", "add_state"] and len(x.states) == 4 and reqids(x) == {rid}
    assert k.siblings(new) == [old] and k.siblings(old) == [new]
    k.del_sa(old)  # the predecessor goes: its states only
    assert set(x.states) == {(LOCAL, 0x1002), (PEER, 0x2002)} and len(x.policies) == 3
    k.del_sa(new)  # the last one takes the policies with it
    assert x.states == {} and x.policies == {}


def test_transport_mode_siblings_and_deleting_the_newer_first() -> None:
    k, x = backend()
    a, b = transport(0x1001, 0x2001), transport(0x1002, 0x2002)
    rid = k.add_sa(a)
    assert k.add_sa(b) == rid and sorted(d for _, d in x.policies) == [XFRM_POLICY_IN, XFRM_POLICY_OUT]
    k.del_sa(b)
    assert set(x.states) == {(LOCAL, 0x1001), (PEER, 0x2001)} and len(x.policies) == 2
    k.del_sa(a)
    assert x.states == {} and x.policies == {}


def test_same_selectors_with_another_peer_mapping_or_mode_are_refused_before_the_kernel() -> None:
    k, x = backend()
    k.add_sa(child(0x1001, 0x2001))
    before = (dict(x.states), dict(x.policies))
    x.calls.clear()
    for other in (
        child(0x1002, 0x2002, peer=MOVED),  # another peer
        child(0x1003, 0x2003, peer_port=40001),  # another NAT mapping (RFC 3948 §5.2)
        child(0x1004, 0x2004, reqid=77),  # a sibling asking for its own reqid
        child(0x1001, 0x2005),  # the same inbound SPI
    ):
        with pytest.raises(ValueError):
            k.add_sa(other)
    assert x.calls == [] and (x.states, x.policies) == before
    # transport mode between the same two hosts as a tunnel-mode SA's host selectors: the same policies
    k2, x2 = backend()
    k2.add_sa(transport(0x1001, 0x2001))
    with pytest.raises(ValueError, match="belongs to"):
        k2.add_sa(child(0x1002, 0x2002, peer_port=4500, local_ts=(ip_network(f"{LOCAL}/32"),),
                        remote_ts=(ip_network(f"{PEER}/32"),)))  # fmt: skip
    assert len(x2.states) == 2


def test_overlapping_but_not_identical_selectors_are_refused_by_the_engine() -> None:
    """natt's engine refuses them (RFC 3948 §5.2) before the kernel is asked; siblings are the exception."""
    wide = child(0x1001, 0x2001, remote_ts=(ip_network("10.200.0.0/24"),))
    narrow = child(0x1002, 0x2002)
    for first, second in ((wide, narrow), (narrow, wide)):
        eng = NattEngine(rand=os.urandom)
        eng.add_sa(first, now=0)
        with pytest.raises(ValueError, match="conflicting"):
            eng.add_sa(second, now=1)
        eng.add_sa(replace(first, spi_in=0x1003, spi_out=0x2003), now=2)  # its sibling is fine
    # the kernel side alone sees different policies: not siblings, distinct reqids
    t = SiblingTable()
    t.add(wide, t.reqid_for(wide))
    assert t.plan_add(narrow).new_policies and t.reqid_for(narrow) != t.reqid_for(replace(wide, spi_in=0x1003))


def test_reqids_are_unique_per_group_and_explicit_ones_are_kept() -> None:
    t = SiblingTable()
    a = child(0x1001, 0x2001)
    t.add(a, t.reqid_for(a))
    clash = child(0x80001001, 0x2002, remote_ts=(ip_network("10.200.0.2/32"),))  # same low 31 bits
    assert t.reqid_for(clash) == 0x1002
    assert t.reqid_for(child(0x1005, 0x2005, reqid=9)) == 9
    assert t.reqid_for(child(0x1006, 0x2006)) == 0x1001  # a sibling of a


def test_policy_refused_by_the_kernel_undoes_the_states() -> None:
    k, x = backend()
    sa = child(0x1001, 0x2001)
    out_sel, _ = selectors(sa)[0]
    x.policies[(out_sel, XFRM_POLICY_OUT)] = {"dst": PEER, "reqid": 5}  # someone else's policy
    with pytest.raises(OSError) as e:
        k.add_sa(sa)
    assert e.value.errno == errno.EEXIST
    assert x.states == {} and list(x.policies) == [(out_sel, XFRM_POLICY_OUT)]
    del x.policies[(out_sel, XFRM_POLICY_OUT)]
    assert k.add_sa(sa) == 0x1001 and len(x.policies) == 3  # nothing of the failed attempt was kept


def test_restore_gives_siblings_their_stored_reqid_in_any_order() -> None:
    """natt stores reqid_for's answer with each SA; a restore installs them with it."""
    k, _ = backend()
    stored = []
    for sa in (child(0x2001, 0x3001), child(0x1001, 0x3002)):  # the newer one has the lower SPI
        sa = replace(sa, reqid=k.reqid_for(sa))
        k.add_sa(sa)
        stored.append(sa)
    assert {sa.reqid for sa in stored} == {0x2001}
    for order in (stored, stored[::-1]):
        k2, x2 = backend()
        for sa in order:
            k2.add_sa(sa)
        assert reqids(x2) == {0x2001} and len(x2.policies) == 3
    # records without a stored reqid (userspace runs): the first restored one's reqid, in install order
    k3, x3 = backend()
    for sa in stored:
        k3.add_sa(replace(sa, reqid=0))
    assert reqids(x3) == {0x2001}


def test_mobike_moves_a_single_sa_and_keeps_its_numbering() -> None:
    k, x = backend()
    sa = child(0x1001, 0x2001)
    rid = k.add_sa(sa)
    x.states[(PEER, 0x2001)]["packets"] = 41
    assert k.update_peer(sa, sa.with_peer(MOVED, 4500)) == [0x1001]
    assert set(x.states) == {(LOCAL, 0x1001), (MOVED, 0x2001)} and x.states[(MOVED, 0x2001)]["oseq"] == 41
    assert {p["reqid"] for p in x.policies.values()} == {rid} and len(x.policies) == 3
    assert x.policies[(selectors(sa)[0][0], XFRM_POLICY_OUT)]["dst"] == MOVED  # template updated in place
    k.del_sa(sa.with_peer(MOVED, 4500))
    assert x.states == {} and x.policies == {}


def test_mobike_moves_siblings_together() -> None:
    k, x = backend()
    a, b = child(0x1001, 0x2001), child(0x1002, 0x2002)
    rid = k.add_sa(a)
    k.add_sa(b)
    assert k.update_peer(a, a.with_peer(MOVED, 4500)) == [0x1001, 0x1002]
    assert {dst for dst, _ in x.states} == {LOCAL, MOVED} and reqids(x) == {rid}
    assert {(s["src"], spi) for (dst, spi), s in x.states.items() if dst == LOCAL} == {(MOVED, 0x1001), (MOVED, 0x1002)}
    x.calls.clear()
    assert k.update_peer(b, b.with_peer(MOVED, 4500)) == [0x1002] and x.calls == []  # already there
    assert k.siblings(a) == [b.with_peer(MOVED, 4500)]
    k.del_sa(a.with_peer(MOVED, 4500))
    assert len(x.policies) == 3
    k.del_sa(b.with_peer(MOVED, 4500))
    assert x.states == {} and x.policies == {}


def test_mobike_in_transport_mode_replaces_the_policies_and_refuses_taken_selectors() -> None:
    k, x = backend()
    a, b = transport(0x1001, 0x2001), transport(0x1002, 0x2002)
    rid = k.add_sa(a)
    k.add_sa(b)
    assert k.update_peer(b, b.with_peer(MOVED, 4500)) == [0x1002, 0x1001]
    (sel,) = {s.dst for s, d in x.policies if d == XFRM_POLICY_OUT}
    assert sel == ip_network(f"{MOVED}/32") and len(x.policies) == 2 and reqids(x) == {rid}
    other = transport(0x1003, 0x2003)  # a new SA with the old peer: its own policies
    assert k.add_sa(other) != rid and len(x.policies) == 4
    before = (dict(x.states), dict(x.policies))
    with pytest.raises(ValueError, match="already hold"):  # moving onto them is refused, nothing changed
        k.update_peer(a.with_peer(MOVED, 4500), a)
    assert (x.states, x.policies) == before


def test_mobike_keeps_the_inbound_window() -> None:
    """The states are replaced (keyed by address): the new inbound state starts from the old one's window,
    or a packet captured before the move would be accepted once more after it."""
    k, x = backend()
    sa = child(0x1001, 0x2001)
    k.add_sa(sa)
    x.states[(LOCAL, 0x1001)]["window"] = Replay(77, bytes.fromhex("ffff0f00"))
    k.update_peer(sa, sa.with_peer(MOVED, 4500))
    assert x.states[(LOCAL, 0x1001)]["window"] == Replay(77, bytes.fromhex("ffff0f00"))


def test_leftovers_of_a_killed_run_are_removed_and_report_where_the_kernel_stood() -> None:
    """After a kill -9 the kernel still holds the SA: its states and policies go (a restore would meet
    EEXIST, a stale policy would select traffic into states nobody maintains), and the outbound number and
    inbound window come back so that the SA can continue from them."""
    k, x = backend()
    a, b, other = child(0x1001, 0x2001), child(0x1002, 0x2002), transport(0x1003, 0x2003)
    for sa in (a, b, other):
        k.add_sa(sa)
    x.states[(PEER, 0x2002)]["packets"] = 500
    x.states[(LOCAL, 0x1002)]["window"] = Replay(321, bytes.fromhex("ffffffff"))
    fresh, x.calls = KernelEspBackend(xfrm=x), []  # type: ignore[arg-type]  # the next run: an empty table
    assert fresh.remove_leftover(b) == (500, Replay(321, bytes.fromhex("ffffffff")))
    assert (PEER, 0x2002) not in x.states and (LOCAL, 0x1002) not in x.states
    assert fresh.remove_leftover(a) == (0, Replay(0, bytes(4)))
    assert fresh.remove_leftover(other) == (0, Replay(0, bytes(4)))
    assert x.states == {} and x.policies == {}
    assert fresh.remove_leftover(a) == (0, None)  # nothing left (removed, or never installed): no error
    assert fresh.add_sa(a) and len(x.policies) == 3  # installed again without EEXIST
