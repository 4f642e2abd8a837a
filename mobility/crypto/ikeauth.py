"""IKEv2 peer authentication primitives: the signed octets (RFC 7296 §2.15), shared-key MIC (§2.15),
RSA PKCS#1 v1.5 signatures (method 1, §3.8), ECDSA with SHA-2 (methods 9-11, RFC 4754 §7: r|s),
Digital Signature (method 14, RFC 7427 §3: ASN.1 length | AlgorithmIdentifier | signature), X.509
chain validation against configured trust anchors, and identity-to-certificate matching (RFC 7296
§3.5; RFC 5026 §9.5 needs the FQDN in subjectAltName).

Every verification failure raises AuthError and nothing else. Not implemented: DSS (3), CRL/OCSP
checks, Hash and URL certificate encodings.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address, ip_address

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

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


# RFC 7427 Appendix A AlgorithmIdentifier encodings -> (hash, scheme)
_ALG_IDS: dict[bytes, tuple[hashes.HashAlgorithm, str]] = {
    bytes.fromhex("300d06092a864886f70d01010b0500"): (hashes.SHA256(), "rsa"),
    bytes.fromhex("300d06092a864886f70d01010c0500"): (hashes.SHA384(), "rsa"),
    bytes.fromhex("300d06092a864886f70d01010d0500"): (hashes.SHA512(), "rsa"),
    bytes.fromhex("300a06082a8648ce3d040302"): (hashes.SHA256(), "ecdsa"),
    bytes.fromhex("300a06082a8648ce3d040303"): (hashes.SHA384(), "ecdsa"),
    bytes.fromhex("300a06082a8648ce3d040304"): (hashes.SHA512(), "ecdsa"),
    # RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 (RFC 7427 A.4.3)
    bytes.fromhex(
        "3046"
        "06092a864886f70d01010a"
        "3039a00f300d06096086480165030402010500a11c301a06092a864886f70d010108"
        "300d06096086480165030402010500a203020120"
    ): (hashes.SHA256(), "pss"),
}
_BY_SCHEME = {(type(h).__name__, s): alg for alg, (h, s) in _ALG_IDS.items()}
_HASH_IDS = {2: hashes.SHA256, 3: hashes.SHA384, 4: hashes.SHA512}  # RFC 7427 §7 (SHA1 = 1 refused)
_ECDSA_METHODS = {
    AuthMethod.ECDSA_256: (hashes.SHA256, 32, "secp256r1"),
    AuthMethod.ECDSA_384: (hashes.SHA384, 48, "secp384r1"),
    AuthMethod.ECDSA_521: (hashes.SHA512, 66, "secp521r1"),
}


def signed_octets(
    real_message: bytes, peer_nonce: bytes, prf: Callable[[bytes, bytes], bytes], sk_p: bytes, id_body: bytes
) -> bytes:
    """RealMessage | NonceData | prf(SK_p, RestOfIDPayload) (RFC 7296 §2.15)."""
    return real_message + peer_nonce + prf(sk_p, id_body)


def psk_auth(prf: Callable[[bytes, bytes], bytes], secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (§2.15)."""
    return prf(prf(secret, KEY_PAD), octets)


def verify_psk(prf: Callable[[bytes, bytes], bytes], secret: bytes, octets: bytes, auth_data: bytes) -> None:
    if not hmac.compare_digest(psk_auth(prf, secret, octets), auth_data):
        raise AuthError("shared-key MIC mismatch")


def load_private_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError("only RSA and ECDSA private keys are supported")
    return key


def load_certificates(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def sign(
    key: PrivateKey, octets: bytes, *, method: AuthMethod | None = None, hashes_ok: frozenset[int] = frozenset()
) -> tuple[AuthMethod, bytes]:
    """Sign with method 14 when the peer announced SHA-2 hashes (RFC 7427 §4), else 1 / 9-11."""
    if method is None:
        method = AuthMethod.DIGITAL_SIGNATURE if hashes_ok & {2, 3, 4} else None
    if method == AuthMethod.DIGITAL_SIGNATURE:
        h: hashes.HashAlgorithm = hashes.SHA256()
        if isinstance(key, rsa.RSAPrivateKey):
            sig = key.sign(octets, padding.PKCS1v15(), h)
            alg = _BY_SCHEME[("SHA256", "rsa")]
        else:
            sig = key.sign(octets, ec.ECDSA(h))
            alg = _BY_SCHEME[("SHA256", "ecdsa")]
        return method, bytes([len(alg)]) + alg + sig
    if isinstance(key, rsa.RSAPrivateKey):
        return AuthMethod.RSA_SIG, key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
    for m, (hcls, size, curve) in _ECDSA_METHODS.items():
        if key.curve.name == curve:
            r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(hcls())))
            return m, r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(f"no IKEv2 signature method for curve {key.curve.name}")


def verify_signature(public_key: object, method: int, auth_data: bytes, octets: bytes) -> None:
    try:
        _verify(public_key, method, auth_data, octets)
    except AuthError:
        raise
    except (InvalidSignature, ValueError, TypeError, IndexError, UnsupportedAlgorithm) as e:
        raise AuthError(f"signature (method {method}) does not verify: {type(e).__name__}") from e


def _verify(pub: object, method: int, data: bytes, octets: bytes) -> None:
    if method == AuthMethod.DIGITAL_SIGNATURE:
        if not data or len(data) < 1 + data[0]:
            raise AuthError("truncated Digital Signature")
        alg, sig = data[1 : 1 + data[0]], data[1 + data[0] :]
        if alg not in _ALG_IDS:
            raise AuthError("unsupported signature AlgorithmIdentifier")
        h, scheme = _ALG_IDS[alg]
        if scheme == "ecdsa" and isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, octets, ec.ECDSA(h))
        elif scheme == "rsa" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(sig, octets, padding.PKCS1v15(), h)
        elif scheme == "pss" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(sig, octets, padding.PSS(padding.MGF1(h), 32), h)
        else:
            raise AuthError(f"{scheme} signature with a {type(pub).__name__}")
        return
    if method == AuthMethod.RSA_SIG and isinstance(pub, rsa.RSAPublicKey):
        pub.verify(data, octets, padding.PKCS1v15(), hashes.SHA1())  # §3.8: SHA-1 is method 1's hash
        return
    if method in _ECDSA_METHODS and isinstance(pub, ec.EllipticCurvePublicKey):
        hcls, size, curve = _ECDSA_METHODS[AuthMethod(method)]
        if pub.curve.name != curve or len(data) != 2 * size:
            raise AuthError("ECDSA signature of the wrong size or curve")
        der = encode_dss_signature(int.from_bytes(data[:size], "big"), int.from_bytes(data[size:], "big"))
        pub.verify(der, octets, ec.ECDSA(hcls()))
        return
    raise AuthError(f"authentication method {method} does not fit a {type(pub).__name__}")


def _verify_issued(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    pub = issuer.public_key()
    h = cert.signature_hash_algorithm
    if h is None:
        raise AuthError("certificate signature without a hash")
    if isinstance(pub, rsa.RSAPublicKey):
        pad = cert.signature_algorithm_parameters
        pub.verify(cert.signature, cert.tbs_certificate_bytes, pad, h)  # type: ignore[arg-type]
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(h))
    else:
        raise AuthError("issuer key type not supported")


def _is_ca(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    if bc.ca:
        try:
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not ku.key_cert_sign:
                return False, None
        except x509.ExtensionNotFound:
            pass
    return bc.ca, bc.path_length


def _valid_at(cert: x509.Certificate, now: datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthError(f"certificate {cert.subject.rfc4514_string()} not valid at {now.isoformat()}")


def validate_chain(
    end_entity: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    now: datetime,
) -> None:
    """end_entity -> intermediates* -> anchor, signatures, names, validity, CA constraints (RFC 5280 §6, simplified)."""
    try:
        _walk(end_entity, list(intermediates), list(anchors), now)
    except AuthError:
        raise
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise AuthError(f"certificate chain does not verify: {type(e).__name__}") from e


def _walk(cert: x509.Certificate, pool: list[x509.Certificate], anchors: list[x509.Certificate], now: datetime) -> None:
    _valid_at(cert, now)
    if any(cert == a for a in anchors):
        return
    below = 0  # CA certificates between the end entity and the current issuer
    for _ in range(5):
        for a in anchors:
            if a.subject == cert.issuer:
                _issuer_ok(a, below, now)
                _verify_issued(cert, a)
                return
        nxt = next((c for c in pool if c.subject == cert.issuer and c != cert), None)
        if nxt is None:
            raise AuthError(f"no trusted issuer for {cert.subject.rfc4514_string()}")
        _issuer_ok(nxt, below, now)
        _verify_issued(cert, nxt)
        pool.remove(nxt)
        cert, below = nxt, below + 1
    raise AuthError("certificate chain too long")


def _issuer_ok(issuer: x509.Certificate, below: int, now: datetime) -> None:
    ca, path_len = _is_ca(issuer)
    if not ca:
        raise AuthError(f"{issuer.subject.rfc4514_string()} is not a CA")
    if path_len is not None and below > path_len:
        raise AuthError("path length constraint exceeded")
    _valid_at(issuer, now)


def id_matches_certificate(cert: x509.Certificate, id_type: int, id_data: bytes) -> bool:
    """The IKE identity must be bound by the certificate (never by a CN fallback)."""
    if id_type == IdType.DER_ASN1_DN:
        return cert.subject.public_bytes() == id_data
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if id_type == IdType.FQDN:
        want = id_data.decode("ascii", "replace").lower()
        return any(n.lower() == want for n in san.get_values_for_type(x509.DNSName))
    if id_type == IdType.RFC822_ADDR:
        want = id_data.decode("ascii", "replace").lower()
        return any(n.lower() == want for n in san.get_values_for_type(x509.RFC822Name))
    if id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR) and len(id_data) in (4, 16):
        addr: IPv4Address | IPv6Address = ip_address(id_data)
        return any(a == addr for a in san.get_values_for_type(x509.IPAddress))
    return False


def certreq_hash(cert: x509.Certificate) -> bytes:
    """SHA-1 of the CA's SubjectPublicKeyInfo (RFC 7296 §3.7)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).digest()
