"""had configuration schema (/etc/mobility/had.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from mobility.service.config import ServiceSection
from mobility.service.ikeconfig import IkeConnection

__all__ = ["HadConfig", "IPv6Network", "IkeResponderSection", "StaticAssignment"]


@dataclass(frozen=True, slots=True)
class StaticAssignment:
    identity: str = field(default="", metadata={"doc": "IKE identity of the mobile node (IDi)"})
    addresses: tuple[str, ...] = field(default=(), metadata={"doc": "addresses only this node may use"})


@dataclass(frozen=True, slots=True)
class IkeResponderSection:
    enabled: bool = field(default=False, metadata={"doc": "answer IKEv2 (RFC 5026 bootstrapping, VPN gateway)"})
    listen: tuple[str, ...] = field(default=("0.0.0.0",), metadata={"doc": "addresses for UDP 500"})
    address: str = field(default="", metadata={"doc": "our public address as peers reach it (NAT detection)"})
    fwmark: int = field(
        default=0x4500,
        metadata={"doc": "mark on IKE sockets so IKE bypasses tunnels (natt's tun.fwmark)", "range": (1, 2**32 - 1)},
    )
    natt_socket: Path = field(
        default=Path("/run/mobility/natt.sock"), metadata={"doc": "natt's control socket (UDP 4500, ESP)"}
    )
    connections: tuple[IkeConnection, ...] = field(default=(), metadata={"doc": "one per peer identity"})
    pool4: IPv4Network | None = field(default=None, metadata={"doc": "virtual IPv4 addresses (RFC 5266 VPN-TIA)"})
    pool6: IPv6Network | None = field(default=None, metadata={"doc": "home addresses handed out (RFC 5026 5.3.1)"})
    home_prefix: IPv6Network | None = field(default=None, metadata={"doc": "prefix for MIP6_HOME_PREFIX replies"})
    autoconf: bool = field(default=True, metadata={"doc": "allow HoA autoconfiguration (else USE_ASSIGNED_HoA)"})
    fcfs: bool = field(default=True, metadata={"doc": "first come first served for requested addresses (9.2)"})
    dns: tuple[str, ...] = field(default=(), metadata={"doc": "resolvers for INTERNAL_IP4/6_DNS replies"})
    assign: tuple[StaticAssignment, ...] = field(default=(), metadata={"doc": "configured addresses per node"})
    lease_linger_s: float = field(default=3600.0, metadata={"doc": "keep an offline node's address", "range": (0, 1e7)})
    log_secrets: bool = field(default=False, metadata={"doc": "show IKE SA keys in `ike.sas` (lab captures only)"})
    cookie_threshold: int = field(default=64, metadata={"doc": "half-open SAs before cookies", "range": (0, 1 << 20)})


@dataclass(frozen=True, slots=True)
class HadConfig:
    home_prefix: IPv6Network | None = field(default=None, metadata={"doc": "home link prefix, e.g. 2001:db8:aaaa::/64"})
    max_lifetime_s: int = field(
        default=3600, metadata={"doc": "cap on granted binding lifetimes", "range": (4, 262140)}
    )
    ike: IkeResponderSection = field(default_factory=IkeResponderSection)
    service: ServiceSection = field(default_factory=ServiceSection)
