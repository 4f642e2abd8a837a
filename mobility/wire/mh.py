"""Mobility Header (RFC 6275 §6.1) for the FMIPv6 messages (RFC 5568 §6.2): FBU (type 8), FBack
(type 9), HI (type 14), HAck (type 15) and Binding Error (type 7); the mobility options they carry
(§6.2 of RFC 6275, §6.4 of RFC 5568) and the Home Address destination option (RFC 6275 §6.3).

Strict: Payload Proto must be 59, Header Len must cover the message and match the octets present,
the checksum must verify, options must fit exactly, the BADF option must be last (RFC 5568 §6.4.5).

Option Length of BADF (type 21): RFC 5568 §6.4.5 literally says "the length of the Authenticator",
while every other mobility option counts all its data octets. We emit the general convention
(SPI + Authenticator, what Wireshark dissects) and accept both readings on receipt; since BADF is
the last option, the Authenticator is simply the rest of the header (specs/fmipv6.md §5.5).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv6Address
from typing import ClassVar

from mobility.wire.buffer import DecodeError, Reader
from mobility.wire.ip import checksum, l4_checksum_ok, pseudo_header

PROTO = "mh"
IPPROTO_MH = 135  # RFC 6275 §6.1.1
IPPROTO_DSTOPTS = 60
IPPROTO_NONE = 59
HOA_OPTION = 201  # RFC 6275 §6.3


class MhType(IntEnum):
    BINDING_ERROR = 7  # RFC 6275 §6.1.9
    FBU = 8  # RFC 5568 §6.2.2
    FBACK = 9  # RFC 5568 §6.2.3
    HI = 14  # RFC 5568 §6.2.1.1
    HACK = 15  # RFC 5568 §6.2.1.2


FIXED_LEN = {MhType.BINDING_ERROR: 18, MhType.FBU: 6, MhType.FBACK: 6, MhType.HI: 4, MhType.HACK: 4}


class FbackStatus(IntEnum):  # RFC 5568 §6.2.3
    ACCEPTED = 0
    ACCEPTED_USE_ALT_NCOA = 1
    UNSPECIFIED = 128
    PROHIBITED = 129
    NO_RESOURCES = 130
    BAD_IID_LENGTH = 131


class HackCode(IntEnum):  # RFC 5568 §6.2.1.2
    ACCEPTED = 0
    NCOA_INVALID = 1
    NCOA_ASSIGNED = 2
    USE_PCOA = 3
    UNSOLICITED = 4
    UNSPECIFIED = 128
    PROHIBITED = 129
    NO_RESOURCES = 130


# ---- options --------------------------------------------------------------------------------------


class MhOption:
    TYPE: ClassVar[int]
    ALIGN: ClassVar[tuple[int, int]] = (1, 0)  # xn+y (RFC 6275 §6.2)

    def data(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        d = self.data()
        return bytes([self.TYPE, len(d)]) + d

    @classmethod
    def parse(cls, r: Reader) -> MhOption:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class RawMhOption(MhOption):
    otype: int
    body: bytes

    def data(self) -> bytes:
        return self.body

    def encode(self) -> bytes:
        return bytes([self.otype, len(self.body)]) + self.body


@dataclass(frozen=True, slots=True)
class AlternateCoa(MhOption):  # RFC 6275 §6.2.5
    TYPE = 3
    ALIGN = (8, 6)
    address: IPv6Address

    def data(self) -> bytes:
        return self.address.packed

    @classmethod
    def parse(cls, r: Reader) -> AlternateCoa:
        a = r.ip6("alternate_coa")
        r.end()
        return cls(a)


@dataclass(frozen=True, slots=True)
class MhLinkLayerAddress(MhOption):  # RFC 5568 §6.4.4: Option-Code 2 = the MN's LLA
    TYPE = 7
    code: int
    lla: bytes

    def data(self) -> bytes:
        return bytes([self.code]) + self.lla

    @classmethod
    def parse(cls, r: Reader) -> MhLinkLayerAddress:
        return cls(r.u8("mh_lla.code"), r.rest())


@dataclass(frozen=True, slots=True)
class MhIpPrefix(MhOption):  # RFC 5568 §6.4.2 (type 34 per §11): 1 = PCoA, 2 = NCoA, 3 = NAR, 4 = NAR prefix
    TYPE = 34
    ALIGN = (8, 4)
    code: int
    prefix_len: int
    address: IPv6Address

    def data(self) -> bytes:
        return bytes([self.code, self.prefix_len]) + self.address.packed

    @classmethod
    def parse(cls, r: Reader) -> MhIpPrefix:
        code, plen = r.u8("ip_prefix.code"), r.u8("ip_prefix.length")
        if plen > 128:
            raise r.fail("ip_prefix.length", f"{plen} > 128")
        a = r.ip6("ip_prefix.address")
        r.end()
        return cls(code, plen, a)


@dataclass(frozen=True, slots=True)
class Badf(MhOption):  # RFC 5568 §6.4.5; SPI 0 = SEND-based handover key (RFC 5269)
    TYPE = 21
    spi: int
    authenticator: bytes

    def data(self) -> bytes:
        return struct.pack("!I", self.spi) + self.authenticator

    @classmethod
    def parse(cls, r: Reader) -> Badf:
        spi = r.u32("badf.spi")
        auth = r.rest()
        if not auth:
            raise r.fail("badf.authenticator", "empty")
        return cls(spi, auth)


OPTIONS: dict[int, type[MhOption]] = {c.TYPE: c for c in (AlternateCoa, MhLinkLayerAddress, MhIpPrefix, Badf)}


def _pad(n: int) -> bytes:
    if n == 0:
        return b""
    if n == 1:
        return b"\x00"  # Pad1
    return bytes([1, n - 2]) + bytes(n - 2)  # PadN


def encode_options(start: int, options: tuple[MhOption, ...]) -> bytes:
    """Options from MH offset `start`, aligned (RFC 6275 §6.2), the whole header padded to 8 octets.
    BADF is placed so that it ends the header with no padding after it (RFC 5568 §6.4.5)."""
    out = b""
    for i, o in enumerate(options):
        enc = o.encode()
        pos = start + len(out)
        if isinstance(o, Badf):
            if i != len(options) - 1:
                raise ValueError("BADF must be the last mobility option")
            out += _pad((-(pos + len(enc))) % 8) + enc
            return out
        x, y = o.ALIGN
        out += _pad((y - pos) % x) + enc
    return out + _pad((-(start + len(out))) % 8)


def decode_options(r: Reader) -> tuple[MhOption, ...]:
    out: list[MhOption] = []
    while r.remaining:
        start = r.offset
        otype = r.u8("option.type")
        if otype == 0:  # Pad1
            continue
        length = r.u8("option.length")
        if otype == Badf.TYPE:
            # last option: its data runs to the end of the header (accept either Length reading)
            body = r.rest()
            if length not in (len(body), len(body) - 4):
                raise r.fail("badf.length", f"{length} does not match the {len(body)} octets left", start)
            out.append(Badf.parse(Reader(body, PROTO)))
            break
        body = r.take(length, f"option {otype}")
        if otype == 1:  # PadN
            continue
        cls = OPTIONS.get(otype)
        out.append(RawMhOption(otype, body) if cls is None else cls.parse(Reader(body, PROTO)))
    return tuple(out)


# ---- messages ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MhMessage:
    mh_type: int
    fixed: bytes  # the type-specific fixed part (FIXED_LEN octets)
    options: tuple[MhOption, ...] = ()
    checksum: int = 0  # as received
    raw: bytes = field(default=b"", compare=False, repr=False)  # the octets as received

    def encode_zeroed(self) -> bytes:
        """The whole header with the checksum field zero."""
        opts = encode_options(6 + len(self.fixed), self.options)
        total = 6 + len(self.fixed) + len(opts)
        assert total % 8 == 0
        return struct.pack("!BBBBH", IPPROTO_NONE, total // 8 - 1, self.mh_type, 0, 0) + self.fixed + opts

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        """`src` is the pseudo-header source: the Home Address when a HoA option goes along (RFC 6275
        §6.1.1)."""
        return with_checksum(src, dst, self.encode_zeroed())

    @classmethod
    def decode(cls, data: bytes, src: IPv6Address | None = None, dst: IPv6Address | None = None) -> MhMessage:
        """With `src` and `dst`, the checksum is verified (RFC 6275 §9.2: a bad one is silently dropped)."""
        if (src is None) != (dst is None):
            raise ValueError("give both addresses of the pseudo-header, or neither")
        r = Reader(data, PROTO)
        proto, hlen, mtype, _res, csum = (
            r.u8("payload_proto"),
            r.u8("header_len"),
            r.u8("type"),
            r.u8("res"),
            r.u16("checksum"),
        )
        if proto != IPPROTO_NONE:
            raise r.fail("payload_proto", f"{proto}, not 59 (RFC 6275 §6.1.1)", 0)
        if 8 * (hlen + 1) != len(data):
            raise r.fail("header_len", f"{8 * (hlen + 1)} octets announced, {len(data)} present", 1)
        n = FIXED_LEN.get(mtype)  # type: ignore[call-overload]
        if n is None:
            raise r.fail("type", f"MH type {mtype} is not handled here", 2)
        if src is not None and dst is not None and not l4_checksum_ok(src.packed, dst.packed, IPPROTO_MH, data):
            raise r.fail("checksum", "does not verify", 4)
        fixed = r.take(n, "message")
        return cls(mtype, fixed, decode_options(r), csum, data)

    def first(self, kind: type[MhOption]) -> MhOption | None:
        return next((o for o in self.options if type(o) is kind), None)

    def badf_input(self) -> bytes:
        """MH Data for the authenticator: the header with the checksum zeroed, without the
        Authenticator field (RFC 6275 §6.2.7, RFC 5568 §6.4.5)."""
        b = self.options[-1] if self.options else None
        if not isinstance(b, Badf):
            raise ValueError("no BADF option last")
        if self.raw:  # received: exactly the octets that arrived (any padding, either BADF Length reading)
            return self.raw[:4] + b"\x00\x00" + self.raw[6 : len(self.raw) - len(b.authenticator)]
        return self.encode_zeroed()[: -len(b.authenticator)]


def with_checksum(src: IPv6Address, dst: IPv6Address, mh: bytes) -> bytes:
    zeroed = mh[:4] + b"\x00\x00" + mh[6:]
    c = checksum(pseudo_header(src.packed, dst.packed, IPPROTO_MH, len(zeroed)) + zeroed)
    return mh[:4] + c.to_bytes(2, "big") + mh[6:]


@dataclass(frozen=True, slots=True)
class Fbu:  # RFC 5568 §6.2.2: the Binding Update layout; Lifetime in seconds (A and H set)
    seq: int
    lifetime: int
    flags: int = 0xC000  # A | H

    def fixed(self) -> bytes:
        return struct.pack("!HHH", self.seq, self.flags, self.lifetime)

    @classmethod
    def of(cls, m: MhMessage) -> Fbu:
        seq, flags, life = struct.unpack("!HHH", m.fixed)
        return cls(seq, life, flags)


@dataclass(frozen=True, slots=True)
class Fback:  # RFC 5568 §6.2.3
    status: int
    seq: int
    lifetime: int
    flags: int = 0

    def fixed(self) -> bytes:
        return struct.pack("!BBHH", self.status, self.flags, self.seq, self.lifetime)

    @classmethod
    def of(cls, m: MhMessage) -> Fback:
        status, flags, seq, life = struct.unpack("!BBHH", m.fixed)
        return cls(status, seq, life, flags)


@dataclass(frozen=True, slots=True)
class Hi:  # RFC 5568 §6.2.1.1: Code 0 = FBU came from the PCoA, 1 = from elsewhere; S, U flags
    seq: int
    code: int
    s: bool = False
    u: bool = False

    def fixed(self) -> bytes:
        return struct.pack("!HBB", self.seq, (0x80 if self.s else 0) | (0x40 if self.u else 0), self.code)

    @classmethod
    def of(cls, m: MhMessage) -> Hi:
        seq, flags, code = struct.unpack("!HBB", m.fixed)
        return cls(seq, code, bool(flags & 0x80), bool(flags & 0x40))


@dataclass(frozen=True, slots=True)
class Hack:  # RFC 5568 §6.2.1.2
    seq: int
    code: int

    def fixed(self) -> bytes:
        return struct.pack("!HBB", self.seq, 0, self.code)

    @classmethod
    def of(cls, m: MhMessage) -> Hack:
        seq, _res, code = struct.unpack("!HBB", m.fixed)
        return cls(seq, code)


def message(kind: Fbu | Fback | Hi | Hack, options: tuple[MhOption, ...] = ()) -> MhMessage:
    t = {Fbu: MhType.FBU, Fback: MhType.FBACK, Hi: MhType.HI, Hack: MhType.HACK}[type(kind)]
    return MhMessage(t, kind.fixed(), options)


def binding_error(status: int, home: IPv6Address) -> MhMessage:  # RFC 6275 §6.1.9
    return MhMessage(MhType.BINDING_ERROR, bytes([status, 0]) + home.packed)


# ---- Home Address destination option (RFC 6275 §6.3) ------------------------------------------------


def hoa_dstopts(home: IPv6Address, next_header: int = IPPROTO_MH) -> bytes:
    """A Destination Options header holding only the Home Address option, aligned 8n+6 by a PadN."""
    return bytes([next_header, 2]) + _pad(4) + bytes([HOA_OPTION, 16]) + home.packed


def parse_dstopts(r: Reader) -> tuple[int, IPv6Address | None]:
    """(next header, home address or None) from a Destination Options header. An unknown option
    whose type says "discard" (top bits 01, 10, 11) raises, as RFC 8200 §4.2 would drop the packet."""
    nh, hlen = r.u8("dstopts.next"), r.u8("dstopts.len")
    body = Reader(r.take(8 * hlen + 6, "dstopts"), PROTO)
    home: IPv6Address | None = None
    while body.remaining:
        t = body.u8("dstopt.type")
        if t == 0:
            continue
        n = body.u8("dstopt.len")
        d = body.take(n, "dstopt.data")
        if t == HOA_OPTION:
            if n != 16 or home is not None:
                raise body.fail("hoa", "length must be 16, one option only")
            home = IPv6Address(d)
        elif t != 1 and t >> 6:
            raise body.fail("dstopt.type", f"unrecognized option {t} must not be skipped")
    return nh, home


@dataclass(frozen=True, slots=True)
class MhPacket:
    """An IPv6 packet carrying a Mobility Header as the receive path sees it (AF_PACKET)."""

    src: IPv6Address
    dst: IPv6Address
    hop_limit: int
    home: IPv6Address | None
    mh: MhMessage


def parse_ipv6_mh(packet: bytes) -> MhPacket:
    """An IPv6 packet whose payload is [Destination Options with a Home Address option] then a
    Mobility Header; the checksum is verified with the home address as pseudo-header source."""
    r = Reader(packet, PROTO)
    if r.u8("ip.version") >> 4 != 6:
        raise r.fail("ip.version", "not IPv6", 0)
    r.take(3, "ip.flow")
    plen, nh, hop = r.u16("ip.payload_len"), r.u8("ip.next"), r.u8("ip.hop")
    src, dst = r.ip6("ip.src"), r.ip6("ip.dst")
    if plen != r.remaining:
        raise r.fail("ip.payload_len", f"{plen} announced, {r.remaining} present", 4)
    home = None
    if nh == IPPROTO_DSTOPTS:
        nh, home = parse_dstopts(r)
    if nh != IPPROTO_MH:
        raise r.fail("ip.next", f"next header {nh}, not a Mobility Header")
    mh = MhMessage.decode(r.rest(), home or src, dst)
    return MhPacket(src, dst, hop, home, mh)


def build_ipv6(src: IPv6Address, dst: IPv6Address, payload: bytes, next_header: int, hop_limit: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit) + src.packed + dst.packed + payload


__all__ = ["DecodeError"]
