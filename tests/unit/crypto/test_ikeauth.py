"""IKEv2 authentication primitives: signatures per method, chain validation, identity binding."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from ipaddress import ip_address
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from mobility.crypto import ikeauth
from mobility.crypto.ikeauth import AuthError, AuthMethod
from mobility.crypto.ikeprf import Prf
from mobility.lab.pki import Issued, issue, make_ca

NOW = dt.datetime.now(dt.UTC)
OCTETS = b"RealMessage|Nonce|prf(SK_p, ID')"


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    ca, rogue = make_ca(), make_ca("rogue")
    inter_ca = issue(ca, "intermediate", kind="ecdsa")
    # make the intermediate a CA: rebuild with basicConstraints CA=true
    key = ec.generate_private_key(ec.SECP256R1())
    inter_cert = (
        x509.CertificateBuilder()
        .subject_name(inter_ca.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    inter = Issued(inter_cert, key)
    leaf = issue(inter, "leaf", dns=("gw.example.test",))
    return {
        "ca": ca,
        "rogue": rogue,
        "inter": inter,
        "leaf": leaf,
        "rsa": issue(ca, "rsa", dns=("mn.example.test",), kind="rsa"),
        "ec": issue(ca, "ec", dns=("gw.example.test",)),
        "expired": issue(ca, "old", dns=("gw.example.test",), days=-0.5),
        "by_leaf": issue(leaf, "child-of-a-leaf", dns=("x.example.test",)),
        "rogue_leaf": issue(rogue, "gw", dns=("gw.example.test",)),
    }


@pytest.mark.parametrize(
    ("which", "method"),
    [("rsa", None), ("ec", None), ("rsa", AuthMethod.DIGITAL_SIGNATURE), ("ec", AuthMethod.DIGITAL_SIGNATURE)],
)
def test_sign_verify_and_tamper(pki: dict[str, Any], which: str, method: AuthMethod | None) -> None:
    key, pub = pki[which].key, pki[which].cert.public_key()
    m, sig = ikeauth.sign(key, OCTETS, method=method)
    assert m == (method or (AuthMethod.RSA_SIG if which == "rsa" else AuthMethod.ECDSA_256))
    ikeauth.verify_signature(pub, m, sig, OCTETS)
    with pytest.raises(AuthError):
        ikeauth.verify_signature(pub, m, sig, OCTETS + b"x")
    with pytest.raises(AuthError):
        ikeauth.verify_signature(pub, m, sig[:-1] + bytes([sig[-1] ^ 1]), OCTETS)
    other = pki["ec" if which == "rsa" else "rsa"].cert.public_key()
    with pytest.raises(AuthError):
        ikeauth.verify_signature(other, m, sig, OCTETS)


def test_method14_rsa_carries_the_rfc7427_algorithm_identifier(pki: dict[str, Any]) -> None:
    m, data = ikeauth.sign(pki["rsa"].key, OCTETS, hashes_ok=frozenset({2}))
    assert m == AuthMethod.DIGITAL_SIGNATURE
    assert data[0] == 15 and data[1:16] == bytes.fromhex("300d06092a864886f70d01010b0500")


@given(data=st.binary(max_size=300), method=st.sampled_from([1, 9, 10, 11, 14, 2, 200]))
def test_garbage_signatures_raise_only_auth_error(data: bytes, method: int) -> None:
    key = ec.derive_private_key(12345, ec.SECP256R1())
    with pytest.raises(AuthError):
        ikeauth.verify_signature(key.public_key(), method, data, OCTETS)


def test_psk_known_answer_and_mismatch() -> None:
    prf = Prf(5)
    want = hmac.digest(hmac.digest(b"secret", b"Key Pad for IKEv2", "sha256"), OCTETS, "sha256")
    assert ikeauth.psk_auth(prf, b"secret", OCTETS) == want
    ikeauth.verify_psk(prf, b"secret", OCTETS, want)
    with pytest.raises(AuthError):
        ikeauth.verify_psk(prf, b"other", OCTETS, want)


def test_chain_validation(pki: dict[str, Any]) -> None:
    anchors = [pki["ca"].cert]
    ikeauth.validate_chain(pki["ec"].cert, [], anchors, now=NOW)
    ikeauth.validate_chain(pki["leaf"].cert, [pki["inter"].cert], anchors, now=NOW)
    bad = [
        (pki["leaf"].cert, []),  # missing intermediate
        (pki["rogue_leaf"].cert, []),  # untrusted CA
        (pki["expired"].cert, []),  # expired
        (pki["by_leaf"].cert, [pki["leaf"].cert, pki["inter"].cert]),  # issued by a non-CA
    ]
    for cert, inter in bad:
        with pytest.raises(AuthError):
            ikeauth.validate_chain(cert, inter, anchors, now=NOW)


def test_identity_binding(pki: dict[str, Any]) -> None:
    ca = pki["ca"]
    c = pki["ec"].cert
    assert ikeauth.id_matches_certificate(c, 2, b"GW.example.TEST")
    assert not ikeauth.id_matches_certificate(c, 2, b"mn.example.test")
    assert not ikeauth.id_matches_certificate(ca.cert, 2, b"mobility lab CA")  # no CN fallback
    assert ikeauth.id_matches_certificate(c, 9, c.subject.public_bytes())
    assert not ikeauth.id_matches_certificate(c, 11, b"\x01\x02")
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.RFC822Name("mn@example.test"), x509.IPAddress(ip_address("192.0.2.7"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(c.subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    assert ikeauth.id_matches_certificate(cert, 3, b"MN@example.test")
    assert ikeauth.id_matches_certificate(cert, 1, bytes([192, 0, 2, 7]))
    assert not ikeauth.id_matches_certificate(cert, 1, bytes([192, 0, 2, 8]))


def test_certreq_hash_is_sha1_of_spki(pki: dict[str, Any]) -> None:
    spki = (
        pki["ca"]
        .cert.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert ikeauth.certreq_hash(pki["ca"].cert) == hashlib.sha1(spki).digest()
