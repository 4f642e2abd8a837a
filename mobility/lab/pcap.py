"""Write raw IP packets to a pcap file (LINKTYPE_RAW), for oracle checks of messages we build."""

from __future__ import annotations

import struct
from pathlib import Path

LINKTYPE_RAW = 101


def write_pcap(path: Path, packets: list[bytes], start: float = 1_700_000_000.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
    for i, p in enumerate(packets):
        t = start + i * 0.001
        out += struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(p), len(p)) + p
    path.write_bytes(bytes(out))
    return path


def ipv6(src: bytes, dst: bytes, next_header: int, payload: bytes, hop_limit: int = 255) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit) + src + dst + payload
