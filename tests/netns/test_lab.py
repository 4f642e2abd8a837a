"""The lab itself: parallel runs do not collide, crashed runs are cleaned up, NAT and faults work."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from mobility.lab.netns import REGISTRY, Lab, cleanup_stale
from mobility.lab.topology import two_site_nat_topology

pytestmark = pytest.mark.netns


def _namespaces() -> set[str]:
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()[::1])


def test_parallel_labs_and_nat_both_families(lab_factory: Callable[..., Lab]) -> None:
    a, b = lab_factory(two_site_nat_topology(), name="lab-a"), lab_factory(two_site_nat_topology(), name="lab-b")
    assert a.prefix != b.prefix
    for lab in (a, b):
        for host, dst in (("c1", "192.0.2.2"), ("c2", "2001:db8:1::2")):
            lab.run(host, "ping", "-c", "1", "-W", "2", dst)
    # the gateway has no route back to the private networks: only the NAT makes this work
    assert "10.99." not in a.run("gw", "ip", "route").stdout


def test_stale_runs_are_cleaned_up() -> None:
    ns = "mdead1-x"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    REGISTRY.mkdir(parents=True, exist_ok=True)
    (REGISTRY / "mdead1.json").write_text(json.dumps({"pid": 2**22 + 12345, "namespaces": [ns]}))
    assert ns in cleanup_stale()
    assert ns not in _namespaces() and not (REGISTRY / "mdead1.json").exists()


def test_loss_blackhole_and_clear(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(two_site_nat_topology(), bad=True)
    lab.blackhole("nat", "wan0")
    assert lab.run("c1", "ping", "-c", "2", "-W", "1", "192.0.2.2", check=False).returncode != 0
    lab.clear_faults("nat")
    lab.loss("nat", "wan0", 50, direction="egress")
    out = lab.run("c1", "ping", "-c", "40", "-i", "0.01", "-W", "1", "192.0.2.2", check=False).stdout
    loss = float(out.split("% packet loss")[0].split()[-1])
    assert 15 <= loss <= 85, out
    lab.clear_faults("nat")
    lab.run("c1", "ping", "-c", "2", "-W", "1", "192.0.2.2")
    assert all(p.name.endswith("-bad.pcap") for p in lab.stop_captures())
