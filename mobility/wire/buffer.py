"""The one strict reader every codec uses: parse or raise DecodeError, never anything else."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class DecodeError(ValueError):
    """Bytes from the network that do not parse. Never a bug of ours."""

    def __init__(self, proto: str, field: str, offset: int, reason: str) -> None:
        super().__init__(f"{proto}: {field} at byte {offset}: {reason}")
        self.proto, self.field, self.offset, self.reason = proto, field, offset, reason


class Reader:
    """Cursor over received bytes; every read is bounds-checked against what is really there."""

    __slots__ = ("_data", "_pos", "proto")

    def __init__(self, data: bytes, proto: str, offset: int = 0) -> None:
        self._data, self._pos, self.proto = data, offset, proto

    @property
    def offset(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def fail(self, field: str, reason: str, offset: int | None = None) -> DecodeError:
        return DecodeError(self.proto, field, self._pos if offset is None else offset, reason)

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or n > self.remaining:
            raise self.fail(field, f"needs {n} bytes, {self.remaining} left")
        self._pos += n
        return self._data[self._pos - n : self._pos]

    def rest(self) -> bytes:
        return self.take(self.remaining, "rest")

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int(_U16.unpack(self.take(2, field))[0])

    def u32(self, field: str) -> int:
        return int(_U32.unpack(self.take(4, field))[0])

    def u64(self, field: str) -> int:
        return int(_U64.unpack(self.take(8, field))[0])

    def ip4(self, field: str) -> IPv4Address:
        return IPv4Address(self.take(4, field))

    def ip6(self, field: str) -> IPv6Address:
        return IPv6Address(self.take(16, field))

    def end(self) -> None:
        """Assert that a fixed-size message was consumed exactly (WireGuard-style exact sizes)."""
        if self.remaining:
            raise self.fail("trailing", f"{self.remaining} unexpected bytes")


def der_length(data: bytes, pos: int, proto: str = "der") -> int:
    """Total length (tag, length, contents) of the DER SEQUENCE starting at `pos`: how SEND finds
    where a public key or certificate ends when no length field says so (RFC 3971 §5.1, §6.4.4)."""
    if len(data) < pos + 2 or data[pos] != 0x30:
        raise DecodeError(proto, "der", pos, "not a DER SEQUENCE")
    first = data[pos + 1]
    if first < 0x80:
        total = 2 + first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or len(data) < pos + 2 + n:
            raise DecodeError(proto, "der", pos, "bad DER length")
        total = 2 + n + int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    if len(data) < pos + total:
        raise DecodeError(proto, "der", pos, f"element needs {total} octets")
    return total
