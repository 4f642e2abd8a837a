"""mobiled configuration schema (/etc/mobility/mobiled.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Network

from mobility.service.config import ServiceSection

__all__ = ["MobiledConfig", "IPv6Network"]


@dataclass(frozen=True, slots=True)
class MobiledConfig:
    home_agents: tuple[str, ...] = field(default=(), metadata={"doc": "home agent addresses or names, tried in order"})
    fqdn: str = field(default="", metadata={"doc": "our FQDN, used as IKE IDi when DNS update is asked (RFC 5026 5.2)"})
    service: ServiceSection = field(default_factory=ServiceSection)
