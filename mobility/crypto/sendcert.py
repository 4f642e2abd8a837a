"""SEND router authorization certificates (RFC 3971 §6.3.1, RFC 6494, RFC 3779).

Implements:

* RFC 3779 §2.2 - the IP Address Delegation extension (``id-pe-ipAddrBlocks``): a DER encoder that emits
  the canonical form (§2.2.3.6 ordering, adjacent blocks merged, §2.2.3.7 prefixes, §2.2.3.9 ranges) and a
  strict decoder (DER lengths, BIT STRING unused bits, family order, canonical IPAddressOrRange order);
  ``pyasn1`` is not a dependency, the handful of ASN.1 types involved is coded by hand;
* RFC 3971 §6.3.1 / RFC 6494 §4, §7, §9 / RFC 3779 §2.3 - validation of a router's certification path as
  it arrives in Certification Path Advertisements (RFC 3971 §6.4.2: the certificate issued by the trust
  anchor first, the router's own last): names, signatures (RSA PKCS#1 v1.5 or ECDSA with SHA-2), validity,
  basicConstraints/pathLenConstraint, keyUsage, unknown critical extensions, resource containment,
  an RSA router key and the id-kp-sendRouter EKU;
* RFC 3971 §6.4.3 - Trust Anchor option Name Type 1 (DER X.501 Name) matching.

Every validation failure raises CertPathError (a ValueError) and nothing else, whatever the input. Not
implemented: CRL/OCSP (acceptance is provisional until checked online, RFC 3971 §6.3.1), name constraints
(a critical nameConstraints extension is refused), SAFI-qualified address families (ignored), the
proxied-router and owner EKUs (RFC 6494 §7: only routers are validated here).

The router's own link-local address is not checked against the certified resources: only the prefixes a
router advertises are (RFC 3971 §6.3.1, §7.3 - prefixes outside the range are treated as unsecured).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, collapse_addresses, summarize_address_range
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from mobility.crypto import der, ikeauth

SEND_ROUTER_EKU = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.23")  # id-kp-sendRouter (RFC 6494 §7)
IP_ADDR_BLOCKS_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.7")  # id-pe-ipAddrBlocks (RFC 3779 §2.2.1)

MAX_PATH_CERTS = 4  # certificates below the trust anchor (the anchor itself is not counted)

_SEQ, _BITS, _OCTETS, _NULL = 0x30, 0x03, 0x04, 0x05
_AFI_IPV4, _AFI_IPV6 = b"\x00\x01", b"\x00\x02"  # IANA address family numbers (RFC 3779 §2.2.3.3)
_V6_BITS = 128
_ALL_V6 = IPv6Network("::/0")
_ROUTER_EKUS = {SEND_ROUTER_EKU, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
_PROCESSED = {
    IP_ADDR_BLOCKS_OID,
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
}


_E = TypeVar("_E", bound=x509.ExtensionType)


class CertPathError(ValueError):
    """A malformed IPAddrBlocks value or a router certification path that must not be accepted."""


# ---- DER ---------------------------------------------------------------------------------------------


def _tlv(buf: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    return der.tlv(buf, pos, CertPathError)


def _elements(buf: bytes) -> list[tuple[int, bytes]]:
    return der.elements(buf, CertPathError)


_der = der.encode


def _bit_string(value: int, nbits: int) -> bytes:
    """BIT STRING of the nbits most significant bits of a 128-bit value, unused bits zero (X.690 §11.2.1)."""
    nbytes = (nbits + 7) // 8
    unused = nbytes * 8 - nbits
    top = value >> (_V6_BITS - nbits) if nbits else 0
    return _der(_BITS, bytes([unused]) + (top << unused).to_bytes(nbytes, "big"))


def _bits(contents: bytes, width: int | None) -> tuple[int, int]:
    """(value, number of bits) of a BIT STRING's contents: at most width bits, unused bits zero (DER)."""
    if not contents:
        raise CertPathError("BIT STRING without its unused-bits octet")
    unused, data = contents[0], contents[1:]
    if unused > 7 or (unused and not data):
        raise CertPathError(f"BIT STRING with bad unused-bits count {unused}")
    if data and data[-1] & ((1 << unused) - 1):
        raise CertPathError("BIT STRING with non-zero unused bits (X.690 §11.2.1)")
    nbits = len(data) * 8 - unused
    if width is not None and nbits > width:
        raise CertPathError(f"IPAddress of {nbits} bits exceeds the {width}-bit address family")
    return int.from_bytes(data, "big") >> unused, nbits


# ---- IPAddrBlocks (RFC 3779 §2.2.3) ------------------------------------------------------------------


def encode_ip_addr_blocks(prefixes: Sequence[IPv6Network]) -> bytes:
    """DER IPAddrBlocks (RFC 3779 §2.2.3) with a single IPv6 IPAddressFamily (addressFamily 00 02) covering
    exactly the given prefixes, in canonical form: overlapping and adjacent blocks merged and sorted by
    their lowest address (§2.2.3.6); a block is an addressPrefix when it is one (§2.2.3.7, §2.2.3.8), an
    addressRange otherwise (§2.2.3.9: min without trailing zero bits, max without trailing one bits).
    An empty sequence raises ValueError: RFC 6494 §4 wants at least one IPv6 block."""
    nets = list(collapse_addresses(IPv6Network(p) for p in prefixes))
    if not nets:
        raise ValueError("at least one IPv6 prefix is needed (RFC 6494 §4)")
    runs: list[list[int]] = []
    for net in nets:  # collapse_addresses sorts; merge blocks that touch into [min, max] runs
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if runs and runs[-1][1] + 1 == lo:
            runs[-1][1] = hi
        else:
            runs.append([lo, hi])
    items = b""
    for lo, hi in runs:
        size = hi - lo + 1
        if size & (size - 1) == 0 and lo % size == 0:  # one prefix (collapse_addresses merged siblings)
            items += _bit_string(lo, _V6_BITS - (size.bit_length() - 1))
        else:
            min_bits = _V6_BITS - ((lo & -lo).bit_length() - 1) if lo else 0  # drop trailing zero bits
            inv = ~hi & ((1 << _V6_BITS) - 1)
            max_bits = _V6_BITS - ((inv & -inv).bit_length() - 1) if inv else 0  # drop trailing one bits
            items += _der(_SEQ, _bit_string(lo, min_bits) + _bit_string(hi, max_bits))
    family = _der(_OCTETS, _AFI_IPV6) + _der(_SEQ, items)
    return _der(_SEQ, _der(_SEQ, family))


def _address_ranges(contents: bytes, width: int | None) -> list[tuple[int, int]]:
    """The [min, max] pairs of an addressesOrRanges SEQUENCE (RFC 3779 §2.2.3.5-§2.2.3.9). With a known
    address width, also the canonical-form rules of §2.2.3.6 (ascending, neither overlapping nor adjacent)
    and §2.2.3.7 (a range that is a prefix must be encoded as one)."""
    if not contents:
        raise CertPathError("empty addressesOrRanges")
    out: list[tuple[int, int]] = []
    for tag, val in _elements(contents):
        if tag == _BITS:  # addressPrefix: the bits not encoded are 0 in the lowest, 1 in the highest address
            value, nbits = _bits(val, width)
            vmin, nmin, vmax, nmax, is_range = value, nbits, value, nbits, False
        elif tag == _SEQ:  # addressRange (§2.2.3.9): min padded with zero bits, max with one bits
            parts = _elements(val)
            if len(parts) != 2 or parts[0][0] != _BITS or parts[1][0] != _BITS:
                raise CertPathError("IPAddressRange is not a SEQUENCE of two BIT STRINGs")
            (vmin, nmin), (vmax, nmax) = _bits(parts[0][1], width), _bits(parts[1][1], width)
            is_range = True
        else:
            raise CertPathError(f"IPAddressOrRange with unexpected tag {tag:#04x}")
        if width is None:  # an address family we do not know: form only
            continue
        lo, hi = vmin << (width - nmin), ((vmax + 1) << (width - nmax)) - 1
        if lo > hi:
            raise CertPathError("inverted IPAddressRange")
        size = hi - lo + 1
        if is_range and size & (size - 1) == 0 and lo % size == 0:
            raise CertPathError("IPAddressRange that must be encoded as a prefix (RFC 3779 §2.2.3.7)")
        if out and lo <= out[-1][1] + 1:
            raise CertPathError("addressesOrRanges not sorted, overlapping or adjacent (RFC 3779 §2.2.3.6)")
        out.append((lo, hi))
    return out


def decode_ip_addr_blocks(der: bytes) -> tuple[IPv6Network, ...] | None:
    """The IPv6 resources of a DER IPAddrBlocks value (RFC 3779 §2.2.3): None for ``inherit``, otherwise
    the prefixes in ascending order, addressRange entries converted to the prefixes covering them exactly.
    IPv4 and SAFI-qualified families are checked for form and ignored; no IPv6 family gives ().
    Raises CertPathError on malformed or non-canonical DER (trailing bytes, bad lengths, non-zero unused
    bits, families out of order or repeated (§2.2.3.3), non-canonical addressesOrRanges (§2.2.3.6))."""
    tag, body, end = _tlv(der)
    if tag != _SEQ or end != len(der):
        raise CertPathError("IPAddrBlocks is not a single DER SEQUENCE")
    families = _elements(body)
    if not families:
        raise CertPathError("IPAddrBlocks without any IPAddressFamily")
    result: tuple[IPv6Network, ...] | None = ()
    previous: bytes | None = None
    for ftag, fval in families:
        parts = _elements(fval) if ftag == _SEQ else []
        if len(parts) != 2 or parts[0][0] != _OCTETS or not 2 <= len(parts[0][1]) <= 3:
            raise CertPathError("malformed IPAddressFamily")
        afi = parts[0][1]
        if previous is not None and afi <= previous:  # bytes order puts AFI before AFI+SAFI, as OpenSSL does
            raise CertPathError("IPAddressFamily entries out of order or repeated (RFC 3779 §2.2.3.3)")
        previous = afi
        width = {_AFI_IPV6: _V6_BITS, _AFI_IPV4: 32}.get(afi[:2])
        ctag, cval = parts[1]
        if ctag == _NULL:  # inherit
            if cval:
                raise CertPathError("inherit NULL with contents")
            if afi == _AFI_IPV6:
                result = None
        elif ctag == _SEQ:
            ranges = _address_ranges(cval, width)
            if afi == _AFI_IPV6:
                result = tuple(
                    net for lo, hi in ranges for net in summarize_address_range(IPv6Address(lo), IPv6Address(hi))
                )
        else:
            raise CertPathError(f"IPAddressChoice with unexpected tag {ctag:#04x}")
    return result


# ---- path validation (RFC 3971 §6.3.1, RFC 6494, RFC 3779 §2.3) --------------------------------------


@dataclass(frozen=True)
class RouterAuthorization:
    """What a validated path certifies: the router's RSA key (RFC 3971 §6.3.1), the prefixes it may
    advertise (RFC 3779 resources, inherit resolved), its subject and its trust anchor's subject (both as
    DER X.501 Names exactly as the certificates encode them)."""

    key: rsa.RSAPublicKey
    prefixes: tuple[IPv6Network, ...]
    subject: bytes
    anchor_subject: bytes

    def authorizes(self, prefix: IPv6Network) -> bool:
        """Whether prefix lies within the certified resources (``::/0`` authorizes every prefix)."""
        return any(prefix.subnet_of(p) for p in self.prefixes)


def validate_router_path(
    certs: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], now: dt.datetime
) -> RouterAuthorization:
    """Validate a router's certification path in CPA order (RFC 3971 §6.4.2: certs[0] is issued by a trust
    anchor, certs[-1] is the router's own; an anchor repeated as certs[0] is skipped) at time now (naive
    means UTC). Checks (RFC 5280 §6.1, simplified, and RFC 3971 §6.3.1): at most MAX_PATH_CERTS certificates
    below the anchor; issuer name and signature (RSA PKCS#1 v1.5 or ECDSA, SHA-2) of every link; validity
    of every certificate and the anchor; basicConstraints cA and pathLenConstraint, and keyUsage keyCertSign
    if present, on the anchor and intermediates; no unprocessed critical extension below the anchor;
    RFC 3779 §2.3 resources: each certificate's IPv6 prefixes within its issuer's (inherit takes the
    issuer's; an anchor without the extension is trusted for ``::/0``; every other certificate must carry
    it, RFC 6494 §4), none empty; the router key RSA (RFC 3971 §6.3.1), keyUsage digitalSignature if
    present, and its EKU, if present, id-kp-sendRouter or anyExtendedKeyUsage (RFC 6494 §7, §9).
    Returns the router's key and its effective prefixes; raises CertPathError otherwise."""
    try:
        return _validate(list(certs), list(anchors), now)
    except CertPathError:
        raise
    except Exception as e:  # malformed or duplicate extensions, unsupported algorithms, ...
        raise CertPathError(f"router certification path does not verify: {type(e).__name__}: {e}") from e


def _validate(certs: list[x509.Certificate], anchors: list[x509.Certificate], now: dt.datetime) -> RouterAuthorization:
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    if certs and any(certs[0] == a for a in anchors):
        certs = certs[1:]  # the anchor's own certificate is not to be sent (RFC 3971 §6.4.2) but is harmless
    if not certs:
        raise CertPathError("empty certification path")
    if len(certs) > MAX_PATH_CERTS:
        raise CertPathError(f"certification path of {len(certs)} certificates exceeds {MAX_PATH_CERTS}")
    candidates = [a for a in anchors if a.subject == certs[0].issuer]
    if not candidates:
        raise CertPathError(f"no configured trust anchor named {certs[0].issuer.rfc4514_string()!r}")
    reasons: list[str] = []
    for anchor in candidates:
        try:
            _check_signature(certs[0], anchor)
        except CertPathError as e:
            reasons.append(str(e))
            continue
        return _validate_from(anchor, certs, now)
    raise CertPathError(reasons[0])


def _validate_from(anchor: x509.Certificate, certs: list[x509.Certificate], now: dt.datetime) -> RouterAuthorization:
    _check_validity(anchor, now)
    anchor_res = _resources(anchor)
    if anchor_res is None:
        raise CertPathError(f"trust anchor {_name(anchor)} inherits IP resources it has no issuer for")
    resources: tuple[IPv6Network, ...] = anchor_res if anchor_res is not _ABSENT else (_ALL_V6,)
    chain = [anchor, *certs]
    for i, cert in enumerate(certs):
        issuer = chain[i]
        below = sum(1 for c in certs[i:-1] if c.subject != c.issuer)  # non-self-issued CAs below issuer
        _check_issuer(issuer, below)
        if cert.issuer != issuer.subject:
            raise CertPathError(f"{_name(cert)} is not issued by {_name(issuer)}")
        _check_signature(cert, issuer)
        _check_validity(cert, now)
        for ext in cert.extensions:
            if ext.critical and ext.oid not in _PROCESSED:
                raise CertPathError(f"{_name(cert)} has unprocessed critical extension {ext.oid.dotted_string}")
        own = _resources(cert)
        if own is _ABSENT:
            raise CertPathError(f"{_name(cert)} lacks the ipAddrBlocks extension (RFC 6494 §4, RFC 3779 §2.3)")
        if own is not None:
            outside = [p for p in own if not any(p.subnet_of(q) for q in resources)]
            if outside:
                raise CertPathError(
                    f"{_name(cert)} claims {', '.join(map(str, outside))} outside its issuer's resources "
                    "(RFC 3971 §6.3.1, RFC 3779 §2.3)"
                )
            resources = own
        if not resources:
            raise CertPathError(f"{_name(cert)} certifies no IPv6 prefix (RFC 3971 §6.3.1)")
    router = certs[-1]
    key = router.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertPathError(f"router certificate {_name(router)} does not carry an RSA key (RFC 3971 §6.3.1)")
    ku = _ext(router, x509.KeyUsage)
    if ku is not None and not ku.digital_signature:
        raise CertPathError(f"router certificate {_name(router)} keyUsage lacks digitalSignature")
    eku = _ext(router, x509.ExtendedKeyUsage)
    if eku is not None and not _ROUTER_EKUS & set(eku):
        raise CertPathError(f"router certificate {_name(router)} EKU lacks id-kp-sendRouter (RFC 6494 §7, §9)")
    return RouterAuthorization(key, resources, _subject_der(router), _subject_der(anchor))


class _Absent(tuple[IPv6Network, ...]):
    """Marker for a certificate without the ipAddrBlocks extension."""


_ABSENT = _Absent()


def _resources(cert: x509.Certificate) -> tuple[IPv6Network, ...] | None:
    """The certificate's IPv6 resources: decoded and collapsed, None for inherit, _ABSENT without the extension."""
    try:
        ext = cert.extensions.get_extension_for_oid(IP_ADDR_BLOCKS_OID)
    except x509.ExtensionNotFound:
        return _ABSENT
    value = ext.value
    der = value.value if isinstance(value, x509.UnrecognizedExtension) else value.public_bytes()
    try:
        nets = decode_ip_addr_blocks(der)
    except CertPathError as e:
        raise CertPathError(f"{_name(cert)}: bad ipAddrBlocks: {e}") from e
    return None if nets is None else tuple(collapse_addresses(nets))


def _ext(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "<empty subject>"


def _check_validity(cert: x509.Certificate, now: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertPathError(f"certificate {_name(cert)} not valid at {now.isoformat()}")


def _check_issuer(issuer: x509.Certificate, below: int) -> None:
    """issuer may sign certificates with `below` non-self-issued CA certificates under it (RFC 5280 §4.2.1.9)."""
    bc = _ext(issuer, x509.BasicConstraints)
    if bc is None or not bc.ca:
        raise CertPathError(f"{_name(issuer)} is not a CA (basicConstraints)")
    if bc.path_length is not None and below > bc.path_length:
        raise CertPathError(f"{_name(issuer)} pathLenConstraint {bc.path_length} exceeded")
    ku = _ext(issuer, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        raise CertPathError(f"{_name(issuer)} keyUsage lacks keyCertSign")


def _check_signature(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """cert's signature verifies with issuer's key (the IKE path checks' rule, as CertPathError)."""
    try:
        ikeauth.check_issued_by(cert, issuer)
    except ikeauth.AuthError as e:
        raise CertPathError(str(e)) from e


def _subject_der(cert: x509.Certificate) -> bytes:
    """The subject Name exactly as encoded in the TBSCertificate (RFC 5280 §4.1: version, serialNumber,
    signature, issuer, validity, subject)."""
    _, body, _ = _tlv(cert.tbs_certificate_bytes)
    pos, fields = 0, list[bytes]()
    while len(fields) < 5:
        start = pos
        tag, _, pos = _tlv(body, pos)
        if not (tag == 0xA0 and start == 0):  # the optional [0] version
            fields.append(body[start:pos])
    return fields[4]


def anchor_name_matches(anchor: x509.Certificate, name_der: bytes) -> bool:
    """Whether a Trust Anchor option's Name Type 1 value (a DER X.501 Name, RFC 3971 §6.4.3) names anchor:
    exact DER equality with the anchor's subject as the certificate encodes it (or as re-encoded)."""
    try:
        return name_der in (_subject_der(anchor), anchor.subject.public_bytes())
    except (CertPathError, ValueError):
        return False
