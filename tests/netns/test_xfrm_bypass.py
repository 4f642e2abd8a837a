"""natt and the IKE owners exempt their sockets from XFRM policies (socket_bypass), so a transport-mode
SA between two hosts never swallows the IKE and ESP-in-UDP datagrams those hosts exchange. Checked
against this kernel's XFRM: an outbound policy that demands ESP for all UDP between two addresses
(no SA exists, so the kernel drops what matches it) stops an ordinary socket but not a bypassed one."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mobility.lab.netns import Lab
from mobility.lab.topology import End, Link, Topology

TOPO = Topology(
    hosts=("a", "b"),
    links=(Link(End("a", "eth0", ("2001:db8:7::1/64",)), End("b", "eth0", ("2001:db8:7::2/64",))),),
)

PROBE = """
import socket, sys
from mobility.dataplane.xfrm import socket_bypass
rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
rx.bind(("2001:db8:7::1", 4500))
rx.settimeout(1.0)
got = []
for bypass in (False, True):
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    if bypass:
        socket_bypass(tx)
    try:
        tx.sendto(b"bypass" if bypass else b"plain", ("2001:db8:7::1", 4500))
    except OSError as e:
        print("send", bypass, e, file=sys.stderr)
    try:
        got.append(rx.recv(100).decode())
    except TimeoutError:
        pass
print(",".join(got))
"""


def test_bypassed_socket_escapes_a_transport_policy(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(TOPO)
    lab.run(
        "a", "ip", "xfrm", "policy", "add", "src", "2001:db8:7::1/128", "dst", "2001:db8:7::1/128",
        "proto", "udp", "dir", "out", "tmpl", "proto", "esp", "mode", "transport",
    )  # fmt: skip
    out = lab.run("a", sys.executable, "-c", PROBE).stdout.strip()
    assert out == "bypass"  # the plain datagram was held for an SA that never came; the bypassed one passed
    lab.run("a", "ip", "xfrm", "policy", "flush")
    assert lab.run("a", sys.executable, "-c", PROBE).stdout.strip() == "plain,bypass"  # no policy: both pass
