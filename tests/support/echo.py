"""UDP+TCP echo server and probe client for lab scenarios (run with `python -m tests.support.echo`).

server BIND PORT          echo on UDP and TCP; prints "udp|tcp <peer-address>" per new peer
udp DST PORT TEXT [N]     send TEXT N times (0.05 s apart, 1 s timeout each); print replies
tcp DST PORT TEXT         connect, send, print the reply
stream DST PORT SECONDS RATE   UDP probes numbered 0..; print "sent S got R"
"""

from __future__ import annotations

import selectors
import socket
import sys
import time


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def server(bind: str, port: int) -> None:
    fam = _family(bind)
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((bind, port))
    t = socket.socket(fam, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((bind, port))
    t.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(u, selectors.EVENT_READ, "udp")
    sel.register(t, selectors.EVENT_READ, "tcp")
    seen: set[tuple[str, str]] = set()
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "udp":
                data, peer = u.recvfrom(65535)
                if ("udp", peer[0]) not in seen:
                    seen.add(("udp", peer[0]))
                    print("udp", peer[0], flush=True)
                u.sendto(data, peer)
            elif key.data == "tcp":
                c, peer = t.accept()
                if ("tcp", peer[0]) not in seen:
                    seen.add(("tcp", peer[0]))
                    print("tcp", peer[0], flush=True)
                sel.register(c, selectors.EVENT_READ, c)
            else:
                c = key.data
                data = c.recv(65535)
                if data:
                    c.sendall(data)
                else:
                    sel.unregister(c)
                    c.close()


def udp(dst: str, port: int, text: str, n: int) -> int:
    s = socket.socket(_family(dst), socket.SOCK_DGRAM)
    s.settimeout(1.0)
    got = 0
    for _ in range(n):
        s.sendto(text.encode(), (dst, port))
        try:
            data, _ = s.recvfrom(65535)
            print(data.decode(), flush=True)
            got += 1
        except TimeoutError:
            pass
        time.sleep(0.05)
    return 0 if got else 1


def tcp(dst: str, port: int, text: str) -> int:
    with socket.create_connection((dst, port), timeout=5) as s:
        s.sendall(text.encode())
        print(s.recv(65535).decode(), flush=True)
    return 0


def stream(dst: str, port: int, seconds: float, rate: float) -> int:
    s = socket.socket(_family(dst), socket.SOCK_DGRAM)
    s.setblocking(False)
    sent = got = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendto(f"probe {sent}".encode(), (dst, port))
        sent += 1
        t = time.monotonic() + 1 / rate
        while time.monotonic() < t:
            try:
                s.recvfrom(65535)
                got += 1
            except BlockingIOError:
                time.sleep(0.001)
    t = time.monotonic() + 1.0
    while time.monotonic() < t:
        try:
            s.recvfrom(65535)
            got += 1
        except BlockingIOError:
            time.sleep(0.01)
    print(f"sent {sent} got {got}", flush=True)
    return 0


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "server":
        server(a[1], int(a[2]))
    elif a[0] == "udp":
        sys.exit(udp(a[1], int(a[2]), a[3], int(a[4]) if len(a) > 4 else 3))
    elif a[0] == "tcp":
        sys.exit(tcp(a[1], int(a[2]), a[3]))
    elif a[0] == "stream":
        sys.exit(stream(a[1], int(a[2]), float(a[3]), float(a[4])))
