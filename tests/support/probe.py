"""A UDP probe stream: `send DST PORT RATE SECONDS` numbers datagrams; `recv PORT SECONDS OUT` writes
the sequence numbers it received (JSON) to OUT when the time is up."""

from __future__ import annotations

import json
import socket
import sys
import time


def send(dst: str, port: int, rate: float, seconds: float) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    n, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            s.sendto(n.to_bytes(4, "big") + bytes(60), (dst, port))
        except OSError:
            pass  # no route yet / neighbour unreachable: the datagram is lost, as on a wire
        n += 1
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
    print(json.dumps({"sent": n}), flush=True)


def recv(port: int, seconds: float, out: str) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::", port))
    s.settimeout(0.2)
    got: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = s.recv(2048)
        except TimeoutError:
            continue
        got.append(int.from_bytes(data[:4], "big"))
    with open(out, "w") as f:
        json.dump(got, f)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        recv(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
