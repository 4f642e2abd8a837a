"""Hypothesis on the FMIPv6 receive-path parsers: MhMessage.decode, parse_ipv6_mh and NdMessage.decode
(RA/NA/RS with the Source/Target LLA and Prefix Information options) give a value or DecodeError,
never anything else, on random bytes and on mutations of valid packets."""

from __future__ import annotations

import contextlib
from ipaddress import IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobility.wire import mh, nd
from mobility.wire.buffer import DecodeError

pytestmark = pytest.mark.fuzz

SRC = IPv6Address("2001:db8:2::10")
DST = IPv6Address("2001:db8:1::1")
HOA = IPv6Address("2001:db8:1::10")

addrs = st.integers(min_value=0, max_value=(1 << 128) - 1).map(IPv6Address)
u16 = st.integers(0, 0xFFFF)
mh_options = st.one_of(
    addrs.map(mh.AlternateCoa),
    st.builds(mh.MhLinkLayerAddress, st.integers(0, 255), st.binary(max_size=12)),
    st.builds(mh.MhIpPrefix, st.integers(0, 255), st.integers(0, 128), addrs),
    st.builds(mh.RawMhOption, st.integers(2, 255).filter(lambda t: t not in (3, 7, 21, 34)), st.binary(max_size=24)),
)
mh_kinds = st.one_of(
    st.builds(mh.Fbu, u16, u16, u16),
    st.builds(mh.Fback, st.integers(0, 255), u16, u16, st.integers(0, 255)),
    st.builds(mh.Hi, u16, st.integers(0, 255), st.booleans(), st.booleans()),
    st.builds(mh.Hack, u16, st.integers(0, 255)),
)


@st.composite
def mh_messages(draw: st.DrawFn) -> mh.MhMessage:
    opts = tuple(draw(st.lists(mh_options, max_size=5)))
    if draw(st.booleans()):
        opts = (*opts, mh.Badf(draw(st.integers(0, 0xFFFFFFFF)), draw(st.binary(min_size=1, max_size=32))))
    return mh.message(draw(mh_kinds), opts)


# (kind, position, value): 0 set, 1 flip a bit, 2 insert, 3 delete, 4 truncate
mutations = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4096), st.integers(0, 255)), min_size=1, max_size=6)


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    b = bytearray(data)
    for kind, pos, val in ops:
        if kind == 2:
            b.insert(pos % (len(b) + 1), val)
            continue
        if not b:
            continue
        i = pos % len(b)
        if kind == 0:
            b[i] = val
        elif kind == 1:
            b[i] ^= 1 << (val % 8)
        elif kind == 3:
            del b[i]
        else:
            del b[i:]
    return bytes(b)


def fix_mh(data: bytes, src: IPv6Address, dst: IPv6Address) -> bytes:
    """Make Header Len and the checksum right again so the mutation reaches the option parsers."""
    if len(data) < 8 or len(data) % 8 or len(data) > 2048:
        return data
    b = data[:1] + bytes([len(data) // 8 - 1]) + data[2:]
    return mh.with_checksum(src, dst, b)


def decode_mh(data: bytes, src: IPv6Address | None, dst: IPv6Address | None) -> None:
    with contextlib.suppress(DecodeError):
        m = mh.MhMessage.decode(data, src, dst)
        assert len(data) % 8 == 0 and data[0] == 59
        assert m.mh_type in (7, 8, 9, 14, 15)


def parse_pkt(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        p = mh.parse_ipv6_mh(data)
        assert isinstance(p.mh, mh.MhMessage)


# ---- Mobility Header ------------------------------------------------------------------------------------


@settings(max_examples=500)
@given(data=st.binary(max_size=600))
def test_mh_decode_random_bytes(data: bytes) -> None:
    decode_mh(data, None, None)
    decode_mh(data, SRC, DST)


@settings(max_examples=500)
@given(
    mtype=st.sampled_from([7, 8, 9, 14, 15, 0, 5, 255]),
    blocks=st.integers(0, 40),
    body=st.binary(max_size=330),
    fill=st.integers(0, 255),
)
def test_mh_decode_valid_header_random_options(mtype: int, blocks: int, body: bytes, fill: int) -> None:
    """Payload Proto, Header Len and the checksum right: the fixed part and options are random."""
    size = 8 * (blocks + 1)
    rest = (body + bytes([fill]) * size)[: size - 6]
    data = mh.with_checksum(SRC, DST, bytes([59, blocks, mtype, 0, 0, 0]) + rest)
    decode_mh(data, SRC, DST)


@st.composite
def option_soup(draw: st.DrawFn) -> bytes:
    """TLVs with plausible types and lengths (often wrong by a few octets)."""
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        t = draw(st.sampled_from([0, 1, 3, 7, 21, 34, 2, 200]))
        if t == 0:
            out += b"\x00"
            continue
        n = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 12, 15, 16, 17, 18, 19, 255])) if draw(st.booleans()) else None
        n = draw(st.integers(0, 40)) if n is None else n
        out += bytes([t, n]) + draw(st.binary(min_size=0, max_size=n + 4))
    return out


@settings(max_examples=500)
@given(mtype=st.sampled_from([8, 9, 14, 15, 7]), fixed=st.binary(min_size=18, max_size=18), soup=option_soup())
def test_mh_decode_option_soup(mtype: int, fixed: bytes, soup: bytes) -> None:
    head = bytes([59, 0, mtype, 0, 0, 0]) + fixed[: mh.FIXED_LEN[mh.MhType(mtype)]]
    data = head + soup
    data += bytes(-len(data) % 8)
    decode_mh(fix_mh(data, SRC, DST), SRC, DST)
    decode_mh(data, None, None)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(msg=mh_messages(), ops=mutations, fix=st.booleans())
def test_mh_decode_mutated_valid(msg: mh.MhMessage, ops: list[tuple[int, int, int]], fix: bool) -> None:
    wire = msg.encode(SRC, DST)
    bad = mutate(wire, ops)
    if fix:
        bad = fix_mh(bad, SRC, DST)
    decode_mh(bad, SRC, DST)
    decode_mh(bad, None, None)


# ---- IPv6 + [Destination Options] + Mobility Header ----------------------------------------------------


@settings(max_examples=500)
@given(data=st.binary(max_size=400))
def test_parse_ipv6_mh_random_bytes(data: bytes) -> None:
    parse_pkt(data)
    if len(data) >= 40:  # with a consistent IPv6 header: next header DSTOPTS or MH
        for nh in (mh.IPPROTO_DSTOPTS, mh.IPPROTO_MH):
            parse_pkt(mh.build_ipv6(SRC, DST, data[40:], nh))


@settings(max_examples=500)
@given(
    dstopts=st.binary(max_size=64),
    hlen=st.integers(0, 7),
    nh=st.sampled_from([135, 58, 59, 60]),
    msg=mh_messages(),
)
def test_parse_ipv6_mh_random_dstopts(dstopts: bytes, hlen: int, nh: int, msg: mh.MhMessage) -> None:
    size = 8 * (hlen + 1)
    d = bytes([nh, hlen]) + (dstopts + bytes(size))[: size - 2]
    parse_pkt(mh.build_ipv6(SRC, DST, d + msg.encode(HOA, DST), mh.IPPROTO_DSTOPTS))
    parse_pkt(mh.build_ipv6(SRC, DST, d + msg.encode(SRC, DST), mh.IPPROTO_DSTOPTS))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(msg=mh_messages(), ops=mutations, fix_len=st.booleans(), with_hoa=st.booleans())
def test_parse_ipv6_mh_mutated_valid(
    msg: mh.MhMessage, ops: list[tuple[int, int, int]], fix_len: bool, with_hoa: bool
) -> None:
    if with_hoa:
        pkt = mh.build_ipv6(SRC, DST, mh.hoa_dstopts(HOA) + msg.encode(HOA, DST), mh.IPPROTO_DSTOPTS)
    else:
        pkt = mh.build_ipv6(SRC, DST, msg.encode(SRC, DST), mh.IPPROTO_MH)
    parse_pkt(pkt)
    bad = mutate(pkt, ops)
    if fix_len and len(bad) >= 40:
        bad = bad[:4] + (len(bad) - 40).to_bytes(2, "big") + bad[6:]
    parse_pkt(bad)


# ---- ND with the new options -------------------------------------------------------------------------

nd_options = st.one_of(
    st.binary(min_size=6, max_size=6).map(nd.SourceLla),
    st.binary(min_size=6, max_size=6).map(nd.TargetLla),
    st.builds(
        nd.PrefixInfo,
        st.integers(0, 128),
        st.integers(0, 255),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        addrs,
    ),
)


@st.composite
def nd_messages(draw: st.DrawFn) -> nd.NdMessage:
    opts = tuple(draw(st.lists(nd_options, max_size=4)))
    which = draw(st.integers(0, 2))
    if which == 0:
        return nd.router_advertisement(draw(u16), opts, draw(st.integers(0, 255)))
    if which == 1:
        return nd.neighbor_advertisement(draw(addrs), draw(st.integers(0, 255)), opts)
    return nd.router_solicitation(opts)


def decode_nd(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        nd.NdMessage.decode(data)


@settings(max_examples=500)
@given(mtype=st.sampled_from([133, 134, 136]), data=st.binary(max_size=300))
def test_nd_decode_random_after_type(mtype: int, data: bytes) -> None:
    decode_nd(bytes([mtype]) + data)


@settings(max_examples=500)
@given(
    msg=nd_messages(),
    opts=st.lists(st.tuples(st.sampled_from([1, 2, 3, 0, 200]), st.integers(0, 6), st.binary(max_size=56)), max_size=4),
)
def test_nd_decode_random_options(msg: nd.NdMessage, opts: list[tuple[int, int, bytes]]) -> None:
    tail = b"".join(bytes([t, n]) + (body + bytes(64))[: max(8 * n - 2, 0)] for t, n, body in opts)
    decode_nd(msg.encode(SRC, DST) + tail)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(msg=nd_messages(), ops=mutations)
def test_nd_decode_mutated_valid(msg: nd.NdMessage, ops: list[tuple[int, int, int]]) -> None:
    wire = msg.encode(SRC, DST)
    back = nd.NdMessage.decode(wire)
    assert back.options == msg.options and back.body == msg.body
    decode_nd(mutate(wire, ops))
