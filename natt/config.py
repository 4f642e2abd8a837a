"""natt configuration schema (/etc/mobility/natt.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from mobility.service.config import ServiceSection


@dataclass(frozen=True, slots=True)
class KeepaliveSection:
    interval_s: float = field(
        default=20.0,
        metadata={
            "doc": "M: send a NAT-keepalive when nothing else went to a peer for this long (RFC 3948 §4)",
            "range": (1, 3600),
        },
    )
    linger_s: float = field(
        default=300.0,
        metadata={
            "doc": "N: keep sending keepalives this long after the last SA with the peer ended (RFC 3948 §4)",
            "range": (0, 86400),
        },
    )


@dataclass(frozen=True, slots=True)
class TunSection:
    name: str = field(default="natt0", metadata={"doc": "TUN device of the userspace data plane"})
    mtu: int = field(default=1400, metadata={"doc": "MTU of the TUN device (inner packets)", "range": (1280, 9000)})
    table: int = field(default=4500, metadata={"doc": "routing table for inner destinations", "range": (1, 2**31 - 1)})
    fwmark: int = field(
        default=0x4500,
        metadata={
            "doc": "SO_MARK of natt's UDP socket; packets without it consult `table`",
            "range": (1, 2**32 - 1),
        },
    )
    rule_priority: int = field(
        default=1000, metadata={"doc": "priority of the `not fwmark` rules", "range": (1, 32765)}
    )
    addresses: tuple[str, ...] = field(
        default=(), metadata={"doc": 'inner addresses to put on the TUN device, e.g. ["10.200.0.1/32"]'}
    )


@dataclass(frozen=True, slots=True)
class NattConfig:
    listen: tuple[IPv4Address | IPv6Address, ...] = field(
        default=(IPv4Address("0.0.0.0"), IPv6Address("::")),
        metadata={"doc": "addresses to own UDP `port` on (IPv4 and/or IPv6)"},
    )
    port: int = field(default=4500, metadata={"doc": "UDP port for IKE and ESP (RFC 3948)", "range": (1, 65535)})
    dataplane: Literal["auto", "kernel", "userspace"] = field(
        default="auto",
        metadata={"doc": "auto: kernel XFRM when the kernel can install an ESP state, else userspace (TUN)"},
    )
    keepalive: KeepaliveSection = field(default_factory=KeepaliveSection)
    tun: TunSection = field(default_factory=TunSection)
    log_secrets: bool = field(
        default=False, metadata={"doc": "log SA keys (for decrypting captures in a lab; warns at startup)"}
    )
    service: ServiceSection = field(default_factory=ServiceSection)
