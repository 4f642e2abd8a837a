"""make demo: the namespace lab story so far.

Two laptops behind one nftables masquerade NAT reach a gateway through natt on every host. Both
laptops use the SAME inner address (RFC 3948 §5.1); the gateway's natt tells them apart by SPI and
gives each a locally unique address. The demo prints a timeline, the mobilityctl tables, the
keepalives on the wire, and where the captures are; then tears everything down.
Act 2: the same two laptops run mobiled and bring up IKEv2 through the NAT to had on the gateway,
which assigns each an IPv4 and an IPv6 address from its pools; the Child SAs carry pings.
"""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
import time

from mobility.lab.ike import IkeDaemon, start_had, start_mobiled, wait_home
from mobility.lab.natt import NattHandle, sa_pair, start_natt
from mobility.lab.netns import Lab
from mobility.lab.topology import two_site_nat_topology
from mobility.lab.tshark import count, tshark_fields
from mobility.service.control import ControlClient

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f} s] {text}", flush=True)


def ctl_table(h: NattHandle | IkeDaemon, command: str, daemon: str = "natt") -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mobility.service.ctl", "--socket", str(h.socket), daemon, command],
        capture_output=True,
        text=True,
    )
    print(f"\n$ mobilityctl {daemon} {command}    # on {h.host}")
    print(out.stdout.rstrip() or out.stderr.rstrip())


def main() -> int:
    with Lab(two_site_nat_topology(), "demo") as lab:
        say("lab up: c1 (10.99.1.2) and c2 (10.99.2.2) behind the NAT (masquerade on 192.0.2.1), gw 192.0.2.2")
        gw = start_natt(lab, "gw", interval_s=2, linger_s=6, dataplane="auto")
        clients = [
            start_natt(lab, h, interval_s=2, linger_s=6, tun_addresses=("10.200.0.1/32",), dataplane="auto")
            for h in ("c1", "c2")
        ]
        say(f"natt running on gw, c1, c2: dataplane auto chose {gw.ctl('status')['dataplane']}")
        owner = ControlClient(gw.socket)
        owner.call("ike.register")
        for n, c in enumerate(clients):
            ike = struct.pack("!QQBBBBII", 0x1000 + n, 0, 0, 0x20, 34, 0x08, 0, 28)
            c.ctl("ike.send", dst="192.0.2.2", dport=4500, data=base64.b64encode(ike).decode())
        mappings: dict[int, tuple[str, int]] = {}
        while len(mappings) < 2:
            ev = owner.read_event(5)
            if ev is None:
                raise SystemExit("IKE relay: no message reached the gateway")
            n = struct.unpack("!Q", base64.b64decode(ev["data"])[:8])[0] - 0x1000
            mappings[n] = (ev["src"], int(ev["sport"]))
            say(f"IKE from {clients[n].host} relayed to the gateway's IKE owner: NAT mapping {ev['src']}:{ev['sport']}")
        for n, c in enumerate(clients):
            nat_ip, nat_port = mappings[n]
            csa, gsa = sa_pair(
                client_local=lab.addr(c.host, "eth0"),
                client_peer="192.0.2.2",
                gw_local="192.0.2.2",
                gw_peer=nat_ip,
                gw_peer_port=nat_port,
                client_ts=["10.200.0.1/32"],
                gw_ts=["10.100.0.0/24"],
                inner_nat=f"10.201.0.{n + 1}",
            )
            gw.ctl("sa.add", **gsa)
            c.ctl("sa.add", **csa)
            say(f"SA pair {c.host}: both use inner 10.200.0.1; the gateway maps it to 10.201.0.{n + 1}")
        for c in clients:
            out = lab.run(c.host, "ping", "-c", "3", "-i", "0.2", "10.100.0.1", check=False).stdout.splitlines()
            say(f"{c.host} pings 10.100.0.1 through the tunnel: {out[-2].strip() if len(out) > 1 else out}")
        ctl_table(gw, "status")
        ctl_table(gw, "sas")
        ctl_table(gw, "peers")
        say("idle for 5 s: clients send NAT-keepalives every 2 s (M), only when nothing else went out")
        time.sleep(5)
        c1 = clients[0]
        c1.ctl("sa.del", spi_in=c1.ctl("sas")[0]["spi_in"])
        say("c1's SA deleted: its keepalives go on for N = 6 s, then stop")
        time.sleep(8)
        ctl_table(c1, "stats")
        owner.close()
        pcaps = lab.stop_captures()
        wan = next(p for p in pcaps if p.name.startswith("gw-eth0"))
        ka = tshark_fields(wan, "udpencap.nat_keepalive", ["frame.time_relative", "udp.srcport"])
        say(
            f"captured on the gateway link: {count(wan, 'esp')} ESP-in-UDP packets, {len(ka)} keepalives "
            f"(from NAT ports {sorted({r[1] for r in ka})})"
        )
        for p in pcaps:
            print(f"    capture: {p}")
        print(f"    logs:    {lab.capture_dir}/*.log")
    say("lab torn down")
    ike_act()
    return 0


def ike_act() -> None:
    """Act 2: IKEv2. had on the gateway assigns addresses (RFC 5026 / RFC 5266 pools); mobiled on
    both clients negotiates through the NAT, and the Child SAs land in natt."""
    with Lab(two_site_nat_topology(), "demo-ike") as lab:
        conn = {"name": "rw", "local_id": "gw.example.test", "local_ts": ["10.100.0.0/24", "fd00:100::/64"]}
        had = start_had(lab, "gw", start_natt(lab, "gw"), address="192.0.2.2", conns=[conn],
                        pool4="10.200.0.0/28", pool6="fd00:200::/120")  # fmt: skip
        say("had on gw: IKEv2 responder with an IPv4 pool (VPN-TIA) and an IPv6 home-address pool")
        for n, host in enumerate(("c1", "c2")):
            mn = start_mobiled(lab, host, start_natt(lab, host), home_agents=["192.0.2.2"],
                               conn={"name": "home", "remote_id": "gw.example.test",
                                     "remote_ts": ["10.100.0.0/24", "fd00:100::/64"]},
                               request=("ip4", "ip6"), fqdn=f"mn{n + 1}.example.test")  # fmt: skip
            home = wait_home(mn)
            say(f"mobiled on {host}: IKE SA up through the NAT, assigned {', '.join(home['addresses'])}")
            out = lab.run(host, "ping", "-c", "2", "-i", "0.2", "10.100.0.1", check=False).stdout.splitlines()
            say(f"{host} pings 10.100.0.1 through its Child SA: {out[-2].strip() if len(out) > 1 else out}")
        ctl_table(had, "ike.sas", "had")
        ctl_table(had, "leases", "had")
    say("IKE lab torn down")


if __name__ == "__main__":
    sys.exit(main())
