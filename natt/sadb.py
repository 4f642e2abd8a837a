"""natt's SA database: live state per Child SA pair and the lookups the data path needs.

Outbound lookup is by inner destination; inbound by SPI. RFC 3948 §5.1/§5.2 (several clients
behind one NAT, possibly with the same inner addresses) is handled here by construction:
  * every SA owns a set of outbound *keys* (tunnel: the peer's inner address space, or its
    `inner_nat` address; transport: the peer's address, or its `peer_alias`), and an SA whose keys
    overlap another SA's keys is refused ("disallowing conflicting connections", §5.2);
  * inbound packets are attributed by SPI alone and, in tunnel mode, their inner source must lie in
    *that* SA's `remote_ts` (§3.1.1 options 1-2), so one client can never speak for another;
  * clients that share an inner address are told apart by giving them locally unique addresses:
    assigned by the IKE owner (CP, §5.1's recommendation), or NATed by natt itself (`inner_nat` in
    tunnel mode, `peer_alias` in transport mode: Appendix A Tn1/Tr1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from mobility.crypto.esp import AesCbcHmacSha256, AesGcm16, EspTransform
from mobility.crypto.replay import ReplayWindow
from mobility.dataplane.sa import Cipher, EspSaPair, IPNetwork, Mode

SEQ_LIMIT_32 = 0xFFFFFFFF  # RFC 4303 §3.3.3: with anti-replay the counter MUST NOT cycle
SEQ_LIMIT_64 = 0xFFFFFFFFFFFFFFFF


def make_transform(cipher: Cipher, key: bytes, integ_key: bytes) -> EspTransform:
    if cipher is Cipher.AES_GCM_16:
        return AesGcm16(key)
    return AesCbcHmacSha256(key, integ_key)


@dataclass(slots=True)
class Counters:
    in_packets: int = 0
    in_bytes: int = 0
    out_packets: int = 0
    out_bytes: int = 0
    replay: int = 0
    icv: int = 0
    padding: int = 0
    inner: int = 0  # inner packet malformed or from a source the SA does not allow
    dummy: int = 0


@dataclass(slots=True)
class Checkpoint:
    """Sequence-number reservations persisted for a persistent SA (survive kill -9).

    out_reserved: every outbound number <= it may have been used; after a restart we continue
    above it, so no (key, IV) pair is ever reused. in_reserved: the inbound right edge never
    passes it without a commit first; after a restart everything <= it counts as replayed.
    """

    out_reserved: int = 0
    in_reserved: int = 0


@dataclass(slots=True)
class LiveSa:
    sa: EspSaPair
    tx: EspTransform
    rx: EspTransform
    window: ReplayWindow
    spi_out_bytes: bytes
    seq_out: int = 0
    seq_limit: int = SEQ_LIMIT_32
    keys: tuple[IPNetwork, ...] = ()
    peer_inner: bytes = b""  # tunnel + inner_nat: the peer's real inner address
    nat_addr: bytes = b""  # tunnel + inner_nat: the locally unique address it is given
    local_raw: bytes = b""
    peer_str: str = ""
    alias_raw: bytes = b""
    allowed_hosts: frozenset[bytes] = frozenset()  # tunnel mode: remote_ts as raw host addresses
    allowed_nets: tuple[tuple[int, int, int], ...] = ()  # (version, network, mask) for wider remote_ts
    counters: Counters = field(default_factory=Counters)
    checkpoint: Checkpoint | None = None
    in_chunk: int = 4
    in_last_commit: float = 0.0
    kernel_seq_in: int = 0  # kernel backend: the highest inbound number the kernel reported accepting
    created: float = 0.0

    @classmethod
    def create(cls, sa: EspSaPair, *, now: float) -> LiveSa:
        live = cls(
            sa=sa,
            tx=make_transform(sa.cipher, sa.key_out, sa.integ_key_out),
            rx=make_transform(sa.cipher, sa.key_in, sa.integ_key_in),
            window=ReplayWindow(sa.replay_window),
            spi_out_bytes=sa.spi_out.to_bytes(4, "big"),
            seq_limit=SEQ_LIMIT_64 if sa.esn else SEQ_LIMIT_32,
            keys=outbound_keys(sa),
            local_raw=sa.local.packed,
            peer_str=str(sa.peer),
            created=now,
        )
        live.allowed_hosts = frozenset(n.network_address.packed for n in sa.remote_ts if n.prefixlen == n.max_prefixlen)
        live.allowed_nets = tuple(
            (n.version, int(n.network_address), int(n.netmask)) for n in sa.remote_ts if n.prefixlen != n.max_prefixlen
        )
        if sa.mode is Mode.TUNNEL and sa.inner_nat is not None:
            live.peer_inner = sa.remote_ts[0].network_address.packed
            live.nat_addr = sa.inner_nat.packed
        if sa.mode is Mode.TRANSPORT:
            live.alias_raw = (sa.peer_alias or sa.peer).packed
        return live

    def to_json(self) -> dict[str, Any]:
        out = self.sa.to_json(secrets=False)
        c = self.counters
        out.update(
            seq_out=self.seq_out,
            replay_top=self.window.top,
            in_packets=c.in_packets,
            in_bytes=c.in_bytes,
            out_packets=c.out_packets,
            out_bytes=c.out_bytes,
            drop_replay=c.replay,
            drop_icv=c.icv,
            drop_padding=c.padding,
            drop_inner=c.inner,
            drop_dummy=c.dummy,
        )
        return out


def host_network(addr: Any) -> IPNetwork:
    return ip_network(f"{addr}/{addr.max_prefixlen}")


def outbound_keys(sa: EspSaPair) -> tuple[IPNetwork, ...]:
    if sa.mode is Mode.TRANSPORT:
        return (host_network(sa.peer_alias or sa.peer),)
    if sa.inner_nat is not None:
        return (host_network(sa.inner_nat),)
    return sa.remote_ts


def inner_nat_problem(sa: EspSaPair) -> str | None:
    if sa.mode is Mode.TUNNEL and sa.inner_nat is not None:
        ts = sa.remote_ts
        if len(ts) != 1 or ts[0].prefixlen != ts[0].max_prefixlen:
            return "inner_nat needs remote_ts to be the peer's single inner address"
        if ts[0].version != sa.inner_nat.version:
            return "inner_nat and remote_ts: address families differ"
    return None


class OutboundTable:
    """Longest-prefix lookup of inner destinations; exact host keys take a dict fast path."""

    def __init__(self) -> None:
        self._hosts: dict[bytes, LiveSa] = {}
        self._nets: list[tuple[IPv4Network | IPv6Network, int, int, LiveSa]] = []

    def conflicts(
        self, keys: tuple[IPNetwork, ...], ignore: LiveSa | None = None, also: tuple[LiveSa, ...] = ()
    ) -> list[str]:
        found = []
        for key in keys:
            for live in self._all():
                if live is ignore or live in also:
                    continue
                for other in live.keys:
                    if key.version == other.version and key.overlaps(other):
                        found.append(f"{key} overlaps {other} of SA {live.sa.spi_in:#x}")
        return found

    def siblings(self, new: LiveSa) -> tuple[LiveSa, ...]:
        """SAs with exactly the same selectors to the same peer: a rekeyed Child SA and its predecessor
        coexist until the old one is deleted (RFC 7296 §2.8); the newest carries the outbound traffic."""
        return tuple(
            live
            for live in self._all()
            if set(live.keys) == set(new.keys) and (live.sa.peer, live.sa.peer_port) == (new.sa.peer, new.sa.peer_port)
        )

    def _all(self) -> list[LiveSa]:
        seen: dict[int, LiveSa] = {}
        for live in self._hosts.values():
            seen[id(live)] = live
        for _, _, _, live in self._nets:
            seen[id(live)] = live
        return list(seen.values())

    def add(self, live: LiveSa) -> None:
        for key in live.keys:
            if key.prefixlen == key.max_prefixlen:
                self._hosts[key.network_address.packed] = live
            else:
                net = int(key.network_address)
                self._nets.insert(0, (key, net, int(key.netmask), live))  # newest first among equals
        self._nets.sort(key=lambda item: -item[0].prefixlen)  # stable: keeps newest first

    def remove(self, live: LiveSa) -> None:
        self._hosts = {k: v for k, v in self._hosts.items() if v is not live}
        self._nets = [item for item in self._nets if item[3] is not live]

    def lookup(self, dst: bytes) -> LiveSa | None:
        live = self._hosts.get(dst)
        if live is not None or not self._nets:
            return live
        value, version = int.from_bytes(dst, "big"), 4 if len(dst) == 4 else 6
        for key, net, mask, cand in self._nets:
            if key.version == version and value & mask == net:
                return cand
        return None
