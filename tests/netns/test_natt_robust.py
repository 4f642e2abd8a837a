"""Negative and resilience tests: a flood of replayed, truncated, wrong-SPI, bad-ICV and garbage
datagrams changes nothing and does not stop valid traffic; persistent SAs survive kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from mobility.lab.netns import Lab
from mobility.lab.topology import two_site_nat_topology
from tests.netns.test_natt import PY, echo_server, learn_mappings
from tests.support.natt import NattHandle, restart_natt, sa_pair, start_natt

pytestmark = pytest.mark.netns


def tunnel(lab: Lab, persistent: bool = False) -> tuple[NattHandle, NattHandle, dict, dict]:
    gw = start_natt(lab, "gw")
    c1 = start_natt(lab, "c1", tun_addresses=("10.200.0.1/32",))
    [(nat_ip, nat_port)], owner = learn_mappings(gw, [c1], False)
    owner.close()
    csa, gsa = sa_pair(
        client_local="10.99.1.2",
        client_peer="192.0.2.2",
        gw_local="192.0.2.2",
        gw_peer=nat_ip,
        gw_peer_port=nat_port,
        client_ts=["10.200.0.1/32"],
        gw_ts=["10.100.0.0/24"],
        persistent=persistent,
    )
    if persistent:
        csa["persistent"] = True
    gw.ctl("sa.add", **gsa)
    c1.ctl("sa.add", **csa)
    return gw, c1, csa, gsa


def test_flood_of_bad_datagrams_is_dropped_and_counted(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(two_site_nat_topology(), bad=True)
    gw, c1, _, _gsa = tunnel(lab)
    echo_server(lab, "gw", "0.0.0.0")
    before = gw.ctl("sas")[0]
    valid = lab.popen(
        "c1",
        [PY, "-m", "tests.support.echo", "stream", "10.100.0.1", "7000", "6", "40"],
        stdout=subprocess.PIPE,
        text=True,
    )
    attack = lab.popen(
        "nat",
        [PY, "-m", "tests.support.attacker", "wan0", "192.0.2.2", "5", "1500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out_a, err_a = attack.communicate(timeout=60)
    assert attack.returncode == 0, err_a
    sent = json.loads(out_a)
    out = valid.communicate(timeout=60)[0].split()
    n_sent, n_got = int(out[1]), int(out[3])
    assert n_got >= 0.9 * n_sent, f"valid traffic suffered: {out}"
    stats = gw.ctl("stats")["drops"]
    assert stats.get("replay", 0) >= sent["replay"] * 0.9
    assert stats.get("unknown_spi", 0) >= sent["wrong_spi"] * 0.9
    assert stats.get("icv", 0) >= sent["bad_icv"] * 0.9
    assert stats.get("malformed", 0) >= (sent["truncated"] + sent["spi_zero_short"] + sent["one_byte"]) * 0.5
    after = gw.ctl("sas")[0]
    assert after["drop_icv"] >= sent["bad_icv"] * 0.9 and after["drop_replay"] >= sent["replay"] * 0.9
    # nothing forged moved the window: its right edge is the client's own highest sequence number
    assert after["replay_top"] == c1.ctl("sas")[0]["seq_out"]
    assert after["in_packets"] - before["in_packets"] <= c1.ctl("sas")[0]["seq_out"]
    assert gw.daemon.returncode is None and gw.ctl("status")["sas"] == 1


def test_persistent_sa_survives_kill9(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(two_site_nat_topology())
    gw, _c1, _csa, gsa = tunnel(lab, persistent=True)
    echo_server(lab, "gw", "0.0.0.0")
    ok = lab.run("c1", PY, "-m", "tests.support.echo", "udp", "10.100.0.1", "7000", "before", "5", timeout=30)
    assert "before" in ok.stdout
    gw.daemon.kill(signal.SIGKILL)
    gw = restart_natt(lab, gw)
    rows = gw.ctl("sas")
    assert [(r["spi_in"], r["spi_out"], r["peer"], r["peer_port"]) for r in rows] == [
        (gsa["spi_in"], gsa["spi_out"], gsa["peer"], gsa["peer_port"])
    ]
    # traffic flows again both ways: a few packets inside the restored reservation may be refused
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = lab.run(
            "c1", PY, "-m", "tests.support.echo", "udp", "10.100.0.1", "7000", "after", "5", check=False, timeout=30
        )
        if "after" in r.stdout:
            break
    else:
        pytest.fail("no traffic after restart")
    assert gw.ctl("sas")[0]["seq_out"] > 1 << 16  # continued above the persisted reservation
    # a non-persistent SA is not restored
    gw.ctl(
        "sa.add",
        **dict(
            gsa,
            spi_in=gsa["spi_in"] ^ 0x10000,
            peer_port=gsa["peer_port"] + 1,
            remote_ts=["10.200.0.9/32"],
            persistent=False,
        ),
    )
    gw.daemon.kill(signal.SIGKILL)
    gw = restart_natt(lab, gw)
    assert [r["spi_in"] for r in gw.ctl("sas")] == [gsa["spi_in"]]
