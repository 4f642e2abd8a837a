"""IKEv2 message and payload codecs (RFC 7296 §3), with the RFC 5026 §8.2 configuration attribute
MIP6_HOME_PREFIX and the RFC 4555 MOBIKE notify types.

Parse or raise: every length field is checked against the octets present. An unknown payload with
the critical bit set raises `IkeError(UNSUPPORTED_CRITICAL_PAYLOAD)` (§2.5, §3.2); with the bit
clear it is kept as `UnknownPayload`. The Encrypted payload (SK, §3.14) is kept opaque here; its
protection lives in mobility.crypto.ikesk. Not implemented: EAP contents, IKE fragmentation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import ClassVar

from mobility.wire.buffer import DecodeError, Reader

HEADER_LEN = 28  # RFC 7296 §3.1
_HDR = struct.Struct("!8s8sBBBBII")
_GEN = struct.Struct("!BBH")


class ExchangeType(IntEnum):  # RFC 7296 §3.1
    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37


class Flag(IntEnum):  # RFC 7296 §3.1
    INITIATOR = 0x08
    VERSION = 0x10
    RESPONSE = 0x20


class PayloadType(IntEnum):  # RFC 7296 §3.2
    NONE = 0
    SA = 33
    KE = 34
    IDI = 35
    IDR = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    NOTIFY = 41
    DELETE = 42
    VENDOR = 43
    TSI = 44
    TSR = 45
    SK = 46
    CP = 47
    EAP = 48


class Protocol(IntEnum):  # RFC 7296 §3.3.1
    NONE = 0
    IKE = 1
    AH = 2
    ESP = 3


class TransformType(IntEnum):  # RFC 7296 §3.3.2
    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5


class Notify(IntEnum):  # RFC 7296 §3.10.1, RFC 4555 §4.2, RFC 5026 §10, RFC 7427 §4
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40
    UNEXPECTED_NAT_DETECTED = 41
    USE_ASSIGNED_HOA = 42
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396
    ADDITIONAL_IP4_ADDRESS = 16397
    ADDITIONAL_IP6_ADDRESS = 16398
    NO_ADDITIONAL_ADDRESSES = 16399
    UPDATE_SA_ADDRESSES = 16400
    COOKIE2 = 16401
    NO_NATS_ALLOWED = 16402
    SIGNATURE_HASH_ALGORITHMS = 16431


class CfgType(IntEnum):  # RFC 7296 §3.15
    REQUEST = 1
    REPLY = 2
    SET = 3
    ACK = 4


class CfgAttr(IntEnum):  # RFC 7296 §3.15.1, RFC 5026 §8.2
    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    MIP6_HOME_PREFIX = 16


# value lengths allowed per attribute (RFC 7296 §3.15.1; RFC 5026 §8.2: 0 in a request, 21 in a reply)
_CFG_LENGTHS: dict[int, tuple[int, ...]] = {
    1: (0, 4),
    2: (0, 4),
    3: (0, 4),
    4: (0, 4),
    6: (0, 4),
    8: (0, 17),
    10: (0, 16),
    12: (0, 16),
    13: (0, 8),
    15: (0, 17),
    16: (0, 21),
}


class TsType(IntEnum):  # RFC 7296 §3.13.1
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8


class IkeError(Exception):
    """A received message that the spec answers with an error notify (STYLE.md §2.3)."""

    def __init__(self, notify: Notify, reason: str, data: bytes = b"") -> None:
        super().__init__(f"{notify.name}: {reason}")
        self.notify, self.reason, self.data = notify, reason, data


PROTO = "ikev2"


@dataclass(frozen=True, slots=True)
class Header:
    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.flags & Flag.RESPONSE)

    @property
    def from_initiator(self) -> bool:
        return bool(self.flags & Flag.INITIATOR)

    def encode(self, length: int | None = None) -> bytes:
        n = self.length if length is None else length
        return _HDR.pack(self.spi_i, self.spi_r, self.next_payload, 0x20, self.exchange, self.flags, self.message_id, n)

    @classmethod
    def decode_fields(cls, data: bytes) -> Header | None:
        """The header fields of a message whose body could not be parsed (for an error reply), or None."""
        if len(data) < HEADER_LEN:
            return None
        spi_i, spi_r, nxt, _ver, exch, flags, mid, length = _HDR.unpack_from(data)
        return cls(spi_i, spi_r, nxt, exch, flags, mid, length) if spi_i != bytes(8) else None

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) < HEADER_LEN:
            raise DecodeError(PROTO, "header", 0, f"{len(data)} octets, needs {HEADER_LEN}")
        spi_i, spi_r, nxt, ver, exch, flags, mid, length = _HDR.unpack_from(data)
        if length != len(data):
            raise DecodeError(PROTO, "length", 24, f"says {length}, datagram has {len(data)}")
        if spi_i == bytes(8):
            raise DecodeError(PROTO, "spi_i", 0, "initiator SPI is zero (RFC 7296 §3.1)")
        if ver >> 4 != 2:
            raise IkeError(Notify.INVALID_MAJOR_VERSION, f"major version {ver >> 4}")
        return cls(spi_i, spi_r, nxt, exch, flags, mid, length)


# ---- payloads -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transform:  # RFC 7296 §3.3.2, key length attribute §3.3.5
    type: int
    id: int
    key_length: int | None = None

    def encode(self, last: bool) -> bytes:
        attrs = b"" if self.key_length is None else struct.pack("!HH", 0x800E, self.key_length)
        return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), self.type, 0, self.id) + attrs

    @classmethod
    def decode(cls, r: Reader) -> tuple[Transform, bool]:
        start = r.offset
        last, _, length, ttype, _, tid = struct.unpack("!BBHBBH", r.take(8, "transform"))
        if last not in (0, 3):
            raise r.fail("transform.last", f"{last} is neither 0 nor 3", start)
        if length < 8:
            raise r.fail("transform.length", f"{length} < 8", start)
        attrs = Reader(r.take(length - 8, "transform.attributes"), PROTO)
        key_length = None
        while attrs.remaining:
            atype = attrs.u16("attribute.type")
            if atype & 0x8000:
                value = attrs.u16("attribute.value")
                if atype & 0x7FFF == 14:
                    key_length = value
            else:
                attrs.take(attrs.u16("attribute.length"), "attribute.value")
        return cls(ttype, tid, key_length), last == 0


@dataclass(frozen=True, slots=True)
class Proposal:  # RFC 7296 §3.3.1
    num: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def encode(self, last: bool) -> bytes:
        body = b"".join(t.encode(i == len(self.transforms) - 1) for i, t in enumerate(self.transforms))
        head = struct.pack(
            "!BBHBBBB",
            0 if last else 2,
            0,
            8 + len(self.spi) + len(body),
            self.num,
            self.protocol,
            len(self.spi),
            len(self.transforms),
        )
        return head + self.spi + body

    @classmethod
    def decode(cls, r: Reader) -> tuple[Proposal, bool]:
        start = r.offset
        last, _, length, num, proto, spi_size, count = struct.unpack("!BBHBBBB", r.take(8, "proposal"))
        if last not in (0, 2):
            raise r.fail("proposal.last", f"{last} is neither 0 nor 2", start)
        body = Reader(r.take(length - 8, "proposal.body") if length >= 8 else b"", PROTO)
        spi = body.take(spi_size, "proposal.spi")
        transforms = []
        more = True
        while more:
            t, at_end = Transform.decode(body)
            transforms.append(t)
            more = not at_end
        if len(transforms) != count or body.remaining:
            raise r.fail("proposal.transforms", f"{count} announced, {len(transforms)} found", start)
        return cls(num, proto, spi, tuple(transforms)), last == 0

    def get(self, ttype: int) -> list[Transform]:
        return [t for t in self.transforms if t.type == ttype]


class Payload:
    """Base: a payload knows its type and how to encode its body (after the 4-octet header)."""

    __slots__ = ()
    TYPE: ClassVar[int]

    def body(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def parse(cls, r: Reader) -> Payload:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class SA(Payload):
    TYPE: ClassVar[int] = PayloadType.SA
    proposals: tuple[Proposal, ...]

    def body(self) -> bytes:
        return b"".join(p.encode(i == len(self.proposals) - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def parse(cls, r: Reader) -> SA:
        props: list[Proposal] = []
        more = True
        while more:
            p, at_end = Proposal.decode(r)
            props.append(p)
            more = not at_end
        r.end()
        return cls(tuple(props))


@dataclass(frozen=True, slots=True)
class KE(Payload):
    TYPE: ClassVar[int] = PayloadType.KE
    group: int
    data: bytes

    def body(self) -> bytes:
        return struct.pack("!HH", self.group, 0) + self.data

    @classmethod
    def parse(cls, r: Reader) -> KE:
        group = r.u16("ke.group")
        r.take(2, "ke.reserved")
        return cls(group, r.rest())


@dataclass(frozen=True, slots=True)
class IDi(Payload):
    TYPE: ClassVar[int] = PayloadType.IDI
    id_type: int
    data: bytes

    def body(self) -> bytes:
        return bytes([self.id_type, 0, 0, 0]) + self.data

    @classmethod
    def parse(cls, r: Reader) -> IDi:
        id_type = r.u8("id.type")
        r.take(3, "id.reserved")
        data = r.rest()
        if not data:
            raise r.fail("id.data", "empty identification")
        return cls(id_type, data)

    def text(self) -> str:
        if self.id_type == 1 and len(self.data) == 4:
            return str(IPv4Address(self.data))
        if self.id_type == 5 and len(self.data) == 16:
            return str(IPv6Address(self.data))
        if self.id_type in (2, 3):
            return self.data.decode("ascii", "replace")
        return self.data.hex()


@dataclass(frozen=True, slots=True)
class IDr(IDi):
    TYPE: ClassVar[int] = PayloadType.IDR


@dataclass(frozen=True, slots=True)
class CERT(Payload):
    TYPE: ClassVar[int] = PayloadType.CERT
    encoding: int
    data: bytes

    def body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def parse(cls, r: Reader) -> CERT:
        return cls(r.u8("cert.encoding"), r.rest())


@dataclass(frozen=True, slots=True)
class CERTREQ(CERT):
    TYPE: ClassVar[int] = PayloadType.CERTREQ


@dataclass(frozen=True, slots=True)
class AUTH(Payload):
    TYPE: ClassVar[int] = PayloadType.AUTH
    method: int
    data: bytes

    def body(self) -> bytes:
        return bytes([self.method, 0, 0, 0]) + self.data

    @classmethod
    def parse(cls, r: Reader) -> AUTH:
        method = r.u8("auth.method")
        r.take(3, "auth.reserved")
        return cls(method, r.rest())


@dataclass(frozen=True, slots=True)
class Nonce(Payload):
    TYPE: ClassVar[int] = PayloadType.NONCE
    data: bytes

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse(cls, r: Reader) -> Nonce:
        data = r.rest()
        if not 16 <= len(data) <= 256:  # RFC 7296 §3.9
            raise r.fail("nonce", f"{len(data)} octets, must be 16..256")
        return cls(data)


@dataclass(frozen=True, slots=True)
class N(Payload):  # Notify, RFC 7296 §3.10
    TYPE: ClassVar[int] = PayloadType.NOTIFY
    type: int
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""

    def body(self) -> bytes:
        return struct.pack("!BBH", self.protocol, len(self.spi), self.type) + self.spi + self.data

    @classmethod
    def parse(cls, r: Reader) -> N:
        proto, spi_size, ntype = struct.unpack("!BBH", r.take(4, "notify"))
        spi = r.take(spi_size, "notify.spi")
        return cls(ntype, r.rest(), proto, spi)


@dataclass(frozen=True, slots=True)
class Delete(Payload):  # RFC 7296 §3.11
    TYPE: ClassVar[int] = PayloadType.DELETE
    protocol: int
    spis: tuple[bytes, ...] = ()

    def body(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        return struct.pack("!BBH", self.protocol, size, len(self.spis)) + b"".join(self.spis)

    @classmethod
    def parse(cls, r: Reader) -> Delete:
        proto, size, count = struct.unpack("!BBH", r.take(4, "delete"))
        if proto == Protocol.IKE and (size or count):
            raise r.fail("delete.spi_size", "an IKE SA delete carries no SPIs")
        spis = tuple(r.take(size, "delete.spi") for _ in range(count))
        r.end()
        return cls(proto, spis)


@dataclass(frozen=True, slots=True)
class Vendor(Payload):
    TYPE: ClassVar[int] = PayloadType.VENDOR
    data: bytes

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse(cls, r: Reader) -> Vendor:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class TrafficSelector:  # RFC 7296 §3.13.1
    start: IPv4Address | IPv6Address
    end: IPv4Address | IPv6Address
    ip_proto: int = 0
    start_port: int = 0
    end_port: int = 65535

    @property
    def ts_type(self) -> int:
        return TsType.IPV4_ADDR_RANGE if self.start.version == 4 else TsType.IPV6_ADDR_RANGE

    def encode(self) -> bytes:
        a = self.start.packed + self.end.packed
        return struct.pack("!BBHHH", self.ts_type, self.ip_proto, 8 + len(a), self.start_port, self.end_port) + a

    @classmethod
    def decode(cls, r: Reader) -> TrafficSelector:
        start = r.offset
        ts_type, proto, length, sp, ep = struct.unpack("!BBHHH", r.take(8, "ts"))
        size = {TsType.IPV4_ADDR_RANGE: 4, TsType.IPV6_ADDR_RANGE: 16}.get(ts_type)
        if size is None:
            raise r.fail("ts.type", f"unsupported selector type {ts_type}", start)
        if length != 8 + 2 * size:
            raise r.fail("ts.length", f"{length} for type {ts_type}", start)
        a, b = ip_address(r.take(size, "ts.start")), ip_address(r.take(size, "ts.end"))
        if a > b:  # type: ignore[operator]
            raise r.fail("ts.end", f"ending address {b} below starting address {a}", start)
        return cls(a, b, proto, sp, ep)


@dataclass(frozen=True, slots=True)
class TSi(Payload):
    TYPE: ClassVar[int] = PayloadType.TSI
    selectors: tuple[TrafficSelector, ...]

    def body(self) -> bytes:
        return bytes([len(self.selectors), 0, 0, 0]) + b"".join(t.encode() for t in self.selectors)

    @classmethod
    def parse(cls, r: Reader) -> TSi:
        count = r.u8("ts.count")
        r.take(3, "ts.reserved")
        sel = tuple(TrafficSelector.decode(r) for _ in range(count))
        r.end()
        if not sel:
            raise r.fail("ts.count", "no traffic selectors")
        return cls(sel)


@dataclass(frozen=True, slots=True)
class TSr(TSi):
    TYPE: ClassVar[int] = PayloadType.TSR


@dataclass(frozen=True, slots=True)
class CfgAttribute:
    type: int
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class CP(Payload):  # RFC 7296 §3.15
    TYPE: ClassVar[int] = PayloadType.CP
    cfg_type: int
    attributes: tuple[CfgAttribute, ...] = ()

    def body(self) -> bytes:
        out = bytearray([self.cfg_type, 0, 0, 0])
        for a in self.attributes:
            out += struct.pack("!HH", a.type & 0x7FFF, len(a.value)) + a.value
        return bytes(out)

    @classmethod
    def parse(cls, r: Reader) -> CP:
        cfg_type = r.u8("cp.type")
        r.take(3, "cp.reserved")
        attrs = []
        while r.remaining:
            start = r.offset
            atype, length = struct.unpack("!HH", r.take(4, "cp.attribute"))
            atype &= 0x7FFF
            value = r.take(length, "cp.attribute.value")
            allowed = _CFG_LENGTHS.get(atype)
            if allowed is not None and length not in allowed:
                raise r.fail("cp.attribute.length", f"attribute {atype} with {length} octets", start)
            attrs.append(CfgAttribute(atype, value))
        return cls(cfg_type, tuple(attrs))

    def values(self, atype: int) -> list[bytes]:
        return [a.value for a in self.attributes if a.type == atype]


@dataclass(frozen=True, slots=True)
class EAP(Payload):
    TYPE: ClassVar[int] = PayloadType.EAP
    data: bytes

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse(cls, r: Reader) -> EAP:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class SK(Payload):
    """Encrypted and Authenticated payload (§3.14): `first` names the first inner payload; `data`
    is IV | ciphertext | ICV as received, opened by mobility.crypto.ikesk."""

    TYPE: ClassVar[int] = PayloadType.SK
    first: int
    data: bytes

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class UnknownPayload(Payload):
    type: int
    data: bytes
    critical: bool = False  # only ever True when we build one (tests); received ones with C set are rejected

    def body(self) -> bytes:
        return self.data


PAYLOADS: dict[int, type[Payload]] = {
    c.TYPE: c for c in (SA, KE, IDi, IDr, CERT, CERTREQ, AUTH, Nonce, N, Delete, Vendor, TSi, TSr, CP, EAP)
}


def payload_type(p: Payload) -> int:
    return p.type if isinstance(p, UnknownPayload) else p.TYPE


def encode_chain(payloads: list[Payload] | tuple[Payload, ...], tail_type: int = 0) -> tuple[int, bytes]:
    """Encode payloads with generic headers; returns (type of the first, octets). `tail_type` is the
    next-payload value of the last one (the SK payload's inner chain ends with 0)."""
    out = bytearray()
    for i, p in enumerate(payloads):
        nxt = payload_type(payloads[i + 1]) if i + 1 < len(payloads) else tail_type
        body = p.body()
        crit = 0x80 if isinstance(p, UnknownPayload) and p.critical else 0
        out += _GEN.pack(nxt, crit, 4 + len(body)) + body
    return (payload_type(payloads[0]) if payloads else tail_type), bytes(out)


def decode_chain(first: int, data: bytes, offset: int = 0) -> list[Payload]:
    """Decode a payload chain starting at `offset`; an SK payload must be the last (§3.14)."""
    r = Reader(data, PROTO, offset)
    nxt = first
    out: list[Payload] = []
    while nxt != PayloadType.NONE:
        start = r.offset
        this = nxt
        nxt, crit, length = _GEN.unpack(r.take(4, "payload.header"))
        if length < 4:
            raise r.fail("payload.length", f"{length} < 4", start)
        body = r.take(length - 4, f"payload {this}")
        if this == PayloadType.SK:
            if r.remaining:
                raise r.fail("sk", "encrypted payload is not the last one", start)
            out.append(SK(nxt, body))
            return out
        cls = PAYLOADS.get(this)
        if cls is None:
            if crit & 0x80:
                raise IkeError(Notify.UNSUPPORTED_CRITICAL_PAYLOAD, f"payload {this}", bytes([this]))
            out.append(UnknownPayload(this, body))
            continue
        out.append(cls.parse(Reader(body, PROTO)))
    if r.remaining:
        raise r.fail("trailing", f"{r.remaining} octets after the last payload")
    return out


@dataclass(slots=True)
class Message:
    """A whole IKE message: header fields and (plaintext) payloads."""

    header: Header
    payloads: list[Payload] = field(default_factory=list)

    def encode(self) -> bytes:
        first, body = encode_chain(self.payloads)
        h = Header(
            self.header.spi_i, self.header.spi_r, first, self.header.exchange, self.header.flags, self.header.message_id
        )
        return h.encode(HEADER_LEN + len(body)) + body

    @classmethod
    def decode(cls, data: bytes) -> Message:
        h = Header.decode(data)
        return cls(h, decode_chain(h.next_payload, data, HEADER_LEN))

    def find(self, ptype: type[Payload]) -> list[Payload]:
        return [p for p in self.payloads if type(p) is ptype]

    def notifies(self) -> dict[int, N]:
        return {p.type: p for p in self.payloads if isinstance(p, N)}
