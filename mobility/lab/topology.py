"""Declarative lab topologies: hosts (network namespaces), veth links with IPv4+IPv6 addresses,
routes, loopback addresses, forwarding and nftables masquerade NAT (NAT44 and NAT66)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class End:
    host: str
    ifname: str
    addrs: tuple[str, ...] = ()  # CIDR strings, v4 and/or v6


@dataclass(frozen=True)
class Link:
    a: End
    b: End


@dataclass(frozen=True)
class Route:
    host: str
    dst: str  # "default" / "default6" or a prefix
    via: str


@dataclass(frozen=True)
class Topology:
    hosts: tuple[str, ...]
    links: tuple[Link, ...]
    routes: tuple[Route, ...] = ()
    nat: tuple[tuple[str, str], ...] = ()  # (host, outgoing ifname): masquerade
    forwarding: tuple[str, ...] = ()
    loopback: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Topology:
        def end(e: dict[str, Any]) -> End:
            return End(e["host"], e["ifname"], tuple(e.get("addrs", ())))

        return cls(
            hosts=tuple(d["hosts"]),
            links=tuple(Link(end(x["a"]), end(x["b"])) for x in d.get("links", ())),
            routes=tuple(Route(r["host"], r["dst"], r["via"]) for r in d.get("routes", ())),
            nat=tuple((n["host"], n["oifname"]) for n in d.get("nat", ())),
            forwarding=tuple(d.get("forwarding", ())),
            loopback={k: tuple(v) for k, v in d.get("loopback", {}).items()},
        )

    @classmethod
    def from_toml(cls, path: Path) -> Topology:
        return cls.from_dict(tomllib.loads(path.read_text()))


def two_site_nat_topology() -> Topology:
    """The natt lab: two clients behind one nftables masquerade NAT, and a gateway.

        c1 eth0 10.99.1.2 fd99:1::2 ── eth1 ┐
                                            nat ── wan0 192.0.2.1 2001:db8:1::1 ── eth0 gw
        c2 eth0 10.99.2.2 fd99:2::2 ── eth2 ┘  (masquerade)      192.0.2.2 2001:db8:1::2
                                                              lo 10.100.0.1 fd00:100::1
    The gateway has no route to the private networks: it reaches the clients only through the NAT.
    """
    return Topology(
        hosts=("c1", "c2", "nat", "gw"),
        links=(
            Link(
                End("c1", "eth0", ("10.99.1.2/24", "fd99:1::2/64")),
                End("nat", "eth1", ("10.99.1.1/24", "fd99:1::1/64")),
            ),
            Link(
                End("c2", "eth0", ("10.99.2.2/24", "fd99:2::2/64")),
                End("nat", "eth2", ("10.99.2.1/24", "fd99:2::1/64")),
            ),
            Link(
                End("nat", "wan0", ("192.0.2.1/24", "2001:db8:1::1/64")),
                End("gw", "eth0", ("192.0.2.2/24", "2001:db8:1::2/64")),
            ),
        ),
        routes=(
            Route("c1", "default", "10.99.1.1"),
            Route("c1", "default6", "fd99:1::1"),
            Route("c2", "default", "10.99.2.1"),
            Route("c2", "default6", "fd99:2::1"),
        ),
        nat=(("nat", "wan0"),),
        forwarding=("nat",),
        loopback={"gw": ("10.100.0.1/32", "fd00:100::1/128")},
    )
