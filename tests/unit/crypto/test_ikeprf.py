"""Known-answer tests for IKEv2 key material: D-H groups (RFC 5903 §8.1, RFC 7748 §6.1), the PRF
(RFC 4868 §2.7.1 PRF-1), prf+ (RFC 7296 §2.13) and the KEYMAT split (§2.17)."""

from __future__ import annotations

import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mobility.crypto.ikeprf import DH_GROUPS, MODP2048_P, DhError, Prf, ike_keys, natd_hash, skeyseed

H = bytes.fromhex


def test_ecp256_rfc5903_vector() -> None:
    """RFC 5903 §8.1: g^ir is the x coordinate only."""
    i = int("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433", 16)
    gr = H("D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63") + H(
        "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB"
    )
    got = DH_GROUPS[19].shared(ec.derive_private_key(i, ec.SECP256R1()), gr)
    assert got == H("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")


def test_curve25519_rfc7748_vector() -> None:
    alice = H("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    priv, pub = DH_GROUPS[31].generate(lambda n: alice)
    assert pub == H("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob_pub = H("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    assert DH_GROUPS[31].shared(priv, bob_pub) == H("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    with pytest.raises(DhError):
        DH_GROUPS[31].shared(priv, bytes(32))  # all-zero result (RFC 7748 §6.1)


def test_modp2048_agreement_and_bounds() -> None:
    g = DH_GROUPS[14]
    a, pa = g.generate(lambda n: bytes([7]) * n)
    b, pb = g.generate(lambda n: bytes([9]) * n)
    assert len(pa) == 256 and g.shared(a, pb) == g.shared(b, pa)
    for bad in (bytes(256), (1).to_bytes(256, "big"), (MODP2048_P - 1).to_bytes(256, "big"), bytes(255)):
        with pytest.raises(DhError):
            g.shared(a, bad)


def test_ecp256_rejects_points_off_the_curve() -> None:
    priv, _ = DH_GROUPS[19].generate(lambda n: bytes([5]) * n)
    with pytest.raises(DhError):
        DH_GROUPS[19].shared(priv, bytes(64))


def test_prf_hmac_sha256_rfc4868_prf1() -> None:
    assert Prf(5)(b"\x0b" * 20, b"Hi There") == H("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")


def test_prf_plus_is_the_rfc7296_iteration() -> None:
    prf, k, s = Prf(5), b"key", b"seed"
    t1 = hmac.digest(k, s + b"\x01", "sha256")
    t2 = hmac.digest(k, t1 + s + b"\x02", "sha256")
    t3 = hmac.digest(k, t2 + s + b"\x03", "sha256")
    assert prf.plus(k, s, 80) == (t1 + t2 + t3)[:80]


def test_ike_key_split_sizes() -> None:
    """AES-CBC-128 + HMAC-SHA2-256-128 + PRF_HMAC_SHA2_256: 32|32|32|16|16|32|32 (§2.14)."""
    prf = Prf(5)
    seed = skeyseed(prf, b"n" * 32, b"m" * 32, b"g" * 32)
    assert seed == hmac.digest(b"n" * 32 + b"m" * 32, b"g" * 32, "sha256")
    keys = ike_keys(prf, seed, b"s" * 80, 32, 16)
    stream = prf.plus(seed, b"s" * 80, 192)
    assert keys.sk_d == stream[:32] and keys.sk_ai == stream[32:64] and keys.sk_ar == stream[64:96]
    assert keys.sk_ei == stream[96:112] and keys.sk_er == stream[112:128]
    assert keys.sk_pi == stream[128:160] and keys.sk_pr == stream[160:192]


def test_natd_hash_layout() -> None:
    import hashlib

    got = natd_hash(b"I" * 8, bytes(8), bytes([192, 0, 2, 1]), 500)
    assert got == hashlib.sha1(b"I" * 8 + bytes(8) + bytes([192, 0, 2, 1]) + b"\x01\xf4").digest()


def test_ike_keys_match_strongswan_vector() -> None:
    """SKEYSEED and SK_* for one real exchange, as charon computed them (tests/vectors/ikev2)."""
    import tomllib
    from pathlib import Path

    v = tomllib.loads((Path(__file__).parents[2] / "vectors" / "ikev2" / "strongswan-kdf.toml").read_text())
    prf = Prf(v["prf"])
    ni, nr, spis = H(v["ni"]), H(v["nr"]), H(v["spi_i"]) + H(v["spi_r"])
    seed = skeyseed(prf, ni, nr, H(v["g_ir"]))
    assert seed == H(v["skeyseed"])
    keys = ike_keys(prf, seed, ni + nr + spis, v["integ_key_len"], v["encr_key_len"])
    for name in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
        assert getattr(keys, name) == H(v[name]), name
