"""Mobility Header codec for FMIPv6 (RFC 6275 §6.1/§6.2, RFC 5568 §6.2/§6.4) and the ND pieces it
travels with (RFC 4861 §4.1/§4.2/§4.4/§4.6, RFC 3971 §6.4, RFC 5568 §6.1): known-answer bytes derived
by hand from the RFC layouts, an independent RFC 1071 checksum, round trips, strictness, the BADF
authenticator input, and parse_ipv6_mh with the Home Address destination option."""

from __future__ import annotations

import struct
from dataclasses import replace
from ipaddress import IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobility.wire import mh, nd
from mobility.wire.buffer import DecodeError

PCOA = IPv6Address("2001:db8:1::10")
NCOA = IPv6Address("2001:db8:2::10")
PAR = IPv6Address("2001:db8:1::1")
NAR = IPv6Address("2001:db8:2::1")
MAC = bytes.fromhex("02000000000a")
AUTH = bytes(range(0xA0, 0xAC))  # 12 octets: HMAC-SHA1-96 sized

# ---- independent helpers (no code from mobility.wire.ip) ----------------------------------------------


def rfc1071(data: bytes) -> int:
    """Internet checksum, RFC 1071: 16-bit one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo6(src: IPv6Address, dst: IPv6Address, length: int, nh: int) -> bytes:
    """RFC 8200 §8.1: source, destination, upper-layer length (32), 3 zero octets, next header."""
    return src.packed + dst.packed + length.to_bytes(4, "big") + b"\x00\x00\x00" + bytes([nh])


def with_csum(src: IPv6Address, dst: IPv6Address, msg: bytes, nh: int = 135, at: int = 4) -> bytes:
    zeroed = msg[:at] + b"\x00\x00" + msg[at + 2 :]
    c = rfc1071(pseudo6(src, dst, len(zeroed), nh) + zeroed)
    return msg[:at] + c.to_bytes(2, "big") + msg[at + 2 :]


def csum_ok(src: IPv6Address, dst: IPv6Address, msg: bytes, nh: int = 135) -> bool:
    return rfc1071(pseudo6(src, dst, len(msg), nh) + msg) == 0


def hx(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", "").replace("\n", ""))


def walk(msg: bytes, start: int) -> list[tuple[int, int, int]]:
    """(offset, type, option octets incl. Type/Length) of every mobility option, padding included."""
    out, i = [], start
    while i < len(msg):
        if msg[i] == 0:
            out.append((i, 0, 1))
            i += 1
            continue
        n = 2 + msg[i + 1]
        out.append((i, msg[i], n))
        i += n
    assert i == len(msg)
    return out


# ---- known-answer vectors, derived from the RFC layouts ------------------------------------------------
# MH common part (RFC 6275 §6.1.1): Payload Proto 59 | Header Len (8-octet units after the first 8) |
# MH Type | Reserved | Checksum, then the type's fixed part, then options.

FBU_HEX = f"""
3b 07 08 00 0000
1234 c000 000a
0100
0310 {NCOA.packed.hex()}
0707 02 {MAC.hex()}
0103 000000
1510 00000000 {AUTH.hex()}
"""
# 12: fixed part ends; PadN(2) puts Alternate CoA's Type at 14 = 8n+6 (RFC 6275 §6.2.5); MH-LLA has no
# alignment (RFC 5568 §6.4.4) and ends at 41; BADF is 2+4+12 = 18 octets so it must start at 46 to end
# at 64 with no padding after it: PadN(5) fills 41..46 (RFC 5568 §6.4.5, RFC 6275 §6.2). 64 octets:
# Header Len 7. BADF Option Length 16 = SPI + Authenticator.

FBACK_HEX = f"""
3b 03 09 00 0000
00 00 1234 000a
0100
1510 00000000 {AUTH.hex()}
"""
# Status 0, K clear, Sequence, Lifetime (RFC 5568 §6.2.3); BADF must end at 32: PadN(2) at 12.

FBACK_ALT_HEX = f"""
3b 06 09 00 0000
01 00 1234 000a
0100
0310 {NCOA.packed.hex()}
0104 00000000
1510 00000000 {AUTH.hex()}
"""
# Status 1: use the NCoA in the Alternate CoA option. Alt CoA at 14..32, BADF 38..56, PadN(6) between.

HI_HEX = f"""
3b 07 0e 00 0000
0102 c0 00
0707 02 {MAC.hex()}
00
2212 01 80 {PCOA.packed.hex()}
0102 0000
2212 02 80 {NCOA.packed.hex()}
"""
# Sequence, S|U|Reserved, Code (RFC 5568 §6.2.1.1). MH-LLA 10..19, Pad1, the MH IPv6 Address/Prefix
# option (type 34, Length 18) at 20 = 8n+4, PadN(4), the second one at 44 = 8n+4, ends at 64.

HACK_HEX = f"""
3b 03 0f 00 0000
0102 00 02
0100
2212 02 80 {NCOA.packed.hex()}
"""
# Sequence, Reserved, Code 2 = NCoA assigned (RFC 5568 §6.2.1.2), the NCoA option at 12 = 8n+4.

HACK_BARE_HEX = """
3b 01 0f 00 0000
0102 00 80
0104 00000000
"""


def fbu() -> mh.MhMessage:
    return mh.message(mh.Fbu(0x1234, 10), (mh.AlternateCoa(NCOA), mh.MhLinkLayerAddress(2, MAC), mh.Badf(0, AUTH)))


def fback() -> mh.MhMessage:
    return mh.message(mh.Fback(mh.FbackStatus.ACCEPTED, 0x1234, 10), (mh.Badf(0, AUTH),))


def fback_alt() -> mh.MhMessage:
    opts = (mh.AlternateCoa(NCOA), mh.Badf(0, AUTH))
    return mh.message(mh.Fback(mh.FbackStatus.ACCEPTED_USE_ALT_NCOA, 0x1234, 10), opts)


def hi() -> mh.MhMessage:
    opts = (mh.MhLinkLayerAddress(2, MAC), mh.MhIpPrefix(1, 128, PCOA), mh.MhIpPrefix(2, 128, NCOA))
    return mh.message(mh.Hi(0x0102, 0, s=True, u=True), opts)


def hack() -> mh.MhMessage:
    return mh.message(mh.Hack(0x0102, mh.HackCode.NCOA_ASSIGNED), (mh.MhIpPrefix(2, 128, NCOA),))


KATS = [
    ("fbu", fbu, FBU_HEX, PCOA, PAR, 64),
    ("fback", fback, FBACK_HEX, PAR, NCOA, 32),
    ("fback_alt", fback_alt, FBACK_ALT_HEX, PAR, NCOA, 56),
    ("hi", hi, HI_HEX, PAR, NAR, 64),
    ("hack", hack, HACK_HEX, NAR, PAR, 32),
    ("hack_bare", lambda: mh.message(mh.Hack(0x0102, mh.HackCode.UNSPECIFIED)), HACK_BARE_HEX, NAR, PAR, 16),
    ("binding_error", lambda: mh.binding_error(1, PCOA), f"3b 02 07 00 0000 01 00 {PCOA.packed.hex()}", PAR, PCOA, 24),
]


@pytest.mark.parametrize(("name", "build", "hexs", "src", "dst", "size"), KATS, ids=[k[0] for k in KATS])
def test_known_answer_bytes(name, build, hexs, src, dst, size) -> None:  # type: ignore[no-untyped-def]
    expected = with_csum(src, dst, hx(hexs))
    assert len(expected) == size and expected[1] == size // 8 - 1
    msg = build()
    assert msg.encode_zeroed() == hx(hexs)
    wire = msg.encode(src, dst)
    assert wire.hex() == expected.hex()
    assert csum_ok(src, dst, wire)
    assert int.from_bytes(wire[4:6], "big") == rfc1071(pseudo6(src, dst, size, 135) + hx(hexs))
    assert mh.with_checksum(src, dst, hx(hexs)) == expected
    got = mh.MhMessage.decode(wire, src, dst)
    assert got == replace(msg, checksum=int.from_bytes(wire[4:6], "big"))


def test_known_answer_checksum_is_over_the_next_header_135_pseudo_header() -> None:
    wire = fbu().encode(PCOA, PAR)
    assert csum_ok(PCOA, PAR, wire, nh=135)
    assert not csum_ok(PCOA, PAR, wire, nh=58)
    assert not csum_ok(PCOA, PAR, wire[:-8], nh=135)
    with pytest.raises(DecodeError) as e:
        mh.MhMessage.decode(with_csum(PCOA, PAR, wire, nh=58), PCOA, PAR)
    assert e.value.field == "checksum"


def test_fixed_parts_decode_to_their_kinds() -> None:
    assert mh.Fbu.of(fbu()) == mh.Fbu(0x1234, 10, 0xC000)
    assert mh.Fback.of(fback_alt()) == mh.Fback(1, 0x1234, 10, 0)
    assert mh.Hi.of(hi()) == mh.Hi(0x0102, 0, s=True, u=True)
    assert mh.Hack.of(hack()) == mh.Hack(0x0102, 2)
    assert fbu().first(mh.AlternateCoa) == mh.AlternateCoa(NCOA)
    assert hack().first(mh.AlternateCoa) is None


@pytest.mark.parametrize(("s", "u", "octet"), [(False, False, 0x00), (True, False, 0x80), (False, True, 0x40)])
def test_hi_flags_and_code(s: bool, u: bool, octet: int) -> None:
    m = mh.message(mh.Hi(0xFFFE, 1, s=s, u=u))
    assert m.mh_type == 14 and m.fixed == bytes([0xFF, 0xFE, octet, 0x01])
    back = mh.MhMessage.decode(m.encode(PAR, NAR), PAR, NAR)
    assert mh.Hi.of(back) == mh.Hi(0xFFFE, 1, s, u)


def test_fbu_lifetime_is_seconds_and_flags_a_h() -> None:
    f = mh.message(mh.Fbu(7, 300)).fixed
    assert f == hx("0007 c000 012c")  # 300 s, not 75 four-second units (RFC 5568 §6.2.2)


# ---- round trips ----------------------------------------------------------------------------------------

addrs = st.integers(min_value=0, max_value=(1 << 128) - 1).map(IPv6Address)
u16 = st.integers(min_value=0, max_value=0xFFFF)
plain_options = st.one_of(
    addrs.map(mh.AlternateCoa),
    st.builds(mh.MhLinkLayerAddress, st.integers(0, 255), st.binary(max_size=16)),
    st.builds(mh.MhIpPrefix, st.integers(0, 255), st.integers(0, 128), addrs),
    st.builds(
        mh.RawMhOption,
        st.integers(2, 255).filter(lambda t: t not in (3, 7, 21, 34)),
        st.binary(max_size=40),
    ),
)
badfs = st.builds(mh.Badf, st.integers(0, 0xFFFFFFFF), st.binary(min_size=1, max_size=40))
kinds = st.one_of(
    st.builds(mh.Fbu, u16, u16, u16),
    st.builds(mh.Fback, st.integers(0, 255), u16, u16, st.integers(0, 255)),
    st.builds(mh.Hi, u16, st.integers(0, 255), st.booleans(), st.booleans()),
    st.builds(mh.Hack, u16, st.integers(0, 255)),
)


@st.composite
def messages(draw: st.DrawFn) -> mh.MhMessage:
    opts = tuple(draw(st.lists(plain_options, max_size=6)))
    if draw(st.booleans()):
        opts = (*opts, draw(badfs))
    return mh.message(draw(kinds), opts)


@given(msg=messages(), src=addrs, dst=addrs, bit=st.integers(0, 127))
def test_round_trip(msg: mh.MhMessage, src: IPv6Address, dst: IPv6Address, bit: int) -> None:
    wire = msg.encode(src, dst)
    assert len(wire) % 8 == 0 and wire[0] == 59 and wire[1] == len(wire) // 8 - 1 and wire[2] == msg.mh_type
    assert wire[3] == 0
    assert csum_ok(src, dst, wire)
    got = mh.MhMessage.decode(wire, src, dst)
    assert got == replace(msg, checksum=int.from_bytes(wire[4:6], "big"))
    assert mh.message(type_of(msg).of(got), got.options) == msg  # the fixed part decodes to its kind
    # alignment and padding, read independently
    layout = walk(wire, 6 + len(msg.fixed))
    for (off, t, n), nxt in zip(layout, [*layout[1:], None], strict=True):
        if t == mh.AlternateCoa.TYPE:
            assert off % 8 == 6
        elif t == mh.MhIpPrefix.TYPE:
            assert off % 8 == 4
        elif t == mh.Badf.TYPE:
            assert nxt is None and off + n == len(wire) and wire[off + 1] == n - 2
        elif t == 1:
            assert wire[off + 2 : off + n] == bytes(n - 2)
    # a different pseudo-header source or destination does not verify
    wrong = IPv6Address(int(src) ^ (1 << bit))
    for s, d in ((wrong, dst), (src, IPv6Address(int(dst) ^ (1 << bit)))):
        with pytest.raises(DecodeError) as e:
            mh.MhMessage.decode(wire, s, d)
        assert e.value.field == "checksum"
    assert mh.MhMessage.decode(wire) == got  # without addresses: no checksum check


def type_of(msg: mh.MhMessage) -> type[mh.Fbu | mh.Fback | mh.Hi | mh.Hack]:
    return {8: mh.Fbu, 9: mh.Fback, 14: mh.Hi, 15: mh.Hack}[msg.mh_type]


@given(seq=u16, life=u16, auth=st.binary(min_size=1, max_size=64), spi=st.integers(0, 0xFFFFFFFF))
def test_badf_always_ends_the_header_unpadded(seq: int, life: int, auth: bytes, spi: int) -> None:
    for opts in ((), (mh.AlternateCoa(NCOA),), (mh.AlternateCoa(NCOA), mh.MhLinkLayerAddress(2, MAC))):
        m = mh.message(mh.Fbu(seq, life), (*opts, mh.Badf(spi, auth)))
        z = m.encode_zeroed()
        tail = bytes([21, 4 + len(auth)]) + spi.to_bytes(4, "big") + auth
        assert len(z) % 8 == 0 and z.endswith(tail)


def test_wrong_checksum_is_rejected() -> None:
    wire = bytearray(fbu().encode(PCOA, PAR))
    wire[-1] ^= 0x01
    with pytest.raises(DecodeError) as e:
        mh.MhMessage.decode(bytes(wire), PCOA, PAR)
    assert e.value.field == "checksum" and e.value.offset == 4
    assert mh.MhMessage.decode(bytes(wire)).options[-1] == mh.Badf(0, AUTH[:-1] + bytes([AUTH[-1] ^ 1]))


def test_decoded_checksum_is_as_received() -> None:
    wire = hi().encode(PAR, NAR)
    assert mh.MhMessage.decode(wire, PAR, NAR).checksum == int.from_bytes(wire[4:6], "big") != 0


# ---- strictness -----------------------------------------------------------------------------------------


def fail(data: bytes, src: IPv6Address | None = None, dst: IPv6Address | None = None) -> DecodeError:
    with pytest.raises(DecodeError) as e:
        mh.MhMessage.decode(data, src, dst)
    return e.value


def set_octet(data: bytes, i: int, v: int) -> bytes:
    return data[:i] + bytes([v]) + data[i + 1 :]


@pytest.mark.parametrize("proto", [0, 6, 58, 60, 135, 255])
def test_payload_proto_must_be_59(proto: int) -> None:
    wire = with_csum(PCOA, PAR, set_octet(fbu().encode_zeroed(), 0, proto))
    e = fail(wire, PCOA, PAR)
    assert e.field == "payload_proto" and e.offset == 0


def test_header_len_must_match_the_octets() -> None:
    z = fbu().encode_zeroed()
    for hlen in (0, 6, 8, 255):
        e = fail(with_csum(PCOA, PAR, set_octet(z, 1, hlen)), PCOA, PAR)
        assert e.field == "header_len" and e.offset == 1
    for data in (z + bytes(8), z[:-8], z[:-1], z + b"\x00"):
        assert fail(data).field == "header_len"
    assert fail(b"").field == "payload_proto"
    assert fail(b"\x3b\x00\x08\x00\x00").field == "checksum"  # too short for the common part


@pytest.mark.parametrize("mtype", [0, 5, 6, 10, 11, 13, 16, 255])
def test_unknown_mh_type_rejected(mtype: int) -> None:
    e = fail(with_csum(NAR, PAR, set_octet(hack().encode_zeroed(), 2, mtype)), NAR, PAR)
    assert e.field == "type" and e.offset == 2


def test_header_len_too_small_for_the_type() -> None:
    # Header Len 0 (8 octets) cannot hold the 6-octet common part plus HI's 4-octet fixed part
    assert isinstance(fail(hx("3b 00 0e 00 0000 0102")), DecodeError)
    assert isinstance(fail(hx("3b 02 07 00 0000 01 00") + bytes(10)), DecodeError)  # BE needs 18 octets


def test_truncated_and_overrunning_options() -> None:
    head = "3b 01 0f 00 0000 0102 0000"
    e = fail(hx(head + "0103 000000 07"))  # PadN(5), then a Type with no Length
    assert e.field == "option.length"
    e = fail(hx(head + "0705 02 000000"))  # MH-LLA Length 5 with 4 octets left
    assert e.field == "option 7"
    assert fail(hx(head + "0107 00000000")).field == "option 1"  # PadN running past the end
    assert fail(hx(head + "0310 00000000")).field == "option 3"  # Alternate CoA running past the end
    assert fail(hx(head + "0700 000000 00")).field == "mh_lla.code"  # MH-LLA without an Option-Code
    # Pad1 and PadN alone are fine and leave no option behind
    assert mh.MhMessage.decode(hx(head + "00 00 0102 0000")).options == ()


def test_alternate_coa_must_be_16_octets() -> None:
    head = "3b 03 0f 00 0000 0102 0000"
    assert fail(hx(head + "030e" + "11" * 14 + "0104 00000000")).field == "alternate_coa"
    assert fail(hx(head + "0312" + "11" * 18 + "0100")).field == "trailing"
    ok = mh.MhMessage.decode(hx(head + "0102 0000 0310" + NCOA.packed.hex()))
    assert ok.options == (mh.AlternateCoa(NCOA),)


def test_mh_ip_prefix_strict() -> None:
    z = hi().encode_zeroed()
    assert z[23] == 128
    for plen in (129, 200, 255):
        e = fail(with_csum(PAR, NAR, set_octet(z, 23, plen)), PAR, NAR)
        assert e.field == "ip_prefix.length"
    opt = mh.MhMessage.decode(with_csum(PAR, NAR, set_octet(z, 23, 0)), PAR, NAR).options[1]
    assert opt == mh.MhIpPrefix(1, 0, PCOA)
    head = "3b 03 0f 00 0000 0102 0000 0100"
    assert fail(hx(head + "2211 02 80" + "22" * 15 + "00")).field == "ip_prefix.address"
    assert fail(hx(head + "2213 02 80" + "22" * 17)[:-1]).field == "option 34"  # Length 19 overruns the header
    assert fail(hx("3b 04 0f 00 0000 0102 0000 0100 2213 02 80" + "22" * 17 + "0105 0000000000")).field == "trailing"


def test_unknown_option_is_kept_raw_and_padding_is_dropped() -> None:
    data = hx("3b 01 0f 00 0000 0102 0000 00 6402 abcd 00")
    m = mh.MhMessage.decode(data)
    assert m.options == (mh.RawMhOption(100, hx("abcd")),)
    assert m.options[0].encode() == hx("6402abcd")


def test_badf_must_be_last_when_encoding() -> None:
    for opts in (
        (mh.Badf(0, AUTH), mh.AlternateCoa(NCOA)),
        (mh.Badf(0, AUTH), mh.Badf(0, AUTH)),
        (mh.AlternateCoa(NCOA), mh.Badf(0, AUTH), mh.MhLinkLayerAddress(2, MAC)),
    ):
        m = mh.message(mh.Fbu(1, 1), opts)
        with pytest.raises(ValueError, match="last"):
            m.encode(PCOA, PAR)
        with pytest.raises(ValueError, match="last"):
            m.encode_zeroed()


BADF_LEN_AT = 47  # FBU_HEX: BADF Type at 46, Option Length at 47


@pytest.mark.parametrize("length", [12, 16])
def test_badf_option_length_both_readings_accepted(length: int) -> None:
    wire = with_csum(PCOA, PAR, set_octet(hx(FBU_HEX), BADF_LEN_AT, length))
    m = mh.MhMessage.decode(wire, PCOA, PAR)
    assert m.options == fbu().options
    assert m.options[-1] == mh.Badf(0, AUTH)


@pytest.mark.parametrize("length", [0, 4, 8, 11, 13, 15, 17, 20, 255])
def test_badf_option_length_other_values_rejected(length: int) -> None:
    e = fail(with_csum(PCOA, PAR, set_octet(hx(FBU_HEX), BADF_LEN_AT, length)), PCOA, PAR)
    assert e.field == "badf.length" and e.offset == 46


def test_badf_needs_an_spi_and_an_authenticator() -> None:
    head = "3b 02 09 00 0000 00 00 0001 0001"
    assert fail(hx(head + "0104 00000000 1504 00000000")).field == "badf.authenticator"  # SPI, nothing after it
    assert fail(hx(head + "0106 000000000000 1502 0000")).field == "badf.spi"
    one = mh.MhMessage.decode(hx(head + "0103 000000 1505 00000007 99"))
    assert one.options == (mh.Badf(7, b"\x99"),)


# ---- the BADF authenticator input (RFC 6275 §6.2.7, RFC 5568 §6.4.5) ---------------------------------


def test_badf_input_known_answer() -> None:
    z = hx(FBU_HEX)
    assert fbu().badf_input() == z[:-12]
    assert z[:-12].endswith(hx("1510 00000000"))  # through the SPI, the Option Length counting SPI + auth
    wire = fbu().encode(PCOA, PAR)
    assert fbu().badf_input() == wire[:4] + b"\x00\x00" + wire[6:-12]


@given(msg=messages(), auth=st.binary(min_size=1, max_size=40), auth2=st.binary(min_size=1, max_size=40))
def test_badf_input_is_zeroed_encoding_minus_authenticator(msg: mh.MhMessage, auth: bytes, auth2: bytes) -> None:
    base = tuple(o for o in msg.options if not isinstance(o, mh.Badf))
    a = replace(msg, options=(*base, mh.Badf(0, auth)))
    b = replace(msg, options=(*base, mh.Badf(0, auth2[:1] * len(auth))))  # same length, other value
    assert a.badf_input() == a.encode_zeroed()[: -len(auth)]
    assert a.badf_input() == b.badf_input()
    assert a.encode_zeroed()[4:6] == b"\x00\x00"
    wire = a.encode(PCOA, PAR)
    assert a.badf_input() == wire[:4] + b"\x00\x00" + wire[6 : -len(auth)]


def test_badf_input_without_badf_last() -> None:
    with pytest.raises(ValueError, match="BADF"):
        hack().badf_input()
    with pytest.raises(ValueError, match="BADF"):
        replace(fbu(), options=(mh.Badf(0, AUTH), mh.AlternateCoa(NCOA))).badf_input()


def received_mh_data(wire: bytes, auth_len: int) -> bytes:
    """MH Data as RFC 6275 §6.2.7 defines it on receipt: the Mobility Header as received, checksum
    zeroed, without the Authenticator."""
    return wire[:4] + b"\x00\x00" + wire[6:-auth_len]


def test_badf_input_of_a_received_fbu_is_what_was_received() -> None:
    wire = fbu().encode(PCOA, PAR)
    m = mh.MhMessage.decode(wire, PCOA, PAR)
    assert m.badf_input() == received_mh_data(wire, 12)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda z: set_octet(z, BADF_LEN_AT, 12), id="badf_literal_option_length"),
        pytest.param(lambda z: z[:12] + b"\x00\x00" + z[14:], id="two_pad1_instead_of_padn"),
    ],
)
def test_badf_input_of_an_accepted_non_canonical_fbu_is_what_was_received(variant) -> None:  # type: ignore[no-untyped-def]
    """A peer that uses the literal RFC 5568 §6.4.5 Option Length (12), or other valid padding, has
    its FBU accepted by decode; the authenticator it computed covers *its* octets, so badf_input()
    (which ard/fmip.py verifies the MAC over) must return those octets, not a re-encoding."""
    wire = with_csum(PCOA, PAR, variant(hx(FBU_HEX)))
    m = mh.MhMessage.decode(wire, PCOA, PAR)
    assert m.options == fbu().options
    assert m.badf_input() == received_mh_data(wire, 12)


def test_badf_literal_length_255_authenticator_on_receipt() -> None:
    """BADF Option Length 255 read literally = a 255-octet authenticator (SPI + auth = 259 octets).
    decode may refuse it (DecodeError) or accept it; if it accepts it, verifying it (badf_input) must
    not blow up with anything else, as ard/fmip.py calls badf_input() on every decoded FBU."""
    auth = bytes(range(255))
    body = hx("00 00 0001 0001 0105 0000000000 15ff 00000000") + auth  # BADF at 19..280
    data = hx("3b 22 09 00 0000") + body
    assert len(data) == 280 and data[1] == 280 // 8 - 1
    wire = with_csum(PAR, NCOA, data)
    try:
        m = mh.MhMessage.decode(wire, PAR, NCOA)
    except DecodeError:
        return
    assert m.options == (mh.Badf(0, auth),)
    assert m.badf_input() == received_mh_data(wire, 255)


# ---- Home Address option and parse_ipv6_mh (RFC 6275 §6.3, §6.1.1) --------------------------------------


def test_hoa_dstopts_bytes() -> None:
    d = mh.hoa_dstopts(PCOA)
    assert d == hx("87 02 0102 0000 c9 10") + PCOA.packed
    assert len(d) == 8 * (d[1] + 1) and d.index(0xC9) == 6  # Home Address option at 8n+6
    assert mh.hoa_dstopts(PCOA, 59)[0] == 59


def test_build_ipv6_header() -> None:
    p = mh.build_ipv6(NCOA, PAR, b"abcdefgh", 60, 255)
    assert p[:8] == hx("60000000 0008 3c ff") and p[8:24] == NCOA.packed and p[24:40] == PAR.packed
    assert p[40:] == b"abcdefgh"


def fbu_packet(mh_src: IPv6Address = PCOA, dstopts: bytes | None = None) -> bytes:
    d = mh.hoa_dstopts(PCOA) if dstopts is None else dstopts
    return mh.build_ipv6(NCOA, PAR, d + fbu().encode(mh_src, PAR), mh.IPPROTO_DSTOPTS, 255)


def test_parse_ipv6_mh_with_home_address_option() -> None:
    pkt = mh.parse_ipv6_mh(fbu_packet())
    wire = fbu().encode(PCOA, PAR)
    assert pkt == mh.MhPacket(NCOA, PAR, 255, PCOA, replace(fbu(), checksum=int.from_bytes(wire[4:6], "big")))
    # the checksum covers the HoA as pseudo-header source, not the IPv6 source (RFC 6275 §6.1.1)
    with pytest.raises(DecodeError) as e:
        mh.parse_ipv6_mh(fbu_packet(mh_src=NCOA))
    assert e.value.field == "checksum"


def test_parse_ipv6_mh_without_dstopts() -> None:
    msg = hi()
    wire = msg.encode(PAR, NAR)
    pkt = mh.parse_ipv6_mh(mh.build_ipv6(PAR, NAR, wire, mh.IPPROTO_MH))
    assert pkt.home is None and pkt.src == PAR and pkt.dst == NAR and pkt.hop_limit == 64
    assert pkt.mh == replace(msg, checksum=int.from_bytes(wire[4:6], "big"))
    with pytest.raises(DecodeError) as e:
        mh.parse_ipv6_mh(mh.build_ipv6(NCOA, NAR, wire, mh.IPPROTO_MH))
    assert e.value.field == "checksum"


def test_parse_ipv6_mh_payload_length() -> None:
    p = fbu_packet()
    plen = len(p) - 40
    for bad in (plen - 1, plen + 1, 0, 0xFFFF):
        with pytest.raises(DecodeError) as e:
            mh.parse_ipv6_mh(p[:4] + bad.to_bytes(2, "big") + p[6:])
        assert e.value.field == "ip.payload_len"
    for cut in (p[:-1], p + b"\x00", p[:39]):
        with pytest.raises(DecodeError):
            mh.parse_ipv6_mh(cut)


def test_parse_ipv6_mh_rejects_non_ipv6_and_non_mh() -> None:
    p = fbu_packet()
    with pytest.raises(DecodeError) as e:
        mh.parse_ipv6_mh(b"\x45" + p[1:])
    assert e.value.field == "ip.version"
    d = mh.hoa_dstopts(PCOA, next_header=58)
    with pytest.raises(DecodeError) as e:
        mh.parse_ipv6_mh(fbu_packet(dstopts=d))
    assert e.value.field == "ip.next"
    with pytest.raises(DecodeError) as e:
        mh.parse_ipv6_mh(mh.build_ipv6(NCOA, PAR, fbu().encode(NCOA, PAR), 17))
    assert e.value.field == "ip.next"


@pytest.mark.parametrize("otype", [0x1E, 0x3F, 0x02])
def test_unknown_skippable_dstopt_is_skipped(otype: int) -> None:
    d = mh.hoa_dstopts(PCOA)
    pkt = mh.parse_ipv6_mh(fbu_packet(dstopts=d[:2] + bytes([otype, 2, 0xAB, 0xCD]) + d[6:]))
    assert pkt.home == PCOA


@pytest.mark.parametrize("otype", [0x5E, 0x7F, 0x9E, 0xBF, 0xDE, 0xFF, 0x40, 0x80, 0xC2])
def test_unknown_dstopt_with_action_bits_is_rejected(otype: int) -> None:
    d = mh.hoa_dstopts(PCOA)
    with pytest.raises(DecodeError) as e:
        mh.parse_ipv6_mh(fbu_packet(dstopts=d[:2] + bytes([otype, 2, 0, 0]) + d[6:]))
    assert e.value.field == "dstopt.type"


def test_two_home_address_options_rejected() -> None:
    d = hx("87 05 0102 0000 c910") + PCOA.packed + hx("0104 00000000 c910") + NCOA.packed
    assert len(d) == 48 and d[30] == 0xC9
    with pytest.raises(DecodeError) as e:
        mh.parse_ipv6_mh(fbu_packet(dstopts=d))
    assert e.value.field == "hoa"
    same = hx("87 05 0102 0000 c910") + PCOA.packed + hx("0104 00000000 c910") + PCOA.packed
    with pytest.raises(DecodeError):
        mh.parse_ipv6_mh(fbu_packet(dstopts=same))


def test_home_address_option_length_must_be_16() -> None:
    d = hx("87 02 0104 00000000 c90e") + PCOA.packed[:14]
    assert len(d) == 24
    with pytest.raises(DecodeError) as e:
        mh.parse_ipv6_mh(fbu_packet(dstopts=d))
    assert e.value.field == "hoa"


def test_dstopts_overrun_rejected() -> None:
    d = mh.hoa_dstopts(PCOA)
    for bad in (set_octet(d, 1, 3), d[:2] + hx("0105 0000") + d[6:], d[:6] + hx("c911") + d[8:]):
        with pytest.raises(DecodeError):
            mh.parse_ipv6_mh(fbu_packet(dstopts=bad))


def test_dstopts_without_home_address() -> None:
    d = hx("87 00 0104 00000000")
    pkt = mh.parse_ipv6_mh(mh.build_ipv6(PAR, NAR, d + hi().encode(PAR, NAR), mh.IPPROTO_DSTOPTS))
    assert pkt.home is None and pkt.mh.mh_type == mh.MhType.HI


# ---- ND: options and builders (RFC 4861 §4.1, §4.2, §4.4, §4.6; RFC 3971 §6.4; RFC 5568 §6.1) ------------

PREFIX = IPv6Address("2001:db8:1::")
LL = IPv6Address("fe80::1")
ALL_NODES = IPv6Address("ff02::1")


def icmp_csum_ok(src: IPv6Address, dst: IPv6Address, msg: bytes) -> bool:
    return csum_ok(src, dst, msg, nh=58)


def test_prefix_info_exact_bytes_and_round_trip() -> None:
    pio = nd.PrefixInfo(64, 0xC0, 2592000, 604800, PREFIX)
    enc = pio.encode()
    # Type 3, Length 4, Prefix Length, L|A|Reserved1, Valid (32), Preferred (32), Reserved2 (32), Prefix
    assert enc == hx("03 04 40 c0 00278d00 00093a80 00000000") + PREFIX.packed
    assert len(enc) == 32
    assert nd.decode_options(enc) == [(0, pio)]
    router = nd.PrefixInfo(64, 0xE0, 0xFFFFFFFF, 0, PAR)  # R set: the router's full address (RFC 6275 §7.2)
    assert router.encode()[3] == 0xE0 and nd.decode_options(router.encode()) == [(0, router)]


@given(
    plen=st.integers(0, 128),
    flags=st.integers(0, 255),
    valid=st.integers(0, 2**32 - 1),
    pref=st.integers(0, 2**32 - 1),
    a=addrs,
)
def test_prefix_info_round_trip_any(plen: int, flags: int, valid: int, pref: int, a: IPv6Address) -> None:
    pio = nd.PrefixInfo(plen, flags, valid, pref, a)
    assert nd.decode_options(pio.encode()) == [(0, pio)]


def test_prefix_info_strict() -> None:
    enc = nd.PrefixInfo(64, 0xC0, 1, 1, PREFIX).encode()
    with pytest.raises(DecodeError) as e:
        nd.decode_options(set_octet(enc, 2, 129))
    assert e.value.field == "pio.prefix_len"
    with pytest.raises(DecodeError) as e:
        nd.decode_options(set_octet(enc, 1, 5) + bytes(8))
    assert e.value.field == "pio.length"
    with pytest.raises(DecodeError) as e:
        nd.decode_options(set_octet(enc[:24], 1, 3))
    assert e.value.field == "pio.length"
    with pytest.raises(DecodeError):
        nd.decode_options(set_octet(enc, 1, 0))


def test_lla_options_bytes() -> None:
    assert nd.SourceLla(MAC).encode() == hx("01 01") + MAC
    assert nd.TargetLla(MAC).encode() == hx("02 01") + MAC
    assert nd.decode_options(hx("01 01") + MAC + hx("02 01") + MAC) == [(0, nd.SourceLla(MAC)), (8, nd.TargetLla(MAC))]
    assert nd.decode_options(hx("01 02") + MAC + bytes(8)) == [(0, nd.SourceLla(MAC))]


def test_router_solicitation_layout() -> None:
    m = nd.router_solicitation((nd.SourceLla(MAC),))
    wire = m.encode(NCOA, IPv6Address("ff02::2"))
    assert wire[:2] == hx("8500") and wire[4:] == hx("00000000 0101") + MAC
    assert icmp_csum_ok(NCOA, IPv6Address("ff02::2"), wire)


def test_router_advertisement_layout() -> None:
    pio = nd.PrefixInfo(64, 0xC0, 86400, 14400, PREFIX)
    m = nd.router_advertisement(1800, (nd.SourceLla(MAC), pio), hop_limit=64)
    wire = m.encode(LL, ALL_NODES)
    # Type 134, Code 0, Checksum | Cur Hop Limit, M|O|Reserved, Router Lifetime | Reachable | Retrans
    expected = hx("86 00 0000 40 00 0708 00000000 00000000 0101") + MAC + pio.encode()
    assert wire == with_csum(LL, ALL_NODES, expected, nh=58, at=2)
    assert icmp_csum_ok(LL, ALL_NODES, wire)
    back = nd.NdMessage.decode(wire)
    assert back == replace(m, checksum=int.from_bytes(wire[2:4], "big"))
    assert back.first(nd.PrefixInfo) == pio and back.first(nd.SourceLla) == nd.SourceLla(MAC)
    assert back.identifier == 0 and back.subtype == -1
    assert nd.router_advertisement(0, (), hop_limit=255).body == hx("ff 00 0000 00000000 00000000")


@pytest.mark.parametrize(("flags", "octet"), [(0x00, 0x00), (0x80, 0x80), (0x40, 0x40), (0x20, 0x20), (0xE0, 0xE0)])
def test_neighbor_advertisement_flags(flags: int, octet: int) -> None:
    m = nd.neighbor_advertisement(NCOA, flags, (nd.TargetLla(MAC),))
    wire = m.encode(NCOA, ALL_NODES)
    assert wire[0] == 136 and wire[1] == 0
    assert wire[4:] == bytes([octet, 0, 0, 0]) + NCOA.packed + hx("0201") + MAC
    assert icmp_csum_ok(NCOA, ALL_NODES, wire)
    back = nd.NdMessage.decode(wire)
    assert back.body[0] == octet and back.options == (nd.TargetLla(MAC),)
    assert back == replace(m, checksum=int.from_bytes(wire[2:4], "big"))


def test_identifier_cps_cpa_vs_fmipv6() -> None:
    c = nd.cps(0xABCD, 0x1234)
    assert c.body == hx("abcd 1234") and c.identifier == 0xABCD
    a = nd.cpa(0x4321, 3, 2, ())
    assert a.body == hx("4321 0003 0002 0000") and a.identifier == 0x4321
    r = nd.rtsolpr(0x5555, ())
    assert r.body == hx("02 00 5555") and r.identifier == 0x5555 and r.subtype == 2
    p = nd.prrtadv(1, 0x0102, ())
    assert p.body == hx("03 00 0102") and p.identifier == 0x0102 and p.subtype == 3
    # the same four body octets read differently by type
    body = hx("0203 0405")
    assert nd.NdMessage(nd.IcmpType.CPS, 0, body).identifier == 0x0203
    assert nd.NdMessage(nd.IcmpType.FMIPV6, 0, body).identifier == 0x0405
    assert nd.NdMessage(nd.IcmpType.ROUTER_SOLICITATION, 0, body).identifier == 0
    for m in (c, a, r, p):
        wire = m.encode(LL, ALL_NODES)
        assert nd.NdMessage.decode(wire).identifier == m.identifier
