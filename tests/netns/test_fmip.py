"""RFC 5269 end to end with real daemons: two access routers (PAR, NAR) running ard with certified
SEND keys, a mobile node running mobiled. The MN validates the PAR's signed RA through CPS/CPA,
obtains a handover key, sends an authenticated FBU, moves its link from the PAR's bridge to the
NAR's, and a UDP probe stream to its previous CoA keeps arriving (tunnelled by the PAR).

    cn eth0 2001:db8:1::2 ── eth1 par eth2 2001:db8:2::1 ── eth1 nar 2001:db8:2::2
                               br0 2001:db8:10::1/64          br0 2001:db8:20::1/64
                               └ ap0 ── eth0 mn  (ap0 moves to nar's br0 at the handover)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from mobility.lab import pki
from mobility.lab.natt import NattHandle, restart_natt, start_natt
from mobility.lab.netns import Daemon, Lab
from mobility.lab.topology import End, Link, Route, Topology
from mobility.lab.tshark import tshark_fields, unexplained_errors
from mobility.service.control import ControlClient

TOPO = Topology(
    hosts=("cn", "par", "nar", "mn"),
    links=(
        Link(End("cn", "eth0", ("2001:db8:1::2/64",)), End("par", "eth1", ("2001:db8:1::1/64",))),
        Link(End("nar", "eth1", ("2001:db8:2::2/64",)), End("par", "eth2", ("2001:db8:2::1/64",))),
        Link(End("par", "ap0", ()), End("mn", "eth0", ())),
    ),
    routes=(
        Route("cn", "default6", "2001:db8:1::1"),
        Route("nar", "default6", "2001:db8:2::1"),
        Route("par", "2001:db8:20::/64", "2001:db8:2::2"),
    ),
    forwarding=("par", "nar"),
)
PAR_ADDR, NAR_ADDR = "2001:db8:10::1", "2001:db8:20::1"


class Node:
    def __init__(self, lab: Lab, host: str, daemon: str, conf: str) -> None:
        self.lab, self.host, self.name = lab, host, daemon
        self.run = Path(lab.daemon_dir(host, daemon))
        (self.run / "state").mkdir(parents=True, exist_ok=True)
        self.natt: NattHandle | None = None  # the natt next to it, if any
        self.conf = self.run / f"{daemon}.toml"
        self.conf.write_text(
            conf + f'\n[service]\ncontrol_socket = "{self.run}/{daemon}.sock"\nstate_dir = "{self.run}/state"\n'
        )
        self.start()

    def start(self) -> None:
        argv = [sys.executable, "-m", self.name, "-v", "-c", str(self.conf)]
        self.daemon: Daemon = self.lab.start_daemon(self.host, self.name, argv)

    def ctl(self, cmd: str, **args: Any) -> Any:
        with ControlClient(self.run / f"{self.name}.sock") as c:
            return c.call(cmd, **args) if args else c.call(cmd)


def bridges(lab: Lab) -> None:
    """Each router's access link is a bridge (the AP); the MN's cable (ap0) starts on the PAR's.

    The bridges get fixed MAC addresses, as a real access link has: a bridge without one takes its
    lowest port's, so the MN's arrival would change the NAR's address and flush its neighbour cache,
    with the packets the kernel holds for the NCoA while it resolves it (RFC 4861 §7.2.2). Those
    held packets are the NAR's buffer between the FBack and the MN's UNA."""
    for host, addr, mac in (("par", PAR_ADDR, "02:00:00:00:01:01"), ("nar", NAR_ADDR, "02:00:00:00:02:01")):
        lab.run(host, "ip", "link", "add", "br0", "address", mac, "type", "bridge")
        lab.run(host, "ip", "addr", "add", f"{addr}/64", "dev", "br0", "nodad")
        lab.run(host, "ip", "link", "set", "br0", "up")
    lab.run("par", "ip", "link", "set", "ap0", "master", "br0")
    lab.start_capture("nar", "br0")  # the NAR's access link, where tunnelled packets meet the MN


def move(lab: Lab) -> None:
    """The layer-2 handover: the MN's link leaves the PAR's bridge and joins the NAR's."""
    lab.run("par", "ip", "link", "set", "ap0", "nomaster")
    lab.run("par", "ip", "link", "set", "ap0", "netns", lab.ns("nar"))
    lab.run("nar", "ip", "link", "set", "ap0", "master", "br0")
    lab.run("nar", "ip", "link", "set", "ap0", "up")


def routers(lab: Lab, tmp: Path, *, ipsec: bool = False, natt_dataplane: str = "userspace") -> tuple[Node, Node, Path]:
    """PAR and NAR running ard; with `ipsec`, HI/HAck run inside ESP (natt on each router, one shared
    secret, RFC 5568 §10)."""
    ca = pki.make_ca("SEND lab CA", kind="rsa", prefixes=(IPv6Network("2001:db8::/32"),))
    anchor = tmp / "send-ca.pem"
    anchor.write_bytes(ca.cert_pem())
    nodes: list[Node] = []
    nattd: dict[str, NattHandle] = {}
    for host, prefix, extra in (
        ("par", "2001:db8:10::/64",
         f'[[neighbors]]\nap_lla = "02:00:00:00:00:20"\nnar_lla = "02:00:00:00:00:21"\n'
         f'nar_address = "{NAR_ADDR}"\nnar_prefix = "2001:db8:20::/64"\n'),
        ("nar", "2001:db8:20::/64", f'fmip_peers = ["{PAR_ADDR}"]\n'),
    ):  # fmt: skip
        router = pki.issue_send_router(ca, f"{host}.lab", (IPv6Network(prefix),))
        d = Path(lab.daemon_dir(host, "ard"))
        router.write(d / "router.pem", d / "router.key")
        conf = (
            f'interfaces = ["br0"]\nkey_file = "{d}/router.key"\ncert_file = "{d}/router.pem"\nsec = 0\n'
            f"ra_interval_s = 3\n{extra}"
        )
        if ipsec:
            natt = nattd[host] = start_natt(
                lab, host, listen=(PAR_ADDR if host == "par" else NAR_ADDR,), dataplane=natt_dataplane
            )
            psk = d / "ar.psk"
            psk.write_bytes(b"access routers of the lab\n")
            psk.chmod(0o600)
            conf += f'[ipsec]\nenabled = true\npsk_file = "{psk}"\nnatt_socket = "{natt.socket}"\n'
        nodes.append(Node(lab, host, "ard", conf))
        nodes[-1].natt = nattd.get(host)
    return nodes[0], nodes[1], anchor


def wait(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def fmip_lab(lab_factory: Callable[..., Lab]) -> Lab:
    lab = lab_factory(TOPO)
    bridges(lab)
    return lab


def test_fast_handover_with_handover_key(fmip_lab: Lab, tmp_path: Path) -> None:
    lab = fmip_lab
    par, nar, anchor = routers(lab, tmp_path, ipsec=True)
    mn = Node(lab, "mn", "mobiled", f'[fmip]\ninterface = "eth0"\ntrust_anchors = ["{anchor}"]\nsec = 1\n')
    keys = wait(lambda: mn.ctl("fmip.keys"), 30, "a handover key from the PAR")
    k = keys[0]
    assert k["ar"] == PAR_ADDR and IPv6Address(k["cga"]) in IPv6Network("2001:db8:10::/64")
    assert [n[1:] for n in k["nars"]] == [[NAR_ADDR, "2001:db8:20::/64"]]
    st = mn.ctl("fmip.status")
    assert st["counters"]["path_validated"] >= 1 and st["counters"]["hk_obtained"] == 1
    par_ll = next(ll for ll, r in st["routers"].items() if r["address"] == PAR_ADDR)
    assert default_router(lab) == par_ll  # from the secured RA: the kernel takes no RAs here
    pcoa = k["cga"]
    assert [x["cga"] for x in par.ctl("keys")] == [pcoa]

    # kill -9 of the PAR's ard: the key is kept, and the FBU below verifies with it; the PAR (the lower
    # address) sets up a new IKE SA with the NAR, which replaces the one the killed process left behind
    par.daemon.kill()
    par.start()
    assert [x["cga"] for x in par.ctl("keys")] == [pcoa]
    wait(lambda: par.ctl("ipsec")[0]["child_sas"] == 1, 15, "the PAR's Child SA with the NAR")
    wait(lambda: len(nar.ctl("ike.sas")) == 1, 15, "the NAR keeping only the new IKE SA")

    out = tmp_path / "probe.json"
    rx = lab.popen("mn", [sys.executable, "-m", "tests.support.probe", "recv", "9999", "9", str(out)])
    time.sleep(0.5)
    tx = lab.popen("cn", [sys.executable, "-m", "tests.support.probe", "send", pcoa, "9999", "100", "7"])
    time.sleep(2.0)
    fb = mn.ctl("fmip.handover", timeout=8)
    assert fb["status"] == 0 and fb["pcoa"] == pcoa and IPv6Address(fb["ncoa"]) in IPv6Network("2001:db8:20::/64")
    fwd = par.ctl("forwarding")
    assert [(f["pcoa"], f["ncoa"]) for f in fwd] == [(pcoa, fb["ncoa"])]
    move(lab)
    assert mn.ctl("fmip.attached") == {"una": fb["ncoa"]}  # predictive: nothing more to send
    assert "default" not in lab.run("mn", "ip", "-6", "route", "show", "default").stdout  # not via the PAR
    tx.wait(15)
    rx.wait(15)
    got = json.loads(out.read_text())
    stats = par.ctl("stats")
    print(f"probe: {len(got)} received of ~700, forwarded by the PAR {stats.get('fwd_packets', 0)}")
    assert stats["fbu_accepted"] == 1 and stats.get("fwd_packets", 0) > 100
    nar_stats = nar.ctl("stats")
    assert nar_stats["hi_answered"] >= 1
    assert "drop_mh_unprotected" not in nar_stats and "drop_mh_unprotected" not in stats
    assert par.ctl("status")["hi_hack"] == "ipsec" and nar.ctl("ipsec")[0]["role"] == "responder"
    after = [n for n in got if n > 300]  # sent after the move, arrived through the tunnel
    assert len(after) > 100
    lost = sorted(set(range(min(got), max(got) + 1)) - set(got))
    print(f"probe: lost {len(lost)} datagrams: {lost[:20]}")
    assert not lost, f"lost {lost}"  # forwarded, not lost, during the move

    # our own traffic follows the link: the NAR's secured RA (answering the RS sent on attaching)
    nar_ll = wait(lambda: next((ll for ll, r in mn.ctl("fmip.status")["routers"].items()
                                if r["address"] == NAR_ADDR), None), 10, "the NAR's RA")  # fmt: skip
    wait(lambda: default_router(lab) == nar_ll, 10, "the default route via the NAR")

    pcaps = lab.stop_captures()
    mn_pcap = next(p for p in pcaps if p.name.startswith("mn-eth0"))
    bb_pcap = next(p for p in pcaps if p.name.startswith("par-eth2"))
    mh_types = {r[0] for r in tshark_fields(mn_pcap, "mipv6", ["mip6.mhtype"]) if r}
    assert {"8", "9"} <= mh_types  # FBU, FBack
    # HI and HAck crossed the backbone only inside ESP (RFC 5568 §10); the FBack to the NCoA is in the clear
    assert {r[0] for r in tshark_fields(bb_pcap, "mipv6", ["mip6.mhtype"]) if r} == {"9"}
    assert len(tshark_fields(bb_pcap, "esp", ["esp.spi"])) >= 2
    for p in pcaps:
        assert not unexplained_errors(p), p


def default_router(lab: Lab) -> str:
    """The gateway of the MN's default route ("" without one)."""
    words = lab.run("mn", "ip", "-6", "route", "show", "default").stdout.split()
    return words[words.index("via") + 1] if "via" in words else ""


def test_reactive_handover_from_the_new_link(fmip_lab: Lab, tmp_path: Path) -> None:
    """Reactive mode (RFC 5568 §3.2): the link goes before any FBU. On the NAR's link the MN sends the
    UNA, forms the NCoA from the PrRtAdv's NAR prefix and sends the FBU from it, through the NAR, with
    the PCoA in the Home Address option; the PAR (HI Code 1) forwards to the NCoA and the FBack
    reaches the MN there. The probes sent after it arrive through the tunnel."""
    lab = fmip_lab
    par, nar, anchor = routers(lab, tmp_path)
    mn = Node(lab, "mn", "mobiled", f'[fmip]\ninterface = "eth0"\ntrust_anchors = ["{anchor}"]\nsec = 0\n')
    pcoa = wait(lambda: mn.ctl("fmip.keys"), 30, "a handover key from the PAR")[0]["cga"]
    out = tmp_path / "probe.json"
    rx = lab.popen("mn", [sys.executable, "-m", "tests.support.probe", "recv", "9999", "11", str(out)])
    time.sleep(0.5)
    tx = lab.popen("cn", [sys.executable, "-m", "tests.support.probe", "send", pcoa, "9999", "100", "9"])
    time.sleep(1.0)
    move(lab)  # no warning: no FBU on the old link
    # the NAR's periodic RA may come before the link-layer trigger: the new link is then "current",
    # and the FBU must still be for the CGA on the link we left
    nar_ll = wait(lambda: next((ll for ll, r in mn.ctl("fmip.status")["routers"].items()
                                if r["address"] == NAR_ADDR), None), 10, "the NAR's RA")  # fmt: skip
    wait(lambda: default_router(lab) == nar_ll, 10, "the default route via the NAR")
    res = mn.ctl("fmip.attached", timeout=8)
    assert default_router(lab) == nar_ll  # the new router's route stays
    fb = res["fback"]
    ncoa = fb["ncoa"]
    assert res["una"] == ncoa and IPv6Address(ncoa) in IPv6Network("2001:db8:20::/64")
    assert fb["status"] == 0 and fb["pcoa"] == pcoa and fb["par"] == PAR_ADDR and fb["lifetime"] > 0
    assert [(f["pcoa"], f["ncoa"]) for f in par.ctl("forwarding")] == [(pcoa, ncoa)]
    tx.wait(15)
    rx.wait(15)
    got = json.loads(out.read_text())
    stats = par.ctl("stats")
    print(f"reactive probe: {len(got)} received of ~900, forwarded by the PAR {stats.get('fwd_packets', 0)}")
    assert stats["fbu_accepted"] == 1 and stats.get("fwd_packets", 0) > 100 and nar.ctl("stats")["hi_answered"] == 1
    assert len([n for n in got if n > 250]) > 100  # sent after the FBack: through the tunnel

    pcaps = lab.stop_captures()
    mn_pcap = next(p for p in pcaps if p.name.startswith("mn-eth0"))
    bb_pcap = next(p for p in pcaps if p.name.startswith("par-eth2"))
    # the FBU left from the NCoA, the PCoA in its Home Address option, without Alternate CoA
    fbus = tshark_fields(
        mn_pcap,
        "mip6.mhtype == 8 && !icmpv6",
        ["ipv6.src", "ipv6.dst", "ipv6.opt.mipv6.home_address", "mip6.acoa.acoa"],
    )
    assert fbus and all(r[:3] == [ncoa, PAR_ADDR, pcoa] and not r[3] for r in fbus), fbus
    # the PAR's HI said the FBU did not come from the PCoA (Code 1, RFC 5568 §6.2.1.1)
    assert {r[0] for r in tshark_fields(bb_pcap, "mip6.mhtype == 14", ["mip6.hi.code"])} == {"1"}
    assert {r[0] for r in tshark_fields(mn_pcap, "mip6.mhtype == 9", ["ipv6.dst"])} == {ncoa}
    for p in pcaps:
        assert not unexplained_errors(p), p


def test_forged_fbus_change_no_key_and_no_forwarding(lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    lab = lab_factory(TOPO, bad=True)  # captures hold deliberately bad FBUs and HIs: *-bad.pcap
    bridges(lab)
    par, nar, anchor = routers(lab, tmp_path, ipsec=True)
    mn = Node(lab, "mn", "mobiled", f'[fmip]\ninterface = "eth0"\ntrust_anchors = ["{anchor}"]\nsec = 0\n')
    pcoa = wait(lambda: mn.ctl("fmip.keys"), 30, "a handover key from the PAR")[0]["cga"]
    keys_before = [(x["cga"], x["at"]) for x in par.ctl("keys")]
    ncoa = "2001:db8:20::77"
    lab.run("mn", sys.executable, "-m", "tests.support.fbu_forge", pcoa, PAR_ADDR, ncoa)
    stats = wait(lambda: (s := par.ctl("stats")).get("drop_fbu_unknown_cga") and s, 10, "the forged FBUs counted")
    assert stats["drop_fbu_bad_mac"] == 1 and stats["drop_fbu_unknown_cga"] == 1
    assert "fbu_accepted" not in stats and par.ctl("forwarding") == []
    assert [(x["cga"], x["at"]) for x in par.ctl("keys")] == keys_before
    # HI and HAck in the clear (around natt's tunnel), from the peer routers' own addresses: dropped
    wait(lambda: par.ctl("ipsec")[0]["child_sas"] == 1, 15, "the Child SA between the routers")
    lab.run("par", sys.executable, "-m", "tests.support.hi_forge", "hi", PAR_ADDR, NAR_ADDR, ncoa)
    lab.run("nar", sys.executable, "-m", "tests.support.hi_forge", "hack", NAR_ADDR, PAR_ADDR, ncoa)
    wait(lambda: nar.ctl("stats").get("drop_mh_unprotected") == 1, 10, "the NAR dropping the cleartext HI")
    wait(lambda: par.ctl("stats").get("drop_mh_unprotected") == 1, 10, "the PAR dropping the cleartext HAck")
    assert "hi_answered" not in nar.ctl("stats") and par.ctl("forwarding") == []
    # the genuine mobile node is unaffected: its FBU is still accepted, and HI/HAck run inside ESP
    fb = mn.ctl("fmip.handover", timeout=8)
    assert fb["status"] == 0 and [f["pcoa"] for f in par.ctl("forwarding")] == [pcoa]
    assert nar.ctl("stats")["hi_answered"] == 1
    # an FBU while the PAR already forwards the PCoA (as a retransmitted one finds it): the FBack's PCoA
    # copy still leaves by the access link, where the MN still is, not into the forwarding tunnel
    assert mn.ctl("fmip.handover", timeout=8)["status"] == 0
    assert par.ctl("stats")["fbu_accepted"] == 2


def test_cga_kept_across_restarts_and_dad_collision(lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    """The MN keeps its CGA key and modifier in its state dir: after a restart it forms the same CGA.
    When another node already holds that address, DAD fails and the collision count goes up
    (RFC 3972 §4 step 8): a different CGA of the same key and modifier."""
    lab = lab_factory(TOPO)
    bridges(lab)
    _par, _nar, anchor = routers(lab, tmp_path)
    conf = f'[fmip]\ninterface = "eth0"\ntrust_anchors = ["{anchor}"]\nsec = 1\n'
    mn = Node(lab, "mn", "mobiled", conf)
    first = wait(lambda: mn.ctl("fmip.keys"), 30, "a handover key")[0]["cga"]
    mn.daemon.stop()
    lab.run("mn", "ip", "addr", "del", f"{first}/64", "dev", "eth0")
    mn.start()
    st = wait(lambda: (s := mn.ctl("fmip.status"))["configured"] and s, 30, "the CGA configured again")
    assert st["configured"] == [first]  # the same CGA: key and modifier were kept, no new search
    mn.daemon.stop()
    lab.run("mn", "ip", "addr", "del", f"{first}/64", "dev", "eth0")
    lab.run("par", "ip", "addr", "add", f"{first}/128", "dev", "br0", "nodad")  # someone else holds it now
    mn.start()
    st = wait(lambda: (s := mn.ctl("fmip.status"))["configured"] and s, 30, "a care-of CGA after DAD")
    second = st["configured"][0]
    assert second != first and st["dad_collisions"] == 1
    keys = wait(lambda: len(k := mn.ctl("fmip.keys")) == 2 and k, 30, "a key for the second CGA")
    assert second in [k["cga"] for k in keys]


def test_natt_restart_under_the_routers_ipsec(lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    """kill -9 of the NAR's natt: its ard connects to the new natt, rekeys the Child SA it lost (fresh keys,
    not the old ones again: GCM IVs) and takes natt's new TUN device as the one protected HIs come out of.
    A handover afterwards runs its HI/HAck inside ESP, and the NAR accepts the HI."""
    lab = lab_factory(TOPO)
    bridges(lab)
    par, nar, anchor = routers(lab, tmp_path, ipsec=True)
    assert par.natt is not None and nar.natt is not None
    wait(lambda: nar.ctl("ipsec")[0]["child_sas"] == 1, 15, "the Child SA between the routers")
    old = {r["spi_in"] for r in nar.natt.ctl("sas")} | {r["spi_in"] for r in par.natt.ctl("sas")}
    nar.natt.daemon.kill()
    nar.natt = restart_natt(lab, nar.natt)
    for h in (nar.natt, par.natt):
        rows = wait(lambda h=h: (r := h.ctl("sas")) and len(r) == 1 and r[0]["spi_in"] not in old and r, 20, "rekeyed")
        assert rows[0]["spi_in"] not in old
    wait(lambda: nar.ctl("ipsec")[0]["child_sas"] == 1 and par.ctl("ipsec")[0]["child_sas"] == 1, 10, "ready")
    mn = Node(lab, "mn", "mobiled", f'[fmip]\ninterface = "eth0"\ntrust_anchors = ["{anchor}"]\nsec = 0\n')
    wait(lambda: mn.ctl("fmip.keys"), 30, "a handover key from the PAR")
    assert mn.ctl("fmip.handover", timeout=8)["status"] == 0
    stats = nar.ctl("stats")
    assert stats["hi_answered"] == 1 and "drop_mh_unprotected" not in stats
