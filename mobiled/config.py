"""mobiled configuration schema (/etc/mobility/mobiled.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Network
from pathlib import Path
from typing import Literal

from mobility.service.config import ServiceSection
from mobility.service.ikeconfig import IkeConnection

__all__ = ["FmipSection", "IkeInitiatorSection", "IPv6Network", "MobiledConfig"]


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
class FmipSection:
    interface: str = field(default="", metadata={"doc": "access link for SEND and FMIPv6 (empty: off)"})
    trust_anchors: tuple[Path, ...] = field(
        default=(), metadata={"doc": "PEM certificates of the SEND trust anchors for routers (RFC 3971 6.3)"}
    )
    key_bits: int = field(
        default=1024, metadata={"doc": "RSA size of the CGA key (kept in the state dir)", "range": (1024, 2048)}
    )
    sec: int = field(default=1, metadata={"doc": "CGA Sec parameter (RFC 3972 2)", "range": (0, 2)})
    algorithm: int = field(
        default=0, metadata={"doc": "preferred FBU MAC: 0 HMAC-SHA1-96, 1 HMAC-SHA256-128", "range": (0, 1)}
    )
    hkepk_lifetime_s: int = field(
        default=43200, metadata={"doc": "HKEPK-LIFETIME (RFC 5269 3.7)", "range": (60, 7 * 86400)}
    )
    hkepk_handovers: int = field(default=10, metadata={"doc": "HKEPK-HANDOVERS (RFC 5269 3.7)", "range": (1, 1000)})
    fbu_lifetime_s: int = field(
        default=10, metadata={"doc": "forwarding time asked for in FBUs (seconds)", "range": (1, 3600)}
    )
    tunnel_name: str = field(default="fmipmn0", metadata={"doc": "TUN device that delivers forwarded packets"})


@dataclass(frozen=True, slots=True)
class MobiledConfig:
    home_agents: tuple[str, ...] = field(default=(), metadata={"doc": "home agent addresses or names, tried in order"})
    fqdn: str = field(default="", metadata={"doc": "our FQDN, used as IKE IDi when DNS update is asked (RFC 5026 5.2)"})
    ike: IkeInitiatorSection = field(default_factory=IkeInitiatorSection)
    fmip: FmipSection = field(default_factory=FmipSection)
    service: ServiceSection = field(default_factory=ServiceSection)
