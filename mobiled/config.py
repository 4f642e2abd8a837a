"""mobiled configuration schema (/etc/mobility/mobiled.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Network
from pathlib import Path
from typing import Literal

from mobility.ike.config import IkeConnection
from mobility.service.config import ServiceSection

__all__ = ["IkeInitiatorSection", "IPv6Network", "MobiledConfig"]


@dataclass(frozen=True, slots=True)
class IkeInitiatorSection:
    enabled: bool = field(default=False, metadata={"doc": "bring up IKEv2 with the first home agent that answers"})
    fwmark: int = field(
        default=0x4500,
        metadata={"doc": "mark on IKE sockets so IKE bypasses tunnels (natt's tun.fwmark)", "range": (1, 2**32 - 1)},
    )
    natt_socket: Path = field(
        default=Path("/run/mobility/natt.sock"), metadata={"doc": "natt's control socket (UDP 4500, ESP, TUN)"}
    )
    request: tuple[Literal["ip4", "ip6", "home_prefix", "dns4", "dns6"], ...] = field(
        default=("ip6",),
        metadata={"doc": "CFG_REQUEST: virtual IPv4, IPv6 HoA, home prefix (RFC 5026 5.3), resolvers"},
    )
    home_address: str = field(default="", metadata={"doc": "HoA to ask for (a hint the HA may override)"})
    connection: IkeConnection = field(default_factory=IkeConnection)


@dataclass(frozen=True, slots=True)
class MobiledConfig:
    home_agents: tuple[str, ...] = field(default=(), metadata={"doc": "home agent addresses or names, tried in order"})
    fqdn: str = field(default="", metadata={"doc": "our FQDN, used as IKE IDi when DNS update is asked (RFC 5026 5.2)"})
    ike: IkeInitiatorSection = field(default_factory=IkeInitiatorSection)
    service: ServiceSection = field(default_factory=ServiceSection)
