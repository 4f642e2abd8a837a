"""Minimal strict IPv4/IPv6 header handling for the ESP data plane.

What natt needs to see of an inner packet (RFC 791 §3.1, RFC 8200 §3): version, addresses,
protocol and where the upper-layer header starts; plus the Internet checksum (RFC 1071) and its
incremental update (RFC 1624 eqn. 3) used by RFC 3948 §3.1.1-§3.1.2. IPv6 extension headers are
not walked: the fixed header's Next Header is reported, and checksum fix-ups are only applied when
it names TCP, UDP or ICMPv6 directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from mobility.wire.buffer import DecodeError

IPAddress = IPv4Address | IPv6Address

PROTO_ICMP = 1
PROTO_IPV4 = 4  # IP-in-IP, ESP Next Header for tunnel mode
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_ESP = 50
PROTO_ICMPV6 = 58
PROTO_NONE = 59  # "no next header": an ESP dummy packet (RFC 4303 §2.6)

# Offset of the checksum inside the upper-layer header, for protocols with a pseudo-header.
L4_CHECKSUM_OFFSET = {PROTO_TCP: 16, PROTO_UDP: 6, PROTO_ICMPV6: 2}
_L4_MIN = {PROTO_TCP: 20, PROTO_UDP: 8, PROTO_ICMPV6: 4}


@dataclass(frozen=True, slots=True)
class IpHeader:
    version: int
    src: bytes  # 4 or 16 raw bytes (kept raw: the hot path compares and rewrites bytes)
    dst: bytes
    proto: int  # IPv4 Protocol / IPv6 fixed header Next Header
    header_len: int  # bytes before the upper-layer header (IPv4 IHL*4, IPv6 40)
    first_fragment: bool  # upper-layer header present (IPv4 fragment offset 0)

    @property
    def src_addr(self) -> IPAddress:
        return ip_address(self.src)

    @property
    def dst_addr(self) -> IPAddress:
        return ip_address(self.dst)


def parse_ip(packet: bytes, proto: str = "ip") -> IpHeader:
    """Parse and check the header of a complete IP packet (lengths must match exactly)."""
    n = len(packet)
    if n < 1:
        raise DecodeError(proto, "version", 0, "empty packet")
    version = packet[0] >> 4
    if version == 4:
        if n < 20:
            raise DecodeError(proto, "header", 0, f"IPv4 needs 20 bytes, got {n}")
        ihl = (packet[0] & 0x0F) * 4
        total = (packet[2] << 8) | packet[3]
        if ihl < 20 or ihl > n:
            raise DecodeError(proto, "ihl", 0, f"bad header length {ihl}")
        if total != n:
            raise DecodeError(proto, "total_length", 2, f"says {total}, packet has {n}")
        frag_off = ((packet[6] & 0x1F) << 8) | packet[7]
        return IpHeader(4, packet[12:16], packet[16:20], packet[9], ihl, frag_off == 0)
    if version == 6:
        if n < 40:
            raise DecodeError(proto, "header", 0, f"IPv6 needs 40 bytes, got {n}")
        plen = (packet[4] << 8) | packet[5]
        if plen + 40 != n:
            raise DecodeError(proto, "payload_length", 4, f"says {plen}, packet has {n - 40}")
        return IpHeader(6, packet[8:24], packet[24:40], packet[6], 40, True)
    raise DecodeError(proto, "version", 0, f"not IPv4/IPv6: {version}")


def ones_sum(data: bytes) -> int:
    """One's complement sum of 16-bit words (RFC 1071), folded; 2**16 = 1 mod 0xFFFF does the carries."""
    if len(data) & 1:
        data += b"\x00"
    return int.from_bytes(data, "big") % 0xFFFF


def checksum(data: bytes) -> int:
    return ~ones_sum(data) & 0xFFFF


def checksum_adjust(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for the words in `old` replaced by `new`."""
    s = (~csum & 0xFFFF) + (~ones_sum(old) & 0xFFFF) + ones_sum(new)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)


def l4_checksum_ok(src: bytes, dst: bytes, proto: int, segment: bytes) -> bool:
    return ones_sum(pseudo_header(src, dst, proto, len(segment)) + segment) in (0, 0xFFFF)


def recompute_l4(src: bytes, dst: bytes, proto: int, segment: bytes) -> bytes:
    """RFC 3948 §3.1.2 option 2: recompute the TCP/UDP (and ICMPv6) checksum for new addresses."""
    off = L4_CHECKSUM_OFFSET.get(proto)
    if off is None or len(segment) < _L4_MIN[proto]:
        return segment
    if proto == PROTO_UDP and len(src) == 4 and segment[6:8] == b"\x00\x00":
        return segment  # IPv4 UDP without checksum stays without
    zeroed = segment[:off] + b"\x00\x00" + segment[off + 2 :]
    c = checksum(pseudo_header(src, dst, proto, len(segment)) + zeroed)
    if c == 0 and proto == PROTO_UDP:
        c = 0xFFFF
    return segment[:off] + c.to_bytes(2, "big") + segment[off + 2 :]


def adjust_l4(proto: int, segment: bytes, old_addrs: bytes, new_addrs: bytes) -> bytes:
    """RFC 3948 §3.1.2 option 1: incremental update for changed pseudo-header addresses."""
    off = L4_CHECKSUM_OFFSET.get(proto)
    if off is None or len(segment) < _L4_MIN[proto] or old_addrs == new_addrs:
        return segment
    old = (segment[off] << 8) | segment[off + 1]
    if proto == PROTO_UDP and old == 0 and len(old_addrs) == 8:
        return segment  # IPv4 UDP without checksum
    c = checksum_adjust(old, old_addrs, new_addrs)
    if c == 0 and proto == PROTO_UDP:
        c = 0xFFFF
    return segment[:off] + c.to_bytes(2, "big") + segment[off + 2 :]


def build_ip(src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    """A fresh header for a transport-mode payload (RFC 3948 §3.3 step 2)."""
    if len(src) == 4:
        head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, ttl, proto, 0, src, dst)
        head = head[:10] + checksum(head).to_bytes(2, "big") + head[12:]
        return head + payload
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), proto, ttl, src, dst) + payload


def rewrite_address(packet: bytes, hdr: IpHeader, *, src: bytes | None = None, dst: bytes | None = None) -> bytes:
    """Replace the source and/or destination of a whole packet, fixing IPv4 and L4 checksums
    incrementally (RFC 3948 §3.1.1 option 3, NAT of the inner packet)."""
    new_src = hdr.src if src is None else src
    new_dst = hdr.dst if dst is None else dst
    old_addrs, new_addrs = hdr.src + hdr.dst, new_src + new_dst
    if old_addrs == new_addrs:
        return packet
    hl = hdr.header_len
    if hdr.version == 4:
        head = bytearray(packet[:hl])
        head[12:16], head[16:20] = new_src, new_dst
        old_c = (head[10] << 8) | head[11]
        head[10:12] = checksum_adjust(old_c, old_addrs, new_addrs).to_bytes(2, "big")
    else:
        head = bytearray(packet[:40])
        head[8:24], head[24:40] = new_src, new_dst
    segment = packet[hl:]
    if hdr.first_fragment:
        segment = adjust_l4(hdr.proto, segment, old_addrs, new_addrs)
    return bytes(head) + segment
