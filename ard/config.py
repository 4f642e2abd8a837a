"""ard configuration schema (/etc/mobility/ard.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Network

from mobility.service.config import ServiceSection

__all__ = ["ArdConfig", "IPv6Network"]


@dataclass(frozen=True, slots=True)
class ArdConfig:
    interfaces: tuple[str, ...] = field(default=(), metadata={"doc": "links this router serves"})
    hk_lifetime_s: int = field(
        default=43200, metadata={"doc": "HK-LIFETIME granted with handover keys", "range": (60, 65535 * 4)}
    )
    service: ServiceSection = field(default_factory=ServiceSection)
