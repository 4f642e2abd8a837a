"""SEND-protected FMIPv6 messages (RFC 3971, RFC 5269): build, sign, parse, verify; every forgery
the ard must refuse; handover key encryption and the BADF authenticator."""

from __future__ import annotations

import os
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from mobility.crypto import cga, hk, sendsig
from mobility.wire import nd
from mobility.wire.buffer import DecodeError

AR = IPv6Address("fe80::1")
PREFIX = IPv6Network("2001:db8:10::/64")


@pytest.fixture(scope="module")
def mn() -> dict[str, object]:
    return make_mn()


def make_mn() -> dict[str, object]:
    """A mobile node's SEND identity: CGA key, care-of CGA, and handover-key encryption key pair."""
    key = rsa.generate_private_key(65537, 1024)
    der = sendsig.public_der(key.public_key())
    addr, params = cga.generate(PREFIX, der, 1, os.urandom)
    hkek = rsa.generate_private_key(65537, 1024)  # same algorithm and parameters as the CGA key (§3.1)
    return {"key": key, "addr": addr, "params": params, "hkek": hkek}


def rtsolpr(mn: dict[str, object], nonce: bytes = b"n" * 6, at: int = 1) -> nd.NdMessage:
    params = mn["params"]
    assert isinstance(params, cga.CgaParams)
    hkek = mn["hkek"]
    assert isinstance(hkek, rsa.RSAPrivateKey)
    opts = (
        nd.LinkLayerAddress(0, b""),  # New AP LLA wildcard (RFC 5568 §6.1.1)
        nd.HandoverKeyRequest(at, sendsig.public_der(hkek.public_key())),
        nd.CgaOption(params.encode()),
        nd.Timestamp.at(1_700_000_000.25),
        nd.Nonce(nonce),
    )
    return nd.rtsolpr(0x1234, opts)


def signed(mn: dict[str, object], msg: nd.NdMessage) -> bytes:
    key, addr = mn["key"], mn["addr"]
    assert isinstance(key, rsa.RSAPrivateKey) and isinstance(addr, IPv6Address)
    return sendsig.sign(msg, addr, AR, key).encode(addr, AR)


def test_signed_rtsolpr_round_trip_and_verifies(mn: dict[str, object]) -> None:
    wire = signed(mn, rtsolpr(mn))
    msg = nd.NdMessage.decode(wire)
    assert msg.subtype == nd.Subtype.RTSOLPR and msg.identifier == 0x1234
    assert isinstance(msg.options[-1], nd.RsaSignature)
    params = sendsig.verify_cga_signed(msg, mn["addr"], AR)  # type: ignore[arg-type]
    assert params == mn["params"]
    req = msg.first(nd.HandoverKeyRequest)
    assert isinstance(req, nd.HandoverKeyRequest) and req.at == 1
    assert len(wire) % 8 == 0


@pytest.mark.parametrize("flip", ["body", "option", "src", "signature"])
def test_forgeries_fail(mn: dict[str, object], flip: str) -> None:
    wire = bytearray(signed(mn, rtsolpr(mn)))
    src = mn["addr"]
    assert isinstance(src, IPv6Address)
    if flip == "body":
        wire[7] ^= 1  # identifier
    elif flip == "option":
        wire[12] ^= 0x10  # inside the HK request option
    elif flip == "signature":
        wire[-3] ^= 1
    else:
        src = IPv6Address(int(src) ^ 1)
    with pytest.raises(sendsig.SendError):
        sendsig.verify_cga_signed(nd.NdMessage.decode(bytes(wire)), src, AR)


def test_key_hash_must_name_the_cga_key(mn: dict[str, object]) -> None:
    other = rsa.generate_private_key(65537, 1024)
    addr = mn["addr"]
    assert isinstance(addr, IPv6Address)
    msg = nd.NdMessage.decode(sendsig.sign(rtsolpr(mn), addr, AR, other).encode(addr, AR))
    with pytest.raises(sendsig.SendError, match="Key Hash"):
        sendsig.verify_cga_signed(msg, addr, AR)


def test_options_after_the_signature_are_not_covered(mn: dict[str, object]) -> None:
    addr = mn["addr"]
    assert isinstance(addr, IPv6Address)
    msg = nd.NdMessage.decode(signed(mn, rtsolpr(mn)))
    extended = replace(msg, options=(*msg.options, nd.Nonce(b"x" * 6)))
    sendsig.verify_cga_signed(nd.NdMessage.decode(extended.encode(addr, AR)), addr, AR)  # still valid
    assert sendsig.signature_index(extended) == len(msg.options) - 1  # callers stop there (§5.2.2)


def test_zero_length_option_discards_the_message() -> None:
    with pytest.raises(DecodeError, match="zero length"):
        nd.NdMessage.decode(bytes([154, 0, 0, 0, 2, 0, 0, 1]) + bytes([14, 0, 0, 0, 0, 0, 0, 0]))


@given(data=st.binary(max_size=400))
def test_nd_decoder_raises_only_decode_error(data: bytes) -> None:
    try:
        nd.NdMessage.decode(data)
    except DecodeError:
        pass


def test_option_round_trips() -> None:
    opts = (
        nd.IpAddressPrefix(3, 128, IPv6Address("2001:db8:20::1")),
        nd.LinkLayerAddress(1, bytes.fromhex("020000000001")),
        nd.HandoverKeyReply(1, 43200, b"k" * 128),
        nd.TrustAnchor(1, b"\x30\x03\x31\x01\x00"),
        nd.Timestamp(123456789),
        nd.Nonce(b"abcdef"),
    )
    msg = nd.prrtadv(0, 7, opts)
    again = nd.NdMessage.decode(msg.encode(AR, IPv6Address("2001:db8:10::5")))
    assert again.options == opts and again.identifier == 7 and again.subtype == nd.Subtype.PRRTADV


def test_timestamp_window_and_replayed_nonce() -> None:
    peer = IPv6Address("2001:db8:10::5")
    cache = sendsig.TimestampCache()
    now = 1_700_000_000.0
    assert not cache.check(peer, None, now)  # signed without a Timestamp: discard
    assert not cache.check(peer, nd.Timestamp.at(now - 400), now)  # outside Delta for a new peer
    assert cache.check(peer, nd.Timestamp.at(now), now)
    assert cache.check(peer, nd.Timestamp.at(now + 10), now + 10)
    assert not cache.check(peer, nd.Timestamp.at(now - 50), now + 20)  # older than allowed
    nonces = sendsig.NonceCache()
    assert nonces.fresh(peer, b"nonce1", now) and not nonces.fresh(peer, b"nonce1", now + 1)
    assert nonces.fresh(peer, b"nonce1", now + 2 * sendsig.TIMESTAMP_DELTA + 5)  # expired, fine again


def test_handover_key_encryption_and_authenticator(mn: dict[str, object]) -> None:
    hkek = mn["hkek"]
    assert isinstance(hkek, rsa.RSAPrivateKey)
    key = hk.new_key(os.urandom)
    blob = hk.encrypt(hkek.public_key(), key)
    assert len(blob) == 128 and hk.decrypt(hkek, blob) == key
    coa, par = IPv6Address("2001:db8:20::9"), IPv6Address("2001:db8:10::1")
    tag = hk.authenticator(0, key, coa, par, b"mh-data")
    assert len(tag) == 12 and hk.check(0, key, coa, par, b"mh-data", tag)
    assert not hk.check(0, key, coa, par, b"mh-datb", tag) and not hk.check(1, key, coa, par, b"mh-data", tag)
    assert hk.choose_at(1) == 1 and hk.choose_at(0) == 0 and hk.choose_at(7) == 1


def test_valid_cga_of_an_ec_key_is_not_a_send_signer(mn: dict[str, object]) -> None:
    """A CGA is just a hash: one made from an EC key verifies as a CGA, but RFC 3971 signatures are RSA.
    Such a message is refused as SEND-invalid, never an unexpected exception."""
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_der = sendsig.public_der(ec.generate_private_key(ec.SECP256R1()).public_key())  # type: ignore[arg-type]
    addr, params = cga.generate(PREFIX, ec_der, 0, os.urandom)
    msg = nd.rtsolpr(1, (nd.CgaOption(params.encode()), nd.Nonce(b"n" * 6)))
    wire = sendsig.sign(msg, addr, AR, mn["key"]).encode(addr, AR)  # type: ignore[arg-type]
    with pytest.raises(sendsig.SendError, match="CGA"):
        sendsig.verify_cga_signed(nd.NdMessage.decode(wire), addr, AR)
