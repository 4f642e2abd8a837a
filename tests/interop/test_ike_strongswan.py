"""IKEv2 interop with strongSwan (Debian's charon-systemd with kernel-libipsec), both directions,
PSK and certificates, through the lab's masquerade NAT and without it. A missing charon fails.

charon with kernel-libipsec always UDP-encapsulates and fakes NAT detection, so both sides see a
NAT; we handle that as any peer would (port 4500 through natt, UDP-encapsulated ESP)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mobility.lab.ike import LAB_PSK, IkeDaemon, start_had, start_mobiled, wait_home
from mobility.lab.netns import Lab
from mobility.lab.pki import Issued, issue, make_ca
from mobility.lab.strongswan import Charon, psk_client, psk_gateway, start_charon, swanctl
from mobility.lab.topology import two_site_nat_topology
from mobility.lab.tshark import malformed, tshark_fields
from tests.support.natt import start_natt

PY = sys.executable
GW = "192.0.2.2"
TS = "10.100.0.0/24, fd00:100::/64"


@pytest.fixture
def ike_lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory(two_site_nat_topology())


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    ca = make_ca()
    return {
        "ca": ca,
        "gw": issue(ca, "gw", dns=("gw.example.test",)),
        "mn": issue(ca, "mn", dns=("mn.example.test",), kind="rsa"),
    }


def place_charon_pki(lab: Lab, host: str, pki: dict[str, Issued], own: str) -> None:
    d = Path(lab.daemon_dir(host, "charon")) / "swanctl"
    for sub in ("x509", "x509ca", "private"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    pki[own].write(d / "x509" / f"{own}.pem", d / "private" / f"{own}.key")
    pki["ca"].write(d / "x509ca" / "ca.pem")


def our_pki(lab: Lab, host: str, daemon: str, pki: dict[str, Issued], own: str) -> dict[str, object]:
    d = Path(lab.daemon_dir(host, daemon))
    d.mkdir(parents=True, exist_ok=True)
    pki[own].write(d / "cert.pem", d / "key.pem")
    pki["ca"].write(d / "ca.pem")
    return {
        "auth": "pubkey",
        "cert_file": str(d / "cert.pem"),
        "key_file": str(d / "key.pem"),
        "ca_files": [str(d / "ca.pem")],
    }


def udp_ok(lab: Lab, host: str, dst: str, text: str, tries: int = 3) -> bool:
    for _ in range(tries):
        out = lab.run(host, PY, "-m", "tests.support.echo", "udp", dst, "7000", text, "3", check=False, timeout=20)
        if text in out.stdout:
            return True
        time.sleep(0.5)
    return False


def echo(lab: Lab, host: str) -> None:
    import subprocess

    p = lab.popen(host, [PY, "-m", "tests.support.echo", "server", "::", "7000"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"


def check_capture(lab: Lab) -> None:
    pcaps = lab.stop_captures()
    gw_pcap = next(p for p in pcaps if p.name.startswith("gw-eth0"))
    rows = tshark_fields(gw_pcap, "isakmp", ["isakmp.exchangetype"])
    assert {"34", "35"} <= {r[0] for r in rows if r}
    assert malformed(gw_pcap) == []


# "direct": the client runs on the NAT router itself, whose public address needs no translation
@pytest.mark.parametrize(
    ("auth", "mn"),
    [("psk", "c1"), ("pubkey", "c1"), ("psk", "nat")],
    ids=["psk-via-nat", "pubkey-via-nat", "psk-direct"],
)
def test_charon_initiator_gets_virtual_ips_from_had(ike_lab: Lab, pki: dict[str, Issued], auth: str, mn: str) -> None:
    lab = ike_lab
    natt = start_natt(lab, "gw")
    conn: dict[str, object] = {
        "name": "rw",
        "local_id": "gw.example.test",
        "remote_id": "mn.example.test",
        "local_ts": ["10.100.0.0/24", "fd00:100::/64"],
    }
    if auth == "pubkey":
        conn.update(our_pki(lab, "gw", "had", pki, "gw"))
    had = start_had(lab, "gw", natt, address=GW, conns=[conn], pool4="10.200.0.0/28", pool6="fd00:200::/120")
    echo(lab, "gw")
    if auth == "pubkey":
        place_charon_pki(lab, mn, pki, "mn")
    c1 = start_charon(lab, mn, psk_client(GW, TS, LAB_PSK, "aes128gcm16", vips="0.0.0.0, ::", auth=auth))
    out = swanctl(lab, c1, "--initiate", "--child", "home", "--timeout", "20")
    assert "initiate completed successfully" in out, out
    sas = swanctl(lab, c1, "--list-sas")
    assert "10.200.0.1" in sas and "fd00:200::1" in sas, sas  # virtual IPs from our pools
    assert udp_ok(lab, mn, "10.100.0.1", f"charon-to-had-v4-{auth}")
    assert udp_ok(lab, mn, "fd00:100::1", f"charon-to-had-v6-{auth}")
    leases = {x["address"]: x["identity"] for x in had.ctl("leases")}
    assert leases == {"10.200.0.1": "mn.example.test", "fd00:200::1": "mn.example.test"}
    check_capture(lab)


@pytest.mark.parametrize(
    ("auth", "mn"),
    [("psk", "c1"), ("pubkey", "c1"), ("psk", "nat")],
    ids=["psk-via-nat", "pubkey-via-nat", "psk-direct"],
)
def test_mobiled_initiator_with_charon_responder(ike_lab: Lab, pki: dict[str, Issued], auth: str, mn: str) -> None:
    lab = ike_lab
    if auth == "pubkey":
        place_charon_pki(lab, "gw", pki, "gw")
    gw: Charon = start_charon(
        lab, "gw", psk_gateway(GW, TS, "10.200.0.0/28", LAB_PSK, "aes128gcm16", pool6="fd00:200::/120", auth=auth)
    )
    echo(lab, "gw")
    conn: dict[str, object] = {
        "name": "home",
        "remote_id": "gw.example.test",
        "remote_ts": ["10.100.0.0/24", "fd00:100::/64"],
    }
    if auth == "pubkey":
        conn.update(our_pki(lab, mn, "mobiled", pki, "mn"))
    node: IkeDaemon = start_mobiled(lab, mn, start_natt(lab, mn), home_agents=[GW], conn=conn, request=("ip4", "ip6"))
    home = wait_home(node)
    assert home["nat"] is (mn == "c1")  # NAT detection (RFC 7296 §2.23) sees the masquerade or not
    assert "10.200.0.1/32" in home["addresses"] and "fd00:200::1/128" in home["addresses"]
    assert udp_ok(lab, mn, "10.100.0.1", f"mobiled-to-charon-v4-{auth}")
    assert udp_ok(lab, mn, "fd00:100::1", f"mobiled-to-charon-v6-{auth}")
    assert "mn.example.test" in swanctl(lab, gw, "--list-sas")
    check_capture(lab)


def test_rekeys_with_charon_both_ways(ike_lab: Lab) -> None:
    """charon rekeys the Child SA and the IKE SA at our had, then we rekey both towards charon; traffic
    keeps flowing after each rekey (CREATE_CHILD_SA, RFC 7296 §1.3.2, §1.3.3, §2.18)."""
    lab = ike_lab
    natt = start_natt(lab, "gw")
    conn = {"name": "rw", "local_id": "gw.example.test", "remote_id": "mn.example.test", "local_ts": ["10.100.0.0/24"]}
    had = start_had(lab, "gw", natt, address=GW, conns=[conn], pool4="10.200.0.0/28")
    echo(lab, "gw")
    c1 = start_charon(lab, "c1", psk_client(GW, "10.100.0.0/24", LAB_PSK, "aes128gcm16"))
    assert "initiate completed successfully" in swanctl(lab, c1, "--initiate", "--child", "home", "--timeout", "20")
    assert udp_ok(lab, "c1", "10.100.0.1", "before-rekey")
    assert "rekey completed successfully" in swanctl(lab, c1, "--rekey", "--child", "home")
    time.sleep(1.0)
    assert udp_ok(lab, "c1", "10.100.0.1", "after-charon-child-rekey")
    assert "rekey completed successfully" in swanctl(lab, c1, "--rekey", "--ike", "home")
    time.sleep(1.0)
    assert udp_ok(lab, "c1", "10.100.0.1", "after-charon-ike-rekey")
    had.ctl("ike.rekey", child=True)
    time.sleep(1.0)
    assert udp_ok(lab, "c1", "10.100.0.1", "after-our-child-rekey")
    had.ctl("ike.rekey")
    time.sleep(1.0)
    assert udp_ok(lab, "c1", "10.100.0.1", "after-our-ike-rekey")
    sas = had.ctl("ike.sas")
    assert len(sas) == 1 and sas[0]["state"] == "established" and sas[0]["children"] == 1, sas
    listed = swanctl(lab, c1, "--list-sas")
    assert listed.count("INSTALLED") == 1 and "ESTABLISHED" in listed, listed
