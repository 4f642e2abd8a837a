"""make bench-ike: IKE_SA_INIT + IKE_AUTH (PSK, D-H x25519, one Child SA) completed per second at our
responder (had, next to its natt) versus charon (kernel-libipsec) as responder, driven by the same
initiator load generator (our sans-I/O engine over one UDP socket, a window of concurrent setups)
from the NAT router straight to the gateway (no translation), in one run on the same machine.

Both responders do the same work per SA: D-H, PRF, AUTH, Child SA keys and installing the Child SA
in their userspace ESP data plane. The generator stays on UDP 500 (charon fakes NAT detection).
"""

from __future__ import annotations

import os
import socket
import sys
import time

from mobility.engine import IkeSend, Notify
from mobility.ike.engine import IkeEngine
from mobility.ike.policy import Credentials, Identity, IkeSaEstablished, IkeSaFailed, Policy, ts_from_network
from mobility.ike.proposals import parse_suite
from mobility.lab.ike import LAB_PSK, start_had
from mobility.lab.natt import start_natt
from mobility.lab.netns import Lab
from mobility.lab.strongswan import psk_gateway, start_charon, stop_charon
from mobility.lab.topology import two_site_nat_topology
from mobility.wire.ikev2 import Protocol

GW = "192.0.2.2"
COUNT = int(os.environ.get("BENCH_IKE_SAS", "300"))
WINDOW = int(os.environ.get("BENCH_IKE_WINDOW", "16"))


def generator(src: str, count: int, window: int) -> None:
    """Run inside the client namespace: bring up `count` IKE SAs, `window` at a time; print the rate."""
    policy = Policy(
        name="bench",
        local_id=Identity.parse("mn.example.test"),
        remote_id=Identity.parse("gw.example.test"),
        auth="psk",
        credentials=Credentials(psk=LAB_PSK.encode()),
        ike_suites=(parse_suite("aes128-sha256-x25519", Protocol.IKE),),
        esp_suites=(parse_suite("aes128gcm16", Protocol.ESP),),
        local_ts=(ts_from_network(f"{src}/32"),),
        remote_ts=(ts_from_network("10.100.0.0/24"),),
        mobike=False,
        force_encap=False,
        follow_nat=False,
    )
    eng = IkeEngine(rand=os.urandom)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((src, 500))
    sock.settimeout(0.05)
    started = done = failed = 0
    t0 = time.monotonic()

    def handle(actions: list[object]) -> None:
        nonlocal done, failed
        for a in actions:
            if isinstance(a, IkeSend):
                sock.sendto(a.data, (a.dst, a.dport))
            elif isinstance(a, Notify) and isinstance(a.event, IkeSaEstablished):
                done += 1
            elif isinstance(a, Notify) and isinstance(a.event, IkeSaFailed):
                failed += 1

    while done + failed < count and time.monotonic() - t0 < 120:
        while started < count and started - done - failed < window:
            _, acts = eng.initiate(policy, (GW, 500), (src, 500), now=time.monotonic())
            handle(acts)
            started += 1
        try:
            data, addr = sock.recvfrom(65535)
            handle(eng.datagram(data, addr[0], addr[1], 500, now=time.monotonic()))
        except TimeoutError:
            handle(eng.on_timer(time.monotonic()))
    elapsed = time.monotonic() - t0
    print(f"{done} {failed} {elapsed:.3f}", flush=True)


def measure(lab: Lab) -> tuple[int, int, float]:
    out = lab.run("nat", sys.executable, "-m", "bench.ike", "--generator", lab.addr("nat", "wan0", 4), str(COUNT),
                  str(WINDOW), timeout=200)  # fmt: skip
    done, failed, elapsed = out.stdout.split()[-3:]
    return int(done), int(failed), float(elapsed)


def main() -> None:
    results = {}
    for name in ("had", "charon"):
        with Lab(two_site_nat_topology(), f"bench-ike-{name}") as lab:
            if name == "had":
                natt = start_natt(lab, "gw", log_secrets=False)
                conn = {"name": "rw", "local_id": "gw.example.test", "remote_id": "mn.example.test",
                        "local_ts": ["10.100.0.0/24"]}  # fmt: skip
                start_had(lab, "gw", natt, address=GW, conns=[conn], cookie_threshold=100000)
            else:
                # same DoS posture as had here: no cookies, no per-IP half-open blocking
                charon = start_charon(
                    lab,
                    "gw",
                    psk_gateway(GW, "10.100.0.0/24", "10.200.0.0/24", LAB_PSK),
                    extra="    cookie_threshold = 100000\n    block_threshold = 100000\n",
                )
            done, failed, elapsed = measure(lab)
            results[name] = (done, failed, elapsed)
            if name == "charon":
                stop_charon(charon)
    print(f"\nIKE_SA_INIT + IKE_AUTH (PSK, x25519, one Child SA), {COUNT} SAs, window {WINDOW}, same generator")
    print(f"{'responder':<12}{'completed':>10}{'failed':>8}{'seconds':>9}{'SAs/s':>9}")
    for name, (done, failed, elapsed) in results.items():
        print(f"{name:<12}{done:>10}{failed:>8}{elapsed:>9.2f}{done / elapsed:>9.1f}")
    ours, theirs = (results[n][0] / results[n][2] for n in ("had", "charon"))
    print(f"ratio had / charon: {ours / theirs:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--generator":
        generator(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
