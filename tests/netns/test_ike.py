"""Our IKEv2 initiator (mobiled) and responder (had) as real processes, each next to its natt, through
the lab's nftables masquerade NAT: RFC 5026 address assignment, traffic through the Child SA,
fallback to the second home agent, and captures that tshark dissects as IKEv2."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pytest

from mobility.lab.ike import IkeDaemon, start_had, start_mobiled, wait_home
from mobility.lab.netns import Lab
from mobility.lab.topology import two_site_nat_topology
from mobility.lab.tshark import malformed, tshark_fields
from tests.support.natt import NattHandle, restart_natt, start_natt

PY = sys.executable
GW = "192.0.2.2"
MN_CONN = {
    "name": "home",
    "remote_id": "gw.example.test",
    "remote_ts": ["10.100.0.0/24", "fd00:100::/64"],
    "retransmit_timeout_s": 0.5,
    "retransmit_tries": 2,
}
GW_CONN = {
    "name": "rw",
    "local_id": "gw.example.test",
    "remote_id": "mn.example.test",
    "local_ts": ["10.100.0.0/24", "fd00:100::/64"],
}


@pytest.fixture
def ike_lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory(two_site_nat_topology())


def gateway(lab: Lab, **ike: object) -> IkeDaemon:
    natt = start_natt(lab, "gw")
    return start_had(
        lab,
        "gw",
        natt,
        address=GW,
        conns=[GW_CONN],
        pool4="10.200.0.0/28",
        pool6="fd00:200::/120",
        home_prefix="fd00:200::/64",
        dns=["10.100.0.53", "fd00:100::53"],
        **ike,
    )


def udp_ok(lab: Lab, host: str, dst: str, text: str) -> bool:
    out = lab.run(host, PY, "-m", "tests.support.echo", "udp", dst, "7000", text, "3", check=False, timeout=20)
    return text in out.stdout


def echo(lab: Lab, host: str, bind: str) -> object:
    import subprocess

    p = lab.popen(host, [PY, "-m", "tests.support.echo", "server", bind, "7000"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_ha_assigned_addresses_and_traffic_through_nat(ike_lab: Lab) -> None:
    lab = ike_lab
    had = gateway(lab)
    echo(lab, "gw", "::")
    mn = start_mobiled(
        lab, "c1", start_natt(lab, "c1"), home_agents=[GW], conn=MN_CONN, request=("ip4", "ip6", "dns4", "dns6")
    )
    home = wait_home(mn)
    assert home["dns"] == ["10.100.0.53", "fd00:100::53"]
    assert home["nat"] is True  # behind the masquerade NAT: keepalives and port 4500
    assert "10.200.0.1/32" in home["addresses"] and any(a.startswith("fd00:200::") for a in home["addresses"])
    time.sleep(0.5)
    assert udp_ok(lab, "c1", "10.100.0.1", "ike-v4-through-natt")
    assert udp_ok(lab, "c1", "fd00:100::1", "ike-v6-through-natt")
    leases = had.ctl("leases")
    assert {x["identity"] for x in leases} == {"mn.example.test"}
    sas = had.ctl("ike.sas")
    assert len(sas) == 1 and sas[0]["state"] == "established" and sas[0]["nat_remote"]
    pcaps = lab.stop_captures()
    gw_pcap = next(p for p in pcaps if p.name.startswith("gw-eth0"))
    ike = tshark_fields(gw_pcap, "isakmp", ["udp.srcport", "udp.dstport", "isakmp.exchangetype"])
    exch = {r[2] for r in ike if len(r) > 2}
    assert {"34", "35"} <= exch, ike
    assert any("4500" in (r[0], r[1]) for r in ike if len(r) > 2 and r[2] == "35")  # IKE_AUTH moved to 4500
    assert malformed(gw_pcap) == []


def test_home_prefix_autoconf_and_use_assigned_hoa(ike_lab: Lab) -> None:
    lab = ike_lab
    had = gateway(lab, autoconf=True)
    mn = start_mobiled(lab, "c1", start_natt(lab, "c1"), home_agents=[GW], conn=MN_CONN, request=("home_prefix",))
    home = wait_home(mn)
    (hoa,) = home["addresses"]
    assert hoa.startswith("fd00:200:") and not home["use_assigned_hoa"]  # autoconfigured in the home prefix
    # ... and a CREATE_CHILD_SA for it (RFC 5026 §5.3.2): two Child SAs at the home agent
    deadline = time.monotonic() + 10
    while had.ctl("ike.sas")[0]["children"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert had.ctl("ike.sas")[0]["children"] == 2
    mn.daemon.stop()
    had.daemon.stop()


def test_use_assigned_hoa_when_autoconf_forbidden(ike_lab: Lab) -> None:
    lab = ike_lab
    gateway(lab, autoconf=False)
    mn = start_mobiled(lab, "c1", start_natt(lab, "c1"), home_agents=[GW], conn=MN_CONN, request=("home_prefix",))
    home = wait_home(mn)
    assert home["use_assigned_hoa"] and home["addresses"] == ["fd00:200::1/128"]


def test_fcfs_lease_survives_kill_9_and_second_node_cannot_take_it(ike_lab: Lab) -> None:
    lab = ike_lab
    natt = start_natt(lab, "gw")
    conns = [GW_CONN, {**GW_CONN, "name": "rw2", "remote_id": "mn2.example.test"}]
    had = start_had(lab, "gw", natt, address=GW, conns=conns, pool6="fd00:200::/120")
    mn1 = start_mobiled(
        lab, "c1", start_natt(lab, "c1"), home_agents=[GW], conn=MN_CONN, request=("ip6",), home_address="fd00:200::42"
    )
    assert wait_home(mn1)["addresses"] == ["fd00:200::42/128"]  # FCFS: the requested address
    # the lease was committed before the IKE_AUTH reply: it survives kill -9 of the home agent
    had.daemon.kill()
    had = start_had(lab, "gw", natt, address=GW, conns=conns, pool6="fd00:200::/120")
    assert {x["address"]: x["identity"] for x in had.ctl("leases")} == {"fd00:200::42": "mn.example.test"}
    mn2 = start_mobiled(
        lab,
        "c2",
        start_natt(lab, "c2"),
        home_agents=[GW],
        conn=MN_CONN,
        request=("ip6",),
        home_address="fd00:200::42",
        fqdn="mn2.example.test",
    )
    got = wait_home(mn2)["addresses"]
    assert got != ["fd00:200::42/128"] and got[0].startswith("fd00:200::")
    owners = {x["address"]: x["identity"] for x in had.ctl("leases")}
    assert owners["fd00:200::42"] == "mn.example.test"


def test_fallback_to_second_home_agent(ike_lab: Lab) -> None:
    lab = ike_lab
    gateway(lab)
    # 192.0.2.99 does not exist: IKE_SA_INIT goes unanswered, then the second HA is tried
    mn = start_mobiled(lab, "c1", start_natt(lab, "c1"), home_agents=["192.0.2.99", GW], conn=MN_CONN)
    home = wait_home(mn, timeout=30)
    assert home["home_agent"] == GW
    assert "192.0.2.99" in mn.daemon.log_tail(200)


def test_wrong_psk_is_refused_and_nothing_installed(ike_lab: Lab) -> None:
    lab = ike_lab
    had = gateway(lab)
    mn = start_mobiled(
        lab, "c1", start_natt(lab, "c1"), home_agents=[GW], conn=MN_CONN, psk="a-completely-different-secret-0123456789"
    )
    wait_home(mn, state="failed")
    assert had.ctl("leases") == []
    assert all(s["state"] != "established" for s in had.ctl("ike.sas"))


def test_captured_ike_decrypts_with_exported_keys(ike_lab: Lab) -> None:
    """tshark decrypts our SK payloads with the keys had exports (log_secrets) and finds the ICVs good."""
    lab = ike_lab
    had = gateway(lab, log_secrets=True)
    mn = start_mobiled(lab, "c1", start_natt(lab, "c1"), home_agents=[GW], conn=MN_CONN, request=("ip4",))
    wait_home(mn)
    (sa,) = had.ctl("ike.sas")
    pcaps = lab.stop_captures()
    gw_pcap = next(p for p in pcaps if p.name.startswith("gw-eth0"))
    uat = (
        f'{sa["spi_i"]},{sa["spi_r"]},{sa["sk_ei"]},{sa["sk_er"]},"{sa["encr"]}",{sa["sk_ai"]},{sa["sk_ar"]},'
        f'"{sa["integ"]}"'
    )
    rows = tshark_fields(
        gw_pcap,
        "isakmp.exchangetype == 35",
        ["isakmp.id.data.fqdn", "isakmp.cfg.attr.type", "_ws.expert.message"],
        ["-o", f"uat:ikev2_decryption_table:{uat}"],
    )
    fqdns = ",".join(r[0] for r in rows if r)
    assert "mn.example.test" in fqdns and "gw.example.test" in fqdns  # IDi and IDr, from inside SK
    assert not any("incorrect" in ",".join(r).lower() for r in rows)


def test_natt_restarts_under_both_ends(ike_lab: Lab) -> None:
    """kill -9 of natt, on the mobile node and then on the home agent: mobiled and had connect to the new
    natt again, register as its IKE owner, and rekey the Child SAs it lost (fresh keys and SPIs: the old
    ones installed again would restart their sequence numbers, reusing GCM IVs). mobiled gives natt's new
    TUN device its assigned address again. Traffic goes through the tunnel again, with nothing else
    changed: the same IKE SA, the same lease."""
    lab = ike_lab
    gw_natt, mn_natt = start_natt(lab, "gw"), start_natt(lab, "c1")
    had = start_had(lab, "gw", gw_natt, address=GW, conns=[GW_CONN], pool4="10.200.0.0/28")
    echo(lab, "gw", "0.0.0.0")
    mn = start_mobiled(lab, "c1", mn_natt, home_agents=[GW], conn=MN_CONN, request=("ip4",))
    assert wait_home(mn)["addresses"] == ["10.200.0.1/32"]
    time.sleep(0.5)
    assert udp_ok(lab, "c1", "10.100.0.1", "before")
    ike_sa = [s["spi_i"] for s in had.ctl("ike.sas")]
    used = {r["spi_in"] for h in (gw_natt, mn_natt) for r in h.ctl("sas")}
    assert len(used) == 2

    def rekeyed(h: NattHandle) -> bool:
        rows = h.ctl("sas")
        return len(rows) == 1 and rows[0]["spi_in"] not in used

    for name in ("c1", "gw"):
        old = mn_natt if name == "c1" else gw_natt
        old.daemon.kill()
        new = restart_natt(lab, old)
        deadline = time.monotonic() + 20
        while not (rekeyed(gw_natt if name == "c1" else new) and rekeyed(new)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rekeyed(new), new.ctl("sas")
        if name == "c1":
            mn_natt = new
        else:
            gw_natt = new
        assert rekeyed(gw_natt) and rekeyed(mn_natt), (gw_natt.ctl("sas"), mn_natt.ctl("sas"))
        used |= {r["spi_in"] for h in (gw_natt, mn_natt) for r in h.ctl("sas")}
        assert udp_ok(lab, "c1", "10.100.0.1", f"after-{name}")
    assert [s["spi_i"] for s in had.ctl("ike.sas")] == ike_sa  # the IKE SA itself went on
    assert mn.ctl("home")["state"] == "established" and [x["address"] for x in had.ctl("leases")] == ["10.200.0.1"]
