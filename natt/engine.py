"""natt's sans-I/O engine: RFC 3948 UDP-encapsulated ESP, demux, NAT procedures and keepalives.

Fed by the shell with datagrams received on UDP 4500 (`inbound`), IP packets read from the TUN
device (`outbound`), IKE messages from the local IKE owner (`send_ike`) and control commands;
returns actions. Never touches a socket, the clock or randomness (`rand` comes from the shell).

Deadlines: the data path only ever makes the keepalive deadline *later*, so the shell may re-arm
its timer only after control calls and timer runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from mobility.crypto.esp import IntegrityError, check_padding, pad_trailer
from mobility.dataplane.sa import EspSaPair, IPAddress, IPNetwork, Mode
from mobility.engine import Action, Deliver, Notify, Persist, Program, Send
from mobility.wire import ip
from mobility.wire.buffer import DecodeError
from mobility.wire.esp import NAT_KEEPALIVE, Kind, classify, ike_datagram
from natt.sadb import Checkpoint, LiveSa, OutboundTable, inner_nat_problem

# Implementation constants (spec constants are the config defaults: M = 20 s, N = 5 min, §4).
OUT_RESERVE_CHUNK = 1 << 16
IN_CHUNK_MIN, IN_CHUNK_MAX = 4, 1 << 16
IN_COMMIT_TARGET_S = 0.5


# ---- events (Notify) -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SaAdded:
    spi_in: int
    spi_out: int
    peer: str
    peer_port: int
    mode: str
    restored: bool


@dataclass(frozen=True, slots=True)
class SaRemoved:
    spi_in: int
    reason: str


@dataclass(frozen=True, slots=True)
class SaPeerUpdated:
    spi_in: int
    peer: str
    peer_port: int


@dataclass(frozen=True, slots=True)
class SaSeqExhausted:
    spi_in: int  # RFC 4303 §3.3.3: the counter may not cycle; the IKE owner must rekey


@dataclass(frozen=True, slots=True)
class IkeReceived:
    src: str
    sport: int
    message: bytes  # the IKE message, Non-ESP Marker removed


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: str
    src: str
    detail: str


# ---- persistence records (Persist) -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SaStored:
    spi_in: int
    sa: dict[str, Any]
    out_reserved: int
    in_reserved: int


@dataclass(frozen=True, slots=True)
class SaForgotten:
    spi_in: int


@dataclass(frozen=True, slots=True)
class SeqReserved:
    spi_in: int
    out_reserved: int
    in_reserved: int


# ---- dataplane programs (Program) ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RouteAdd:
    dst: IPNetwork
    src: IPAddress | None  # preferred source for locally generated traffic into the tunnel


@dataclass(frozen=True, slots=True)
class RouteDel:
    dst: IPNetwork


@dataclass(slots=True)
class _Peer:
    last_tx: float
    keepalive_sas: int = 0
    linger_until: float = 0.0


class NattEngine:
    def __init__(
        self,
        *,
        rand: Callable[[int], bytes],
        keepalive_interval_s: float = 20.0,
        keepalive_linger_s: float = 300.0,
    ) -> None:
        self._rand = rand
        self._m = keepalive_interval_s
        self._n = keepalive_linger_s
        self._by_spi: dict[int, LiveSa] = {}
        self._out = OutboundTable()
        self._peers: dict[tuple[str, int], _Peer] = {}
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    # ---- control ---------------------------------------------------------------------------
    def set_keepalive(self, interval_s: float, linger_s: float) -> None:
        self._m, self._n = interval_s, linger_s

    def add_sa(self, sa: EspSaPair, *, now: float, restored: Checkpoint | None = None) -> list[Action]:
        """Install a Child SA pair; raises ValueError (nothing changed) when it cannot be."""
        if sa.spi_in in self._by_spi:
            raise ValueError(f"SA with inbound SPI {sa.spi_in:#x} already exists")
        problem = inner_nat_problem(sa)
        if problem:
            raise ValueError(problem)
        live = LiveSa.create(sa, now=now)
        clash = self._out.conflicts(live.keys, also=self._out.siblings(live))
        if clash:
            raise ValueError("conflicting connection (RFC 3948 §5): " + "; ".join(clash))
        actions: list[Action] = []
        if sa.persistent:
            live.checkpoint = Checkpoint()
            if restored is not None:
                live.seq_out = restored.out_reserved
                live.window = type(live.window)(sa.replay_window, restored.in_reserved, fill=True)
                live.kernel_seq_in = restored.in_reserved
            live.checkpoint.out_reserved = live.seq_out + OUT_RESERVE_CHUNK
            live.checkpoint.in_reserved = live.window.top
            live.in_last_commit = now
            cp = live.checkpoint
            actions.append(Persist(SaStored(sa.spi_in, sa.to_json(), cp.out_reserved, cp.in_reserved)))
        self._by_spi[sa.spi_in] = live
        self._out.add(live)
        self._peer_attach(live, now)
        src = sa.local_ts[0].network_address if len(sa.local_ts) == 1 else None
        if sa.local_ts and sa.local_ts[0].prefixlen != sa.local_ts[0].max_prefixlen:
            src = None
        actions += [Program(RouteAdd(key, src if src and src.version == key.version else None)) for key in live.keys]
        actions.append(
            Notify(SaAdded(sa.spi_in, sa.spi_out, str(sa.peer), sa.peer_port, sa.mode.value, restored is not None))
        )
        return actions

    def update_sa_peer(self, spi_in: int, peer: IPAddress, peer_port: int, *, now: float) -> list[Action]:
        """MOBIKE (RFC 4555) / NAT mapping change: new outer address and port for the peer."""
        live = self._get(spi_in)
        if peer.version != live.sa.local.version:
            raise ValueError("peer address family differs from the SA's local address")
        self._peer_detach(live, now, linger=False)
        live.sa = live.sa.with_peer(peer, peer_port)
        live.peer_str = str(peer)
        self._peer_attach(live, now)
        actions: list[Action] = []
        if live.checkpoint is not None:
            cp = live.checkpoint
            actions.append(Persist(SaStored(spi_in, live.sa.to_json(), cp.out_reserved, cp.in_reserved)))
        actions.append(Notify(SaPeerUpdated(spi_in, str(peer), peer_port)))
        return actions

    def del_sa(self, spi_in: int, *, now: float, reason: str = "deleted") -> list[Action]:
        live = self._get(spi_in)
        actions: list[Action] = []
        if live.checkpoint is not None:
            actions.append(Persist(SaForgotten(spi_in)))
        del self._by_spi[spi_in]
        siblings = [s for s in self._out.siblings(live) if s is not live]
        self._out.remove(live)
        for other in siblings:  # a rekeyed pair: the survivor keeps the selectors and routes
            self._out.remove(other)
            self._out.add(other)
        self._peer_detach(live, now, linger=True)
        if not siblings:
            actions += [Program(RouteDel(key)) for key in live.keys]
        actions.append(Notify(SaRemoved(spi_in, reason)))
        return actions

    def note_kernel_seq(self, spi_in: int, seq_out: int, seq_in: int = 0) -> list[Action]:
        """Kernel backend: the kernel numbers outbound packets and keeps the inbound window. Polled by
        the shell, the persisted reservations stay ahead of both:
        - outbound, so a restore never reuses a sequence number (and GCM IV): at least OUT_RESERVE_CHUNK / 2
          and four times what was sent since the last poll;
        - inbound, so a restore whose kernel state is gone (natt stopped, host rebooted) starts its
          window above what the kernel accepted, and no packet is accepted twice. When less than twice
          what arrived since the last poll (plus IN_CHUNK_MIN) is left, it moves to four times that
          (plus 2 IN_CHUNK_MIN) above the kernel's top: what may come before the next poll. After such
          a restore the peer's packets up to the reservation are dropped, as with the userspace data
          plane's reservation."""
        live = self._get(spi_in)
        sent = max(0, seq_out - live.seq_out)
        live.seq_out = max(live.seq_out, seq_out)
        arrived = max(0, seq_in - live.kernel_seq_in)
        live.kernel_seq_in = max(live.kernel_seq_in, seq_in)
        cp = live.checkpoint
        if cp is None:
            return []
        changed = False
        # the kernel may send faster than OUT_RESERVE_CHUNK / 2 per poll: then the margin follows the rate
        if live.seq_out + max(OUT_RESERVE_CHUNK // 2, 4 * sent) > cp.out_reserved:
            cp.out_reserved = live.seq_out + max(OUT_RESERVE_CHUNK, 8 * sent)
            changed = True
        if live.kernel_seq_in + 2 * arrived + IN_CHUNK_MIN > cp.in_reserved:
            cp.in_reserved = live.kernel_seq_in + 4 * arrived + 2 * IN_CHUNK_MIN
            changed = True
        return [Persist(SeqReserved(spi_in, cp.out_reserved, cp.in_reserved))] if changed else []

    def restored_kernel_window(self, spi_in: int, seq_in: int) -> list[Action]:
        """Kernel backend: a restored SA got the kernel's exact window back (left by a killed run, or
        read at a graceful stop), whose top `seq_in` is below the persisted reservation. The estimate
        and the reservation start again from that top, so that after a later reboot the peer does not
        lose the gap."""
        live = self._get(spi_in)
        cp = live.checkpoint
        if cp is None:
            return []
        live.kernel_seq_in = seq_in
        cp.in_reserved = seq_in + 2 * IN_CHUNK_MIN
        return [Persist(SeqReserved(spi_in, cp.out_reserved, cp.in_reserved))]

    def restored_out_seq(self, spi_in: int) -> int:
        return self._get(spi_in).seq_out

    def restored_in_seq(self, spi_in: int) -> int:
        """The inbound reservation a restored SA starts above (0: a new SA, an empty window)."""
        live = self._get(spi_in)
        return live.window.top if live.checkpoint is not None else 0

    def sas(self) -> list[dict[str, Any]]:
        return [live.to_json() for live in self._by_spi.values()]

    def sa(self, spi_in: int) -> EspSaPair:
        return self._get(spi_in).sa

    def peers(self) -> list[dict[str, Any]]:
        return [
            {
                "peer": a,
                "port": p,
                "keepalive_sas": s.keepalive_sas,
                "last_tx": s.last_tx,
                "linger_until": s.linger_until,
            }
            for (a, p), s in self._peers.items()
        ]

    def _get(self, spi_in: int) -> LiveSa:
        live = self._by_spi.get(spi_in)
        if live is None:
            raise KeyError(f"no SA with inbound SPI {spi_in:#x}")
        return live

    # ---- keepalives (RFC 3948 §4) ------------------------------------------------------------
    def _peer_attach(self, live: LiveSa, now: float) -> None:
        key = (str(live.sa.peer), live.sa.peer_port)
        peer = self._peers.get(key)
        if peer is None:
            peer = self._peers[key] = _Peer(last_tx=now)
        if live.sa.keepalive:
            peer.keepalive_sas += 1

    def _peer_detach(self, live: LiveSa, now: float, *, linger: bool) -> None:
        key = (str(live.sa.peer), live.sa.peer_port)
        peer = self._peers.get(key)
        if peer is None:
            return
        if live.sa.keepalive:
            peer.keepalive_sas -= 1
            if peer.keepalive_sas == 0:
                # keep sending for N after the last SA ended; not to a mapping MOBIKE left
                peer.linger_until = now + self._n if linger else 0.0
        if peer.keepalive_sas == 0 and peer.linger_until <= now and not self._peer_in_use(key, besides=live):
            del self._peers[key]

    def _peer_in_use(self, key: tuple[str, int], besides: LiveSa | None = None) -> bool:
        return any((x.peer_str, x.sa.peer_port) == key for x in self._by_spi.values() if x is not besides)

    def _sent(self, addr: str, port: int, now: float) -> None:
        peer = self._peers.get((addr, port))
        if peer is not None:
            peer.last_tx = now

    def next_deadline(self) -> float | None:
        deadlines = []
        for peer in self._peers.values():
            if peer.keepalive_sas > 0:
                deadlines.append(peer.last_tx + self._m)
            elif peer.linger_until > 0:
                deadlines.append(min(peer.last_tx + self._m, peer.linger_until))
        return min(deadlines, default=None)

    def on_timer(self, *, now: float) -> list[Action]:
        actions: list[Action] = []
        for key, peer in list(self._peers.items()):
            active = peer.keepalive_sas > 0 or now < peer.linger_until
            if not active:
                if not self._peer_in_use(key):
                    del self._peers[key]
                else:
                    peer.linger_until = 0.0
                continue
            if now >= peer.last_tx + self._m:
                peer.last_tx = now
                self.stats["keepalive_tx"] += 1
                actions.append(Send(key[0], key[1], NAT_KEEPALIVE))
        return actions

    # ---- IKE relay (RFC 3948 §2.2) -----------------------------------------------------------
    def send_ike(self, addr: str, port: int, message: bytes, *, now: float) -> list[Action]:
        if len(message) < 28:
            raise ValueError("not an IKE message (shorter than the 28-octet header)")
        self._sent(addr, port, now)
        self.stats["ike_tx"] += 1
        return [Send(addr, port, ike_datagram(message))]

    # ---- data path: UDP 4500 → local stack ---------------------------------------------------
    def _drop(self, reason: str, src: str, detail: str = "") -> list[Action]:
        self.drops[reason] += 1
        return [Notify(Dropped(reason, src, detail))]

    def inbound(self, data: bytes, src: str, sport: int, *, now: float) -> list[Action]:
        try:
            kind = classify(data)
        except DecodeError as e:
            return self._drop("malformed", src, str(e))
        if kind is Kind.ESP:
            return self._esp_in(data, src)
        if kind is Kind.KEEPALIVE:
            self.stats["keepalive_rx"] += 1  # ignored; never liveness evidence (§4)
            return []
        self.stats["ike_rx"] += 1
        return [Notify(IkeReceived(src, sport, data[4:]))]

    def _esp_in(self, data: bytes, src: str) -> list[Action]:
        spi = int.from_bytes(data[:4], "big")
        live = self._by_spi.get(spi)
        if live is None:
            return self._drop("unknown_spi", src, f"SPI {spi:#x}")
        sa, c = live.sa, live.counters
        low = int.from_bytes(data[4:8], "big")
        seq = live.window.infer_esn(low) if sa.esn else low
        if not live.window.check(seq):  # cheap check first (RFC 4303 §3.4.3)
            c.replay += 1
            return self._drop("replay", src, f"SPI {spi:#x} seq {seq}")
        seq_hi = (seq >> 32).to_bytes(4, "big") if sa.esn else None
        try:
            plain = live.rx.open(data[:8], seq_hi, data[8:])
        except IntegrityError as e:
            c.icv += 1
            return self._drop("icv", src, f"SPI {spi:#x}: {e}")
        actions: list[Action] = []
        if live.checkpoint is not None and seq > live.checkpoint.in_reserved:
            actions.append(self._reserve_in(live, seq))
        live.window.accept(seq)  # authenticated: now the window may move
        try:
            end, nh = check_padding(plain)
        except IntegrityError as e:
            c.padding += 1
            return actions + self._drop("padding", src, str(e))
        if nh == ip.PROTO_NONE:
            c.dummy += 1  # RFC 4303 §2.6: dummy packets are silently dropped
            return actions
        payload = plain[:end]
        try:
            packet = (
                self._tunnel_in(live, nh, payload) if sa.mode is Mode.TUNNEL else self._transport_in(live, nh, payload)
            )
        except DecodeError as e:
            c.inner += 1
            return actions + self._drop("inner", src, str(e))
        c.in_packets += 1
        c.in_bytes += len(packet)
        actions.append(Deliver(packet))
        return actions

    def _reserve_in(self, live: LiveSa, seq: int) -> Persist:
        """Commit a new inbound reservation before the right edge passes the old one; the chunk
        adapts so commits stay near one per IN_COMMIT_TARGET_S whatever the packet rate."""
        cp = live.checkpoint
        assert cp is not None
        cp.in_reserved = seq + live.in_chunk
        return Persist(SeqReserved(live.sa.spi_in, cp.out_reserved, cp.in_reserved))

    def note_commit(self, spi_in: int, *, now: float) -> None:
        """The shell tells the engine a reservation was committed; tunes the inbound chunk."""
        live = self._by_spi.get(spi_in)
        if live is None:
            return
        elapsed = now - live.in_last_commit
        live.in_last_commit = now
        if elapsed < IN_COMMIT_TARGET_S:
            live.in_chunk = min(IN_CHUNK_MAX, live.in_chunk * 2)
        elif elapsed > 4 * IN_COMMIT_TARGET_S:
            live.in_chunk = max(IN_CHUNK_MIN, live.in_chunk // 2)

    def _tunnel_in(self, live: LiveSa, nh: int, payload: bytes) -> bytes:
        """RFC 3948 §3.5 + §3.1.1: the inner source must be one the policy allows for this SA."""
        if nh not in (ip.PROTO_IPV4, ip.PROTO_IPV6):
            raise DecodeError("esp", "next_header", 0, f"{nh} is not IP in tunnel mode")
        hdr = ip.parse_ip(payload, "inner")
        if (hdr.version == 4) != (nh == ip.PROTO_IPV4):
            raise DecodeError("inner", "version", 0, "does not match the ESP Next Header")
        src = hdr.src
        if src not in live.allowed_hosts:
            value = int.from_bytes(src, "big")
            if not any(v == hdr.version and value & mask == net for v, net, mask in live.allowed_nets):
                raise DecodeError("inner", "source", 12, f"{ip_address(src)} not allowed for this SA (RFC 3948 §3.1.1)")
        if live.nat_addr and src == live.peer_inner:
            return ip.rewrite_address(payload, hdr, src=live.nat_addr)  # §3.1.1 option 3 (Tn1)
        return payload

    def _transport_in(self, live: LiveSa, nh: int, payload: bytes) -> bytes:
        """RFC 3948 §3.3 + §3.1.2: rebuild the IP header and make the TCP/UDP checksum right."""
        sa = live.sa
        src, dst = live.alias_raw, live.local_raw
        if nh in ip.L4_CHECKSUM_OFFSET:
            if sa.nat_oa_src is not None and sa.nat_oa_dst is not None:
                # option 1: subtract the addresses the sender used, add the ones we deliver with
                old = sa.nat_oa_src.packed + sa.nat_oa_dst.packed
                payload = ip.adjust_l4(nh, payload, old, src + dst)
            else:
                payload = ip.recompute_l4(src, dst, nh, payload)  # option 2
        if len(payload) + (20 if len(src) == 4 else 0) > 0xFFFF:
            raise DecodeError("inner", "length", 0, "transport payload too long")
        return ip.build_ip(src, dst, nh, payload)

    # ---- data path: local stack → UDP 4500 ---------------------------------------------------
    def outbound(self, packet: bytes, *, now: float) -> list[Action]:
        # Packets from our own stack: read the destination cheaply; parse fully where we rewrite.
        version = packet[0] >> 4 if packet else 0
        if version == 4 and len(packet) >= 20:
            dst = packet[16:20]
        elif version == 6 and len(packet) >= 40:
            dst = packet[24:40]
        else:
            return self._drop("tun_malformed", "local", f"{len(packet)} bytes, version {version}")
        live = self._out.lookup(dst)
        if live is None:
            return self._drop("no_sa", "local", str(ip_address(dst)))
        sa = live.sa
        if sa.mode is Mode.TUNNEL:
            nh = ip.PROTO_IPV4 if version == 4 else ip.PROTO_IPV6
            if live.nat_addr and dst == live.nat_addr:
                try:
                    hdr = ip.parse_ip(packet, "tun")
                except DecodeError as e:
                    return self._drop("tun_malformed", "local", str(e))
                packet = ip.rewrite_address(packet, hdr, dst=live.peer_inner)
            payload = packet
        else:
            try:
                hdr = ip.parse_ip(packet, "tun")
            except DecodeError as e:
                return self._drop("tun_malformed", "local", str(e))
            if not hdr.first_fragment:
                return self._drop("fragment", "local", "transport mode takes whole datagrams (RFC 4303 §3.3.4)")
            nh, payload = hdr.proto, packet[hdr.header_len :]
        if live.seq_out >= live.seq_limit:
            return self._drop("seq_exhausted", "local", f"SPI {sa.spi_in:#x}")
        live.seq_out += 1
        seq = live.seq_out
        actions: list[Action] = []
        cp = live.checkpoint
        if cp is not None and seq > cp.out_reserved:
            cp.out_reserved = seq + OUT_RESERVE_CHUNK
            actions.append(Persist(SeqReserved(sa.spi_in, cp.out_reserved, cp.in_reserved)))
        tx = live.tx
        header = live.spi_out_bytes + (seq & 0xFFFFFFFF).to_bytes(4, "big")
        seq_hi = (seq >> 32).to_bytes(4, "big") if sa.esn else None
        iv = seq.to_bytes(8, "big") if tx.iv_len == 8 else self._rand(tx.iv_len)
        body = tx.seal(header, seq_hi, payload + _trailer(len(payload), tx.block, nh), iv)
        live.counters.out_packets += 1
        live.counters.out_bytes += len(packet)
        peer = live.peer_str
        ps = self._peers.get((peer, sa.peer_port))
        if ps is not None:
            ps.last_tx = now
        if live.seq_out == live.seq_limit:
            actions.append(Notify(SaSeqExhausted(sa.spi_in)))
        actions.append(Send(peer, sa.peer_port, header + body))
        return actions


def _trailer(payload_len: int, block: int, nh: int) -> bytes:
    return pad_trailer(payload_len, block) + bytes((nh,))
