"""SEND router authorization certificates: the RFC 3779 IPAddrBlocks DER codec (known answers, canonical
form, round trips, malformed input) and router certification path validation (RFC 3971 §6.3.1, RFC 6494)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from ipaddress import IPv6Network, collapse_addresses

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from mobility.crypto import sendcert
from mobility.crypto.sendcert import (
    IP_ADDR_BLOCKS_OID,
    SEND_ROUTER_EKU,
    CertPathError,
    RouterAuthorization,
    anchor_name_matches,
    decode_ip_addr_blocks,
    encode_ip_addr_blocks,
    validate_router_path,
)
from mobility.lab.pki import Issued, issue, issue_send_router, make_ca

N = IPv6Network
DOC = N("2001:db8::/32")
NOW = dt.datetime.now(dt.UTC)


def der(tag: int, contents: bytes) -> bytes:
    assert len(contents) < 0x80
    return bytes([tag, len(contents)]) + contents


def seq(*parts: bytes) -> bytes:
    return der(0x30, b"".join(parts))


def bits(hexstr: str) -> bytes:
    return der(0x03, bytes.fromhex(hexstr))


def v6(*items: bytes, afi: str = "0002") -> bytes:
    """An IPAddressFamily with addressesOrRanges."""
    return seq(der(0x04, bytes.fromhex(afi)), seq(*items))


def blocks(*families: bytes) -> bytes:
    return seq(*families)


# ---- known answers (RFC 3779 §2.2.3) -----------------------------------------------------------------


def test_oids() -> None:
    assert SEND_ROUTER_EKU.dotted_string == "1.3.6.1.5.5.7.3.23"  # RFC 6494 §7
    assert IP_ADDR_BLOCKS_OID.dotted_string == "1.3.6.1.5.5.7.1.7"  # RFC 3779 §2.2.1


@pytest.mark.parametrize(
    ("prefixes", "items"),
    [
        ([DOC], "03050020010db8"),  # 2001:db8::/32: 4 octets, no unused bits
        ([N("::/0")], "030100"),  # no address bits at all
        ([N("2001:db8:8000::/33")], "03060720010db880"),  # 7 unused bits
        ([N("2001:db8:1::/64")], "03090020010db800010000"),  # explicit zero bits inside the prefix count
        ([N("::1/128")], "031100" + "00" * 15 + "01"),
        # adjacent but not one prefix -> addressRange; min/max trimmed of trailing zero/one bits (§2.2.3.9)
        ([N("2001:db8:1::/48"), N("2001:db8:2::/48")], "301203070020010db8000103070020010db80002"),
        ([N("2001:db8:4000::/34"), N("2001:db8:8000::/34")], "301003060620010db84003060620010db880"),
    ],
)
def test_encode_known_answers(prefixes: list[IPv6Network], items: str) -> None:
    expected = blocks(v6(bytes.fromhex(items)))
    assert encode_ip_addr_blocks(prefixes) == expected
    assert decode_ip_addr_blocks(expected) == tuple(collapse_addresses(prefixes))


def test_encode_full_der() -> None:
    assert encode_ip_addr_blocks([DOC]).hex() == "300f300d04020002300703050020010db8"
    assert encode_ip_addr_blocks([N("::/0")]).hex() == "300b3009040200023003030100"


def test_encode_canonical_order_and_merging() -> None:
    """§2.2.3.6: ascending by lowest address, overlaps and adjacent siblings merged."""
    messy = [N("2001:db8:2::/48"), N("fe80::/10"), N("2001:db8::/48"), N("2001:db8:2:1::/64"), N("2001:db8:1::/48")]
    out = encode_ip_addr_blocks(messy)
    # 2001:db8::/48 + 2001:db8:1::/48 -> /47, adjacent to 2001:db8:2::/48 -> one range; fe80::/10 last
    # (min 2001:db8:: loses its 3 trailing zero bits of 0xb8 too)
    expected = blocks(v6(seq(bits("0320010db8"), bits("0020010db80002")), bits("06fe80")))
    assert out == expected
    assert decode_ip_addr_blocks(out) == (N("2001:db8::/47"), N("2001:db8:2::/48"), N("fe80::/10"))
    assert encode_ip_addr_blocks([N("2001:db8::/33"), N("2001:db8:8000::/33")]) == encode_ip_addr_blocks([DOC])


def test_encode_empty_refused() -> None:
    with pytest.raises(ValueError):
        encode_ip_addr_blocks([])


def test_decode_inherit_and_ipv4_ignored() -> None:
    inherit = seq(der(0x04, b"\x00\x02"), der(0x05, b""))
    assert decode_ip_addr_blocks(blocks(inherit)) is None
    ipv4 = v6(bits("000a"), afi="0001")  # 10.0.0.0/8
    assert decode_ip_addr_blocks(blocks(ipv4, v6(bits("0020010db8")))) == (DOC,)
    assert decode_ip_addr_blocks(blocks(ipv4)) == ()
    assert decode_ip_addr_blocks(blocks(ipv4, inherit)) is None
    safi = v6(bits("0020010db8"), afi="000201")  # SAFI-qualified family: checked, ignored
    assert decode_ip_addr_blocks(blocks(v6(bits("00fe80")), safi)) == (N("fe80::/16"),)


def test_decode_range_from_other_encoders() -> None:
    """An addressRange converts to the prefixes covering it exactly (ipaddress.summarize_address_range)."""
    rng = seq(bits("00" + "20010db8" + "00" * 11 + "01"), bits("01" + "20010db8" + "00" * 11 + "02"))
    assert decode_ip_addr_blocks(blocks(v6(rng))) == (N("2001:db8::1/128"), N("2001:db8::2/127"))


# ---- round trips -------------------------------------------------------------------------------------


def _nets(draw_addr: st.SearchStrategy[int], lengths: st.SearchStrategy[int]) -> st.SearchStrategy[IPv6Network]:
    return st.builds(lambda a, n: IPv6Network((a, n), strict=False), draw_addr, lengths)


_prefixes = st.one_of(
    _nets(st.integers(0, 2**128 - 1), st.integers(0, 128)),
    # a crowded corner of the space, so that adjacency, nesting and ranges are frequent
    _nets(st.integers(0, 63).map(lambda x: (0x2001_0DB8 << 96) | (x << 90)), st.integers(32, 40)),
)


@given(st.lists(_prefixes, min_size=1, max_size=8))
def test_round_trip(prefixes: list[IPv6Network]) -> None:
    encoded = encode_ip_addr_blocks(prefixes)
    decoded = decode_ip_addr_blocks(encoded)
    assert decoded == tuple(collapse_addresses(prefixes))
    assert decoded is not None and encode_ip_addr_blocks(decoded) == encoded


@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes_only_raises_cert_path_error(data: bytes) -> None:
    try:
        decode_ip_addr_blocks(data)
    except CertPathError:
        pass


@given(st.lists(_prefixes, min_size=1, max_size=4), st.data())
def test_decode_mutations_only_raise_cert_path_error(prefixes: list[IPv6Network], data: st.DataObject) -> None:
    encoded = bytearray(encode_ip_addr_blocks(prefixes))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    encoded[pos] = data.draw(st.integers(0, 255))
    try:
        result = decode_ip_addr_blocks(bytes(encoded))
    except CertPathError:
        return
    assert result is None or all(isinstance(p, IPv6Network) for p in result)


# ---- malformed DER -----------------------------------------------------------------------------------

_GOOD = blocks(v6(bits("0020010db8")))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        _GOOD + b"\x00",  # trailing bytes
        _GOOD[:-1],  # truncated
        b"\x31" + _GOOD[1:],  # SET, not SEQUENCE
        bytes.fromhex("308100"),  # non-minimal length
        bytes.fromhex("3080") + _GOOD[2:] + b"\x00\x00",  # indefinite length (BER)
        blocks(),  # no family at all
        blocks(v6(bits("0820010db8"))),  # unused-bits count 8
        blocks(v6(bits("0120010db9"))),  # non-zero unused bit
        blocks(v6(bits("01"))),  # unused bits without any octet
        blocks(v6(der(0x03, b""))),  # no unused-bits octet
        blocks(v6(bits("00" + "00" * 17))),  # 136 bits in an IPv6 address
        blocks(v6(bits("00" + "00" * 5), afi="0001")),  # 40 bits in an IPv4 address
        blocks(v6()),  # empty addressesOrRanges
        blocks(v6(bits("0020010db8"), afi="02")),  # 1-octet addressFamily
        blocks(v6(bits("0020010db8"), afi="00020101")),  # 4-octet addressFamily
        blocks(v6(bits("0020010db8")), v6(bits("000a"), afi="0001")),  # families out of order
        blocks(v6(bits("0020010db8")), v6(bits("00fe80"))),  # IPv6 family twice
        blocks(seq(der(0x04, b"\x00\x02"), der(0x05, b"\x00"))),  # NULL with contents
        blocks(seq(der(0x04, b"\x00\x02"), der(0x02, b"\x00"))),  # neither inherit nor addressesOrRanges
        blocks(seq(der(0x04, b"\x00\x02"))),  # no IPAddressChoice
        blocks(v6(der(0x04, bytes.fromhex("0020010db8")))),  # OCTET STRING, not BIT STRING
        blocks(v6(seq(bits("0020010db8")))),  # range with one end
        blocks(v6(bits("00fe80"), bits("0020010db8"))),  # not sorted
        blocks(v6(bits("0020010db8"), bits("0020010db80001"))),  # overlapping
        blocks(v6(bits("0120010db8"), bits("0120010db880"))),  # adjacent /33s: must be one /32
        blocks(v6(seq(bits("0020010db8"), bits("0020010db8")))),  # range that is the /32 prefix
        blocks(v6(seq(bits("0020010db80002"), bits("0020010db80001")))),  # inverted range
    ],
)
def test_decode_rejects_malformed(data: bytes) -> None:
    with pytest.raises(CertPathError):
        decode_ip_addr_blocks(data)


# ---- certificates ------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ipblocks(prefixes: Sequence[IPv6Network] | None) -> x509.UnrecognizedExtension:
    value = encode_ip_addr_blocks(prefixes) if prefixes is not None else blocks(seq(b"\x04\x02\x00\x02\x05\x00"))
    return x509.UnrecognizedExtension(IP_ADDR_BLOCKS_OID, value)


def build(
    issuer: Issued | None,
    cn: str,
    *,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
    ca: bool = False,
    exts: Sequence[tuple[x509.ExtensionType, bool]] = (),
    issuer_name: x509.Name | None = None,
) -> Issued:
    """A certificate with exactly the given extensions (plus basicConstraints), for the cases pki does not make."""
    key = key or rsa.generate_private_key(65537, 2048)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name or (issuer.cert.subject if issuer else _name(cn)))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    for ext, critical in exts:
        b = b.add_extension(ext, critical=critical)
    return Issued(b.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("SEND CA", prefixes=(DOC,))


@pytest.fixture(scope="module")
def router(ca: Issued) -> Issued:
    return issue_send_router(ca, "router", (N("2001:db8:1::/64"),))


def test_router_path_valid(ca: Issued, router: Issued) -> None:
    auth = validate_router_path([router.cert], [ca.cert], NOW)
    assert isinstance(auth, RouterAuthorization)
    assert auth.prefixes == (N("2001:db8:1::/64"),)
    assert auth.key.public_numbers() == router.cert.public_key().public_numbers()
    assert auth.subject == router.cert.subject.public_bytes()
    assert auth.anchor_subject == ca.cert.subject.public_bytes()
    assert auth.authorizes(N("2001:db8:1::/64")) and auth.authorizes(N("2001:db8:1:0:8000::/65"))
    assert not auth.authorizes(N("2001:db8:2::/64")) and not auth.authorizes(N("2001:db8::/48"))
    # The router's link-local address lies outside the certified resources; it is not checked against
    # them: only advertised prefixes are (RFC 3971 §6.3.1, §7.3), and fe80::/64 is not authorized.
    assert not auth.authorizes(N("fe80::/64"))


def test_router_path_tolerates_anchor_first_and_naive_time(ca: Issued, router: Issued) -> None:
    auth = validate_router_path([ca.cert, router.cert], [make_ca("other").cert, ca.cert], NOW.replace(tzinfo=None))
    assert auth.prefixes == (N("2001:db8:1::/64"),)


def test_anchor_without_extension_trusted_for_everything() -> None:
    anchor = make_ca("plain CA", kind="rsa")  # RSA PKCS#1 v1.5 signatures on this path
    router = issue_send_router(anchor, "r", (N("::/0"),))
    auth = validate_router_path([router.cert], [anchor.cert], NOW)
    assert auth.prefixes == (N("::/0"),)
    assert auth.authorizes(N("2001:db8:77::/64")) and auth.authorizes(N("fe80::/64"))


def test_intermediate_inherit_and_router_inherit(ca: Issued) -> None:
    inter = build(ca, "intermediate", ca=True, exts=[(_ipblocks(None), True)])  # inherits 2001:db8::/32
    router = build(inter, "r", exts=[(_ipblocks(None), True), (x509.ExtendedKeyUsage([SEND_ROUTER_EKU]), False)])
    auth = validate_router_path([inter.cert, router.cert], [ca.cert], NOW)
    assert auth.prefixes == (DOC,)


def test_intermediate_narrows(ca: Issued) -> None:
    inter = build(ca, "intermediate", ca=True, exts=[(_ipblocks([N("2001:db8:1::/48")]), True)])
    inside = build(inter, "r1", exts=[(_ipblocks([N("2001:db8:1:5::/64")]), True)])
    assert validate_router_path([inter.cert, inside.cert], [ca.cert], NOW).prefixes == (N("2001:db8:1:5::/64"),)
    outside = build(inter, "r2", exts=[(_ipblocks([N("2001:db8:2::/64")]), True)])  # in the anchor's, not its issuer's
    with pytest.raises(CertPathError, match="outside"):
        validate_router_path([inter.cert, outside.cert], [ca.cert], NOW)


def test_any_eku_and_no_eku_accepted(ca: Issued) -> None:
    anyeku = build(
        ca,
        "r",
        exts=[(_ipblocks([DOC]), True), (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), False)],
    )
    assert validate_router_path([anyeku.cert], [ca.cert], NOW).prefixes == (DOC,)
    noeku = issue_send_router(ca, "r", (DOC,), eku=False)
    assert validate_router_path([noeku.cert], [ca.cert], NOW).prefixes == (DOC,)


def test_pki_extensions(ca: Issued, router: Issued) -> None:
    ext = ca.cert.extensions.get_extension_for_oid(IP_ADDR_BLOCKS_OID)
    assert ext.critical and isinstance(ext.value, x509.UnrecognizedExtension)
    assert decode_ip_addr_blocks(ext.value.value) == (DOC,)
    rext = router.cert.extensions.get_extension_for_oid(IP_ADDR_BLOCKS_OID)
    assert rext.critical
    eku = router.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical and list(eku.value) == [SEND_ROUTER_EKU]
    key = router.cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    with pytest.raises(x509.ExtensionNotFound):
        make_ca().cert.extensions.get_extension_for_oid(IP_ADDR_BLOCKS_OID)  # existing behaviour unchanged


def _reject(certs: list[x509.Certificate], anchors: list[x509.Certificate], match: str) -> None:
    with pytest.raises(CertPathError, match=match):
        validate_router_path(certs, anchors, NOW)


def test_router_prefix_outside_ca(ca: Issued) -> None:
    r = issue_send_router(ca, "r", (N("2001:db8:1::/64"), N("2001:db9::/64")))
    _reject([r.cert], [ca.cert], r"2001:db9::/64 outside")


def test_missing_extension_on_end_entity(ca: Issued) -> None:
    r = issue(ca, "r", kind="rsa")
    _reject([r.cert], [ca.cert], "lacks the ipAddrBlocks")


def test_missing_extension_on_intermediate(ca: Issued) -> None:
    inter = build(ca, "intermediate", ca=True)
    r = build(inter, "r", exts=[(_ipblocks([DOC]), True)])
    _reject([inter.cert, r.cert], [ca.cert], "lacks the ipAddrBlocks")


def test_no_ipv6_resources(ca: Issued) -> None:
    ipv4_only = x509.UnrecognizedExtension(IP_ADDR_BLOCKS_OID, blocks(v6(bits("000a"), afi="0001")))
    r = build(ca, "r", exts=[(ipv4_only, True)])
    _reject([r.cert], [ca.cert], "no IPv6 prefix")


def test_malformed_extension(ca: Issued) -> None:
    bad = x509.UnrecognizedExtension(IP_ADDR_BLOCKS_OID, _GOOD + b"\x00")
    r = build(ca, "r", exts=[(bad, True)])
    _reject([r.cert], [ca.cert], "bad ipAddrBlocks")


def test_wrong_eku(ca: Issued) -> None:
    for oid in (ExtendedKeyUsageOID.SERVER_AUTH, x509.ObjectIdentifier("1.3.6.1.5.5.7.3.24")):  # sendProxiedRouter
        r = build(ca, "r", exts=[(_ipblocks([DOC]), True), (x509.ExtendedKeyUsage([oid]), False)])
        _reject([r.cert], [ca.cert], "id-kp-sendRouter")


def test_key_usage_without_digital_signature(ca: Issued) -> None:
    ku = x509.KeyUsage(False, False, True, False, False, False, False, False, False)  # keyEncipherment only
    r = build(ca, "r", exts=[(_ipblocks([DOC]), True), (ku, True)])
    _reject([r.cert], [ca.cert], "digitalSignature")


def test_expired(ca: Issued) -> None:
    r = issue_send_router(ca, "r", (DOC,), days=-1)
    _reject([r.cert], [ca.cert], "not valid at")
    router = issue_send_router(ca, "r", (DOC,))
    with pytest.raises(CertPathError, match="not valid at"):
        validate_router_path([router.cert], [ca.cert], NOW + dt.timedelta(days=60))  # anchor expired too


def test_signature_by_another_ca(ca: Issued) -> None:
    rogue = make_ca("SEND CA", prefixes=(DOC,))  # same name, different key
    r = issue_send_router(rogue, "r", (N("2001:db8:1::/64"),))
    _reject([r.cert], [ca.cert], "does not verify")
    assert validate_router_path([r.cert], [ca.cert, rogue.cert], NOW).prefixes == (N("2001:db8:1::/64"),)


def test_ec_end_entity_key(ca: Issued) -> None:
    r = build(ca, "r", key=ec.generate_private_key(ec.SECP256R1()), exts=[(_ipblocks([DOC]), True)])
    _reject([r.cert], [ca.cert], "RSA key")


def test_unknown_critical_extension(ca: Issued) -> None:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.32473.1"), b"\x05\x00")
    r = build(ca, "r", exts=[(_ipblocks([DOC]), True), (odd, True)])
    _reject([r.cert], [ca.cert], "critical extension 1.3.6.1.4.1.32473.1")
    ok = build(ca, "r", exts=[(_ipblocks([DOC]), True), (odd, False)])
    assert validate_router_path([ok.cert], [ca.cert], NOW).prefixes == (DOC,)


def test_anchor_not_configured(ca: Issued, router: Issued) -> None:
    _reject([router.cert], [make_ca("other CA").cert], "no configured trust anchor")
    _reject([router.cert], [], "no configured trust anchor")


def test_issuer_not_a_ca(ca: Issued, router: Issued) -> None:
    r = build(router, "r2", exts=[(_ipblocks([N("2001:db8:1::/64")]), True)])
    _reject([router.cert, r.cert], [ca.cert], "not a CA")


def test_path_shape(ca: Issued) -> None:
    _reject([], [ca.cert], "empty")
    _reject([ca.cert], [ca.cert], "empty")
    root = build(None, "root", ca=True, exts=[(_ipblocks([DOC]), True)])  # no pathLenConstraint
    chain, issuer = [], root
    for i in range(4):
        issuer = build(issuer, f"intermediate {i}", ca=True, exts=[(_ipblocks(None), True)])
        chain.append(issuer)
    r = build(issuer, "r", exts=[(_ipblocks(None), True)])
    _reject([*(c.cert for c in chain), r.cert], [root.cert], "exceeds 4")
    r3 = build(chain[2], "r3", exts=[(_ipblocks([N("2001:db8:3::/64")]), True)])
    auth = validate_router_path([*(c.cert for c in chain[:3]), r3.cert], [root.cert], NOW)
    assert auth.prefixes == (N("2001:db8:3::/64"),)


def test_path_length_constraint(ca: Issued) -> None:
    i1 = build(ca, "i1", ca=True, exts=[(_ipblocks(None), True)])
    i2 = build(i1, "i2", ca=True, exts=[(_ipblocks(None), True)])
    r = build(i2, "r", exts=[(_ipblocks(None), True)])
    _reject([i1.cert, i2.cert, r.cert], [ca.cert], "pathLenConstraint 1")


def test_name_mismatch(ca: Issued) -> None:
    inter = build(ca, "intermediate", ca=True, exts=[(_ipblocks(None), True)])
    r = build(inter, "r", exts=[(_ipblocks(None), True)], issuer_name=_name("someone else"))
    _reject([inter.cert, r.cert], [ca.cert], "not issued by")


def test_errors_are_value_errors() -> None:
    assert issubclass(CertPathError, ValueError)
    assert sendcert.MAX_PATH_CERTS == 4


def test_anchor_name_matches(ca: Issued) -> None:
    assert anchor_name_matches(ca.cert, ca.cert.subject.public_bytes())
    assert not anchor_name_matches(ca.cert, make_ca("other CA").cert.subject.public_bytes())
    assert not anchor_name_matches(ca.cert, b"")
    assert not anchor_name_matches(ca.cert, b"\x30\x00")
