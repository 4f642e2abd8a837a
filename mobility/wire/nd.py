"""ICMPv6 Neighbor Discovery messages and options used by SEND and FMIPv6: RFC 4861 option framing
(§4.6: a Length of 0 discards the message), SEND options 11-16 (RFC 3971 §5.1-§5.3, §6.4.3-§6.4.4),
CPS/CPA (RFC 3971 §6.4.1-§6.4.2), FMIPv6 RtSolPr/PrRtAdv (ICMPv6 154 subtypes 2/3, RFC 5568
§6.1) with options 17 and 19 (§6.4.1, §6.4.3), and the handover key options 27/28 (RFC 5269 §4).

An `NdMessage` keeps the octets between the checksum and the first option (`body`) as given, so
SEND signatures cover exactly what was received (RFC 3971 §5.2 item 5). Unknown options are kept as
`RawOption` and skipped by the receiver (RFC 4861 §4.6).
"""

from __future__ import annotations

import builtins
import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address
from typing import ClassVar

from mobility.wire.buffer import DecodeError, Reader, der_length
from mobility.wire.ip import checksum, pseudo_header

PROTO = "nd"
ICMPV6 = 58


class IcmpType(IntEnum):
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136
    CPS = 148  # RFC 3971 §6.4.1
    CPA = 149  # RFC 3971 §6.4.2
    FMIPV6 = 154  # RFC 5568 §6.1


class Subtype(IntEnum):  # RFC 5568 §6.1
    RTSOLPR = 2
    PRRTADV = 3


# octets between the checksum and the first option, per message (RFC 4861 §4, RFC 3971 §6.4, RFC 5568 §6.1)
BODY_LEN = {133: 4, 134: 12, 135: 20, 136: 20, 137: 36, 148: 4, 149: 8, 154: 4}


class Opt(IntEnum):
    SOURCE_LLA = 1
    TARGET_LLA = 2
    PREFIX_INFO = 3
    CGA = 11
    RSA_SIGNATURE = 12
    TIMESTAMP = 13
    NONCE = 14
    TRUST_ANCHOR = 15
    CERTIFICATE = 16
    IP_ADDRESS_PREFIX = 17
    LINK_LAYER_ADDRESS = 19
    HANDOVER_KEY_REQUEST = 27
    HANDOVER_KEY_REPLY = 28


def _pad8(n: int) -> int:
    return -n % 8


class NdOption:
    __slots__ = ()
    TYPE: ClassVar[int]

    def data(self) -> bytes:
        """Octets after Type and Length, before the trailing zero padding."""
        raise NotImplementedError

    def encode(self) -> bytes:
        d = self.data()
        d += bytes(_pad8(len(d) + 2))
        return bytes([self.option_type, (len(d) + 2) // 8]) + d

    @property
    def option_type(self) -> int:
        return self.TYPE

    @classmethod
    def parse(cls, r: Reader) -> NdOption:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class RawOption(NdOption):
    type: int
    raw: bytes  # everything after Type and Length

    @property
    def option_type(self) -> int:
        return self.type

    def data(self) -> bytes:
        return self.raw


@dataclass(frozen=True, slots=True)
class CgaOption(NdOption):  # RFC 3971 §5.1
    TYPE: ClassVar[int] = Opt.CGA
    params: bytes

    def data(self) -> bytes:
        pad = _pad8(4 + len(self.params))
        return bytes([pad, 0]) + self.params + bytes(pad)

    def encode(self) -> bytes:
        d = self.data()
        return bytes([self.TYPE, (len(d) + 2) // 8]) + d

    @classmethod
    def parse(cls, r: Reader) -> CgaOption:
        pad = r.u8("cga.pad_length")
        r.take(1, "cga.reserved")
        if pad > r.remaining:
            raise r.fail("cga.pad_length", f"{pad} exceeds the option")
        return cls(r.take(r.remaining - pad, "cga.params"))


@dataclass(frozen=True, slots=True)
class RsaSignature(NdOption):  # RFC 3971 §5.2
    TYPE: ClassVar[int] = Opt.RSA_SIGNATURE
    key_hash: bytes
    signature: bytes  # may carry trailing padding when parsed: the key size decides (§5.2)

    def data(self) -> bytes:
        return bytes(2) + self.key_hash + self.signature

    @classmethod
    def parse(cls, r: Reader) -> RsaSignature:
        r.take(2, "rsa.reserved")
        return cls(r.take(16, "rsa.key_hash"), r.rest())


@dataclass(frozen=True, slots=True)
class Timestamp(NdOption):  # RFC 3971 §5.3.1: 48.16 fixed point seconds since 1970
    TYPE: ClassVar[int] = Opt.TIMESTAMP
    value: int  # seconds * 65536

    def data(self) -> bytes:
        return bytes(6) + self.value.to_bytes(8, "big")

    @property
    def seconds(self) -> float:
        return self.value / 65536

    @classmethod
    def at(cls, unix_time: float) -> Timestamp:
        return cls(int(unix_time * 65536) & ((1 << 64) - 1))

    @classmethod
    def parse(cls, r: Reader) -> Timestamp:
        if r.remaining != 14:
            raise r.fail("timestamp.length", "Length must be 2")
        r.take(6, "timestamp.reserved")
        return cls(r.u64("timestamp"))


@dataclass(frozen=True, slots=True)
class Nonce(NdOption):  # RFC 3971 §5.3.2
    TYPE: ClassVar[int] = Opt.NONCE
    nonce: bytes

    def data(self) -> bytes:
        return self.nonce

    @classmethod
    def parse(cls, r: Reader) -> Nonce:
        n = r.rest()
        if len(n) < 6:
            raise r.fail("nonce", "shorter than 6 octets")
        return cls(n)


@dataclass(frozen=True, slots=True)
class TrustAnchor(NdOption):  # RFC 3971 §6.4.3
    TYPE: ClassVar[int] = Opt.TRUST_ANCHOR
    name_type: int
    name: bytes

    def data(self) -> bytes:
        pad = _pad8(4 + len(self.name))
        return bytes([self.name_type, pad]) + self.name + bytes(pad)

    def encode(self) -> bytes:
        d = self.data()
        return bytes([self.TYPE, (len(d) + 2) // 8]) + d

    @classmethod
    def parse(cls, r: Reader) -> TrustAnchor:
        name_type, pad = r.u8("ta.name_type"), r.u8("ta.pad_length")
        if pad > r.remaining:
            raise r.fail("ta.pad_length", f"{pad} exceeds the option")
        return cls(name_type, r.take(r.remaining - pad, "ta.name"))


@dataclass(frozen=True, slots=True)
class Certificate(NdOption):  # RFC 3971 §6.4.4: the DER length ends the certificate
    TYPE: ClassVar[int] = Opt.CERTIFICATE
    cert_type: int
    cert: bytes

    def data(self) -> bytes:
        return bytes([self.cert_type, 0]) + self.cert

    @classmethod
    def parse(cls, r: Reader) -> Certificate:
        ctype = r.u8("cert.type")
        r.take(1, "cert.reserved")
        rest = r.rest()
        return cls(ctype, rest[: der_length(rest, 0, PROTO)])


@dataclass(frozen=True, slots=True)
class SourceLla(NdOption):  # RFC 4861 §4.6.1, type 1 (Ethernet: 6 octets)
    TYPE: ClassVar[int] = Opt.SOURCE_LLA
    lla: bytes

    def data(self) -> bytes:
        return self.lla

    @classmethod
    def parse(cls, r: Reader) -> SourceLla:
        return cls(r.rest()[:6])


@dataclass(frozen=True, slots=True)
class TargetLla(NdOption):  # RFC 4861 §4.6.1, type 2
    TYPE: ClassVar[int] = Opt.TARGET_LLA
    lla: bytes

    def data(self) -> bytes:
        return self.lla

    @classmethod
    def parse(cls, r: Reader) -> TargetLla:
        return cls(r.rest()[:6])


@dataclass(frozen=True, slots=True)
class PrefixInfo(NdOption):  # RFC 4861 §4.6.2; R flag (router address, RFC 6275 §7.2)
    TYPE: ClassVar[int] = Opt.PREFIX_INFO
    prefix_len: int
    flags: int  # L 0x80, A 0x40, R 0x20
    valid: int
    preferred: int
    prefix: IPv6Address  # with R set: the router's full address (RFC 6275 §7.2)

    def data(self) -> bytes:
        return struct.pack("!BBII4x", self.prefix_len, self.flags, self.valid, self.preferred) + self.prefix.packed

    @classmethod
    def parse(cls, r: Reader) -> PrefixInfo:
        if r.remaining != 30:
            raise r.fail("pio.length", "Length must be 4")
        plen, flags, valid, pref = r.u8("pio.prefix_len"), r.u8("pio.flags"), r.u32("pio.valid"), r.u32("pio.pref")
        r.take(4, "pio.reserved")
        if plen > 128:
            raise r.fail("pio.prefix_len", f"{plen} > 128")
        return cls(plen, flags, valid, pref, r.ip6("pio.prefix"))


@dataclass(frozen=True, slots=True)
class IpAddressPrefix(NdOption):  # RFC 5568 §6.4.1
    TYPE: ClassVar[int] = Opt.IP_ADDRESS_PREFIX
    code: int  # 1 PCoA, 2 NCoA, 3 NAR address, 4 NAR prefix
    prefix_len: int
    address: IPv6Address

    def data(self) -> bytes:
        return bytes([self.code, self.prefix_len]) + bytes(4) + self.address.packed

    @classmethod
    def parse(cls, r: Reader) -> IpAddressPrefix:
        if r.remaining != 22:
            raise r.fail("ip_prefix.length", "Length must be 3")
        code, plen = r.u8("ip_prefix.code"), r.u8("ip_prefix.prefix_len")
        r.take(4, "ip_prefix.reserved")
        if plen > 128:
            raise r.fail("ip_prefix.prefix_len", f"{plen} > 128")
        return cls(code, plen, r.ip6("ip_prefix.address"))


@dataclass(frozen=True, slots=True)
class LinkLayerAddress(NdOption):  # RFC 5568 §6.4.3
    TYPE: ClassVar[int] = Opt.LINK_LAYER_ADDRESS
    code: int  # 0 wildcard, 1 new AP, 2 MN, 3 NAR, 4 source, 5-7 AP status
    lla: bytes

    def data(self) -> bytes:
        return bytes([self.code]) + self.lla

    @classmethod
    def parse(cls, r: Reader) -> LinkLayerAddress:
        code = r.u8("lla.code")
        rest = r.rest()
        return cls(code, rest[:6] if len(rest) >= 6 else rest)  # Ethernet: 6 octets, then padding


@dataclass(frozen=True, slots=True)
class HandoverKeyRequest(NdOption):  # RFC 5269 §4.1
    TYPE: ClassVar[int] = Opt.HANDOVER_KEY_REQUEST
    at: int
    public_key: bytes  # DER SubjectPublicKeyInfo, as the CGA key (§4.1)

    def data(self) -> bytes:
        pad = _pad8(4 + len(self.public_key))
        return bytes([pad, (self.at & 0x0F) << 4]) + self.public_key + bytes(pad)

    def encode(self) -> bytes:
        d = self.data()
        return bytes([self.TYPE, (len(d) + 2) // 8]) + d

    @classmethod
    def parse(cls, r: Reader) -> HandoverKeyRequest:
        pad, at = r.u8("hkreq.pad_length"), r.u8("hkreq.at") >> 4
        if pad > r.remaining:
            raise r.fail("hkreq.pad_length", f"{pad} exceeds the option")
        return cls(at, r.take(r.remaining - pad, "hkreq.public_key"))


@dataclass(frozen=True, slots=True)
class HandoverKeyReply(NdOption):  # RFC 5269 §4.2
    TYPE: ClassVar[int] = Opt.HANDOVER_KEY_REPLY
    at: int
    lifetime: int  # seconds
    encrypted_key: bytes

    def data(self) -> bytes:
        pad = _pad8(6 + len(self.encrypted_key))
        head = bytes([pad, (self.at & 0x0F) << 4]) + self.lifetime.to_bytes(2, "big")
        return head + self.encrypted_key + bytes(pad)

    def encode(self) -> bytes:
        d = self.data()
        return bytes([self.TYPE, (len(d) + 2) // 8]) + d

    @classmethod
    def parse(cls, r: Reader) -> HandoverKeyReply:
        pad, at, lifetime = r.u8("hkrep.pad_length"), r.u8("hkrep.at") >> 4, r.u16("hkrep.lifetime")
        if pad > r.remaining:
            raise r.fail("hkrep.pad_length", f"{pad} exceeds the option")
        return cls(at, lifetime, r.take(r.remaining - pad, "hkrep.encrypted_key"))


OPTIONS: dict[int, type[NdOption]] = {
    c.TYPE: c
    for c in (
        SourceLla,
        TargetLla,
        PrefixInfo,
        CgaOption,
        RsaSignature,
        Timestamp,
        Nonce,
        TrustAnchor,
        Certificate,
        IpAddressPrefix,
        LinkLayerAddress,
        HandoverKeyRequest,
        HandoverKeyReply,
    )
}


def decode_options(data: bytes, offset: int = 0) -> list[tuple[int, NdOption]]:
    """(offset, option) pairs; a zero Length or an overrun raises DecodeError (RFC 4861 §4.6)."""
    r = Reader(data, PROTO, offset)
    out: list[tuple[int, NdOption]] = []
    while r.remaining:
        start = r.offset
        otype, length = r.u8("option.type"), r.u8("option.length")
        if length == 0:
            raise r.fail("option.length", "zero length (RFC 4861 §4.6)", start)
        body = r.take(8 * length - 2, f"option {otype}")
        cls = OPTIONS.get(otype)
        opt = RawOption(otype, body) if cls is None else cls.parse(Reader(body, PROTO))
        out.append((start, opt))
    return out


@dataclass(frozen=True, slots=True)
class NdMessage:
    type: int
    code: int
    body: bytes  # the fixed part after the checksum (BODY_LEN octets)
    options: tuple[NdOption, ...] = ()
    checksum: int = 0  # as received (encode computes a fresh one)

    def encode(self, src: IPv6Address, dst: IPv6Address) -> bytes:
        return with_checksum(src, dst, bytes([self.type, self.code, 0, 0]) + self.body + self.options_bytes())

    def options_bytes(self) -> bytes:
        return b"".join(o.encode() for o in self.options)

    @classmethod
    def decode(cls, data: bytes) -> NdMessage:
        r = Reader(data, PROTO)
        mtype, code, csum = r.u8("type"), r.u8("code"), r.u16("checksum")
        n = BODY_LEN.get(mtype)
        if n is None:
            raise r.fail("type", f"ICMPv6 type {mtype} is not handled here")
        body = r.take(n, "body")
        return cls(mtype, code, body, tuple(o for _, o in decode_options(data, 4 + n)), csum)

    @property
    def subtype(self) -> int:
        return self.body[0] if self.type == IcmpType.FMIPV6 else -1

    @property
    def identifier(self) -> int:
        if self.type == IcmpType.FMIPV6:
            return int.from_bytes(self.body[2:4], "big")  # after Subtype and Reserved (RFC 5568 §6.1)
        if self.type in (IcmpType.CPS, IcmpType.CPA):
            return int.from_bytes(self.body[0:2], "big")  # RFC 3971 §6.4.1-§6.4.2
        return 0

    def first(self, cls: builtins.type[NdOption]) -> NdOption | None:
        return next((o for o in self.options if type(o) is cls), None)


def with_checksum(src: IPv6Address, dst: IPv6Address, icmp: bytes) -> bytes:
    """The ICMPv6 checksum (RFC 4443 §2.3) over the pseudo-header and the message, checksum zeroed."""
    zeroed = icmp[:2] + b"\x00\x00" + icmp[4:]
    c = checksum(pseudo_header(src.packed, dst.packed, ICMPV6, len(zeroed)) + zeroed)
    return icmp[:2] + c.to_bytes(2, "big") + icmp[4:]


def fmip_body(subtype: int, identifier: int) -> bytes:
    return struct.pack("!BBH", subtype, 0, identifier)


def rtsolpr(identifier: int, options: tuple[NdOption, ...]) -> NdMessage:
    return NdMessage(IcmpType.FMIPV6, 0, fmip_body(Subtype.RTSOLPR, identifier), options)


def prrtadv(code: int, identifier: int, options: tuple[NdOption, ...]) -> NdMessage:
    return NdMessage(IcmpType.FMIPV6, code, fmip_body(Subtype.PRRTADV, identifier), options)


def cps(identifier: int, component: int = 65535, options: tuple[NdOption, ...] = ()) -> NdMessage:
    return NdMessage(IcmpType.CPS, 0, struct.pack("!HH", identifier, component), options)


def cpa(identifier: int, all_components: int, component: int, options: tuple[NdOption, ...]) -> NdMessage:
    return NdMessage(IcmpType.CPA, 0, struct.pack("!HHHH", identifier, all_components, component, 0), options)


def router_solicitation(options: tuple[NdOption, ...] = ()) -> NdMessage:  # RFC 4861 §4.1
    return NdMessage(IcmpType.ROUTER_SOLICITATION, 0, bytes(4), options)


def router_advertisement(lifetime: int, options: tuple[NdOption, ...], hop_limit: int = 64) -> NdMessage:
    """RFC 4861 §4.2: Cur Hop Limit, flags (none), Router Lifetime, Reachable Time, Retrans Timer."""
    return NdMessage(IcmpType.ROUTER_ADVERTISEMENT, 0, struct.pack("!BBHII", hop_limit, 0, lifetime, 0, 0), options)


def neighbor_advertisement(target: IPv6Address, flags: int, options: tuple[NdOption, ...]) -> NdMessage:
    """RFC 4861 §4.4: flags R 0x80, S 0x40, O 0x20 in the first octet. An unsolicited NA with all
    three clear is the FMIPv6 UNA (RFC 5568 §6.3)."""
    return NdMessage(IcmpType.NEIGHBOR_ADVERTISEMENT, 0, bytes([flags, 0, 0, 0]) + target.packed, options)


__all__ = ["DecodeError"]
