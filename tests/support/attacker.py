"""An on-path attacker for negative tests: sniff one real ESP-in-UDP datagram on a link, then
flood the receiver with replays of it, truncations, wrong SPIs, bad ICVs and garbage.

    python -m tests.support.attacker IFACE DST SECONDS RATE   (prints a JSON line of what it sent)
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time


def sniff_esp(iface: str, dst: str, timeout: float = 10.0) -> bytes:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL: outgoing too
    s.bind((iface, 0))
    s.settimeout(timeout)
    want = socket.inet_aton(dst)
    while True:
        frame = s.recv(65535)
        if frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or ip[16:20] != want:
            continue
        udp = ip[ihl:]
        dport = struct.unpack("!H", udp[2:4])[0]
        payload = udp[8:]
        if dport == 4500 and len(payload) > 40 and payload[:4] != b"\0\0\0\0":
            return payload


def variants(esp: bytes) -> dict[str, bytes]:
    return {
        "replay": esp,
        "truncated": esp[: len(esp) // 3],
        "wrong_spi": b"\x7f\xff\xff\xff" + esp[4:],
        "bad_icv": esp[:8] + struct.pack("!I", 0x7FFFFFF0) + esp[12:-1] + bytes([esp[-1] ^ 0xFF]),
        "garbage": os.urandom(len(esp)),
        "spi_zero_short": b"\0\0\0\0\x01",
        "one_byte": b"\x00",
    }


def main() -> int:
    iface, dst, seconds, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    esp = sniff_esp(iface, dst)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    kinds = variants(esp)
    sent = dict.fromkeys(kinds, 0)
    names = list(kinds)
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        name = names[n % len(names)]
        data = kinds[name] if name != "garbage" else os.urandom(len(esp))
        if name == "bad_icv":  # a fresh, never-seen sequence number each time, so only the ICV is wrong
            data = data[:4] + struct.pack("!I", 0x7FFFFFF0 - sent[name]) + data[8:]
        out.sendto(data, (dst, 4500))
        sent[name] += 1
        n += 1
        time.sleep(1 / rate)
    print(json.dumps(sent), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
