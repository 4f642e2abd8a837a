"""ard configuration schema (/etc/mobility/ard.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from mobility.service.config import ServiceSection

__all__ = ["ArdConfig", "IPv6Network", "NeighborSection"]


@dataclass(frozen=True, slots=True)
class NeighborSection:
    ap_lla: str = field(default="", metadata={"doc": "link-layer address of a nearby access point (AP-ID)"})
    nar_lla: str = field(default="", metadata={"doc": "link-layer address of that AP's router (NAR)"})
    nar_address: IPv6Address | None = field(default=None, metadata={"doc": "the NAR's IPv6 address"})
    nar_prefix: IPv6Network | None = field(default=None, metadata={"doc": "the prefix on the NAR's link"})


@dataclass(frozen=True, slots=True)
class ArdConfig:
    interfaces: tuple[str, ...] = field(default=(), metadata={"doc": "links this router serves"})
    key_file: Path | None = field(default=None, metadata={"doc": "PEM RSA key of the router (mode 0600)"})
    cert_file: Path | None = field(default=None, metadata={"doc": "PEM: router certificate, then intermediates"})
    sec: int = field(default=1, metadata={"doc": "CGA Sec of the router's link-local CGA", "range": (0, 2)})
    hk_lifetime_s: int = field(
        default=43200, metadata={"doc": "HK-LIFETIME granted with handover keys (RFC 5269 3.7)", "range": (60, 65535)}
    )
    rtsolpr_rate: float = field(
        default=3.0, metadata={"doc": "RtSolPr accepted per second per source", "range": (0.1, 1000)}
    )
    prefix: IPv6Network | None = field(
        default=None, metadata={"doc": "prefix advertised in signed RAs (default: the interface's global /64)"}
    )
    ra_interval_s: float = field(
        default=10.0,
        metadata={"doc": "unsolicited SEND-signed RA period (RFC 4861 MaxRtrAdvInterval)", "range": (3, 1800)},
    )
    neighbors: tuple[NeighborSection, ...] = field(default=(), metadata={"doc": "nearby access points and routers"})
    fmip_peers: tuple[IPv6Address, ...] = field(
        default=(), metadata={"doc": "previous access routers allowed to send us HI (RFC 5568 6.2.1)"}
    )
    forward_s: int = field(
        default=10, metadata={"doc": "longest FMIPv6 forwarding granted after an FBU (seconds)", "range": (1, 3600)}
    )
    tunnel_name: str = field(default="fmip0", metadata={"doc": "TUN device carrying traffic for previous CoAs"})
    service: ServiceSection = field(default_factory=ServiceSection)
