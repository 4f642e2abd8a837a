"""UDP port 4500 payloads (RFC 3948 §2) and the ESP header (RFC 4303 §2).

`classify` is the demultiplexer every datagram on UDP 4500 goes through:
  * exactly one octet 0xFF: NAT-keepalive (§2.3), ignored by the receiver;
  * a leading Non-ESP Marker of four zero octets (§2.2): an IKE message follows;
  * anything else: ESP, whose SPI is never zero (§2.1, RFC 4303 §2.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from mobility.wire.buffer import DecodeError

NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"
IKE_HEADER_LEN = 28  # RFC 7296 §3.1
ESP_HEADER_LEN = 8
ESP_MIN_LEN = ESP_HEADER_LEN + 8 + 2 + 16  # header + smallest IV + trailer + ICV of our transforms

_ESP_HEAD = struct.Struct("!II")


class Kind(Enum):
    KEEPALIVE = "keepalive"
    IKE = "ike"
    ESP = "esp"


def classify(payload: bytes) -> Kind:
    """RFC 3948 §2: decide what a UDP 4500 payload is, or raise DecodeError."""
    n = len(payload)
    if n == 1:
        if payload[0] == 0xFF:
            return Kind.KEEPALIVE
        raise DecodeError("udp4500", "keepalive", 0, f"one-octet payload {payload[0]:#04x} is not 0xFF")
    if n < 4:
        raise DecodeError("udp4500", "payload", 0, f"{n} octets is neither IKE nor ESP")
    if payload[:4] == NON_ESP_MARKER:
        if n < 4 + IKE_HEADER_LEN:
            raise DecodeError("udp4500", "ike_header", 4, f"IKE header needs {IKE_HEADER_LEN} octets")
        return Kind.IKE
    if n < ESP_MIN_LEN:
        raise DecodeError("esp", "length", 0, f"{n} octets is shorter than any ESP packet ({ESP_MIN_LEN})")
    return Kind.ESP


@dataclass(frozen=True, slots=True)
class EspHeader:
    spi: int
    seq: int  # low-order 32 bits as carried on the wire

    def encode(self) -> bytes:
        return _ESP_HEAD.pack(self.spi, self.seq)

    @classmethod
    def decode(cls, data: bytes) -> EspHeader:
        if len(data) < ESP_HEADER_LEN:
            raise DecodeError("esp", "header", 0, f"needs 8 octets, got {len(data)}")
        spi, seq = _ESP_HEAD.unpack_from(data)
        if spi == 0:
            raise DecodeError("esp", "spi", 0, "SPI 0 is never ESP (RFC 3948 §2.1)")
        return cls(spi, seq)


def ike_datagram(message: bytes) -> bytes:
    """An IKE message as sent on port 4500: behind the Non-ESP Marker (§2.2)."""
    return NON_ESP_MARKER + message
