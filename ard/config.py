"""ard configuration schema (/etc/mobility/ard.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Literal

from mobility.service.config import ServiceSection
from mobility.service.ikeconfig import DEFAULT_ESP, DEFAULT_IKE

__all__ = ["ArdConfig", "IPv6Network", "IpsecSection", "NeighborSection"]


@dataclass(frozen=True, slots=True)
class NeighborSection:
    ap_lla: str = field(default="", metadata={"doc": "link-layer address of a nearby access point (AP-ID)"})
    nar_lla: str = field(default="", metadata={"doc": "link-layer address of that AP's router (NAR)"})
    nar_address: IPv6Address | None = field(default=None, metadata={"doc": "the NAR's IPv6 address"})
    nar_prefix: IPv6Network | None = field(default=None, metadata={"doc": "the prefix on the NAR's link"})


@dataclass(frozen=True, slots=True)
class IpsecSection:
    """HI/HAck between access routers inside ESP transport mode, keyed by IKEv2 with a shared secret
    (RFC 5568 §10); the ESP itself is natt's (UDP 4500), so natt must listen on this router's address."""

    enabled: bool = field(
        default=False, metadata={"doc": "protect HI/HAck with IKEv2 + ESP; unprotected HI/HAck are then dropped"}
    )
    psk_file: Path | None = field(
        default=None, metadata={"doc": "shared secret of this router and its neighbours (mode 0600)"}
    )
    natt_socket: Path = field(
        default=Path("/run/mobility/natt.sock"), metadata={"doc": "natt's control socket (UDP 4500, ESP)"}
    )
    fwmark: int = field(
        default=0x4500,
        metadata={"doc": "mark on IKE sockets so IKE bypasses tunnels (natt's tun.fwmark)", "range": (1, 2**32 - 1)},
    )
    proposals: tuple[str, ...] = field(default=DEFAULT_IKE, metadata={"doc": "IKE SA proposals, preferred first"})
    esp_proposals: tuple[str, ...] = field(default=DEFAULT_ESP, metadata={"doc": "Child SA proposals"})
    dpd_s: float = field(
        default=15.0, metadata={"doc": "liveness check of the IKE SAs this router initiated", "range": (1, 3600)}
    )
    retry_s: float = field(
        default=5.0, metadata={"doc": "wait before initiating again after a failure", "range": (0.1, 600)}
    )


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
    tunnel_name: str = field(
        default="fmip0",
        metadata={"doc": "TUN device for previous CoAs (userspace); kernel: prefix of the ip6tnl link names"},
    )
    forward_backend: Literal["auto", "kernel", "userspace"] = field(
        default="auto",
        metadata={"doc": "PCoA forwarding: auto = kernel ip6tnl links when the kernel can create one, else userspace"},
    )
    ipsec: IpsecSection = field(default_factory=IpsecSection)
    service: ServiceSection = field(default_factory=ServiceSection)
