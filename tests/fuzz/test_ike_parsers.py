"""Hypothesis: the IKEv2 parsers give a value, DecodeError or IkeError for any bytes; encode/decode
round trips; and the engine never raises (nor changes state) on any datagram, whole or mutated."""

from __future__ import annotations

import contextlib
import os
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobility.ike.engine import IkeEngine
from mobility.ike.policy import IkeBug
from mobility.wire.buffer import DecodeError
from mobility.wire.ikev2 import (
    CP,
    KE,
    SA,
    CfgAttribute,
    Header,
    IkeError,
    Message,
    N,
    Nonce,
    Proposal,
    TrafficSelector,
    Transform,
    TSi,
    decode_chain,
)
from tests.unit.ike.test_engine import GW, MN, policies

pytestmark = pytest.mark.fuzz


@given(data=st.binary(max_size=1500))
def test_message_decode_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError, IkeError):
        Message.decode(data)


@given(first=st.integers(0, 255), data=st.binary(max_size=600))
def test_payload_chain_raises_only_protocol_errors(first: int, data: bytes) -> None:
    with contextlib.suppress(DecodeError, IkeError):
        decode_chain(first, data)


transforms = st.builds(Transform, st.integers(1, 5), st.integers(0, 65535), st.none() | st.integers(0, 65535))
proposals = st.builds(
    Proposal,
    st.integers(1, 255),
    st.sampled_from([1, 3]),
    st.sampled_from([b"", b"1234", b"12345678"]),
    st.lists(transforms, min_size=1, max_size=6).map(tuple),
)
v4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
v6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))


def _ordered(addrs: st.SearchStrategy) -> st.SearchStrategy:  # type: ignore[type-arg]
    """A valid range: the ending address is not below the starting one (RFC 7296 §3.13.1)."""
    return st.tuples(addrs, addrs).map(sorted)


selectors = st.one_of(
    *(
        st.builds(
            lambda ab, p, s, e: TrafficSelector(ab[0], ab[1], p, s, e),
            _ordered(fam),
            st.integers(0, 255),
            st.integers(0, 65535),
            st.integers(0, 65535),
        )
        for fam in (v4, v6)
    )
)
payloads = st.one_of(
    st.builds(SA, st.lists(proposals, min_size=1, max_size=3).map(tuple)),
    st.builds(KE, st.integers(0, 65535), st.binary(max_size=64)),
    st.builds(Nonce, st.binary(min_size=16, max_size=64)),
    st.builds(N, st.integers(0, 65535), st.binary(max_size=40)),
    st.builds(TSi, st.lists(selectors, min_size=1, max_size=4).map(tuple)),
    st.builds(
        CP,
        st.integers(1, 4),
        st.lists(st.builds(CfgAttribute, st.integers(17, 30), st.binary(max_size=20)), max_size=4).map(tuple),
    ),
)


@given(pl=st.lists(payloads, max_size=6), mid=st.integers(0, 2**32 - 1), exch=st.integers(34, 37))
def test_message_round_trip(pl: list, mid: int, exch: int) -> None:  # type: ignore[type-arg]
    msg = Message(Header(b"I" * 8, b"R" * 8, 0, exch, 0x08, mid), pl)
    again = Message.decode(msg.encode())
    assert again.payloads == pl and again.header.message_id == mid


def _responder() -> IkeEngine:
    _, gw = policies()
    return IkeEngine(rand=os.urandom, suites=gw.ike_suites, lookup=lambda who: gw, local_addr=GW[0])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_responder_never_raises_on_garbage(data: bytes) -> None:
    eng = _responder()
    out = eng.datagram(data, MN[0], 500, 500, now=0.0)
    assert all(s.state.value == "expect-auth-request" for s in eng.sas.values())
    # "never raises" alone holds by construction (the engine turns bugs into IkeBug): no bug either
    assert eng.counters["internal_error"] == 0 and not any(isinstance(getattr(a, "event", None), IkeBug) for a in out)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=400), exch=st.integers(34, 37), flags=st.sampled_from([0x08, 0x20, 0x28, 0x00]))
def test_responder_on_garbage_behind_a_valid_header(body: bytes, exch: int, flags: int) -> None:
    """Random payload bytes behind a well-formed header (random bytes rarely pass the header checks)."""
    eng = _responder()
    data = Header(os.urandom(8), bytes(8), 33, exch, flags, 0, 28 + len(body)).encode() + body
    out = eng.datagram(data, MN[0], 500, 500, now=0.0)
    assert eng.counters["internal_error"] == 0 and not any(isinstance(getattr(a, "event", None), IkeBug) for a in out)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(0, 10_000), byte=st.integers(0, 255), cut=st.integers(0, 10_000))
def test_engines_survive_mutated_exchanges(pos: int, byte: int, cut: int) -> None:
    """Flip or truncate every message of a real exchange: nothing raises; a forged IKE_AUTH never
    establishes anything."""
    mn, _ = policies()
    init, resp = IkeEngine(rand=os.urandom), _responder()
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    req = acts[0].data
    r1 = resp.datagram(req, MN[0], 500, 500, now=0.0)
    a1 = init.datagram(r1[0].data, GW[0], 500, 500, now=0.0)
    auth = next(a for a in a1 if hasattr(a, "data"))
    raw = bytearray(auth.data)
    raw[pos % len(raw)] ^= byte or 1
    mutated = bytes(raw[: max(1, cut % (len(raw) + 1))])
    out = resp.datagram(mutated, MN[0], auth.sport, auth.dport, now=0.0)
    assert not any(getattr(getattr(a, "event", None), "remote_id", "") for a in out)
    # the genuine IKE_AUTH response, mutated the same way, into the initiator that waits for it
    (r2,) = [a for a in resp.datagram(auth.data, MN[0], auth.sport, auth.dport, now=0.0) if hasattr(a, "data")]
    raw2 = bytearray(r2.data)
    raw2[pos % len(raw2)] ^= byte or 1
    out = init.datagram(bytes(raw2[: max(1, cut % (len(raw2) + 1))]), GW[0], r2.sport, r2.dport, now=0.0)
    assert not any(getattr(getattr(a, "event", None), "remote_id", "") for a in out)  # nothing forged establishes
    assert init.counters["internal_error"] == 0 and resp.counters["internal_error"] == 0
