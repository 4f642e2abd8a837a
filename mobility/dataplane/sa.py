"""ESP SA parameters shared by natt's engines, the dataplane backends and (later) the IKE owners.

One `EspSaPair` is what IKEv2 calls a Child SA: an inbound and an outbound ESP SA negotiated
together (RFC 7296 §2.17), UDP-encapsulated per RFC 3948 when `encap` is set.
Keys are raw bytes; for AES-GCM-16 each key is AES key ‖ 4-octet salt (RFC 4106 §8.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class Mode(StrEnum):
    TUNNEL = "tunnel"
    TRANSPORT = "transport"


class Cipher(StrEnum):
    AES_GCM_16 = "aes-gcm-16"  # RFC 4106, ENCR 20, key ‖ 4-octet salt
    AES_CBC = "aes-cbc"  # RFC 3602, ENCR 12, with a separate integrity transform


class Integ(StrEnum):
    NONE = "none"  # only with an AEAD cipher
    HMAC_SHA256_128 = "hmac-sha256-128"  # RFC 4868 §2.1, INTEG 12


GCM_KEY_LENGTHS = (20, 36)  # AES-128 / AES-256 + salt (project set, esp.md §5.4)
CBC_KEY_LENGTHS = (16, 32)
HMAC_SHA256_KEY_LENGTH = 32


@dataclass(frozen=True, slots=True)
class EspSaPair:
    spi_in: int  # chosen by us, the receiver (RFC 4303 §2.1); never 0 (RFC 3948 §2.1)
    spi_out: int
    local: IPAddress  # outer addresses of the UDP-encapsulated ESP
    peer: IPAddress
    cipher: Cipher
    key_in: bytes
    key_out: bytes
    integ: Integ = Integ.NONE
    integ_key_in: bytes = b""
    integ_key_out: bytes = b""
    mode: Mode = Mode.TUNNEL
    local_port: int = 4500
    peer_port: int = 4500
    local_ts: tuple[IPNetwork, ...] = ()  # traffic selectors (addresses only)
    remote_ts: tuple[IPNetwork, ...] = ()  # tunnel mode: allowed inner sources (RFC 3948 §3.1.1)
    esn: bool = False  # RFC 4303 §2.2.1 extended sequence numbers
    replay_window: int = 64  # RFC 4303 §3.4.3: >= 32 MUST, 64 SHOULD be default
    keepalive: bool = False  # we are behind a NAT: send RFC 3948 §4 keepalives
    inner_nat: IPAddress | None = None  # tunnel mode, RFC 3948 §3.1.1 option 3 / App. A Tn1
    peer_alias: IPAddress | None = None  # transport mode, App. A Tr1: local address for this peer
    nat_oa_src: IPAddress | None = None  # transport mode: peer's real address (NAT-OA), §3.1.2 (1)
    nat_oa_dst: IPAddress | None = None  # transport mode: our real address as the peer saw it
    persistent: bool = False  # restored from the state store after a restart
    reqid: int = 0  # kernel backend: ties states to policies
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems = sa_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def family(self) -> int:
        return self.peer.version

    def with_peer(self, peer: IPAddress, peer_port: int) -> EspSaPair:
        return replace(self, peer=peer, peer_port=peer_port)

    def to_json(self, *, secrets: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "extra":
                continue
            value = getattr(self, name)
            if isinstance(value, bytes):
                out[name] = value.hex() if secrets else f"<{len(value)} bytes>"
            elif isinstance(value, Enum):
                out[name] = value.value
            elif isinstance(value, tuple):
                out[name] = [str(v) for v in value]
            elif isinstance(value, IPv4Address | IPv6Address):
                out[name] = str(value)
            else:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> EspSaPair:
        """Build from control-socket / state-store JSON; raises ValueError on any bad field."""
        known = set(cls.__dataclass_fields__) - {"extra"}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"unknown SA field(s): {', '.join(sorted(unknown))}")
        kw: dict[str, Any] = {}
        for k, v in obj.items():
            kw[k] = _convert(k, v)
        try:
            return cls(**kw)
        except TypeError as e:
            raise ValueError(str(e)) from None


def _int(k: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{k}: expected an integer")
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            raise ValueError(f"{k}: expected an integer, got {v!r}") from None
    if not isinstance(v, int):
        raise ValueError(f"{k}: expected an integer")
    return v


def _convert(k: str, v: Any) -> Any:
    try:
        if k in ("spi_in", "spi_out", "local_port", "peer_port", "replay_window", "reqid"):
            return _int(k, v)
        if k in ("key_in", "key_out", "integ_key_in", "integ_key_out"):
            return bytes.fromhex(str(v).removeprefix("0x"))
        if k in ("local", "peer"):
            return ip_address(str(v))
        if k in ("inner_nat", "peer_alias", "nat_oa_src", "nat_oa_dst"):
            return None if v in (None, "") else ip_address(str(v))
        if k in ("local_ts", "remote_ts"):
            if isinstance(v, str):
                v = [v]
            return tuple(ip_network(str(n), strict=False) for n in v)
        if k == "cipher":
            return Cipher(v)
        if k == "integ":
            return Integ(v)
        if k == "mode":
            return Mode(v)
        if k in ("esn", "keepalive", "persistent"):
            if not isinstance(v, bool):
                raise ValueError(f"{k}: expected true/false")
            return v
        if k == "name":
            return str(v)
    except ValueError as e:
        raise ValueError(f"{k}: {e}") from None
    return v


def sa_problems(sa: EspSaPair) -> list[str]:
    """Every reason this SA cannot be installed (empty when it is valid)."""
    p: list[str] = []
    for name in ("spi_in", "spi_out"):
        spi = getattr(sa, name)
        if not 256 <= spi <= 0xFFFFFFFF:  # 0 is the non-ESP marker, 1-255 reserved (RFC 4303 §2.1)
            p.append(f"{name}: must be 256..0xffffffff, got {spi}")
    if sa.local.version != sa.peer.version:
        p.append("local and peer: address families differ")
    for name in ("local_port", "peer_port"):
        if not 1 <= getattr(sa, name) <= 65535:
            p.append(f"{name}: must be 1..65535")
    if sa.cipher is Cipher.AES_GCM_16:
        if sa.integ is not Integ.NONE:
            p.append("integ: AES-GCM-16 is an AEAD, integ must be none")
        for name in ("key_in", "key_out"):
            if len(getattr(sa, name)) not in GCM_KEY_LENGTHS:
                p.append(f"{name}: AES-GCM-16 needs key+salt of 20 or 36 bytes")
    else:
        if sa.integ is not Integ.HMAC_SHA256_128:
            p.append("integ: AES-CBC needs hmac-sha256-128")
        for name in ("key_in", "key_out"):
            if len(getattr(sa, name)) not in CBC_KEY_LENGTHS:
                p.append(f"{name}: AES-CBC needs a 16 or 32 byte key")
        for name in ("integ_key_in", "integ_key_out"):
            if len(getattr(sa, name)) != HMAC_SHA256_KEY_LENGTH:
                p.append(f"{name}: HMAC-SHA-256 needs a 32 byte key")
    if not 32 <= sa.replay_window <= 4096:
        p.append("replay_window: must be 32..4096 (RFC 4303 §3.4.3)")
    if sa.mode is Mode.TUNNEL and not sa.remote_ts:
        p.append("remote_ts: tunnel mode needs the peer's inner address space")
    if sa.mode is Mode.TRANSPORT and sa.inner_nat is not None:
        p.append("inner_nat: only for tunnel mode")
    if sa.mode is Mode.TUNNEL and sa.peer_alias is not None:
        p.append("peer_alias: only for transport mode")
    return p
