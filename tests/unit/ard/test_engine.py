"""ard's RFC 5269 engine in memory: a valid SEND RtSolPr gets a key in a signed PrRtAdv; every
forgery is answered without a key and changes no key record."""

from __future__ import annotations

import os
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ard.engine import ArdEngine, HkIssued, Neighbor, RouterIdentity
from mobility.crypto import cga, hk, sendsig
from mobility.engine import Persist
from mobility.wire import nd
from tests.unit.crypto.test_send import AR, make_mn, rtsolpr, signed

NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def router() -> RouterIdentity:
    key = rsa.generate_private_key(65537, 1024)
    addr, params = cga.generate(IPv6Network("fe80::/64"), sendsig.public_der(key.public_key()), 0, os.urandom)
    return RouterIdentity(key, addr, params.encode(), bytes.fromhex("020000000001"))


@pytest.fixture(scope="module")
def mn() -> dict[str, Any]:
    return make_mn()


def engine(router: RouterIdentity) -> ArdEngine:
    nar = Neighbor(
        bytes.fromhex("0200000000aa"),
        bytes.fromhex("020000000002"),
        IPv6Address("2001:db8:20::1"),
        IPv6Network("2001:db8:20::/64"),
    )
    return ArdEngine(router=router, rand=os.urandom, neighbors=(nar,))


def request(mn: dict[str, Any], *, nonce: bytes = b"nonce1", ts: float = NOW, at: int = 1) -> bytes:
    msg = rtsolpr(mn, nonce=nonce, at=at)
    opts = tuple(nd.Timestamp.at(ts) if isinstance(o, nd.Timestamp) else o for o in msg.options)
    return signed(mn, replace(msg, options=opts))


def ask(
    e: ArdEngine, mn: dict[str, Any], wire: bytes, now: float = NOW, src: IPv6Address | None = None
) -> tuple[list[Any], nd.NdMessage | None]:
    src = src or mn["addr"]
    acts, out = e.rtsolpr(wire, src, AR, 255, now=now)  # sent to the AR's address
    return acts, nd.NdMessage.decode(out) if out else None


def test_valid_request_gets_a_key_in_a_signed_prrtadv(router: RouterIdentity, mn: dict[str, Any]) -> None:
    e = engine(router)
    acts, adv = ask(e, mn, request(mn))
    assert adv is not None and adv.subtype == nd.Subtype.PRRTADV and adv.identifier == 0x1234 and adv.code == 0
    sendsig.verify(adv, router.address, mn["addr"], router.key.public_key())  # the router's key signed it
    reply = adv.first(nd.HandoverKeyReply)
    assert isinstance(reply, nd.HandoverKeyReply) and reply.at == 1 and reply.lifetime == hk.HK_LIFETIME
    key = hk.decrypt(mn["hkek"], reply.encrypted_key)
    assert e.keys[str(mn["addr"])].key == key and len(key) == hk.KEY_LEN
    assert adv.first(nd.Nonce) == nd.Nonce(b"nonce1")  # echoed
    assert any(isinstance(a, Persist) and isinstance(a.record, HkIssued) for a in acts)
    assert isinstance(adv.first(nd.IpAddressPrefix), nd.IpAddressPrefix)  # NAR info for the wildcard
    # a second valid request returns the same key (§3.2)
    _, adv2 = ask(e, mn, request(mn, nonce=b"nonce2", ts=NOW + 1), now=NOW + 1)
    assert adv2 is not None
    reply2 = adv2.first(nd.HandoverKeyReply)
    assert isinstance(reply2, nd.HandoverKeyReply) and hk.decrypt(mn["hkek"], reply2.encrypted_key) == key


def forged(mn: dict[str, Any], kind: str, router: RouterIdentity) -> tuple[bytes, IPv6Address, float]:
    src: IPv6Address = mn["addr"]
    if kind == "bad_signature":
        w = bytearray(request(mn))
        w[-5] ^= 1
        return bytes(w), src, NOW
    if kind == "non_cga_source":
        return request(mn), IPv6Address("2001:db8:10::99"), NOW
    if kind == "cga_not_verifying":
        params = replace(mn["params"], modifier=mn["params"].modifier + 1)
        other = {**mn, "params": params}
        return request(other), src, NOW
    if kind == "wrong_key_hash":
        key = rsa.generate_private_key(65537, 1024)
        return sendsig.sign(rtsolpr(mn), src, AR, key).encode(src, AR), src, NOW
    if kind == "stale_timestamp":
        return request(mn, ts=NOW - 1000), src, NOW
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["bad_signature", "non_cga_source", "cga_not_verifying", "wrong_key_hash", "stale_timestamp"]
)
def test_forgeries_are_answered_without_a_key_and_change_nothing(
    router: RouterIdentity, mn: dict[str, Any], kind: str
) -> None:
    e = engine(router)
    ask(e, mn, request(mn, nonce=b"first1"))  # a legitimate key exists
    before = dict(e.keys)
    wire, src, now = forged(mn, kind, router)
    acts, adv = ask(e, mn, wire, now=now + 1, src=src)
    assert e.keys == before
    assert not any(isinstance(a, Persist) for a in acts)
    assert adv is None or adv.first(nd.HandoverKeyReply) is None


def test_replayed_nonce_is_refused(router: RouterIdentity, mn: dict[str, Any]) -> None:
    e = engine(router)
    wire = request(mn)
    ask(e, mn, wire)
    before = dict(e.keys)
    _acts, adv = ask(e, mn, wire, now=NOW + 0.5)
    assert adv is not None and adv.first(nd.HandoverKeyReply) is None and e.keys == before
    assert e.counters["drop_replayed_nonce"] == 1


def test_rate_limit_and_hop_limit(router: RouterIdentity, mn: dict[str, Any]) -> None:
    e = engine(router)
    answered = sum(ask(e, mn, request(mn, nonce=f"n{i:05d}".encode()), now=NOW)[1] is not None for i in range(10))
    assert answered == 3 and e.counters["drop_rate_limited"] == 7
    _acts, out = e.rtsolpr(request(mn), mn["addr"], AR, 64, now=NOW + 10)
    assert out is None and e.counters["drop_hop_limit"] == 1


def test_forgeries_spoofing_a_victim_do_not_spend_its_rate(router: RouterIdentity, mn: dict[str, Any]) -> None:
    """Found by bench-send: forged requests from the victim's address must not use up its allowance."""
    e = engine(router)
    for i in range(50):
        wire = bytearray(request(mn, nonce=f"f{i:05d}".encode()))
        wire[-5] ^= 1  # bad signature, victim's source address
        ask(e, mn, bytes(wire))
    _, adv = ask(e, mn, request(mn, nonce=b"valid1"))
    assert adv is not None and isinstance(adv.first(nd.HandoverKeyReply), nd.HandoverKeyReply)


def test_router_solicitations_neither_drain_a_victims_rate_nor_buy_unbounded_signatures(
    router: RouterIdentity, mn: dict[str, Any]
) -> None:
    e = engine(router)
    rs = nd.router_solicitation((nd.Nonce(b"rsnonce1"),)).encode(mn["addr"], AR)
    answered = sum(e.router_solicitation(rs, mn["addr"], 255, NOW) is not None for _ in range(50))
    assert answered == 10 and e.counters["drop_rs_rate_limited"] == 40  # one budget for all sources
    _, adv = ask(e, mn, request(mn, nonce=b"valid2"))  # the victim's RtSolPr allowance is untouched
    assert adv is not None and isinstance(adv.first(nd.HandoverKeyReply), nd.HandoverKeyReply)


def test_hk_encryption_key_must_match_the_cga_key(router: RouterIdentity, mn: dict[str, Any]) -> None:
    e = engine(router)
    weak = {**mn, "hkek": rsa.generate_private_key(65537, 2048)}  # not the CGA key's parameters
    _, adv = ask(e, mn, request(weak))
    assert adv is not None and adv.first(nd.HandoverKeyReply) is None and e.keys == {}


def test_hk_encryption_key_must_not_be_the_cga_key(router: RouterIdentity, mn: dict[str, Any]) -> None:
    """§3.1: the handover key encryption key pair MUST NOT serve for anything else; a request whose
    encryption key is the CGA (signing) key is answered without a key and changes nothing."""
    e = engine(router)
    same = {**mn, "hkek": mn["key"]}
    _, adv = ask(e, mn, request(same))
    assert adv is not None and adv.first(nd.HandoverKeyReply) is None and e.keys == {}
    assert e.counters["drop_hk_key_is_cga_key"] == 1


def test_expiry(router: RouterIdentity, mn: dict[str, Any]) -> None:
    e = engine(router)
    ask(e, mn, request(mn))
    assert e.next_deadline() == NOW + hk.HK_LIFETIME
    e.expire(NOW + hk.HK_LIFETIME)
    assert e.keys == {}


@pytest.mark.parametrize("missing", [nd.Nonce, nd.Timestamp], ids=["no-nonce", "no-timestamp"])
def test_signed_request_without_nonce_or_timestamp_gets_no_key(
    router: RouterIdentity, mn: dict[str, Any], missing: type
) -> None:
    """RFC 3971 §5.3.4: a signed solicitation lacking its Nonce or Timestamp MUST be discarded (as a
    key request: RFC 5269 §3.2 still answers, without a key, and changes nothing)."""
    e = engine(router)
    msg = rtsolpr(mn)
    wire = signed(mn, replace(msg, options=tuple(o for o in msg.options if type(o) is not missing)))
    acts, adv = ask(e, mn, wire)
    assert e.keys == {} and not any(isinstance(a, Persist) for a in acts)
    assert adv is None or adv.first(nd.HandoverKeyReply) is None
    assert e.counters["drop_no_nonce" if missing is nd.Nonce else "drop_timestamp"] == 1


def test_forged_flood_from_many_sources_buys_few_signatures(router: RouterIdentity, mn: dict[str, Any]) -> None:
    """Per-source limits do not stop a flood from rotating sources: signed refusals share one budget."""
    e = engine(router)
    wire = bytearray(request(mn))
    wire[-5] ^= 1
    answered = sum(
        ask(e, mn, bytes(wire), src=IPv6Address(f"2001:db8:10::{i:x}"))[1] is not None for i in range(1, 200)
    )
    assert answered == e.refusals_per_s and e.keys == {}
    # a valid request still gets its key
    _, adv = ask(e, mn, request(mn, nonce=b"valid1"))
    assert adv is not None and isinstance(adv.first(nd.HandoverKeyReply), nd.HandoverKeyReply)


def test_a_renewal_returns_the_same_key_with_a_fresh_lifetime(router: RouterIdentity, mn: dict[str, Any]) -> None:
    """§3.2: an existing key MUST be returned; §3.3: the MN MUST ask again before HK-LIFETIME ends, so
    an answer in the key's second half restarts the lifetime (else the renewal would buy nothing and be
    asked again at once)."""
    e = engine(router)
    _, adv = ask(e, mn, request(mn))
    assert adv is not None
    first = adv.first(nd.HandoverKeyReply)
    assert isinstance(first, nd.HandoverKeyReply)
    # a repeat in the key's first half: the same key and deadline, nothing written
    acts, adv = ask(e, mn, request(mn, nonce=b"nonce-early", ts=NOW + 60), now=NOW + 60)
    assert adv is not None and not [a for a in acts if isinstance(a, Persist)]
    early = adv.first(nd.HandoverKeyReply)
    assert isinstance(early, nd.HandoverKeyReply) and early.lifetime == hk.HK_LIFETIME - 60
    assert e.keys[str(mn["addr"])].expires == NOW + hk.HK_LIFETIME
    later = NOW + hk.HK_LIFETIME - 300
    acts, adv = ask(e, mn, request(mn, nonce=b"nonce-renew", ts=later), now=later)
    assert adv is not None
    again = adv.first(nd.HandoverKeyReply)
    assert isinstance(again, nd.HandoverKeyReply) and again.lifetime == hk.HK_LIFETIME
    assert hk.decrypt(mn["hkek"], again.encrypted_key) == hk.decrypt(mn["hkek"], first.encrypted_key)
    rec = e.keys[str(mn["addr"])]
    assert rec.expires == later + hk.HK_LIFETIME
    assert [a.record.record.expires for a in acts if isinstance(a, Persist)] == [rec.expires]  # persisted
    e.expire(NOW + hk.HK_LIFETIME)  # the original deadline passes: the key lives on
    assert str(mn["addr"]) in e.keys


def test_each_cga_gets_its_own_key(router: RouterIdentity, mn: dict[str, Any]) -> None:
    """§3.6: a unique key for each CGA public key."""
    e = engine(router)
    other = make_mn()
    assert other["addr"] != mn["addr"]
    ask(e, mn, request(mn))
    ask(e, other, request(other, nonce=b"nonce-other"))
    keys = [e.keys[str(m["addr"])].key for m in (mn, other)]
    assert len(set(keys)) == 2 and all(len(k) == hk.KEY_LEN for k in keys)
