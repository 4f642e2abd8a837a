"""Hypothesis: every receive-path parser gives a value or DecodeError, and the engine never raises
on any datagram or TUN packet (the h11 invariant)."""

from __future__ import annotations

import contextlib
import os
from ipaddress import ip_address, ip_network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobility.crypto.replay import ReplayWindow
from mobility.dataplane.sa import Cipher, EspSaPair
from mobility.wire import ip
from mobility.wire.buffer import DecodeError
from mobility.wire.esp import EspHeader, classify
from natt.engine import NattEngine

pytestmark = pytest.mark.fuzz

DECODERS = [classify, EspHeader.decode, ip.parse_ip]


@pytest.mark.parametrize("decode", DECODERS, ids=lambda f: f.__qualname__)
@given(data=st.binary(max_size=2048))
def test_decoders_raise_only_decode_error(decode, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(DecodeError):
        decode(data)


def _engine() -> NattEngine:
    e = NattEngine(rand=os.urandom)
    e.add_sa(
        EspSaPair(
            spi_in=0x1001,
            spi_out=0x2002,
            local=ip_address("192.0.2.2"),
            peer=ip_address("192.0.2.1"),
            cipher=Cipher.AES_GCM_16,
            key_in=bytes(20),
            key_out=bytes(20),
            remote_ts=(ip_network("10.0.0.0/8"),),
        ),
        now=0,
    )
    return e


ENGINE = _engine()


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(
    data=st.one_of(
        st.binary(max_size=1600),
        st.binary(max_size=200).map(lambda b: b"\x00\x00\x10\x01" + b),  # our SPI
        st.binary(max_size=200).map(lambda b: b"\x00\x00\x00\x00" + b),
    )
)
def test_engine_inbound_never_raises(data: bytes) -> None:
    for action in ENGINE.inbound(data, "192.0.2.1", 4500, now=1.0):
        assert type(action).__name__ in ("Notify",)  # nothing forged is ever delivered


@given(data=st.binary(max_size=1600))
def test_engine_outbound_never_raises(data: bytes) -> None:
    ENGINE.outbound(data, now=1.0)


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=200))
def test_replay_window_matches_model(seqs: list[int]) -> None:
    w, seen, top = ReplayWindow(64), set(), 0
    for s in seqs:
        expect = s > top or (top - s < 64 and s not in seen)
        assert w.check(s) == expect
        if expect:
            w.accept(s)
            seen.add(s)
            top = max(top, s)
