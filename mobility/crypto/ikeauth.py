"""IKEv2 peer authentication primitives.

Implements:

* RFC 7296 §2.15 - the signed octets (RealMessage | NonceData | prf(SK_p, RestOfIDPayload)) and the
  shared-key MIC AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>);
* RFC 7296 §3.8 - Authentication Method 1 (RSASSA-PKCS1-v1_5, SHA-1) and the method registry;
* RFC 4754 §7 - ECDSA methods 9, 10, 11 (P-256/SHA-256, P-384/SHA-384, P-521/SHA-512, r|s fixed width);
* RFC 7427 §3, §4, Appendix A - Digital Signature (method 14): 1-octet ASN.1 length | AlgorithmIdentifier |
  signature, with a strict DER parser for the AlgorithmIdentifier (PKCS#1 v1.5 and ECDSA with SHA-2,
  RSASSA-PSS with SHA-2 and MGF1; SHA-1 is refused as RFC 8247 §3.2 requires);
* RFC 7296 §3.5 / RFC 5026 §9.5 - identity-to-certificate binding (subjectAltName only, never a CN fallback);
* RFC 7296 §3.7 - CERTREQ certification authority hashes (SHA-1 of the SubjectPublicKeyInfo);
* X.509 path validation against configured trust anchors (RFC 5280 §6, simplified: signatures, names,
  validity, basicConstraints/pathLen, keyUsage, unknown critical extensions; RFC 4945 §5.1.3.12 EKU rule).

Every verification failure raises AuthError and nothing else, whatever the input bytes. Not implemented:
DSS (method 3), CRL/OCSP checks, name constraints (a critical nameConstraints extension is refused),
Hash and URL certificate encodings.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID

from mobility.crypto import der

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
Prf = Callable[[bytes, bytes], bytes]

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15, 17 octets, no NUL


class AuthMethod(IntEnum):  # RFC 7296 §3.8, RFC 4754 §7, RFC 7427 §3
    RSA_SIG = 1
    SHARED_KEY = 2
    DSS = 3
    ECDSA_256 = 9
    ECDSA_384 = 10
    ECDSA_521 = 11
    DIGITAL_SIGNATURE = 14


class IdType(IntEnum):  # RFC 7296 §3.5
    IPV4_ADDR = 1
    FQDN = 2
    RFC822_ADDR = 3
    IPV6_ADDR = 5
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class AuthError(Exception):
    """The peer did not prove its identity (the reason goes to DEBUG logs only)."""


class CertificateFormatError(AuthError, ValueError):
    """Certificate bytes that do not parse: an AuthError for the engine, a ValueError for configuration loading."""


# ---- shared key (RFC 7296 §2.15) --------------------------------------------------------------------


def signed_octets(real_message: bytes, peer_nonce: bytes, prf: Prf, sk_p: bytes, id_body: bytes) -> bytes:
    """RealMessage | NonceData | prf(SK_p, RestOfIDPayload); id_body = ID Type | RESERVED(3) | data."""
    return real_message + peer_nonce + prf(sk_p, id_body)


def psk_auth(prf: Prf, secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)."""
    return prf(prf(secret, KEY_PAD), octets)


def verify_psk(prf: Prf, secret: bytes, octets: bytes, auth_data: bytes) -> None:
    """Raise AuthError unless auth_data is the shared-key MIC of octets (constant-time comparison)."""
    if not hmac.compare_digest(psk_auth(prf, secret, octets), auth_data):
        raise AuthError("shared-key MIC mismatch")


# ---- loading credentials ----------------------------------------------------------------------------


def load_private_key(pem: bytes) -> PrivateKey:
    """An unencrypted RSA or EC private key from PEM (PKCS#8 or traditional); ValueError otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (TypeError, ValueError) as e:  # TypeError: the key is encrypted
        raise ValueError(f"cannot load private key: {e}") from e
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError("only RSA and ECDSA private keys are supported")
    return key


def load_certificates(pem_or_der: bytes) -> list[x509.Certificate]:
    """One or more PEM certificates, or a single DER certificate; CertificateFormatError if they do not parse."""
    try:
        if b"-----BEGIN" in pem_or_der:
            return x509.load_pem_x509_certificates(pem_or_der)
        return [x509.load_der_x509_certificate(pem_or_der)]
    except Exception as e:
        raise CertificateFormatError(f"unparsable certificate: {e}") from e


def load_der_certificate(der: bytes) -> x509.Certificate:
    """Exactly one DER certificate, as a CERT payload of encoding 4 carries it (RFC 7296 §3.6)."""
    try:
        return x509.load_der_x509_certificate(der)
    except Exception as e:
        raise CertificateFormatError(f"unparsable certificate: {e}") from e


# ---- minimal strict DER (RFC 7427 AlgorithmIdentifier, RFC 8017 RSASSA-PSS-params) ----------------


def _tlv(buf: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    return der.tlv(buf, pos, AuthError)


def _elements(buf: bytes) -> list[tuple[int, bytes]]:
    return der.elements(buf, AuthError)


_der = der.encode


def _der_uint(val: bytes) -> int:
    """A non-negative, minimally encoded DER INTEGER of at most 4 octets."""
    if not 1 <= len(val) <= 4 or val[0] & 0x80 or (len(val) > 1 and val[0] == 0 and not val[1] & 0x80):
        raise AuthError("bad DER INTEGER")
    return int.from_bytes(val, "big")


_HashType = type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]
_SEQ, _OID, _INT = 0x30, 0x06, 0x02
_PKCS1 = bytes.fromhex("2a864886f70d0101")  # 1.2.840.113549.1.1
_OID_RSA_SHA: dict[bytes, _HashType] = {
    _PKCS1 + b"\x0b": hashes.SHA256,
    _PKCS1 + b"\x0c": hashes.SHA384,
    _PKCS1 + b"\x0d": hashes.SHA512,
}
_OID_PSS, _OID_MGF1 = _PKCS1 + b"\x0a", _PKCS1 + b"\x08"
_ECDSA_SHA2 = bytes.fromhex("2a8648ce3d0403")  # 1.2.840.10045.4.3
_OID_ECDSA_SHA: dict[bytes, _HashType] = {
    _ECDSA_SHA2 + b"\x02": hashes.SHA256,
    _ECDSA_SHA2 + b"\x03": hashes.SHA384,
    _ECDSA_SHA2 + b"\x04": hashes.SHA512,
}
_NIST_HASH = bytes.fromhex("6086480165030402")  # 2.16.840.1.101.3.4.2
_OID_HASH: dict[bytes, _HashType] = {
    _NIST_HASH + b"\x01": hashes.SHA256,
    _NIST_HASH + b"\x02": hashes.SHA384,
    _NIST_HASH + b"\x03": hashes.SHA512,
}
# SIGNATURE_HASH_ALGORITHMS identifiers (RFC 7427 §4, IANA); 1 (SHA-1) is never used
_HASH_IDS: dict[int, _HashType] = {2: hashes.SHA256, 3: hashes.SHA384, 4: hashes.SHA512}


def _alg_id(der: bytes) -> tuple[bytes, bytes | None]:
    """(OID contents, raw parameters element or None) of one AlgorithmIdentifier that fills der exactly."""
    tag, body, end = _tlv(der)
    if tag != _SEQ or end != len(der):
        raise AuthError("AlgorithmIdentifier is not exactly one SEQUENCE")
    otag, oid, pos = _tlv(body)
    if otag != _OID or not oid:
        raise AuthError("AlgorithmIdentifier without an OBJECT IDENTIFIER")
    if pos == len(body):
        return oid, None
    _, _, pend = _tlv(body, pos)
    if pend != len(body):
        raise AuthError("junk after the AlgorithmIdentifier parameters")
    return oid, body[pos:]


def _hash_alg(der: bytes) -> _HashType:
    """A SHA-2 HashAlgorithm AlgorithmIdentifier (parameters NULL or absent, RFC 4055 §2.1)."""
    oid, params = _alg_id(der)
    if oid not in _OID_HASH or params not in (None, b"\x05\x00"):
        raise AuthError("unsupported hash in RSASSA-PSS parameters")
    return _OID_HASH[oid]


def _pss_params(der: bytes | None) -> tuple[_HashType, int]:
    """RSASSA-PSS-params (RFC 8017 A.2.3): SHA-2 hash, MGF1 with the same hash, explicit salt, trailer 1."""
    if der is None:
        raise AuthError("RSASSA-PSS without parameters means SHA-1")
    tag, body, _ = _tlv(der)
    elements = _elements(body) if tag == _SEQ else []
    fields = dict(elements)
    if [t for t, _ in elements] != sorted(fields):
        raise AuthError("RSASSA-PSS parameters out of order or repeated")
    if not {0xA0, 0xA1}.issubset(fields) or not set(fields) <= {0xA0, 0xA1, 0xA2, 0xA3}:
        raise AuthError("RSASSA-PSS parameters need an explicit SHA-2 hash and MGF")
    h = _hash_alg(fields[0xA0])
    mgf, mgf_hash = _alg_id(fields[0xA1])
    if mgf != _OID_MGF1 or mgf_hash is None or _hash_alg(mgf_hash) is not h:
        raise AuthError("RSASSA-PSS MGF must be MGF1 with the signature hash")
    salt = 20
    if 0xA2 in fields:
        stag, sval, send = _tlv(fields[0xA2])
        salt = _der_uint(sval) if stag == _INT and send == len(fields[0xA2]) else -1
    if salt < 0 or fields.get(0xA3, b"\x02\x01\x01") != b"\x02\x01\x01":
        raise AuthError("bad RSASSA-PSS salt length or trailer field")
    return h, salt


def _parse_digital_signature(data: bytes) -> tuple[str, hashes.HashAlgorithm, int, bytes]:
    """(scheme, hash, PSS salt length, signature) of method 14 authentication data (RFC 7427 §3)."""
    if len(data) < 2 or len(data) < 1 + data[0] + 1:
        raise AuthError("truncated Digital Signature authentication data")
    oid, params = _alg_id(data[1 : 1 + data[0]])
    sig = data[1 + data[0] :]
    if oid in _OID_RSA_SHA and params in (None, b"\x05\x00"):
        return "pkcs1", _OID_RSA_SHA[oid](), 0, sig
    if oid in _OID_ECDSA_SHA and params is None:
        return "ecdsa", _OID_ECDSA_SHA[oid](), 0, sig
    if oid == _OID_PSS:
        h, salt = _pss_params(params)
        return "pss", h(), salt, sig
    raise AuthError(f"signature algorithm {oid.hex()} not accepted (SHA-1 is refused, RFC 8247)")


# ---- signing ------------------------------------------------------------------------------------------

_ECDSA_METHODS: dict[int, tuple[_HashType, int, str]] = {  # RFC 4754 §7
    AuthMethod.ECDSA_256: (hashes.SHA256, 32, "secp256r1"),
    AuthMethod.ECDSA_384: (hashes.SHA384, 48, "secp384r1"),
    AuthMethod.ECDSA_521: (hashes.SHA512, 66, "secp521r1"),
}


def _digital_signature(key: PrivateKey, octets: bytes, hashes_ok: frozenset[int]) -> bytes:
    """Method 14 data with the first of SHA-256, SHA-384, SHA-512 the peer announced (SHA-256 if none)."""
    hid = next((i for i in (2, 3, 4) if i in hashes_ok), 2)
    h = _HASH_IDS[hid]
    if isinstance(key, rsa.RSAPrivateKey):
        oid = next(o for o, c in _OID_RSA_SHA.items() if c is h)
        alg, sig = _der(_SEQ, _der(_OID, oid) + b"\x05\x00"), key.sign(octets, padding.PKCS1v15(), h())
    else:
        oid = next(o for o, c in _OID_ECDSA_SHA.items() if c is h)
        alg, sig = _der(_SEQ, _der(_OID, oid)), key.sign(octets, ec.ECDSA(h()))
    return bytes([len(alg)]) + alg + sig


def _ecdsa_method(key: ec.EllipticCurvePrivateKey, method: AuthMethod | None) -> AuthMethod:
    for m, (_, _, curve) in _ECDSA_METHODS.items():
        if key.curve.name == curve and method in (None, m):
            return AuthMethod(m)
    raise ValueError(f"method {method} cannot be used with an ECDSA {key.curve.name} key")


def sign(
    key: PrivateKey, octets: bytes, *, method: AuthMethod | None = None, hashes_ok: frozenset[int] = frozenset()
) -> tuple[AuthMethod, bytes]:
    """(method, AUTH data): method 14 when asked or when the peer announced a SHA-2 hash (RFC 7427 §4),
    else RSA -> 1 (PKCS#1 v1.5, SHA-1), EC P-256/384/521 -> 9/10/11 (r|s). ValueError if method does not fit key."""
    if method is None and hashes_ok & {2, 3, 4}:
        method = AuthMethod.DIGITAL_SIGNATURE
    if method == AuthMethod.DIGITAL_SIGNATURE:
        return method, _digital_signature(key, octets, hashes_ok)
    if isinstance(key, rsa.RSAPrivateKey):
        if method not in (None, AuthMethod.RSA_SIG):
            raise ValueError(f"method {method} cannot be used with an RSA key")
        return AuthMethod.RSA_SIG, key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
    m = _ecdsa_method(key, method)
    hcls, size, _ = _ECDSA_METHODS[m]
    r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(hcls())))
    return m, r.to_bytes(size, "big") + s.to_bytes(size, "big")


# ---- verification -------------------------------------------------------------------------------------


def verify_signature(public_key: object, method: int, auth_data: bytes, octets: bytes) -> None:
    """Raise AuthError unless auth_data is public_key's signature of octets under method 1, 9, 10, 11 or 14.
    Nothing else ever escapes, whatever the key object or the bytes."""
    try:
        _verify(public_key, method, auth_data, octets)
    except AuthError:
        raise
    except Exception as e:  # InvalidSignature, ValueError from the backend, ...: all mean "not authenticated"
        raise AuthError(f"signature (method {method}) does not verify: {type(e).__name__}") from e


def _verify(pub: object, method: int, data: bytes, octets: bytes) -> None:
    if method == AuthMethod.DIGITAL_SIGNATURE:
        scheme, h, salt, sig = _parse_digital_signature(data)
        if scheme == "ecdsa" and isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, octets, ec.ECDSA(h))
        elif scheme == "pkcs1" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(sig, octets, padding.PKCS1v15(), h)
        elif scheme == "pss" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(sig, octets, padding.PSS(padding.MGF1(h), salt), h)
        else:
            raise AuthError(f"{scheme} signature with a {type(pub).__name__}")
    elif method == AuthMethod.RSA_SIG and isinstance(pub, rsa.RSAPublicKey):
        pub.verify(data, octets, padding.PKCS1v15(), hashes.SHA1())  # §3.8: SHA-1 is method 1's hash
    elif method in _ECDSA_METHODS and isinstance(pub, ec.EllipticCurvePublicKey):
        hcls, size, curve = _ECDSA_METHODS[method]
        if pub.curve.name != curve or len(data) != 2 * size:
            raise AuthError("ECDSA signature of the wrong size or curve")
        der = encode_dss_signature(int.from_bytes(data[:size], "big"), int.from_bytes(data[size:], "big"))
        pub.verify(der, octets, ec.ECDSA(hcls()))
    else:
        raise AuthError(f"authentication method {method} does not fit a {type(pub).__name__}")


# ---- certificate path validation ----------------------------------------------------------------------

_MAX_INTERMEDIATES = 3  # up to 4 certificates from the peer: end entity + 3 CAs (the anchor is ours)
_CERT_HASHES = (hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512)
_PROCESSED = (
    x509.BasicConstraints,
    x509.KeyUsage,
    x509.ExtendedKeyUsage,
    x509.SubjectAlternativeName,
    x509.CertificatePolicies,
    x509.SubjectKeyIdentifier,
    x509.AuthorityKeyIdentifier,
)
_IKE_EKUS = {ExtendedKeyUsageOID.IPSEC_IKE, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}


def validate_chain(
    end_entity: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    now: datetime,
) -> None:
    """Raise AuthError unless end_entity chains to one of anchors through at most 3 of intermediates
    (signatures, names, validity at now, basicConstraints/pathLen, keyUsage). An anchor itself is accepted."""
    try:
        if any(end_entity == a for a in anchors):  # directly trusted: only its validity matters
            _check_common(end_entity, now)
            return
        _check_end_entity(end_entity, now)
        _find_path(end_entity, tuple(intermediates), tuple(anchors), now, 0)
    except AuthError:
        raise
    except Exception as e:  # malformed extensions, unsupported algorithms, ...
        raise AuthError(f"certificate chain does not verify: {type(e).__name__}: {e}") from e


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "<empty subject>"


def _check_common(cert: x509.Certificate, now: datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthError(f"certificate {_name(cert)} not valid at {now.isoformat()}")
    for ext in cert.extensions:
        if ext.critical and not isinstance(ext.value, _PROCESSED):
            raise AuthError(f"certificate {_name(cert)} has unprocessed critical extension {ext.oid.dotted_string}")


def _check_end_entity(cert: x509.Certificate, now: datetime) -> None:
    """Validity, a usable RSA/EC key, keyUsage digitalSignature|nonRepudiation (RFC 4945 §5.1.3.2) and EKU."""
    _check_common(cert, now)
    if not isinstance(cert.public_key(), (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise AuthError(f"certificate {_name(cert)} does not carry an RSA or EC key")
    exts = cert.extensions
    ku = next((e.value for e in exts if isinstance(e.value, x509.KeyUsage)), None)
    if ku is not None and not (ku.digital_signature or ku.content_commitment):
        raise AuthError(f"certificate {_name(cert)} keyUsage does not allow signatures")
    eku = next((e for e in exts if isinstance(e.value, x509.ExtendedKeyUsage)), None)
    if eku is not None and eku.critical and not _IKE_EKUS & set(eku.value):
        raise AuthError(f"certificate {_name(cert)} critical extendedKeyUsage excludes IKE (RFC 4945 §5.1.3.12)")


def _find_path(
    cert: x509.Certificate,
    pool: tuple[x509.Certificate, ...],
    anchors: tuple[x509.Certificate, ...],
    now: datetime,
    depth: int,
) -> None:
    """Find an issuer of cert: an anchor (done) or an intermediate (then its own issuer), trying every name match."""
    reasons: list[str] = []
    for issuer in (a for a in anchors if a.subject == cert.issuer):
        try:
            _check_issued(cert, issuer, depth, now)
            return
        except AuthError as e:
            reasons.append(str(e))
    if depth < _MAX_INTERMEDIATES:
        for issuer in (c for c in pool if c.subject == cert.issuer and c != cert):
            try:
                _check_issued(cert, issuer, depth, now)
                _find_path(issuer, tuple(c for c in pool if c is not issuer), anchors, now, depth + 1)
                return
            except AuthError as e:
                reasons.append(str(e))
    elif any(c.subject == cert.issuer for c in pool):
        reasons.append("certificate chain too long")
    raise AuthError(reasons[0] if reasons else f"no trusted issuer for {_name(cert)}")


def _check_issued(cert: x509.Certificate, issuer: x509.Certificate, depth: int, now: datetime) -> None:
    """issuer is a CA allowed to sign here (depth CA certificates lie below it) and its signature on cert holds."""
    _check_common(issuer, now)
    bc = next((e.value for e in issuer.extensions if isinstance(e.value, x509.BasicConstraints)), None)
    if bc is None or not bc.ca:
        raise AuthError(f"{_name(issuer)} is not a CA")
    if bc.path_length is not None and depth > bc.path_length:
        raise AuthError(f"{_name(issuer)} pathLenConstraint {bc.path_length} exceeded")
    ku = next((e.value for e in issuer.extensions if isinstance(e.value, x509.KeyUsage)), None)
    if ku is not None and not ku.key_cert_sign:
        raise AuthError(f"{_name(issuer)} keyUsage lacks keyCertSign")
    check_issued_by(cert, issuer)


def check_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """cert's signature verifies with issuer's key (RSA PKCS#1 v1.5 or PSS, ECDSA; SHA-2), else AuthError."""
    h, pub, params = cert.signature_hash_algorithm, issuer.public_key(), cert.signature_algorithm_parameters
    if not isinstance(h, _CERT_HASHES):
        raise AuthError(f"certificate {_name(cert)} signed with {h.name if h else 'no hash'}")
    try:
        if isinstance(pub, rsa.RSAPublicKey) and isinstance(params, (padding.PKCS1v15, padding.PSS)):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, params, h)
        elif isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, params)
        else:
            raise AuthError(f"signature of {_name(cert)} does not fit the key of {_name(issuer)}")
    except InvalidSignature as e:
        raise AuthError(f"signature of {_name(cert)} by {_name(issuer)} does not verify (InvalidSignature)") from e


# ---- identities ---------------------------------------------------------------------------------------


def id_matches_certificate(cert: x509.Certificate, id_type: int, id_data: bytes) -> bool:
    """Whether cert binds the IKE identity (RFC 7296 §3.5, RFC 5026 §9.5): FQDN, RFC822 and IP addresses
    only through subjectAltName (never the CN), DER_ASN1_DN by exact subject DER; other types never."""
    try:
        if id_type == IdType.DER_ASN1_DN:
            return _tbs_fields(cert)[4] == id_data  # the subject exactly as the certificate encodes it
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if id_type == IdType.FQDN:
            want = id_data.decode("ascii").lower()
            return bool(want) and any(n.lower() == want for n in san.get_values_for_type(x509.DNSName))
        if id_type == IdType.RFC822_ADDR:
            return any(_same_mailbox(n, id_data.decode("ascii")) for n in san.get_values_for_type(x509.RFC822Name))
        if id_type == IdType.IPV4_ADDR and len(id_data) == 4:
            return IPv4Address(id_data) in san.get_values_for_type(x509.IPAddress)
        if id_type == IdType.IPV6_ADDR and len(id_data) == 16:
            return IPv6Address(id_data) in san.get_values_for_type(x509.IPAddress)
    except (x509.ExtensionNotFound, AuthError, ValueError):  # UnicodeDecodeError is a ValueError
        return False
    return False


def _same_mailbox(a: str, b: str) -> bool:
    """RFC 5280 §7.5: the local part compares exactly, the domain case-insensitively."""
    la, _, da = a.rpartition("@")
    lb, _, db = b.rpartition("@")
    return bool(la) and la == lb and da.lower() == db.lower()


def certreq_hash(cert: x509.Certificate) -> bytes:
    """SHA-1 of the certificate's SubjectPublicKeyInfo as encoded in it (RFC 7296 §3.7), 20 octets."""
    return hashlib.sha1(_tbs_fields(cert)[5]).digest()


def _tbs_fields(cert: x509.Certificate) -> list[bytes]:
    """The raw serialNumber, signature, issuer, validity, subject and subjectPublicKeyInfo elements (RFC 5280 §4.1)."""
    _, body, _ = _tlv(cert.tbs_certificate_bytes)
    pos, fields = 0, list[bytes]()
    while len(fields) < 6:
        start = pos
        tag, _, pos = _tlv(body, pos)
        if not (tag == 0xA0 and start == 0):  # the optional [0] version
            fields.append(body[start:pos])
    return fields
