"""CGA (RFC 3972): the Appendix A vector, generation for Sec 0-2, verification failures step by step,
the multi-process modifier search (with a few zero bits instead of Sec 2's 32) and the operator CLI."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.crypto import cga
from mobility.wire.buffer import DecodeError

KEY = bytes.fromhex(
    "305c300d06092a864886f70d0101010500034b003048024100c2c2f137305454f10bd9cea36844b530e9211a4b262b16467cb7dfba1f595c"
    "0194f275be5a4d386f2c3c2382508773c7867f9b3b9e63a09c7bc48f7a54ebefaf0203010001"
)
M0 = int("89a8a8b2e858d8b8f2633f44d2d4ce9a", 16)


def test_rfc3972_appendix_a() -> None:
    assert cga.hash2(M0, KEY).hex() == "436b9a70dbfddbf1926e6e6629c0"  # rejected for Sec 1
    assert cga.hash2(M0 + 1, KEY).hex() == "000001ca680b83888d0912dffcce"  # accepted
    assert cga.search_modifier(M0, 10, KEY, 1) == M0 + 1
    addr, params = cga.generate(IPv6Network("fe80::/64"), KEY, 1, os.urandom, modifier=M0 + 1)
    assert cga.hash1(params).hex() == "fd4a5bf6ffb4ca6c"
    assert addr == IPv6Address("fe80::3c4a:5bf6:ffb4:ca6c")
    assert cga.verify(addr, params) == 1
    assert cga.CgaParams.decode(params.encode()) == params


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def der(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("sec", [0, 1])
def test_generate_and_verify_fast(rsa_key: rsa.RSAPrivateKey, sec: int) -> None:
    # how long this takes is measured by `make bench-send`, not asserted here
    addr, params = cga.generate(IPv6Network("2001:db8:1::/64"), der(rsa_key), sec, os.urandom)
    assert cga.verify(addr, params) == sec and addr.packed[:8] == bytes.fromhex("20010db800010000")
    assert addr.packed[8] & 0x03 == 0  # u and g bits zero


def test_collision_count_changes_address_and_three_is_the_limit(rsa_key: rsa.RSAPrivateKey) -> None:
    prefix = IPv6Network("2001:db8:1::/64")
    a0, p0 = cga.generate(prefix, der(rsa_key), 0, os.urandom)
    a1, p1 = cga.generate(prefix, der(rsa_key), 0, os.urandom, modifier=p0.modifier, collision_count=1)
    assert a0 != a1 and cga.verify(a1, p1) == 0
    with pytest.raises(cga.CgaError):
        cga.generate(prefix, der(rsa_key), 0, os.urandom, modifier=p0.modifier, collision_count=3)


def test_verification_fails_at_each_step() -> None:
    addr, params = cga.generate(IPv6Network("fe80::/64"), KEY, 1, os.urandom, modifier=M0 + 1)
    for bad, step in [
        (replace(params, collision_count=3), "step 1"),
        (replace(params, prefix=bytes(8)), "step 2"),
        (replace(params, modifier=M0 + 2), "step 4"),
        (replace(params, extensions=b"\xff\xfd\x00\x00"), "step 4"),
    ]:
        with pytest.raises(cga.CgaError, match=step):
            cga.verify(addr, bad)
    # Sec 2 claimed in the address bits, but Hash2 has only 16 zero bits
    forged = IPv6Address(addr.packed[:8] + bytes([addr.packed[8] & 0x1F | 0x40]) + addr.packed[9:])
    with pytest.raises(cga.CgaError, match="step 7"):
        cga.verify(forged, params)


def test_signatures(rsa_key: rsa.RSAPrivateKey) -> None:
    sig = cga.sign(rsa_key, cga.SEND_TYPE_TAG, b"message")
    assert cga.verify_signature(rsa_key.public_key(), cga.SEND_TYPE_TAG, b"message", sig)
    assert not cga.verify_signature(rsa_key.public_key(), cga.SEND_TYPE_TAG, b"messagf", sig)
    assert not cga.verify_signature(rsa_key.public_key(), bytes(16), b"message", sig)


@given(data=st.binary(max_size=300))
def test_params_decode_raises_only_decode_error(data: bytes) -> None:
    try:
        cga.CgaParams.decode(data)
    except DecodeError:
        pass


def counter_rand() -> Callable[[int], bytes]:
    """Deterministic stand-in for os.urandom: 1, 2, 3, ... shifted into the high bits."""
    n = itertools.count(1)
    return lambda size: (next(n) << 100).to_bytes(size, "big")


def zero_bits_of(h2: bytes) -> int:
    return 112 - int.from_bytes(h2, "big").bit_length()


def test_scan_modifiers_finds_the_appendix_a_modifier() -> None:
    assert cga.scan_modifiers(M0, 10, KEY, 16) == M0 + 1
    assert cga.scan_modifiers(M0 + 2, 1000, KEY, 16) is None
    assert cga.scan_modifiers(M0, 1, KEY, 16) is None
    assert cga.scan_modifiers(M0 + 1, 1, KEY, 16) == M0 + 1
    assert cga.scan_modifiers(M0, 5, KEY, 0) == M0  # no zero bits asked: the start itself
    with pytest.raises(ValueError):
        cga.scan_modifiers(M0, 5, KEY, 113)


@pytest.mark.parametrize("start", [(5 << 32) - 40, (1 << 128) - 40, 12345])
@pytest.mark.parametrize("bits", [3, 9])
def test_scan_modifiers_matches_hash2_across_boundaries(start: int, bits: int) -> None:
    """The low 32 bits are packed in place: runs across a 2^32 step and the 2^128 wrap stay right."""
    count = 600
    want = next(
        (
            m
            for m in ((start + k) % (1 << 128) for k in range(count))
            if zero_bits_of(cga.hash2(m, KEY, b"ext")) >= bits
        ),
        None,
    )
    assert cga.scan_modifiers(start, count, KEY, bits, b"ext") == want
    if want is not None:  # and nothing before the first hit
        assert cga.scan_modifiers(start, (want - start) % (1 << 128), KEY, bits, b"ext") is None


def test_find_modifier_sec0_is_random_without_search() -> None:
    seen: list[int] = []
    assert cga.find_modifier(KEY, 0, counter_rand(), progress=seen.append) == 1 << 100
    assert seen == []
    with pytest.raises(ValueError):
        cga.find_modifier(KEY, 8, os.urandom)


def test_find_modifier_sec1_is_the_first_hit_after_a_random_start() -> None:
    """Same modifier as the former in-line loop of generate(): search_modifier from rand(16) on."""
    m = cga.find_modifier(KEY, 1, lambda n: M0.to_bytes(n, "big"))
    assert m == M0 + 1
    seen: list[int] = []
    start = int.from_bytes(os.urandom(16), "big")
    m = cga.find_modifier(KEY, 1, lambda n: start.to_bytes(n, "big"), progress=seen.append)
    assert cga.sec_ok(cga.hash2(m, KEY), 1)
    assert cga.search_modifier(start, (m - start) % (1 << 128) + 1, KEY, 1) == m
    assert seen[-1] == (m - start) % (1 << 128) + 1  # the last progress call counts every hash


def test_find_modifier_parallel_path_with_a_small_fake_sec() -> None:
    """Sec 2 takes ~2^32 SHA-1: the same processes, streams and cancellation with 14 zero bits."""
    seen: list[int] = []
    rand = counter_rand()
    m = cga.find_modifier(KEY, 2, rand, workers=2, zero_bits=14, progress=seen.append)
    assert zero_bits_of(cga.hash2(m, KEY)) >= 14
    starts = [1 << 100, 2 << 100]  # one random start per worker process
    assert any((m - s) % (1 << 128) < 1 << 30 for s in starts)
    assert seen and seen == sorted(seen) and seen[-1] > 0
    assert rand(16) == (3 << 100).to_bytes(16, "big")  # exactly two starts drawn


def test_generate_parallel_arguments_keep_sec0_and_sec1_valid(rsa_key: rsa.RSAPrivateKey) -> None:
    prefix = IPv6Network("2001:db8:7::/64")
    for sec in (0, 1):
        seen: list[int] = []
        addr, params = cga.generate(prefix, der(rsa_key), sec, os.urandom, workers=2, progress=seen.append)
        assert cga.verify(addr, params) == sec
        assert bool(seen) == (sec == 1)


@settings(max_examples=20, deadline=None)
@given(start=st.integers(0, (1 << 128) - 1), count=st.integers(0, 300))
def test_scan_modifiers_agrees_with_search_modifier_for_sec1(start: int, count: int) -> None:
    assert cga.scan_modifiers(start, count, KEY, 16) == cga.search_modifier(start, count, KEY, 1)


def test_cli_prints_a_verifiable_cga(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert cga.main(["--sec", "1", "--key", str(pem), "--prefix", "fe80::/64"]) == 0
    out = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines())
    params = cga.CgaParams.decode(bytes.fromhex(out["params"]))
    assert cga.verify(IPv6Address(out["address"]), params) == 1 and params.public_key == der(rsa_key)
    assert int(out["modifier"], 16) == params.modifier
    pub = tmp_path / "key.pub"
    pub.write_bytes(
        rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert cga.main(["--sec", "0", "--key", str(pub), "--prefix", "2001:db8::/64"]) == 0
    out = dict(line.split(" ", 1) for line in capsys.readouterr().out.splitlines())
    assert cga.verify(IPv6Address(out["address"]), cga.CgaParams.decode(bytes.fromhex(out["params"]))) == 0
