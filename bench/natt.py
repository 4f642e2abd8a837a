"""make bench-natt: natt's userspace ESP versus strongSwan's kernel-libipsec, same lab, same run.

Path: client c1 behind the nftables masquerade NAT → gw, ESP (AES-GCM-128) in UDP 4500, inner
traffic from the client's inner address to the gateway's 10.100.0.1. Load: iperf3 UDP at fixed
offered rates (flat-out sending only measures who starves whom on 2 vCPUs: real-peers.md §4),
1400-byte inner packets (1372-byte payload) and 64-byte payloads. For each implementation we report
the highest offered rate delivered with < 1 % loss and the best delivered rate.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from mobility.lab.natt import sa_pair, start_natt
from mobility.lab.netns import Lab
from mobility.lab.strongswan import psk_client, psk_gateway, start_charon, stop_charon, swanctl
from mobility.lab.topology import two_site_nat_topology

RATES_1400_MBIT = (50, 100, 150, 200, 250, 300, 400, 500)
RATES_64_KPPS = (5, 10, 20, 30, 40, 60, 80)
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
GW_INNER = "10.100.0.1"


@dataclass
class Point:
    size: int
    offered_pps: float
    delivered_pps: float
    loss_pct: float

    @property
    def delivered_mbit(self) -> float:
        return self.delivered_pps * (self.size + 28) * 8 / 1e6  # inner IP packet bits


def iperf(lab: Lab, size: int, pps: float) -> Point:
    rate_bits = int(pps * size * 8)
    res = lab.run(
        "c1",
        "iperf3",
        "-J",
        "-c",
        GW_INNER,
        "-p",
        "5201",
        "-u",
        "-l",
        str(size),
        "-b",
        str(rate_bits),
        "-t",
        str(SECONDS),
        check=False,
        timeout=SECONDS + 20,
    )
    try:
        s = json.loads(res.stdout)["end"]["sum"]
    except (ValueError, KeyError):
        return Point(size, pps, 0.0, 100.0)
    lost = float(s.get("lost_percent", 100.0))
    delivered = s["packets"] * (1 - lost / 100) / SECONDS if s.get("packets") else 0.0
    time.sleep(0.5)
    return Point(size, pps, delivered, lost)


def sweep(lab: Lab, label: str) -> dict[str, Any]:
    out: dict[str, Any] = {"label": label, "points": []}
    for size, rates in (
        (1372, [r * 1e6 / (1400 * 8) for r in RATES_1400_MBIT]),
        (64, [k * 1000 for k in RATES_64_KPPS]),
    ):
        best: Point | None = None
        lossless: Point | None = None
        for pps in rates:
            p = iperf(lab, size, pps)
            out["points"].append(p)
            print(
                f"  {label:10s} {size + 28:5d} B  offered {pps:8.0f} pkt/s  delivered {p.delivered_pps:8.0f} pkt/s "
                f"{p.delivered_mbit:7.1f} Mbit/s  loss {p.loss_pct:5.2f} %",
                flush=True,
            )
            if best is None or p.delivered_pps > best.delivered_pps:
                best = p
            if p.loss_pct < 1.0:
                lossless = p
            if p.loss_pct > 20:
                break
        out[size] = (lossless, best)
    return out


def run_natt(lab: Lab) -> dict[str, Any]:
    c1 = start_natt(lab, "c1", tun_addresses=("10.200.0.1/32",), log_secrets=False)
    gw = start_natt(lab, "gw", log_secrets=False)
    client, gwsa = sa_pair(
        client_local=lab.addr("c1", "eth0", 4),
        client_peer=lab.addr("gw", "eth0", 4),
        gw_local=lab.addr("gw", "eth0", 4),
        gw_peer=lab.addr("nat", "wan0", 4),
        gw_peer_port=4500,
        client_ts=["10.200.0.1/32"],
        gw_ts=["10.100.0.0/24"],
    )
    gw.ctl("sa.add", **gwsa)
    c1.ctl("sa.add", **client)
    srv = lab.popen("gw", ["iperf3", "-s", "-B", GW_INNER, "-p", "5201"])
    time.sleep(0.5)
    try:
        return sweep(lab, "natt")
    finally:
        srv.terminate()
        srv.wait()
        c1.daemon.stop()
        gw.daemon.stop()


def run_strongswan(lab: Lab) -> dict[str, Any]:
    psk = "bench-psk-not-secret-0123456789"
    gw = start_charon(lab, "gw", psk_gateway(lab.addr("gw", "eth0", 4), "10.100.0.0/24", "10.200.0.0/28", psk))
    c1 = start_charon(lab, "c1", psk_client(lab.addr("gw", "eth0", 4), "10.100.0.0/24", psk))
    try:
        swanctl(lab, c1, "--initiate", "--child", "home", "--timeout", "10")
        srv = lab.popen("gw", ["iperf3", "-s", "-B", GW_INNER, "-p", "5201"])
        time.sleep(0.5)
        try:
            return sweep(lab, "strongswan")
        finally:
            srv.terminate()
            srv.wait()
    finally:
        stop_charon(c1)
        stop_charon(gw)


def report(natt: dict[str, Any], sw: dict[str, Any]) -> None:
    print("\nnatt userspace ESP vs strongSwan kernel-libipsec (AES-GCM-128, UDP 4500 through NAT44)")
    print(f"{'packet':>8} {'metric':>26} {'natt':>12} {'strongSwan':>12} {'ratio':>7}")
    for size in (1372, 64):
        for idx, metric in ((0, "max rate with < 1 % loss"), (1, "best delivered")):
            a, b = natt[size][idx], sw[size][idx]
            av = a.delivered_pps if a else 0.0
            bv = b.delivered_pps if b else 0.0
            ratio = f"{av / bv:.2f}" if bv else "n/a"
            print(f"{size + 28:>6} B {metric + ' pkt/s':>26} {av:12.0f} {bv:12.0f} {ratio:>7}")
            if size == 1372:
                am = a.delivered_mbit if a else 0.0
                bm = b.delivered_mbit if b else 0.0
                ratio = f"{am / bm:.2f}" if bm else "n/a"
                print(f"{'':>8} {metric + ' Mbit/s':>26} {am:12.1f} {bm:12.1f} {ratio:>7}")


def main() -> int:
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    with Lab(two_site_nat_topology(), "bench-natt") as lab:
        natt = run_natt(lab) if only in ("", "natt") else None
        sw = run_strongswan(lab) if only in ("", "strongswan") else None
    if natt and sw:
        report(natt, sw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
