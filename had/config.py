"""had configuration schema (/etc/mobility/had.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Network

from mobility.service.config import ServiceSection

__all__ = ["HadConfig", "IPv6Network"]


@dataclass(frozen=True, slots=True)
class HadConfig:
    home_prefix: IPv6Network | None = field(default=None, metadata={"doc": "home link prefix, e.g. 2001:db8:aaaa::/64"})
    max_lifetime_s: int = field(
        default=3600, metadata={"doc": "cap on granted binding lifetimes", "range": (4, 262140)}
    )
    service: ServiceSection = field(default_factory=ServiceSection)
