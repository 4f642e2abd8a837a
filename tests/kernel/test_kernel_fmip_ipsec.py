"""In the kernel guest: FMIPv6 with HI/HAck inside ESP (RFC 5568 §10) when natt on both access routers
uses the kernel (XFRM) data plane. After a kill -9 of the PAR's ard, its new Child SA reaches the NAR
before the old one is deleted: same selectors, same peer, a sibling that shares the old one's reqid
and policies (mobility/dataplane/kernel.py). The lab is tests/netns/test_fmip.py's:

    cn eth0 2001:db8:1::2 ── eth1 par eth2 2001:db8:2::1 ── eth1 nar 2001:db8:2::2
                               br0 2001:db8:10::1/64          br0 2001:db8:20::1/64
                               └ ap0 ── eth0 mn
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from mobility.lab.netns import Lab
from mobility.lab.tshark import tshark_fields, unexplained_errors
from mobility.service.control import ControlClient
from tests.netns.test_fmip import NAR_ADDR, PAR_ADDR, TOPO, Node, bridges, routers, wait


def natt(lab: Lab, host: str, cmd: str) -> Any:
    with ControlClient(Path(lab.daemon_dir(host, "natt")) / "run" / "natt.sock") as c:
        return c.call(cmd)


def most_sas_at_once(log: Path) -> int:
    """The most Child SAs natt held at one time, from its log (added / removed lines)."""
    live: set[str] = set()
    most = 0
    for line in log.read_text(errors="replace").splitlines():
        if m := re.search(r" natt: SA (0x[0-9a-f]+)/0x[0-9a-f]+ ", line):
            live.add(m[1])
        elif m := re.search(r" natt: SA (0x[0-9a-f]+) removed", line):
            live.discard(m[1])
        most = max(most, len(live))
    return most


def reqids(lab: Lab, host: str, what: str) -> set[int]:
    return {int(r) for r in re.findall(r"reqid (\d+)", lab.run(host, "ip", "xfrm", what).stdout)}


def test_fast_handover_with_kernel_esp_after_par_restart(lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    lab = lab_factory(TOPO)
    bridges(lab)
    par, nar, anchor = routers(lab, tmp_path, ipsec=True, natt_dataplane="kernel")
    assert natt(lab, "par", "status")["dataplane"] == "kernel" and natt(lab, "nar", "status")["dataplane"] == "kernel"
    mn = Node(lab, "mn", "mobiled", f'[fmip]\ninterface = "eth0"\ntrust_anchors = ["{anchor}"]\nsec = 0\n')
    k = wait(lambda: mn.ctl("fmip.keys"), 60, "a handover key from the PAR")[0]
    pcoa = k["cga"]
    assert k["ar"] == PAR_ADDR and IPv6Address(pcoa) in IPv6Network("2001:db8:10::/64")
    wait(lambda: par.ctl("ipsec")[0]["child_sas"] == 1, 60, "the Child SA between the routers")
    wait(lambda: len(natt(lab, "nar", "sas")) == 1, 30, "the Child SA installed in the NAR's kernel")
    (first,) = natt(lab, "nar", "sas")

    # kill -9 of the PAR's ard: the restarted one sets up a new IKE SA and Child SA with the NAR, which
    # installs it beside the one the killed process left (a sibling), then deletes the old IKE SA
    par.daemon.kill()
    par.start()
    assert [x["cga"] for x in par.ctl("keys")] == [pcoa]
    wait(lambda: par.ctl("ipsec")[0]["child_sas"] == 1, 60, "the PAR's new Child SA with the NAR")
    wait(lambda: len(nar.ctl("ike.sas")) == 1, 60, "the NAR keeping only the new IKE SA")
    wait(lambda: nar.ctl("ipsec")[0]["child_sas"] == 1, 60, "the NAR's new Child SA")
    wait(lambda: [r["spi_in"] for r in natt(lab, "nar", "sas")] != [first["spi_in"]], 30, "the old one deleted")
    (second,) = natt(lab, "nar", "sas")
    assert (second["local"], second["peer"], second["mode"]) == (NAR_ADDR, PAR_ADDR, "transport")
    assert most_sas_at_once(lab.capture_dir / "nar-natt.log") == 2, "the new Child SA came while the old one was up"
    assert second["reqid"] == first["reqid"]  # the sibling took the old one's reqid, and keeps its policies
    assert reqids(lab, "nar", "policy") == {first["reqid"]} == reqids(lab, "nar", "state")

    fb = mn.ctl("fmip.handover", timeout=8)
    assert fb["status"] == 0 and fb["pcoa"] == pcoa and IPv6Address(fb["ncoa"]) in IPv6Network("2001:db8:20::/64")
    fwd = par.ctl("forwarding")
    assert [(f["pcoa"], f["ncoa"]) for f in fwd] == [(pcoa, fb["ncoa"])]
    stats, nar_stats = par.ctl("stats"), nar.ctl("stats")
    assert stats["fbu_accepted"] == 1 and nar_stats["hi_answered"] >= 1
    assert "drop_mh_unprotected" not in nar_stats and "drop_mh_unprotected" not in stats
    assert par.ctl("status")["hi_hack"] == "ipsec" and nar.ctl("ipsec")[0]["role"] == "responder"
    # ard trusts the XFRM inbound policy in kernel mode: the HI it answered came out of the NAR's SA
    (after,) = natt(lab, "nar", "sas")
    assert after["spi_in"] == second["spi_in"] and after["in_packets"] > second["in_packets"], (second, after)
    assert after["out_packets"] > second["out_packets"] and after["drop_icv"] == after["drop_replay"] == 0

    pcaps = lab.stop_captures()
    bb_pcap = next(p for p in pcaps if p.name.startswith("par-eth2"))
    spis = {r[0] for r in tshark_fields(bb_pcap, "esp && udp.port == 4500", ["esp.spi"]) if r}
    assert spis, "ESP in UDP 4500 on the backbone"
    mh_types = {r[0] for r in tshark_fields(bb_pcap, "mipv6", ["mip6.mhtype"]) if r}
    assert not mh_types & {"14", "15"}, mh_types  # no HI or HAck in the clear (RFC 5568 §10)
    for p in pcaps:
        assert not unexplained_errors(p), p


def xfrm_stat(lab: Lab, host: str) -> dict[str, int]:
    text = lab.run(host, "cat", "/proc/net/xfrm_stat").stdout
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


def test_cleartext_hi_dropped_by_the_kernel_policy(lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    """Kernel natt: ard takes an HI from a router it has a Child SA with as protected, because the XFRM
    inbound policy drops cleartext from that router before any socket sees it. A cleartext HI from the
    PAR's address (sent around both natt's tunnel and the PAR's own policies) reaches the NAR's kernel,
    which drops it (template mismatch): the NAR's ard answers nothing and changes nothing."""
    lab = lab_factory(TOPO, bad=True)  # the capture holds the forged HI: *-bad.pcap
    bridges(lab)
    par, nar, _anchor = routers(lab, tmp_path, ipsec=True, natt_dataplane="kernel")
    wait(lambda: par.ctl("ipsec")[0]["child_sas"] == 1, 60, "the Child SA between the routers")
    wait(lambda: nar.ctl("ipsec")[0]["child_sas"] == 1, 60, "the NAR's Child SA")
    before, stats_before = xfrm_stat(lab, "nar"), nar.ctl("stats")
    lab.run(
        "par", sys.executable, "-m", "tests.support.hi_forge", "hi", PAR_ADDR, NAR_ADDR, "2001:db8:20::77", "bypass"
    )
    wait(lambda: xfrm_stat(lab, "nar")["XfrmInTmplMismatch"] > before["XfrmInTmplMismatch"], 10, "the kernel drop")
    after = nar.ctl("stats")
    assert "hi_answered" not in after
    assert {k: v for k, v in after.items() if k != "ra_sent"} == {
        k: v for k, v in stats_before.items() if k != "ra_sent"
    }
    assert par.ctl("forwarding") == []
    pcaps = lab.stop_captures()
    bb_pcap = next(p for p in pcaps if p.name.startswith("par-eth2"))
    assert bb_pcap.name.endswith("-bad.pcap")
    # it did cross the backbone in the clear, and nothing came back
    assert [r[:2] for r in tshark_fields(bb_pcap, "mipv6", ["mip6.mhtype", "ipv6.src"])] == [["14", PAR_ADDR]]
