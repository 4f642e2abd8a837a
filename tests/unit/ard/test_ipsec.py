"""ard's HI/HAck protection decisions (ard/ipsec.py) without the sockets: which router initiates,
what counts as protected, and that nothing meant for a peer router leaves before its Child SA is
installed (held, bounded, then sent in order). The IKE and ESP themselves run for real in
tests/netns/test_fmip.py."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from ard.config import IpsecSection
from ard.ipsec import HOLD_MAX, ArIpsec
from mobility.ike.policy import IkeSaEstablished
from mobility.service.config import ConfigError

OWN, LOW, HIGH = IPv6Address("2001:db8:20::1"), IPv6Address("2001:db8:10::1"), IPv6Address("2001:db8:30::1")


def make(tmp_path: Path) -> tuple[ArIpsec, list[tuple[IPv6Address, bytes, IPv6Address]], Counter[str]]:
    psk = tmp_path / "ar.psk"
    psk.write_bytes(b"secret\n")
    psk.chmod(0o600)
    sent: list[tuple[IPv6Address, bytes, IPv6Address]] = []
    counts: Counter[str] = Counter()
    ips = ArIpsec(
        IpsecSection(enabled=True, psk_file=psk),
        OWN,
        [LOW, HIGH, OWN],
        lambda s, d, t: sent.append((s, d, t)),
        lambda name: counts.update([name]),
    )
    ips.tun_index = 7
    return ips, sent, counts


def test_one_initiator_per_pair_and_identities(tmp_path: Path) -> None:
    ips, _, _ = make(tmp_path)
    assert ips.peers == [LOW, HIGH]  # our own address is no peer
    assert ips.initiator_for(str(HIGH)) and not ips.initiator_for(str(LOW))
    p = ips.policies[str(LOW)]
    assert p.transport and p.auth == "psk" and p.credentials.psk == b"secret"
    assert str(p.local_id) == str(OWN) and str(p.remote_id) == str(LOW)
    assert ips._lookup(str(LOW)) is p and ips._lookup("2001:db8:99::1") is None and ips._lookup("mn.example") is None


def test_protected_needs_the_child_sa_and_natts_tun(tmp_path: Path) -> None:
    ips, _, _ = make(tmp_path)
    assert not ips.protected(LOW, 7)  # no Child SA yet: even from the TUN
    ips._child(0x1234, str(LOW), True)
    assert ips.protected(LOW, 7)
    assert not ips.protected(LOW, 2)  # arrived on the wire in the clear (userspace data plane)
    assert not ips.protected(HIGH, 7)  # another router's address: its SA is not up
    ips.kernel = True  # XFRM's inbound policy drops cleartext from LOW before it reaches us
    assert ips.protected(LOW, 2)
    ips._child(0x1234, str(LOW), False)
    assert not ips.protected(LOW, 2)


def test_nothing_leaves_before_the_child_sa(tmp_path: Path) -> None:
    ips, sent, counts = make(tmp_path)
    for i in range(HOLD_MAX + 2):  # LOW initiates this pair: we wait for it, holding what we have
        ips.submit(LOW, bytes([i]), OWN)
    assert sent == [] and counts["mh_held_for_sa"] == HOLD_MAX + 2 and counts["drop_mh_held_overflow"] == 2
    ips._child(0x99, str(HIGH), True)  # another peer's SA does not release LOW's messages
    assert sent == []
    ips._child(0x1234, str(LOW), True)
    assert [d[0] for _, d, _ in sent] == list(range(2, HOLD_MAX + 2))  # oldest dropped, order kept
    assert all(dst == LOW and src == OWN for src, _, dst in sent)
    ips.submit(LOW, b"now", OWN)
    assert sent[-1] == (OWN, b"now", LOW)


def test_a_shared_secret_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="psk_file"):
        ArIpsec(IpsecSection(enabled=True), OWN, [LOW], lambda *a: None, lambda n: None)
    loose = tmp_path / "loose.psk"
    loose.write_bytes(b"x")
    loose.chmod(0o644)
    with pytest.raises(ConfigError):
        ArIpsec(IpsecSection(enabled=True, psk_file=loose), OWN, [LOW], lambda *a: None, lambda n: None)


def test_a_router_must_use_the_address_it_claims() -> None:
    """With one secret for the group, router B could authenticate as C; before that SA could replace
    C's own ("unique IDs"), the IKE source address must be the identity's address."""

    def est(peer: str, remote_id: str) -> IkeSaEstablished:
        return IkeSaEstablished("ar", b"i" * 8, b"r" * 8, str(OWN), remote_id, peer, 4500, False, False)

    assert ArIpsec.address_matches_identity(est(str(LOW), str(LOW)))
    assert ArIpsec.address_matches_identity(est("2001:db8:10:0::1", str(LOW)))  # same address, other spelling
    assert not ArIpsec.address_matches_identity(est(str(HIGH), str(LOW)))
    assert not ArIpsec.address_matches_identity(est(str(LOW), "router.example"))
