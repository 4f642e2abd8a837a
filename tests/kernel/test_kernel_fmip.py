"""In the kernel guest: FMIPv6 forwarding (RFC 5568 §4) through ip6tnl links. `auto` picks the kernel
backend here; packets for the previous CoA reach the new CoA inside IPv6-in-IPv6 (RFC 2473) from the
PAR's global address; removal stops them; a restart after kill -9 removes stale links and keeps the
restored ones. The lab is tests/netns/test_fmip.py's (PAR, NAR, MN, a correspondent):

    cn eth0 2001:db8:1::2 ── eth1 par eth2 2001:db8:2::1 ── eth1 nar 2001:db8:2::2
                               br0 2001:db8:10::1/64          br0 2001:db8:20::1/64
                               └ ap0 ── eth0 mn  (ap0 moves to nar's br0 at the handover)
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, TypeVar

from mobility.dataplane.ip6tunnel import KernelForwarder, link_name, link_stem
from mobility.dataplane.probe import probe_kernel_ip6tnl
from mobility.lab.netns import Lab
from mobility.lab.tshark import tshark_fields
from tests.netns.test_fmip import PAR_ADDR, TOPO, Node, bridges, move, routers, wait

STEM = link_stem("fmip0")
P1, P2 = "2001:db8:10::a1", "2001:db8:10::a2"
N1, N2 = "2001:db8:20::b1", "2001:db8:20::b2"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def in_netns(ns: str, scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `scenario` on an event loop in a thread that entered namespace `ns`; the backend's worker
    threads, started from there, are in it too."""
    box: dict[str, Any] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            box["result"] = asyncio.run(scenario())
        except BaseException as e:
            box["error"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


def links(lab: Lab) -> dict[str, str]:
    """Our ip6tnl links on the PAR: name -> `ip -d link` line."""
    out = lab.run("par", "ip", "-d", "-o", "link", "show", "type", "ip6tnl").stdout
    return {m.group(1): line for line in out.splitlines() if (m := re.match(rf"\d+: ({STEM}[0-9a-f]+)[@:]", line))}


def route_dev(lab: Lab, pcoa: str) -> str:
    out = lab.run("par", "ip", "-6", "route", "show", f"{pcoa}/128").stdout.split()
    return out[out.index("dev") + 1] if "dev" in out else ""


def tunnelled(pcap: Path) -> list[tuple[float, str, str, str]]:
    """(time, outer source, outer destination, inner destination) of IPv6-in-IPv6 frames, not counting
    ICMPv6 errors that quote one (one tshark run: it is slow in the guest)."""
    rows = tshark_fields(pcap, "ipv6.nxt == 41 && !(icmpv6.type < 128)", ["frame.time_epoch", "ipv6.src", "ipv6.dst"])
    out = []
    for t, src, dst in rows:
        outer_src, (outer_dst, inner_dst) = src.split(",")[0], dst.split(",")[:2]
        out.append((float(t), outer_src, outer_dst, inner_dst))
    return out


def test_probe_and_the_kernels_one_tunnel_per_endpoint_pair(lab_factory: Callable[..., Lab]) -> None:
    """Why links are per NCoA: the kernel refuses a second ip6tnl with the same local and remote."""
    ok, why = probe_kernel_ip6tnl()
    assert ok, why
    lab = lab_factory(TOPO)
    add = ["ip", "link", "add", "type", "ip6tnl", "mode", "ip6ip6", "local", PAR_ADDR, "remote", N1]
    lab.run("par", *add[:3], "t1", *add[3:])
    second = lab.run("par", *add[:3], "t2", *add[3:], check=False)
    assert second.returncode != 0 and "exists" in second.stderr, second


def test_kernel_backend_forwards_removes_and_reconciles(lab_factory: Callable[..., Lab]) -> None:
    """The backend alone against the real kernel, in the PAR's namespace; a ping from cn to a PCoA."""
    lab = lab_factory(TOPO)
    bridges(lab)
    l1, l2 = link_name(STEM, N1), link_name(STEM, N2)

    def ping(pcoa: str) -> None:
        lab.run("cn", "ping", "-c", "3", "-i", "0.2", "-W", "1", pcoa, check=False)  # no answer: counted only

    async def forward_two_pcoas_to_one_ncoa() -> dict[str, Any]:
        fwd = KernelForwarder("fmip0", IPv6Address(PAR_ADDR), "test")
        plan = await fwd.start({P1: N1, P2: N1})
        seen = {"plan": plan, "links": links(lab), "routes": (route_dev(lab, P1), route_dev(lab, P2))}
        ping(P1)
        seen["counters"] = await fwd.counters()
        fwd.remove(P1)
        await fwd.counters()  # after the removal (one worker, in order)
        seen["after_p1"] = (links(lab), route_dev(lab, P1), route_dev(lab, P2))
        fwd.remove(P2)
        await fwd.counters()
        seen["after_p2"] = links(lab)
        t = time.time()
        ping(P1)
        seen["t_removed"] = t
        seen["final"] = await fwd.counters()
        fwd.add(P1, N1)  # and again; then "kill -9": the process ends without close()
        await fwd.counters()
        await fwd._w.close()
        return seen

    seen = in_netns(lab.ns("par"), forward_two_pcoas_to_one_ncoa)
    assert [n for n, _ in seen["plan"].create_links] == [l1] and list(seen["links"]) == [l1]
    assert f"remote {N1} local {PAR_ADDR}" in seen["links"][l1] and "ip6ip6" in seen["links"][l1]
    assert seen["routes"] == (l1, l1)
    assert seen["counters"].packets == {P1: 3, P2: 3}  # one link: its count is shared
    assert seen["counters"].totals["fwd_packets"] == 3
    assert list(seen["after_p1"][0]) == [l1] and seen["after_p1"][1:] == ("", l1)
    assert seen["after_p2"] == {} and seen["final"].totals["fwd_packets"] == 3  # retired, not lost
    assert list(links(lab)) == [l1], "links outlive a killed process"

    # restart: a stale link of ours (made by hand), the left-over l1 (P1 now wants N2), a foreign link
    lab.run("par", "ip", "link", "add", f"{STEM}deadbeef", "type", "ip6tnl", "remote", "2001:db8:2::99")
    lab.run("par", "ip", "link", "add", "other6", "type", "ip6tnl", "remote", "2001:db8:2::98")

    async def restart(wanted: dict[str, str]) -> Any:
        fwd = KernelForwarder("fmip0", IPv6Address(PAR_ADDR), "test")
        plan = await fwd.start(wanted)
        await fwd._w.close()  # not close(): the links stay, as after kill -9
        return plan

    plan = in_netns(lab.ns("par"), lambda: restart({P1: N2}))
    assert sorted(plan.delete_links) == sorted([l1, f"{STEM}deadbeef"]) and plan.create_links == ((l2, N2),)
    assert list(links(lab)) == [l2] and route_dev(lab, P1) == l2
    assert "other6" in lab.run("par", "ip", "link", "show").stdout  # not ours: untouched
    index = lab.run("par", "cat", f"/sys/class/net/{l2}/ifindex").stdout
    again = in_netns(lab.ns("par"), lambda: restart({P1: N2}))
    assert again.delete_links == () and again.create_links == ()  # idempotent
    assert lab.run("par", "cat", f"/sys/class/net/{l2}/ifindex").stdout == index

    async def stop() -> None:
        fwd = KernelForwarder("fmip0", IPv6Address(PAR_ADDR), "test")
        await fwd.start({P1: N2})
        await fwd.close()

    in_netns(lab.ns("par"), stop)
    assert links(lab) == {} and route_dev(lab, P1) == ""

    pcap = next(p for p in lab.stop_captures() if p.name.startswith("par-eth2"))
    frames = tunnelled(pcap)
    assert [f[1:] for f in frames] == [(PAR_ADDR, N1, P1)] * 3, frames
    assert all(t < seen["t_removed"] for t, *_ in frames), "removal stops the forwarding"


def test_ard_auto_forwards_through_ip6tnl(lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    """ard and mobiled: FBU, kernel forwarding through the handover and a kill -9 of ard, expiry."""
    lab = lab_factory(TOPO)
    bridges(lab)
    par, nar, anchor = routers(lab, tmp_path)
    par.conf.write_text("forward_s = 40\n" + par.conf.read_text())  # room for a restart in between
    par.daemon.stop()
    par.start()
    st = par.ctl("status")
    assert st["forwarding_backend"] == "kernel", st
    conf = f'[fmip]\ninterface = "eth0"\ntrust_anchors = ["{anchor}"]\nsec = 0\nfbu_lifetime_s = 40\n'
    mn = Node(lab, "mn", "mobiled", conf)
    pcoa = wait(lambda: mn.ctl("fmip.keys"), 60, "a handover key from the PAR")[0]["cga"]

    out = tmp_path / "probe.json"
    rx = lab.popen("mn", [sys.executable, "-m", "tests.support.probe", "recv", "9999", "51", str(out)])
    tx = lab.popen("cn", [sys.executable, "-m", "tests.support.probe", "send", pcoa, "9999", "40", "48"])
    fb = mn.ctl("fmip.handover", timeout=8)
    assert fb["status"] == 0, fb
    ncoa = fb["ncoa"]
    link = link_name(STEM, ncoa)
    assert list(links(lab)) == [link] and f"remote {ncoa} local {PAR_ADDR}" in links(lab)[link]
    assert route_dev(lab, pcoa) == link
    move(lab)
    mn.ctl("fmip.attached")
    wait(lambda: (f := par.ctl("forwarding")) and f[0]["packets"] > 40, 30, "packets through the ip6tnl link")

    # kill -9: the kernel keeps forwarding without ard; the restart keeps our link, drops a stale one
    lab.run("par", "ip", "link", "add", f"{STEM}0badf00d", "type", "ip6tnl", "remote", "2001:db8:2::99")
    index = lab.run("par", "cat", f"/sys/class/net/{link}/ifindex").stdout
    par.daemon.kill()
    before = int(lab.run("par", "cat", f"/sys/class/net/{link}/statistics/tx_packets").stdout)
    time.sleep(1.0)
    assert int(lab.run("par", "cat", f"/sys/class/net/{link}/statistics/tx_packets").stdout) > before
    par.start()
    assert par.ctl("status")["forwarding_backend"] == "kernel"
    assert list(links(lab)) == [link], "stale link removed, restored one kept"
    assert lab.run("par", "cat", f"/sys/class/net/{link}/ifindex").stdout == index
    assert [f["pcoa"] for f in par.ctl("forwarding")] == [pcoa] and route_dev(lab, pcoa) == link

    # expiry (forward_s) removes the link and the route: the rest of the stream is not forwarded
    wait(lambda: par.ctl("forwarding") == [], 60, "the forwarding to expire")
    wait(lambda: links(lab) == {}, 10, "the ip6tnl link removed")
    t_removed = time.time()
    assert route_dev(lab, pcoa) == ""
    sent_after = tx.poll() is None  # the stream still runs past the expiry
    tx.wait(60)
    rx.wait(60)
    got = json.loads(out.read_text())
    print(f"kernel forwarding: MN received {len(got)} probes, PAR {par.ctl('stats').get('fwd_packets')} packets")
    assert len(got) > 100

    pcap = next(p for p in lab.stop_captures() if p.name.startswith("par-eth2"))
    frames = tunnelled(pcap)
    assert len(frames) > 100 and {f[1:] for f in frames} == {(PAR_ADDR, ncoa, pcoa)}
    assert sent_after and [t for t, *_ in frames if t > t_removed] == [], "expiry stops the forwarding"
    assert nar.ctl("stats")["hi_answered"] >= 1
