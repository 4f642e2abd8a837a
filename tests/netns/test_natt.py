"""natt end to end: real daemons in namespaces, a real nftables masquerade NAT, tshark as oracle.

    c1 (10.99.1.2) ─┐
                    nat (masquerade) ── gw (192.0.2.2, inner 10.100.0.1)
    c2 (10.99.2.2) ─┘
Both clients use the SAME inner address (10.200.0.1 / fd00:200::1) in tunnel mode: RFC 3948 §5.1's
conflict. The gateway's natt tells them apart by SPI and gives each a locally unique address
(inner_nat, Appendix A Tn1). In transport mode both arrive from the NAT's one public address
(§5.2) and get peer aliases (Tr1).
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

from mobility.lab.netns import Lab
from mobility.lab.topology import two_site_nat_topology
from mobility.lab.tshark import malformed, tshark_fields
from mobility.service.control import ControlClient
from tests.support.natt import NattHandle, sa_pair, start_natt, tshark_esp_records

pytestmark = pytest.mark.netns
PY = "python3"


def fake_ike(n: int) -> bytes:
    """An IKE_SA_INIT request header with no payloads (RFC 7296 §3.1), tagged by its SPIi."""
    return struct.pack("!QQBBBBII", 0x1000 + n, 0, 0, 0x20, 34, 0x08, 0, 28)


def gw_addr(v6: bool) -> str:
    return "2001:db8:1::2" if v6 else "192.0.2.2"


def learn_mappings(gw: NattHandle, clients: list[NattHandle], v6: bool) -> tuple[list[tuple[str, int]], ControlClient]:
    """Each client's natt sends an IKE message from port 4500; the gateway's registered IKE owner
    receives it (marker removed) with the NAT-mapped source, exactly what IKE would learn."""
    owner = ControlClient(gw.socket)
    owner.call("ike.register")
    for n, c in enumerate(clients):
        c.ctl("ike.send", dst=gw_addr(v6), dport=4500, data=base64.b64encode(fake_ike(n)).decode())
    found: dict[int, tuple[str, int]] = {}
    deadline = time.monotonic() + 10
    while len(found) < len(clients) and time.monotonic() < deadline:
        ev = owner.read_event(1.0)
        if ev and ev["event"] == "ike":
            msg = base64.b64decode(ev["data"])
            found[struct.unpack("!Q", msg[:8])[0] - 0x1000] = (ev["src"], int(ev["sport"]))
    assert len(found) == len(clients), f"IKE relay delivered {found}"
    return [found[n] for n in range(len(clients))], owner


def echo_server(lab: Lab, host: str, bind: str, port: int = 7000) -> Any:
    import subprocess

    p = lab.popen(host, [PY, "-m", "tests.support.echo", "server", bind, str(port)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def probe(lab: Lab, host: str, dst: str, text: str, port: int = 7000) -> None:
    out = lab.run(host, PY, "-m", "tests.support.echo", "udp", dst, str(port), text, "3", check=False, timeout=20)
    assert text in out.stdout, f"UDP {host} -> {dst}: {out.stdout} {out.stderr}"
    out = lab.run(host, PY, "-m", "tests.support.echo", "tcp", dst, str(port), text + "-tcp", timeout=20)
    assert text + "-tcp" in out.stdout


@pytest.fixture
def natt_lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory(two_site_nat_topology())


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_tunnel_mode_two_clients_same_inner_address(natt_lab: Lab, v6: bool) -> None:
    lab = natt_lab
    fam = 6 if v6 else 4
    inner = "fd00:200::1" if v6 else "10.200.0.1"
    plen = 128 if v6 else 32
    gw_net = "fd00:100::/64" if v6 else "10.100.0.0/24"
    target = "fd00:100::1" if v6 else "10.100.0.1"
    cipher = "aes-cbc" if v6 else "aes-gcm-16"
    gw = start_natt(lab, "gw")
    clients = [start_natt(lab, h, tun_addresses=(f"{inner}/{plen}",)) for h in ("c1", "c2")]
    mappings, owner = learn_mappings(gw, clients, v6)
    assert mappings[0][0] == mappings[1][0] == lab.addr("nat", "wan0", fam)  # same NAT address...
    assert mappings[0][1] != mappings[1][1]  # ...different NAT ports
    sas = []
    for n, (c, (nat_ip, nat_port)) in enumerate(zip(clients, mappings, strict=True)):
        unique = f"fd00:201::{n + 1}" if v6 else f"10.201.0.{n + 1}"
        csa, gsa = sa_pair(
            client_local=lab.addr(c.host, "eth0", fam),
            client_peer=gw_addr(v6),
            gw_local=gw_addr(v6),
            gw_peer=nat_ip,
            gw_peer_port=nat_port,
            cipher=cipher,
            client_ts=[f"{inner}/{plen}"],
            gw_ts=[gw_net],
            inner_nat=unique,
        )
        gw.ctl("sa.add", **gsa)
        c.ctl("sa.add", **csa)
        sas.append((csa, gsa))
    server = echo_server(lab, "gw", "::" if v6 else "0.0.0.0")
    for c in clients:
        probe(lab, c.host, target, f"hello-from-{c.host}")
    # the gateway's applications saw two distinct peers, not one confused 10.200.0.1
    seen = {server.stdout.readline().split()[1] for _ in range(4)}
    assert seen == {f"fd00:201::{n}" if v6 else f"10.201.0.{n}" for n in (1, 2)}
    rows = {r["spi_in"]: r for r in gw.ctl("sas")}
    for _, gsa in sas:
        assert rows[gsa["spi_in"]]["in_packets"] >= 4 and rows[gsa["spi_in"]]["out_packets"] >= 4
    owner.close()
    pcaps = lab.stop_captures()
    gw_pcap = next(p for p in pcaps if p.name.startswith("gw-eth0"))
    esp = tshark_fields(gw_pcap, "esp", ["udp.srcport", "udp.dstport", "esp.spi"])
    assert esp and all("4500" in (row[0], row[1]) for row in esp)
    assert malformed(gw_pcap) == []
    decrypted = tshark_fields(
        gw_pcap, "esp", ["data.data", "esp.icv_good", "esp.icv_bad"], tshark_esp_records(*(g for _, g in sas))
    )
    payloads = b"".join(bytes.fromhex(r[0].replace(":", "")) for r in decrypted if r and r[0])
    assert b"hello-from-c1" in payloads and b"hello-from-c2" in payloads
    assert not any(len(r) > 2 and r[2] == "1" for r in decrypted)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_transport_mode_two_clients_behind_one_nat(natt_lab: Lab, v6: bool) -> None:
    lab = natt_lab
    fam = 6 if v6 else 4
    gw = start_natt(lab, "gw")
    clients = [start_natt(lab, h) for h in ("c1", "c2")]
    mappings, owner = learn_mappings(gw, clients, v6)
    sas = []
    for n, (c, (nat_ip, nat_port)) in enumerate(zip(clients, mappings, strict=True)):
        alias = f"fd00:64::{n + 1}" if v6 else f"100.64.0.{n + 1}"
        csa, gsa = sa_pair(
            client_local=lab.addr(c.host, "eth0", fam),
            client_peer=gw_addr(v6),
            gw_local=gw_addr(v6),
            gw_peer=nat_ip,
            gw_peer_port=nat_port,
            mode="transport",
            peer_alias=alias,
        )
        gw.ctl("sa.add", **gsa)
        c.ctl("sa.add", **csa)
        sas.append(gsa)
    # another NAT mapping claiming client 2's selectors would be confused with it (§5.2): refused,
    # nothing changed (only a rekey, same peer address and port, may overlap its predecessor)
    with ControlClient(gw.socket) as ctl, pytest.raises(Exception, match="conflicting"):
        _, dup = sa_pair(
            client_local="10.0.0.9",
            client_peer=gw_addr(v6) if not v6 else "2001:db8:1::2",
            gw_local=gw_addr(v6),
            gw_peer=mappings[0][0],
            gw_peer_port=mappings[0][1],
            mode="transport",
            peer_alias=f"fd00:64::{2}" if v6 else "100.64.0.2",
        )
        ctl.call("sa.add", **dup)
    assert len(gw.ctl("sas")) == 2
    server = echo_server(lab, "gw", gw_addr(v6))
    for c in clients:
        probe(lab, c.host, gw_addr(v6), f"transport-from-{c.host}")
    seen = {server.stdout.readline().split()[1] for _ in range(4)}
    assert seen == {f"fd00:64::{n}" if v6 else f"100.64.0.{n}" for n in (1, 2)}
    owner.close()
    gw_pcap = next(p for p in lab.stop_captures() if p.name.startswith("gw-eth0"))
    assert malformed(gw_pcap) == []
    rows = tshark_fields(gw_pcap, "esp", ["data.data"], tshark_esp_records(*sas))
    payloads = b"".join(bytes.fromhex(r[0].replace(":", "")) for r in rows if r and r[0])
    assert b"transport-from-c1" in payloads and b"transport-from-c2" in payloads


def test_ike_relay_both_ways_leaves_from_4500(natt_lab: Lab) -> None:
    lab = natt_lab
    gw, c1 = start_natt(lab, "gw"), start_natt(lab, "c1")
    client_owner = ControlClient(c1.socket)
    client_owner.call("ike.register")
    # a second owner is refused while the first is connected
    with ControlClient(c1.socket) as other, pytest.raises(Exception, match="another IKE owner"):
        other.call("ike.register")
    [(nat_ip, nat_port)], gw_owner = learn_mappings(gw, [c1], False)
    reply = fake_ike(77)
    gw_owner.call("ike.send", dst=nat_ip, dport=nat_port, data=base64.b64encode(reply).decode())
    ev = client_owner.read_event(5.0)
    assert ev is not None and base64.b64decode(ev["data"]) == reply and ev["src"] == "192.0.2.2" and ev["sport"] == 4500
    gw_pcap = next(p for p in lab.stop_captures() if p.name.startswith("gw-eth0"))
    rows = tshark_fields(gw_pcap, "udpencap.non_esp_marker && isakmp", ["ip.src", "udp.srcport", "udp.dstport"])
    assert ["192.0.2.2", "4500", str(nat_port)] in rows
    assert ["192.0.2.1", str(nat_port), "4500"] in rows
    assert malformed(gw_pcap) == []


def test_keepalives_idle_only_and_stop_after_linger(natt_lab: Lab) -> None:
    lab = natt_lab
    gw = start_natt(lab, "gw")
    c1 = start_natt(lab, "c1", interval_s=1, linger_s=3, tun_addresses=("10.200.0.1/32",))
    [(nat_ip, nat_port)], owner = learn_mappings(gw, [c1], False)
    csa, gsa = sa_pair(
        client_local="10.99.1.2",
        client_peer="192.0.2.2",
        gw_local="192.0.2.2",
        gw_peer=nat_ip,
        gw_peer_port=nat_port,
        client_ts=["10.200.0.1/32"],
        gw_ts=["10.100.0.0/24"],
    )
    gw.ctl("sa.add", **gsa)
    c1.ctl("sa.add", **csa)
    t_idle = time.time()
    time.sleep(3.5)  # idle: keepalives every second
    t_busy = time.time()
    lab.run("c1", "ping", "-c", "15", "-i", "0.2", "-W", "1", "10.100.0.1")  # traffic: none
    t_busy_end = time.time()
    c1.ctl("sa.del", spi_in=csa["spi_in"])
    t_del = time.time()
    time.sleep(6)
    owner.close()
    gw_pcap = next(p for p in lab.stop_captures() if p.name.startswith("gw-eth0"))
    rows = tshark_fields(gw_pcap, "udpencap.nat_keepalive", ["frame.time_epoch", "udp.checksum", "udp.srcport"])
    times = [float(r[0]) for r in rows]
    assert all(r[1] == "0x0000" for r in rows), "IPv4 keepalives carry UDP checksum 0"
    idle = [t for t in times if t_idle < t < t_busy]
    busy = [t for t in times if t_busy + 0.5 < t < t_busy_end - 0.5]
    linger = [t for t in times if t_del < t < t_del + 3]
    after = [t for t in times if t > t_del + 4]
    assert len(idle) >= 2, times
    assert busy == [], f"keepalives while traffic flowed: {busy}"
    assert len(linger) >= 1, "keepalives continue for N after the last SA"
    assert after == [], f"keepalives after N: {after}"
    assert malformed(gw_pcap) == []
