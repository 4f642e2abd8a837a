"""In the kernel guest: natt's kernel data plane across restarts. A kill -9 leaves natt's XFRM states and
policies in the kernel; the next run removes them (a stale non-persistent SA included) and installs the
persistent SAs again where the kernel stood; a graceful stop stores where they stood. No restart, killed,
graceful or with the kernel's states gone (a reboot), makes the kernel accept an ESP packet a second time
(RFC 4303 §3.4.3), and traffic goes on.

    ka  va 192.0.2.1 ──── vb 192.0.2.2  kb      (topology of test_kernel_esp)
    lo 10.1.0.1                  lo 10.2.0.1
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any

from scapy.layers.inet import ICMP, IP

from mobility.dataplane.sa import EspSaPair
from mobility.engine import Send
from mobility.lab.netns import Lab
from natt.engine import NattEngine
from natt.sadb import Checkpoint
from tests.kernel.test_kernel_esp import TOPO, _pair
from tests.support.natt import NattHandle, restart_natt, sa_pair, start_natt

SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('192.0.2.1', 4501))\n"
    "s.sendto(bytes.fromhex(sys.argv[1]), ('192.0.2.2', 4500))\n"
)


def esp_with_seq(client: dict[str, Any], seq: int) -> bytes:
    """A genuine ESP-in-UDP payload of the client's SA (its keys) with sequence number `seq`: an ICMP echo
    10.1.0.1 → 10.2.0.1, as the client's kernel sent (or will send) with that number."""
    sa = EspSaPair.from_json({**client, "persistent": True, "keepalive": False})
    eng = NattEngine(rand=lambda n: bytes(n))
    eng.add_sa(sa, now=0, restored=Checkpoint(out_reserved=seq - 1, in_reserved=0))
    inner = bytes(IP(src="10.1.0.1", dst="10.2.0.1") / ICMP(id=77, seq=seq & 0xFFFF) / b"replayed")
    (out,) = [a for a in eng.outbound(inner, now=0) if isinstance(a, Send)]
    assert int.from_bytes(out.data[4:8], "big") == seq
    return out.data


def row(h: NattHandle, spi: int) -> dict[str, Any]:
    return next(r for r in h.ctl("sas") if int(r["spi_in"]) == spi)


def inject(lab: Lab, h: NattHandle, spi: int, data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send `data` to kb's UDP 4500 from ka (another port: a replay need not come from the peer's
    mapping); (kb's counters before, after), once the kernel has counted it one way or the other."""
    before = row(h, spi)
    lab.run("ka", sys.executable, "-c", SEND, data.hex())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = row(h, spi)
        if (after["in_packets"], after["drop_replay"], after["drop_icv"]) != (
            before["in_packets"],
            before["drop_replay"],
            before["drop_icv"],
        ):
            return before, after
        time.sleep(0.1)
    return before, row(h, spi)


def assert_replay_dropped(lab: Lab, h: NattHandle, spi: int, data: bytes) -> None:
    before, after = inject(lab, h, spi, data)
    assert after["drop_replay"] == before["drop_replay"] + 1, (before, after)
    assert after["in_packets"] == before["in_packets"] and after["drop_icv"] == before["drop_icv"], (before, after)


def ping(lab: Lab, count: int) -> str:
    out = lab.run("ka", "ping", "-c", str(count), "-i", "0.2", "-W", "2", "-I", "10.1.0.1", "10.2.0.1", check=False)
    return str(out.stdout)


def xfrm_spis(lab: Lab, host: str) -> set[int]:
    return {int(x, 16) for x in re.findall(r"spi (0x[0-9a-f]+)", lab.run(host, "ip", "xfrm", "state").stdout)}


def xfrm_policies(lab: Lab, host: str) -> list[tuple[str, str]]:
    """(source, destination) selectors of the host's XFRM policies (in, out, fwd), not the per-socket
    ones (natt's sockets bypass every policy)."""
    blocks = re.split(r"\n(?=src )", lab.run(host, "ip", "xfrm", "policy").stdout)
    return sorted(
        (m[1], m[2]) for b in blocks if "socket" not in b and (m := re.match(r"src (\S+) dst (\S+)", b)) is not None
    )


def test_restarts_keep_the_window_and_remove_what_a_killed_run_left(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(TOPO, bad=True)  # the captures hold replayed ESP: *-bad.pcap
    lab.run("ka", "ip", "addr", "add", "10.1.0.1/32", "dev", "lo")
    a = start_natt(lab, "ka", dataplane="kernel", listen=("0.0.0.0",))
    b = start_natt(lab, "kb", dataplane="kernel", listen=("0.0.0.0",))
    client, gw = _pair("aes-gcm-16")
    client["keepalive"], gw["persistent"] = False, True
    spi = gw["spi_in"]
    # a second SA on kb, not persistent, for another inner host: a killed run leaves it behind too
    _c2, other = sa_pair(
        client_local="192.0.2.1", client_peer="192.0.2.2", gw_local="192.0.2.2", gw_peer="192.0.2.1",
        gw_peer_port=4500, client_ts=["10.1.0.9/32"], gw_ts=["10.2.0.1/32"],
    )  # fmt: skip
    a.ctl("sa.add", **client)
    b.ctl("sa.add", **gw)
    b.ctl("sa.add", **other)
    lab.run("ka", "ip", "route", "add", "10.2.0.1/32", "via", "192.0.2.2", "src", "10.1.0.1")
    lab.run("kb", "ip", "route", "add", "10.1.0.1/32", "via", "192.0.2.1", "src", "10.2.0.1")
    lab.run("ka", "ping", "-c", "1", "-W", "3", "-I", "10.1.0.1", "10.2.0.1", check=False)  # neighbours resolve
    assert " 0% packet loss" in ping(lab, 3)
    replayed = esp_with_seq(client, 2)  # the client's kernel sent number 2: kb's kernel accepted it
    assert_replay_dropped(lab, b, spi, replayed)  # the kernel's own window, before any restart

    # kill -9: the states and policies stay in the kernel
    b.daemon.kill()
    assert {spi, gw["spi_out"], other["spi_in"], other["spi_out"]} <= xfrm_spis(lab, "kb")
    assert len(xfrm_policies(lab, "kb")) == 6
    b = restart_natt(lab, b)
    assert [int(r["spi_in"]) for r in b.ctl("sas")] == [spi]  # restored (no EEXIST)
    assert "SA(s) a killed run left in the kernel removed" in b.daemon.log_tail(200)
    # the non-persistent SA's states and policies are gone; the persistent one's came back
    assert xfrm_spis(lab, "kb") == {spi, gw["spi_out"]}
    inbound, outbound = ("10.1.0.1/32", "10.2.0.1/32"), ("10.2.0.1/32", "10.1.0.1/32")
    assert xfrm_policies(lab, "kb") == sorted([inbound, inbound, outbound])  # in, fwd, out
    # it continues where the kernel stood: no packet lost, none accepted twice
    assert " 0% packet loss" in ping(lab, 3)
    assert_replay_dropped(lab, b, spi, replayed)

    # a graceful restart: the states go with natt, which stores their windows (final: its UDP 4500 closed
    # first) and continues from them
    accepted = row(b, spi)["in_seq"]
    b.daemon.stop()
    assert xfrm_spis(lab, "kb") == set()
    b = restart_natt(lab, b)
    assert row(b, spi)["in_seq"] == accepted
    assert_replay_dropped(lab, b, spi, replayed)
    assert_replay_dropped(lab, b, spi, esp_with_seq(client, accepted))  # the last one accepted before
    assert " 0% packet loss" in ping(lab, 3)

    # the kernel's states gone while natt was down (a reboot): the persisted reservation, above everything
    # accepted; the client's next numbers below it are dropped, then traffic goes on
    accepted = row(b, spi)["in_seq"]
    b.daemon.kill()
    lab.run("kb", "ip", "xfrm", "state", "flush")
    lab.run("kb", "ip", "xfrm", "policy", "flush")
    b = restart_natt(lab, b)
    assert row(b, spi)["in_seq"] > accepted
    assert_replay_dropped(lab, b, spi, esp_with_seq(client, accepted))
    out = ping(lab, 30)
    assert " 100% packet loss" not in out and "icmp_seq=30" in out, out

    # the forged packets are genuine: one numbered above everything is accepted
    before, after = inject(lab, b, spi, esp_with_seq(client, 1_000_000))
    assert after["in_packets"] == before["in_packets"] + 1 and after["drop_replay"] == before["drop_replay"]
