"""In the kernel guest: a Child SA negotiated by our IKEv2 (mobiled -> had) is installed through natt's
kernel backend (XFRM with espinudp) on both ends and carries traffic."""

from __future__ import annotations

from collections.abc import Callable

from mobility.lab.ike import start_had, start_mobiled, wait_home
from mobility.lab.netns import Lab
from mobility.lab.tshark import malformed, tshark_fields
from tests.kernel.test_kernel_esp import TOPO
from tests.support.natt import start_natt


def test_ike_child_sa_through_kernel_backend(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(TOPO)
    lab.run("ka", "ip", "addr", "add", "10.1.0.1/32", "dev", "lo")
    gw_natt = start_natt(lab, "kb", dataplane="auto", listen=("0.0.0.0",))
    mn_natt = start_natt(lab, "ka", dataplane="auto", listen=("0.0.0.0",))
    assert gw_natt.ctl("status")["dataplane"] == "kernel" and mn_natt.ctl("status")["dataplane"] == "kernel"
    conn = {
        "name": "rw",
        "local_id": "gw.example.test",
        "remote_id": "mn.example.test",
        "local_ts": ["10.2.0.1/32"],
        "remote_ts": ["10.1.0.1/32"],
    }
    had = start_had(lab, "kb", gw_natt, address="192.0.2.2", conns=[conn])
    mn = start_mobiled(
        lab,
        "ka",
        mn_natt,
        home_agents=["192.0.2.2"],
        request=(),
        conn={
            "name": "home",
            "remote_id": "gw.example.test",
            "local_ts": ["10.1.0.1/32"],
            "remote_ts": ["10.2.0.1/32"],
        },
    )
    wait_home(mn)
    lab.run("ka", "ip", "route", "add", "10.2.0.1/32", "via", "192.0.2.2", "src", "10.1.0.1")
    lab.run("kb", "ip", "route", "add", "10.1.0.1/32", "via", "192.0.2.1", "src", "10.2.0.1")
    lab.run("ka", "ping", "-c", "1", "-W", "3", "-I", "10.1.0.1", "10.2.0.1", check=False)
    out = lab.run("ka", "ping", "-c", "3", "-i", "0.3", "-W", "2", "-I", "10.1.0.1", "10.2.0.1", check=False)
    assert " 0% packet loss" in out.stdout, out.stdout
    states = lab.run("kb", "ip", "-s", "xfrm", "state").stdout
    assert "encap type espinudp sport 4500 dport 4500" in states
    (sa,) = had.ctl("ike.sas")
    assert sa["state"] == "established" and sa["children"] == 1
    pcap = next(p for p in lab.stop_captures() if p.name.startswith("kb-vb"))
    assert {"34", "35"} <= {r[0] for r in tshark_fields(pcap, "isakmp", ["isakmp.exchangetype"]) if r}
    assert tshark_fields(pcap, "esp && udp.dstport == 4500", ["esp.spi"])
    assert malformed(pcap) == []
