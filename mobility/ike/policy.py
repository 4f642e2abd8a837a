"""What an IKE SA is allowed to do: identities, credentials, suites, traffic selectors, timers, and
the events and dataplane intents the engine emits (STYLE.md §2.2).

Identities are written as strongSwan writes them: "gw.example.test" (FQDN), "mn@example.test"
(RFC822), "192.0.2.2" / "2001:db8::1" (IP), "keyid:0a0b..." (KEY_ID) (RFC 7296 §3.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network, summarize_address_range
from typing import Any

from mobility.dataplane.sa import EspSaPair, IPNetwork
from mobility.ike.proposals import Suite
from mobility.wire.ikev2 import CfgAttribute, TrafficSelector


@dataclass(frozen=True, slots=True)
class Identity:
    id_type: int
    data: bytes

    @classmethod
    def parse(cls, text: str) -> Identity:
        if text.startswith("keyid:"):
            return cls(11, bytes.fromhex(text[6:]))
        try:
            a = ip_address(text)
            return cls(1 if a.version == 4 else 5, a.packed)
        except ValueError:
            pass
        if "@" in text:
            return cls(3, text.encode("ascii"))
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"bad identity {text!r}")
        return cls(2, text.encode("ascii"))

    def __str__(self) -> str:
        if self.id_type in (1, 5):
            return str(ip_address(self.data))
        if self.id_type in (2, 3):
            return self.data.decode("ascii", "replace")
        return ("keyid:" if self.id_type == 11 else f"id{self.id_type}:") + self.data.hex()

    def matches(self, other: Identity) -> bool:
        if self.id_type != other.id_type:
            return False
        if self.id_type in (2, 3):
            return self.data.lower() == other.data.lower()
        return self.data == other.data


@dataclass(frozen=True, slots=True)
class Credentials:
    """PSK or certificate authentication material; `certs[0]` is our end-entity certificate."""

    psk: bytes | None = None
    private_key: Any = None
    certs: tuple[Any, ...] = ()
    anchors: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Timers:
    """Retransmission as strongSwan does it: timeout * base**try, `tries` retransmissions (RFC 7296
    §2.1 gives no numbers); half-open SAs are dropped after `half_open_s`."""

    timeout_s: float = 4.0
    base: float = 1.8
    tries: int = 5
    half_open_s: float = 30.0
    dpd_s: float = 0.0  # 0: no liveness checks of our own
    rekey_s: float = 0.0  # IKE SA rekey after this long (original initiator only); 0: never
    child_rekey_s: float = 0.0  # Child SA rekey after this long (original initiator only); 0: never


@dataclass(frozen=True, slots=True)
class Policy:
    """One connection: who we are, who the peer must be, and what its Child SA looks like."""

    name: str
    local_id: Identity
    remote_id: Identity | None  # None: any authenticated identity (responder, resolved per IDi)
    auth: str  # "psk" | "pubkey"
    credentials: Credentials
    ike_suites: tuple[Suite, ...]
    esp_suites: tuple[Suite, ...]
    local_ts: tuple[TrafficSelector, ...] = ()
    remote_ts: tuple[TrafficSelector, ...] = ()
    transport: bool = False
    cp_request: tuple[CfgAttribute, ...] = ()  # initiator: attributes to request (empty: no CP)
    mobike: bool = True
    force_encap: bool = True  # userspace ESP needs UDP encapsulation: fake NAT-D like strongSwan encap=yes
    follow_nat: bool = True  # move to 4500 when NAT-D says so (False only for load generators)
    timers: Timers = field(default_factory=Timers)


def any_ts(version: int) -> TrafficSelector:
    if version == 4:
        return TrafficSelector(IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"))
    return TrafficSelector(IPv6Address("::"), IPv6Address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))


def ts_from_network(text: str) -> TrafficSelector:
    net = ip_network(text, strict=False)
    return TrafficSelector(net.network_address, net.broadcast_address)


def ts_networks(sel: tuple[TrafficSelector, ...]) -> tuple[IPNetwork, ...]:
    out: list[IPNetwork] = []
    for t in sel:
        out += list(summarize_address_range(t.start, t.end))
    return tuple(out)


def narrow(theirs: tuple[TrafficSelector, ...], ours: tuple[TrafficSelector, ...]) -> tuple[TrafficSelector, ...]:
    """Intersection of two selector lists (RFC 7296 §2.9 narrowing): address ranges, ports, protocol."""
    out = []
    for a in theirs:
        for b in ours:
            if a.ts_type != b.ts_type or (a.ip_proto and b.ip_proto and a.ip_proto != b.ip_proto):
                continue
            lo, hi = max(int(a.start), int(b.start)), min(int(a.end), int(b.end))
            sp, ep = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
            if lo <= hi and sp <= ep:
                mk = IPv4Address if a.ts_type == 7 else IPv6Address
                out.append(TrafficSelector(mk(lo), mk(hi), a.ip_proto or b.ip_proto, sp, ep))
    return tuple(out)


# ---- events (Notify) and dataplane intents (Program) ------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeSaEstablished:
    name: str
    spi_i: bytes
    spi_r: bytes
    local_id: str
    remote_id: str
    peer: str
    peer_port: int
    nat_local: bool
    nat_remote: bool
    attributes: tuple[CfgAttribute, ...] = ()  # the CFG_REPLY we sent or received
    notifies: tuple[int, ...] = ()  # status notifies of interest the peer sent (e.g. USE_ASSIGNED_HoA)


@dataclass(frozen=True, slots=True)
class IkeSaFailed:
    name: str
    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class IkeSaDeleted:
    name: str
    spi_i: bytes
    remote_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChildSaInstall:
    ike_spi: bytes
    sa: EspSaPair


@dataclass(frozen=True, slots=True)
class ChildSaRemove:
    ike_spi: bytes
    spi_in: int


@dataclass(frozen=True, slots=True)
class IkeBug:
    """An unexpected exception inside one IKE SA's handling: that SA was torn down."""

    name: str
    traceback: str


@dataclass(frozen=True, slots=True)
class IkeDropped:
    reason: str
    src: str
    detail: str = ""
