"""IKEv2 authentication primitives (mobility.crypto.ikeauth): AUTH computation per method (RFC 7296 §2.15,
§3.8; RFC 4754; RFC 7427), X.509 path validation and identity binding (RFC 7296 §3.5, RFC 5026 §9.5)."""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import hmac
import inspect
from dataclasses import dataclass
from ipaddress import ip_address

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.crypto import ikeauth
from mobility.crypto.ikeauth import AuthError, AuthMethod, CertificateFormatError, IdType

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
OCTETS = b"RealMessage|NonceData|prf(SK_p, RestOfIDPayload)"
SANS: list[x509.GeneralName] = [
    x509.DNSName("gw.example.test"),
    x509.RFC822Name("mn@example.test"),
    x509.IPAddress(ip_address("192.0.2.7")),
    x509.IPAddress(ip_address("2001:db8::7")),
]
ALG_RSA_SHA256 = bytes.fromhex("300d06092a864886f70d01010b0500")  # RFC 7427 A.1.2
ALG_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")  # RFC 7427 A.3.1
PSS_HASH = "a00f300d06096086480165030402010500"  # [0] sha256, NULL
PSS_MGF = "a11c301a06092a864886f70d010108300d06096086480165030402010500"  # [1] mgf1 sha256
PSS_SALT32, PSS_TRAILER = "a203020120", "a303020101"


def pss_alg(params_hex: str) -> bytes:
    params = bytes.fromhex(params_hex)
    body = bytes.fromhex("06092a864886f70d01010a") + bytes([0x30, len(params)]) + params
    return bytes([0x30, len(body)]) + body


# RFC 7427 A.4.3 (SHA-256, MGF1-SHA-256, salt 32, trailerField 1 spelled out): a 72-octet SEQUENCE
ALG_PSS_SHA256 = pss_alg(PSS_HASH + PSS_MGF + PSS_SALT32 + PSS_TRAILER)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ikeauth test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


@dataclass
class Node:
    cert: x509.Certificate
    key: Key


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make(
    cn: str,
    issuer: Node | None,
    key: Key | None = None,
    *,
    ca: bool | None = None,
    path_len: int | None = None,
    key_cert_sign: bool = True,
    san: list[x509.GeneralName] | None = None,
    days: int = 3650,
    pss: bool = False,
    extra: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    subject: x509.Name | None = None,
) -> Node:
    """A certificate valid from T0 - 1 day for `days` days; self-signed when issuer is None."""
    key = key or ec_key()
    subj = subject or name(cn)
    b = (
        x509.CertificateBuilder()
        .subject_name(subj)
        .issuer_name(issuer.cert.subject if issuer else subj)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0 - dt.timedelta(days=1))
        .not_valid_after(T0 + dt.timedelta(days=days))
    )
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None), critical=True)
    if ca:
        ku = x509.KeyUsage(False, False, False, False, False, key_cert_sign, True, False, False)
        b = b.add_extension(ku, critical=True)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    signer = issuer.key if issuer else key
    pad = padding.PSS(padding.MGF1(hashes.SHA256()), 32) if pss else None
    return Node(b.sign(signer, hashes.SHA256(), rsa_padding=pad), key)


@dataclass
class Pki:
    root: Node  # RSA-2048, pathLen 1
    inter: Node  # EC P-256 CA under root, pathLen 0
    rsa_leaf: Node  # RSA-2048 under inter
    ec_leaf: Node  # P-256 under inter
    pss_leaf: Node  # P-256 signed by root with RSASSA-PSS
    rogue: Node  # untrusted CA
    rogue_leaf: Node
    impostor_leaf: Node  # issuer name of root, signed by another key
    by_non_ca: Node  # issued by ec_leaf (basicConstraints CA=false)
    deep_leaf: Node  # under a CA below inter: inter's pathLen 0 is exceeded
    deep_ca: Node
    no_kcs_leaf: Node  # under a CA whose keyUsage lacks keyCertSign
    no_kcs_ca: Node
    cn_only: Node  # CN gw.example.test, no subjectAltName
    p384: ec.EllipticCurvePrivateKey
    p521: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = make("root", None, rsa.generate_private_key(65537, 2048), ca=True, path_len=1)
    inter = make("intermediate", root, ca=True, path_len=0)
    rsa_leaf = make("rsa leaf", inter, rsa.generate_private_key(65537, 2048), ca=False, san=SANS, days=30)
    ec_leaf = make("ec leaf", inter, ca=False, san=SANS, days=30)
    rogue = make("rogue", None, ca=True)
    impostor_ca = make("root", None, rsa.generate_private_key(65537, 2048), ca=True)
    deep_ca = make("deep CA", inter, ca=True)
    no_kcs_ca = make("no keyCertSign", root, ca=True, key_cert_sign=False)
    cn_only = make("", inter, ca=False, subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.example.test")]))
    return Pki(
        root=root,
        inter=inter,
        rsa_leaf=rsa_leaf,
        ec_leaf=ec_leaf,
        pss_leaf=make("pss leaf", root, ca=False, san=SANS, days=30, pss=True),
        rogue=rogue,
        rogue_leaf=make("gw", rogue, ca=False, san=SANS),
        impostor_leaf=make("gw", impostor_ca, ca=False, san=SANS),
        by_non_ca=make("child of a leaf", ec_leaf, ca=False, san=SANS),
        deep_leaf=make("deep leaf", deep_ca, ca=False, san=SANS),
        deep_ca=deep_ca,
        no_kcs_leaf=make("leaf", no_kcs_ca, ca=False, san=SANS),
        no_kcs_ca=no_kcs_ca,
        cn_only=cn_only,
        p384=ec.generate_private_key(ec.SECP384R1()),
        p521=ec.generate_private_key(ec.SECP521R1()),
    )


def key_of(pki: Pki, which: str) -> Key:
    return {"rsa": pki.rsa_leaf.key, "p256": pki.ec_leaf.key, "p384": pki.p384, "p521": pki.p521}[which]


# ---- module hygiene ------------------------------------------------------------------------------------


def test_module_is_pure() -> None:
    tree = ast.parse(inspect.getsource(ikeauth))
    assert ast.get_docstring(tree) and "RFC 7296 §2.15" in (ast.get_docstring(tree) or "")
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"socket", "asyncio", "time", "random", "os"}


def test_registry_values() -> None:
    assert [int(m) for m in AuthMethod] == [1, 2, 3, 9, 10, 11, 14]
    assert [int(t) for t in IdType] == [1, 2, 3, 5, 9, 10, 11]
    assert ikeauth.KEY_PAD == b"Key Pad for IKEv2" and len(ikeauth.KEY_PAD) == 17


# ---- shared key (RFC 7296 §2.15) ------------------------------------------------------------------------


def test_signed_octets_layout() -> None:
    id_body = bytes([IdType.FQDN, 0, 0, 0]) + b"gw.example.test"
    got = ikeauth.signed_octets(b"MSG", b"NONCE", hmac_sha256, b"skp", id_body)
    assert got == b"MSG" + b"NONCE" + hmac_sha256(b"skp", id_body)


def test_psk_known_answer_and_mismatch() -> None:
    want = hmac_sha256(hmac_sha256(b"secret", b"Key Pad for IKEv2"), OCTETS)
    assert ikeauth.psk_auth(hmac_sha256, b"secret", OCTETS) == want
    ikeauth.verify_psk(hmac_sha256, b"secret", OCTETS, want)
    for secret, data in [(b"other", want), (b"secret", want[:-1]), (b"secret", b""), (b"secret", want + b"\0")]:
        with pytest.raises(AuthError):
            ikeauth.verify_psk(hmac_sha256, secret, OCTETS, data)


def test_psk_with_the_engine_prf() -> None:
    from mobility.crypto.ikeprf import Prf

    want = hmac_sha256(hmac_sha256(b"secret", ikeauth.KEY_PAD), OCTETS)
    assert ikeauth.psk_auth(Prf(5), b"secret", OCTETS) == want


# ---- signatures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "method", "hashes_ok", "expect"),
    [
        ("rsa", None, frozenset(), AuthMethod.RSA_SIG),
        ("p256", None, frozenset(), AuthMethod.ECDSA_256),
        ("p384", None, frozenset(), AuthMethod.ECDSA_384),
        ("p521", None, frozenset(), AuthMethod.ECDSA_521),
        ("rsa", None, frozenset({1}), AuthMethod.RSA_SIG),  # SHA-1 only: no method 14
        ("rsa", None, frozenset({2}), AuthMethod.DIGITAL_SIGNATURE),
        ("p256", None, frozenset({1, 2, 3, 4}), AuthMethod.DIGITAL_SIGNATURE),
        ("rsa", AuthMethod.DIGITAL_SIGNATURE, frozenset(), AuthMethod.DIGITAL_SIGNATURE),
        ("p384", AuthMethod.DIGITAL_SIGNATURE, frozenset({4}), AuthMethod.DIGITAL_SIGNATURE),
        ("p256", AuthMethod.ECDSA_256, frozenset({2}), AuthMethod.ECDSA_256),
    ],
)
def test_sign_verify_round_trip_and_tampering(
    pki: Pki, which: str, method: AuthMethod | None, hashes_ok: frozenset[int], expect: AuthMethod
) -> None:
    key = key_of(pki, which)
    m, sig = ikeauth.sign(key, OCTETS, method=method, hashes_ok=hashes_ok)
    assert m == expect
    ikeauth.verify_signature(key.public_key(), m, sig, OCTETS)
    if m in (AuthMethod.ECDSA_256, AuthMethod.ECDSA_384, AuthMethod.ECDSA_521):
        assert len(sig) == {9: 64, 10: 96, 11: 132}[m]  # r|s, RFC 4754 §7
    tampered = [(sig, OCTETS + b"x"), (sig[:-1] + bytes([sig[-1] ^ 1]), OCTETS), (sig[:-1], OCTETS)]
    for bad_sig, octets in tampered:
        with pytest.raises(AuthError):
            ikeauth.verify_signature(key.public_key(), m, bad_sig, octets)
    wrong_keys = [pki.root.key.public_key(), pki.inter.key.public_key(), pki.p384.public_key()]
    for wrong in (k for k in wrong_keys if k != key.public_key()):
        with pytest.raises(AuthError):
            ikeauth.verify_signature(wrong, m, sig, OCTETS)


@pytest.mark.parametrize(
    ("hashes_ok", "rsa_alg", "ecdsa_alg"),
    [
        (frozenset({2}), "300d06092a864886f70d01010b0500", "300a06082a8648ce3d040302"),
        (frozenset({3, 4}), "300d06092a864886f70d01010c0500", "300a06082a8648ce3d040303"),
        (frozenset({4}), "300d06092a864886f70d01010d0500", "300a06082a8648ce3d040304"),
        (frozenset({2, 3, 4}), "300d06092a864886f70d01010b0500", "300a06082a8648ce3d040302"),
    ],
)
def test_method14_hash_follows_the_peer(pki: Pki, hashes_ok: frozenset[int], rsa_alg: str, ecdsa_alg: str) -> None:
    for key, alg in [(pki.rsa_leaf.key, rsa_alg), (pki.ec_leaf.key, ecdsa_alg)]:
        m, data = ikeauth.sign(key, OCTETS, hashes_ok=hashes_ok)
        assert m == AuthMethod.DIGITAL_SIGNATURE
        assert data[1 : 1 + data[0]].hex() == alg
        ikeauth.verify_signature(key.public_key(), m, data, OCTETS)


def test_method14_rsa_is_pkcs1v15_sha256_with_rfc7427_algorithm_identifier(pki: Pki) -> None:
    m, data = ikeauth.sign(pki.rsa_leaf.key, OCTETS, hashes_ok=frozenset({2}))
    assert m == AuthMethod.DIGITAL_SIGNATURE
    assert data[0] == 15 and data[1:16] == bytes.fromhex("300d06092a864886f70d01010b0500")
    pub = pki.rsa_leaf.cert.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    pub.verify(data[16:], OCTETS, padding.PKCS1v15(), hashes.SHA256())  # cryptography's own check
    digest_info = pub.recover_data_from_signature(data[16:], padding.PKCS1v15(), None)
    assert digest_info == bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(OCTETS).digest()


def test_method14_ecdsa_is_der_ecdsa_sig_value(pki: Pki) -> None:
    _, data = ikeauth.sign(pki.ec_leaf.key, OCTETS, method=AuthMethod.DIGITAL_SIGNATURE)
    assert data[0] == len(ALG_ECDSA_SHA256) and data[1 : 1 + data[0]] == ALG_ECDSA_SHA256
    der = data[1 + data[0] :]
    decode_dss_signature(der)
    pub = pki.ec_leaf.key.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(der, OCTETS, ec.ECDSA(hashes.SHA256()))


def digital_signature(alg: bytes, sig: bytes) -> bytes:
    return bytes([len(alg)]) + alg + sig


def test_method14_rsassa_pss(pki: Pki) -> None:
    key = pki.rsa_leaf.key
    assert isinstance(key, rsa.RSAPrivateKey)
    assert len(ALG_PSS_SHA256) == 72 and ALG_PSS_SHA256[:4].hex() == "30460609"
    sig = key.sign(OCTETS, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    for alg in (ALG_PSS_SHA256, pss_alg(PSS_HASH + PSS_MGF + PSS_SALT32)):  # trailerField present or absent
        ikeauth.verify_signature(key.public_key(), 14, digital_signature(alg, sig), OCTETS)
    sha1 = "300906052b0e03021a0500"
    bad = [
        pss_alg(PSS_HASH + PSS_MGF + "a203020114" + PSS_TRAILER),  # parameters claim salt 20, signature used 32
        pss_alg(PSS_HASH + PSS_MGF + PSS_SALT32 + "a303020102"),  # trailerField 2
        pss_alg(PSS_MGF + PSS_HASH + PSS_SALT32),  # fields out of order
        pss_alg(PSS_HASH + PSS_MGF.replace("300d06096086480165030402010500", sha1).replace("a11c301a", "a1183016")),
        pss_alg(PSS_MGF + PSS_SALT32),  # hash absent: SHA-1
        pss_alg(""),  # all defaults: SHA-1
        bytes.fromhex("300b06092a864886f70d01010a"),  # no parameters
    ]
    for alg in bad:
        with pytest.raises(AuthError):
            ikeauth.verify_signature(key.public_key(), 14, digital_signature(alg, sig), OCTETS)
    sig20 = key.sign(OCTETS, padding.PSS(padding.MGF1(hashes.SHA256()), 20), hashes.SHA256())
    ikeauth.verify_signature(key.public_key(), 14, digital_signature(pss_alg(PSS_HASH + PSS_MGF), sig20), OCTETS)


def test_method14_refuses_sha1(pki: Pki) -> None:
    """RFC 8247: sha1WithRSAEncryption and ecdsa-with-SHA1 are not acceptable, even with a valid signature."""
    rkey, ekey = pki.rsa_leaf.key, pki.ec_leaf.key
    assert isinstance(rkey, rsa.RSAPrivateKey) and isinstance(ekey, ec.EllipticCurvePrivateKey)
    rsa_sha1 = digital_signature(
        bytes.fromhex("300d06092a864886f70d0101050500"), rkey.sign(OCTETS, padding.PKCS1v15(), hashes.SHA1())
    )
    ecdsa_sha1 = digital_signature(bytes.fromhex("300906072a8648ce3d0401"), ekey.sign(OCTETS, ec.ECDSA(hashes.SHA1())))
    for pub, data in [(rkey.public_key(), rsa_sha1), (ekey.public_key(), ecdsa_sha1)]:
        with pytest.raises(AuthError, match="SHA-1"):
            ikeauth.verify_signature(pub, 14, data, OCTETS)


def test_method14_parsing_is_strict(pki: Pki) -> None:
    rkey, ekey = pki.rsa_leaf.key, pki.ec_leaf.key
    _, rsa_data = ikeauth.sign(rkey, OCTETS, method=AuthMethod.DIGITAL_SIGNATURE)
    _, ec_data = ikeauth.sign(ekey, OCTETS, method=AuthMethod.DIGITAL_SIGNATURE)
    rsa_sig, ec_sig = rsa_data[16:], ec_data[13:]
    no_null = bytes.fromhex("300b06092a864886f70d01010b")  # RFC 4055: absent parameters are accepted
    ikeauth.verify_signature(rkey.public_key(), 14, digital_signature(no_null, rsa_sig), OCTETS)
    bad = [
        (rkey, bytes([16]) + ALG_RSA_SHA256 + rsa_sig),  # length byte covers a signature octet
        (rkey, bytes([14]) + ALG_RSA_SHA256 + rsa_sig),  # length byte too short
        (rkey, digital_signature(bytes.fromhex("30810d06092a864886f70d01010b0500"), rsa_sig)),  # non-minimal length
        (rkey, digital_signature(bytes.fromhex("300e06092a864886f70d01010b050000"), rsa_sig)),  # junk after NULL
        (rkey, digital_signature(bytes.fromhex("300f06092a864886f70d01010b0402abcd"), rsa_sig)),  # wrong params
        (rkey, digital_signature(ALG_RSA_SHA256 + b"\x00", rsa_sig)),  # trailing octet inside the length
        (ekey, digital_signature(bytes.fromhex("300c06082a8648ce3d0403020500"), ec_sig)),  # ECDSA params present
        (ekey, digital_signature(ALG_RSA_SHA256, ec_sig)),  # RSA algorithm, EC key
        (rkey, digital_signature(ALG_ECDSA_SHA256, rsa_sig)),  # EC algorithm, RSA key
        (rkey, digital_signature(ALG_RSA_SHA256, b"")),  # no signature
        (rkey, b""),
        (rkey, b"\x00"),
    ]
    for key, data in bad:
        with pytest.raises(AuthError):
            ikeauth.verify_signature(key.public_key(), 14, data, OCTETS)


def test_methods_must_fit_keys(pki: Pki) -> None:
    _, sig9 = ikeauth.sign(pki.ec_leaf.key, OCTETS)
    with pytest.raises(AuthError):  # a P-256 signature presented as method 10 (P-384)
        ikeauth.verify_signature(pki.ec_leaf.key.public_key(), 10, sig9, OCTETS)
    _, sig1 = ikeauth.sign(pki.rsa_leaf.key, OCTETS)
    for method in (2, 3, 9, 0, 255):
        with pytest.raises(AuthError):
            ikeauth.verify_signature(pki.rsa_leaf.key.public_key(), method, sig1, OCTETS)
    for key in (None, b"key", ed25519.Ed25519PrivateKey.generate().public_key()):
        with pytest.raises(AuthError):
            ikeauth.verify_signature(key, 14, sig1, OCTETS)
    with pytest.raises(ValueError):
        ikeauth.sign(pki.rsa_leaf.key, OCTETS, method=AuthMethod.ECDSA_256)
    with pytest.raises(ValueError):
        ikeauth.sign(pki.ec_leaf.key, OCTETS, method=AuthMethod.ECDSA_384)
    with pytest.raises(ValueError):
        ikeauth.sign(pki.ec_leaf.key, OCTETS, method=AuthMethod.SHARED_KEY)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), which=st.sampled_from(["rsa", "p256"]))
def test_garbage_method14_raises_only_auth_error(pki: Pki, data: bytes, which: str) -> None:
    with pytest.raises(AuthError):
        ikeauth.verify_signature(key_of(pki, which).public_key(), 14, data, OCTETS)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), method=st.integers(0, 255), which=st.sampled_from(["rsa", "p256", "p521"]))
def test_garbage_any_method_raises_only_auth_error(pki: Pki, data: bytes, method: int, which: str) -> None:
    with pytest.raises(AuthError):
        ikeauth.verify_signature(key_of(pki, which).public_key(), method, data, OCTETS)


@settings(max_examples=200, deadline=None)
@given(which=st.sampled_from(["rsa", "p256"]), pos=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_changed_octet_of_method14_data_fails(pki: Pki, which: str, pos: int, flip: int) -> None:
    key = key_of(pki, which)
    _, data = ikeauth.sign(key, OCTETS, method=AuthMethod.DIGITAL_SIGNATURE)
    i = pos % len(data)
    with pytest.raises(AuthError):
        ikeauth.verify_signature(key.public_key(), 14, data[:i] + bytes([data[i] ^ flip]) + data[i + 1 :], OCTETS)


# ---- certificate paths ------------------------------------------------------------------------------


def test_valid_chains(pki: Pki) -> None:
    anchors = [pki.root.cert]
    ikeauth.validate_chain(pki.ec_leaf.cert, [pki.inter.cert], anchors, now=T0)
    ikeauth.validate_chain(pki.rsa_leaf.cert, [pki.rogue.cert, pki.inter.cert], anchors, now=T0)  # extra cert
    ikeauth.validate_chain(pki.pss_leaf.cert, [], anchors, now=T0)  # RSASSA-PSS certificate signature
    ikeauth.validate_chain(pki.root.cert, [], anchors, now=T0)  # the end entity is an anchor
    ikeauth.validate_chain(pki.ec_leaf.cert, [], [pki.rogue.cert, pki.inter.cert], now=T0)  # intermediate anchor
    ikeauth.validate_chain(pki.ec_leaf.cert, [pki.inter.cert, pki.root.cert], anchors, now=T0)  # peer sent the root


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing intermediate", "no trusted issuer"),
        ("untrusted CA", "no trusted issuer"),
        ("impostor CA", "InvalidSignature"),
        ("expired leaf", "not valid at"),
        ("not yet valid", "not valid at"),
        ("issuer is not a CA", "not a CA"),
        ("pathLen exceeded", "pathLenConstraint"),
        ("keyUsage without keyCertSign", "keyCertSign"),
        ("no anchors", "no trusted issuer"),
    ],
)
def test_invalid_chains(pki: Pki, case: str, match: str) -> None:
    anchors = [pki.root.cert]
    leaf_end = pki.ec_leaf.cert.not_valid_after_utc
    cert, inter, now = {
        "missing intermediate": (pki.ec_leaf.cert, [], T0),
        "untrusted CA": (pki.rogue_leaf.cert, [pki.rogue.cert], T0),
        "impostor CA": (pki.impostor_leaf.cert, [], T0),
        "expired leaf": (pki.ec_leaf.cert, [pki.inter.cert], leaf_end + dt.timedelta(seconds=1)),
        "not yet valid": (pki.ec_leaf.cert, [pki.inter.cert], T0 - dt.timedelta(days=2)),
        "issuer is not a CA": (pki.by_non_ca.cert, [pki.ec_leaf.cert, pki.inter.cert], T0),
        "pathLen exceeded": (pki.deep_leaf.cert, [pki.deep_ca.cert, pki.inter.cert], T0),
        "keyUsage without keyCertSign": (pki.no_kcs_leaf.cert, [pki.no_kcs_ca.cert], T0),
        "no anchors": (pki.ec_leaf.cert, [pki.inter.cert], T0),
    }[case]
    with pytest.raises(AuthError, match=match):
        ikeauth.validate_chain(cert, inter, [] if case == "no anchors" else anchors, now=now)


def test_chain_length_is_bounded() -> None:
    root = make("long root", None, ca=True)
    cas = [root]
    for i in range(4):
        cas.append(make(f"ca{i}", cas[-1], ca=True))
    leaf = make("long leaf", cas[-1], ca=False)
    inters = [c.cert for c in cas[1:]]
    with pytest.raises(AuthError, match="too long"):  # 4 intermediates
        ikeauth.validate_chain(leaf.cert, inters, [root.cert], now=T0)
    short_leaf = make("short leaf", cas[3], ca=False)  # 3 intermediates: the end entity + 3 CAs
    ikeauth.validate_chain(short_leaf.cert, inters[:3], [root.cert], now=T0)


def test_critical_extensions(pki: Pki) -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    server_only = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    ike = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.IPSEC_IKE])
    no_sig = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    anchors = [pki.root.cert]
    for ext, critical, ok in [
        (unknown, True, False),
        (unknown, False, True),
        (server_only, True, False),  # RFC 4945 §5.1.3.12
        (server_only, False, True),
        (ike, True, True),
        (no_sig, True, False),  # keyEncipherment only
    ]:
        leaf = make("ext leaf", pki.inter, ca=False, san=SANS, extra=((ext, critical),))
        if ok:
            ikeauth.validate_chain(leaf.cert, [pki.inter.cert], anchors, now=T0)
        else:
            with pytest.raises(AuthError):
                ikeauth.validate_chain(leaf.cert, [pki.inter.cert], anchors, now=T0)


# ---- identities -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("leaf", ["ec_leaf", "rsa_leaf"])
def test_identity_binding(pki: Pki, leaf: str) -> None:
    c = getattr(pki, leaf).cert
    yes = [
        (IdType.FQDN, b"gw.example.test"),
        (IdType.FQDN, b"GW.Example.TEST"),
        (IdType.RFC822_ADDR, b"mn@example.test"),
        (IdType.RFC822_ADDR, b"mn@EXAMPLE.test"),  # the domain part is case-insensitive
        (IdType.IPV4_ADDR, bytes([192, 0, 2, 7])),
        (IdType.IPV6_ADDR, ip_address("2001:db8::7").packed),
        (IdType.DER_ASN1_DN, c.subject.public_bytes()),
    ]
    no = [
        (IdType.FQDN, b"mn.example.test"),
        (IdType.FQDN, b"example.test"),
        (IdType.FQDN, b""),
        (IdType.FQDN, b"gw.example.test\xff"),
        (IdType.RFC822_ADDR, b"MN@example.test"),  # RFC 5280 §7.5: the local part is exact
        (IdType.RFC822_ADDR, b"gw.example.test"),
        (IdType.IPV4_ADDR, bytes([192, 0, 2, 8])),
        (IdType.IPV4_ADDR, ip_address("2001:db8::7").packed),  # IPv6 bytes under the IPv4 type
        (IdType.IPV6_ADDR, bytes([192, 0, 2, 7])),
        (IdType.IPV6_ADDR, b"\x01\x02"),
        (IdType.DER_ASN1_DN, pki.inter.cert.subject.public_bytes()),
        (IdType.KEY_ID, b"gw.example.test"),
        (IdType.DER_ASN1_GN, b"\x82\x0fgw.example.test"),
        (77, b"gw.example.test"),
    ]
    assert all(ikeauth.id_matches_certificate(c, t, d) for t, d in yes)
    assert not any(ikeauth.id_matches_certificate(c, t, d) for t, d in no)


def test_no_common_name_fallback(pki: Pki) -> None:
    assert not ikeauth.id_matches_certificate(pki.cn_only.cert, IdType.FQDN, b"gw.example.test")
    assert not ikeauth.id_matches_certificate(pki.root.cert, IdType.FQDN, b"root")


def test_wildcards_are_not_expanded(pki: Pki) -> None:
    wild = make("wild", pki.inter, ca=False, san=[x509.DNSName("*.example.test")])
    assert not ikeauth.id_matches_certificate(wild.cert, IdType.FQDN, b"gw.example.test")


@pytest.mark.parametrize("which", ["root", "inter", "rsa_leaf", "pss_leaf"])
def test_certreq_hash_is_sha1_of_spki(pki: Pki, which: str) -> None:
    cert = getattr(pki, which).cert
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ikeauth.certreq_hash(cert) == hashlib.sha1(spki).digest()
    assert len(ikeauth.certreq_hash(cert)) == 20


# ---- loading ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_load_private_key(pki: Pki, fmt: serialization.PrivateFormat) -> None:
    for key in (pki.rsa_leaf.key, pki.ec_leaf.key):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        loaded = ikeauth.load_private_key(pem)
        assert loaded.private_numbers() == key.private_numbers()
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_pem = ed.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted = pki.ec_leaf.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    for bad in (ed_pem, encrypted, b"not a key"):
        with pytest.raises(ValueError):
            ikeauth.load_private_key(bad)


def test_load_certificates(pki: Pki) -> None:
    certs = [pki.ec_leaf.cert, pki.inter.cert, pki.root.cert]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    assert ikeauth.load_certificates(pem) == certs
    assert ikeauth.load_certificates(pki.rsa_leaf.cert.public_bytes(serialization.Encoding.DER)) == [pki.rsa_leaf.cert]
    for bad in (b"", b"\x30\x03\x02\x01\x01", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        with pytest.raises(CertificateFormatError) as ei:
            ikeauth.load_certificates(bad)
        assert isinstance(ei.value, AuthError) and isinstance(ei.value, ValueError)
