"""In the kernel guest: natt's kernel (XFRM) backend carries traffic, and natt's userspace ESP
interoperates with Linux's own ESP-in-UDP configured with `ip xfrm` (an independent implementation).

    ka  va 192.0.2.1 ──── vb 192.0.2.2  kb
    lo 10.1.0.1                  lo 10.2.0.1
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from mobility.dataplane.probe import probe_kernel_esp
from mobility.lab.netns import Lab
from mobility.lab.topology import End, Link, Topology
from mobility.lab.tshark import malformed, tshark_fields
from tests.support.natt import NattHandle, restart_natt, sa_pair, start_natt, tshark_esp_records

TOPO = Topology(
    hosts=("ka", "kb"),
    links=(Link(End("ka", "va", ("192.0.2.1/24",)), End("kb", "vb", ("192.0.2.2/24",))),),
    loopback={"kb": ("10.2.0.1/32",)},
)


def test_probe_sees_kernel_esp() -> None:
    ok, why = probe_kernel_esp()
    assert ok, why


def _pair(cipher: str) -> tuple[dict, dict]:
    return sa_pair(
        client_local="192.0.2.1",
        client_peer="192.0.2.2",
        gw_local="192.0.2.2",
        gw_peer="192.0.2.1",
        gw_peer_port=4500,
        cipher=cipher,
        client_ts=["10.1.0.1/32"],
        gw_ts=["10.2.0.1/32"],
    )


def test_natt_kernel_backend_carries_traffic(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(TOPO)
    lab.run("ka", "ip", "addr", "add", "10.1.0.1/32", "dev", "lo")
    a = start_natt(lab, "ka", dataplane="auto", listen=("0.0.0.0",))
    b = start_natt(lab, "kb", dataplane="auto", listen=("0.0.0.0",))
    assert a.ctl("status")["dataplane"] == "kernel"
    csa, gsa = _pair("aes-gcm-16")
    csa["keepalive"] = False
    a.ctl("sa.add", **csa)
    b.ctl("sa.add", **gsa)
    # XFRM selects by policy after routing: the inner prefixes route via the outer link
    lab.run("ka", "ip", "route", "add", "10.2.0.1/32", "via", "192.0.2.2", "src", "10.1.0.1")
    lab.run("kb", "ip", "route", "add", "10.1.0.1/32", "via", "192.0.2.1", "src", "10.2.0.1")
    lab.run("ka", "ping", "-c", "1", "-W", "3", "-I", "10.1.0.1", "10.2.0.1", check=False)  # neighbours resolve
    out = lab.run("ka", "ping", "-c", "3", "-i", "0.3", "-W", "2", "-I", "10.1.0.1", "10.2.0.1", check=False)
    assert " 0% packet loss" in out.stdout, out.stdout
    states = lab.run("kb", "ip", "-s", "xfrm", "state").stdout
    assert "encap type espinudp sport 4500 dport 4500" in states
    rows = b.ctl("sas")
    assert rows[0]["in_packets"] >= 3 and rows[0]["out_packets"] >= 3
    pcap = next(p for p in lab.stop_captures() if p.name.startswith("kb-vb"))
    assert tshark_fields(pcap, "esp && udp.dstport == 4500", ["esp.spi"])
    assert malformed(pcap) == []
    icmp = tshark_fields(pcap, "esp && icmp", ["icmp.type"], tshark_esp_records(gsa))
    assert icmp, "ESP from the kernel decrypts to the ping"
    a.ctl("sa.del", spi_in=csa["spi_in"])
    assert "spi" not in lab.run("ka", "ip", "xfrm", "state").stdout


def _with_spis(pair: tuple[dict, dict], spi_c: int, spi_g: int) -> tuple[dict, dict]:
    client, gw = pair
    client.update(spi_in=spi_c, spi_out=spi_g, keepalive=False)
    gw.update(spi_in=spi_g, spi_out=spi_c, persistent=True)
    return client, gw


def _ping(lab: Lab) -> str:
    out = lab.run("ka", "ping", "-c", "3", "-i", "0.3", "-W", "2", "-I", "10.1.0.1", "10.2.0.1", check=False)
    return str(out.stdout)


def _rows(h: NattHandle) -> dict[int, dict[str, Any]]:
    return {int(r["spi_in"]): r for r in h.ctl("sas")}


def _policy_reqids(lab: Lab, host: str) -> list[int]:
    """reqids of the policies for the inner addresses 10.1.0.1 <-> 10.2.0.1 (one per direction)."""
    out = lab.run(host, "ip", "xfrm", "policy").stdout
    blocks = [b for b in re.split(r"\n(?=src )", out) if "10.1.0.1/32" in b]
    return sorted(int(m) for b in blocks for m in re.findall(r"reqid (\d+)", b))


def _state_reqids(lab: Lab, host: str) -> dict[int, int]:
    """SPI -> reqid of the kernel's ESP states."""
    out = lab.run(host, "ip", "xfrm", "state").stdout
    return {int(spi, 16): int(rid) for spi, rid in re.findall(r"spi (0x[0-9a-f]+) reqid (\d+)", out)}


def test_natt_kernel_sibling_sas_share_reqid_and_policies(lab_factory: Callable[..., Lab]) -> None:
    """Two Child SAs with the same selectors to the same peer (a rekey's successor beside its
    predecessor, RFC 7296 §2.8, or a restarted peer's new Child SA before the old one is deleted):
    the second is accepted, both share one reqid and one set of policies, the newest carries the
    outbound traffic, deleting either keeps the other working and the policies go with the last.
    Persistent siblings come back after a restart with their reqid, the newest still the newest."""
    lab = lab_factory(TOPO)
    lab.run("ka", "ip", "addr", "add", "10.1.0.1/32", "dev", "lo")
    a = start_natt(lab, "ka", dataplane="kernel", listen=("0.0.0.0",))
    b = start_natt(lab, "kb", dataplane="kernel", listen=("0.0.0.0",))
    # kb's newer SA gets the lower inbound SPI: restoring in SPI order would make the older one "newest"
    old_c, old_g = _with_spis(_pair("aes-gcm-16"), 0x3000_0001, 0x2000_0002)
    new_c, new_g = _with_spis(_pair("aes-gcm-16"), 0x3000_0003, 0x1000_0004)
    old_spi, new_spi = old_g["spi_in"], new_g["spi_in"]  # kb's SAs by inbound SPI
    a.ctl("sa.add", **old_c)
    b.ctl("sa.add", **old_g)
    lab.run("ka", "ip", "route", "add", "10.2.0.1/32", "via", "192.0.2.2", "src", "10.1.0.1")
    lab.run("kb", "ip", "route", "add", "10.1.0.1/32", "via", "192.0.2.1", "src", "10.2.0.1")
    lab.run("ka", "ping", "-c", "1", "-W", "3", "-I", "10.1.0.1", "10.2.0.1", check=False)  # neighbours resolve
    assert " 0% packet loss" in _ping(lab)
    (reqid,) = set(_policy_reqids(lab, "kb"))
    assert len(_policy_reqids(lab, "kb")) == 3  # out, in, fwd
    a_reqids = set(_policy_reqids(lab, "ka"))

    # the sibling: new SPIs and keys, same selectors and peer; accepted on both sides (no EEXIST)
    b.ctl("sa.add", **new_g)
    a.ctl("sa.add", **new_c)
    assert set(_state_reqids(lab, "kb").values()) == {reqid} and len(_state_reqids(lab, "kb")) == 4
    assert set(_state_reqids(lab, "ka").values()) == a_reqids and len(_state_reqids(lab, "ka")) == 4
    assert {r["reqid"] for r in b.ctl("sas")} == {reqid}  # natt reports (and stores) the shared reqid
    old_out = {h.host: _rows(h)[sa["spi_in"]]["out_packets"] for h, sa in ((a, old_c), (b, old_g))}
    assert " 0% packet loss" in _ping(lab)
    for h, old, new in ((a, old_c, new_c), (b, old_g, new_g)):
        rows = _rows(h)
        assert rows[new["spi_in"]]["out_packets"] >= 3, rows  # the newest carries outbound
        assert rows[new["spi_in"]]["in_packets"] >= 3, rows
        assert rows[old["spi_in"]]["out_packets"] == old_out[h.host], rows
    assert _policy_reqids(lab, "kb") == [reqid] * 3 and len(_policy_reqids(lab, "ka")) == 3

    # a graceful restart of kb's natt: both come back, same reqid, the newer one still carries outbound
    b.daemon.stop()
    b = restart_natt(lab, b)
    assert sorted(_rows(b)) == sorted([old_spi, new_spi])
    assert set(_state_reqids(lab, "kb").values()) == {reqid} and _policy_reqids(lab, "kb") == [reqid] * 3
    assert " 0% packet loss" in _ping(lab)
    rows = _rows(b)
    assert rows[new_spi]["out_packets"] >= 3 and rows[old_spi]["out_packets"] == 0, rows

    # the predecessor is deleted: the successor keeps the policies and the traffic
    a.ctl("sa.del", spi_in=old_c["spi_in"])
    b.ctl("sa.del", spi_in=old_spi)
    assert _policy_reqids(lab, "kb") == [reqid] * 3 and len(_policy_reqids(lab, "ka")) == 3
    before = _rows(b)[new_spi]
    assert " 0% packet loss" in _ping(lab)
    after = _rows(b)[new_spi]
    assert after["out_packets"] >= before["out_packets"] + 3 and after["in_packets"] >= before["in_packets"] + 3

    # the last one takes the policies with it
    a.ctl("sa.del", spi_in=new_c["spi_in"])
    b.ctl("sa.del", spi_in=new_spi)
    for host in ("ka", "kb"):
        assert _policy_reqids(lab, host) == [] and _state_reqids(lab, host) == {}


@pytest.mark.parametrize("cipher", ["aes-gcm-16", "aes-cbc"])
def test_userspace_natt_interoperates_with_linux_xfrm(lab_factory: Callable[..., Lab], cipher: str) -> None:
    lab = lab_factory(TOPO)
    a = start_natt(lab, "ka", dataplane="userspace", listen=("0.0.0.0",), tun_addresses=("10.1.0.1/32",))
    csa, gsa = _pair(cipher)
    csa["keepalive"] = False
    a.ctl("sa.add", **csa)
    # the Linux side: plain ip xfrm, and a UDP_ENCAP socket on 4500 so the kernel decapsulates
    holder = lab.popen(
        "kb",
        [
            "python3",
            "-c",
            "import socket,time; s=socket.socket(2,2); s.setsockopt(17,100,2);"
            "s.bind(('0.0.0.0',4500)); print('ok',flush=True); time.sleep(3600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "ok"
    if cipher == "aes-gcm-16":
        algs_in = ["aead", "rfc4106(gcm(aes))", "0x" + gsa["key_in"], "128"]
        algs_out = ["aead", "rfc4106(gcm(aes))", "0x" + gsa["key_out"], "128"]
    else:
        algs_in = [
            "enc",
            "cbc(aes)",
            "0x" + gsa["key_in"],
            "auth-trunc",
            "hmac(sha256)",
            "0x" + gsa["integ_key_in"],
            "128",
        ]
        algs_out = [
            "enc",
            "cbc(aes)",
            "0x" + gsa["key_out"],
            "auth-trunc",
            "hmac(sha256)",
            "0x" + gsa["integ_key_out"],
            "128",
        ]
    encap = ["encap", "espinudp", "4500", "4500", "0.0.0.0"]
    lab.run(
        "kb",
        "ip",
        "xfrm",
        "state",
        "add",
        "src",
        "192.0.2.1",
        "dst",
        "192.0.2.2",
        "proto",
        "esp",
        "spi",
        hex(gsa["spi_in"]),
        "mode",
        "tunnel",
        "reqid",
        "1",
        *algs_in,
        *encap,
    )
    lab.run(
        "kb",
        "ip",
        "xfrm",
        "state",
        "add",
        "src",
        "192.0.2.2",
        "dst",
        "192.0.2.1",
        "proto",
        "esp",
        "spi",
        hex(gsa["spi_out"]),
        "mode",
        "tunnel",
        "reqid",
        "1",
        *algs_out,
        *encap,
    )
    lab.run(
        "kb",
        "ip",
        "xfrm",
        "policy",
        "add",
        "src",
        "10.2.0.1/32",
        "dst",
        "10.1.0.1/32",
        "dir",
        "out",
        "tmpl",
        "src",
        "192.0.2.2",
        "dst",
        "192.0.2.1",
        "proto",
        "esp",
        "mode",
        "tunnel",
        "reqid",
        "1",
    )
    lab.run(
        "kb",
        "ip",
        "xfrm",
        "policy",
        "add",
        "src",
        "10.1.0.1/32",
        "dst",
        "10.2.0.1/32",
        "dir",
        "in",
        "tmpl",
        "src",
        "192.0.2.1",
        "dst",
        "192.0.2.2",
        "proto",
        "esp",
        "mode",
        "tunnel",
        "reqid",
        "1",
    )
    lab.run("kb", "ip", "route", "add", "10.1.0.1/32", "via", "192.0.2.1", "src", "10.2.0.1")
    lab.run("ka", "ping", "-c", "1", "-W", "3", "10.2.0.1", check=False)  # neighbours resolve
    out = lab.run("ka", "ping", "-c", "3", "-i", "0.3", "-W", "2", "10.2.0.1", check=False)
    assert " 0% packet loss" in out.stdout, out.stdout + lab.run("kb", "ip", "-s", "xfrm", "state").stdout
    row = a.ctl("sas")[0]
    assert row["in_packets"] >= 3 and row["drop_icv"] == 0 and row["drop_replay"] == 0
    stats = lab.run("kb", "cat", "/proc/net/xfrm_stat").stdout
    assert all(line.split()[1] == "0" for line in stats.splitlines() if line.strip()), stats
    pcap = next(p for p in lab.stop_captures() if p.name.startswith("kb-vb"))
    assert malformed(pcap) == []
