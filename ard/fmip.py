"""FMIPv6 at the access routers (sans-I/O): the PAR verifies FBUs with the RFC 5269 handover key,
runs HI/HAck with the NAR, answers with an authenticated FBack and forwards traffic for the previous
care-of address to the new one; the NAR answers HI with HAck (RFC 5568 §4, §6.2; RFC 5269 §3.5).

Order of work for an FBU (RFC 5269 §3.5, STYLE.md §2.4): message type, Home Address option (the
previous care-of CGA, RFC 5269 §3.4), the handover key indexed by that CGA, BADF last with SPI 0
(RFC 5568 §6.4.5), the authenticator, then the sequence number. Only then does any state change.
No key, a bad MAC or a stale sequence number: dropped and counted, forwarding untouched.

The authenticator's "care-of address" is the NCoA: the Alternate Care-of Address option when present,
else the IPv6 source (RFC 6275 §6.2.7 wording; specs/fmipv6.md §7). The "PAR address" is the address
the FBU was sent to, and the FBack is sent from it with a MAC over the same NCoA.

Forwarding time: the FBack Lifetime grants min(FBU Lifetime, `forward_s`) seconds (RFC 5568 gives
no default). When forwarding ends, the PAR discards the handover key (RFC 5269 §3.6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Any

from mobility.crypto import hk
from mobility.engine import Action, Notify, Persist
from mobility.wire import mh

if TYPE_CHECKING:
    from ard.engine import ArdEngine

HI_RETRIES = 3  # RFC 5568 §9
HI_TIMEOUT = 0.1  # max(2 RTT, 100 ms) with RTT unknown, doubled per retry (§6.2.1.1)


@dataclass(frozen=True, slots=True)
class Send:
    """A Mobility Header to send: from `src` to `dst` (checksummed already)."""

    src: IPv6Address
    dst: IPv6Address
    data: bytes


@dataclass(frozen=True, slots=True)
class Forwarding:  # Persist record and event: traffic for `pcoa` is tunnelled to `ncoa` until `expires`
    pcoa: str
    ncoa: str
    expires: float


@dataclass(frozen=True, slots=True)
class ForwardingEnded:
    pcoa: str


@dataclass(frozen=True, slots=True)
class FbuSeq:  # Persist record: the last accepted FBU sequence number per previous care-of CGA
    pcoa: str
    seq: int


@dataclass(frozen=True, slots=True)
class FmipDropped:
    src: str
    reason: str


@dataclass(slots=True)
class _Pending:
    """An FBU accepted and waiting for the NAR's HAck."""

    pcoa: IPv6Address
    ncoa: IPv6Address
    par: IPv6Address  # the address the FBU was sent to (FBack source, MAC input)
    nar: IPv6Address
    fbu_seq: int
    lifetime: int
    predictive: bool
    hi: bytes
    hi_src: IPv6Address
    tries: int = 0
    next_at: float = 0.0


def seq_newer(new: int, old: int) -> bool:
    """RFC 6275 §9.5.1: sequence numbers compare modulo 2**16 (less than 32768 ahead is newer)."""
    return 0 < (new - old) % 65536 < 32768


@dataclass
class FmipEngine:
    ard: ArdEngine
    nar_peers: dict[IPv6Address, IPv6Network] = field(default_factory=dict)  # NAR address -> its prefix
    par_peers: frozenset[IPv6Address] = frozenset()  # ARs allowed to send us HI
    own_prefixes: tuple[IPv6Network, ...] = ()  # prefixes on our access links (NCoA check as NAR)
    forward_s: int = 10
    seqs: dict[str, int] = field(default_factory=dict)
    forwarding: dict[str, Forwarding] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)
    _hi_seq: int = 0

    def restore(self, seqs: list[dict[str, Any]], fwd: list[dict[str, Any]]) -> None:
        for s in seqs:
            self.seqs[s["pcoa"]] = int(s["seq"])
        for f in fwd:
            self.forwarding[f["pcoa"]] = Forwarding(f["pcoa"], f["ncoa"], float(f["expires"]))

    def _drop(self, src: IPv6Address, reason: str) -> tuple[list[Action], list[Send]]:
        self.ard._count("drop_" + reason)
        return [Notify(FmipDropped(str(src), reason))], []

    # ---- PAR: FBU -------------------------------------------------------------------------------

    def fbu(self, pkt: mh.MhPacket, now: float) -> tuple[list[Action], list[Send]]:
        m = pkt.mh
        if m.mh_type != mh.MhType.FBU:
            return self._drop(pkt.src, "fbu_not_fbu")
        if pkt.home is None:
            return self._drop(pkt.src, "fbu_no_hoa")  # the PCoA rides in the Home Address option (§3.4)
        pcoa = pkt.home
        rec = self.ard.keys.get(str(pcoa))
        if rec is None or rec.expires <= now:
            return self._drop(pkt.src, "fbu_unknown_cga")  # MUST NOT change forwarding (RFC 5269 §3.5)
        badf = m.options[-1] if m.options else None
        if not isinstance(badf, mh.Badf) or any(isinstance(o, mh.Badf) for o in m.options[:-1]):
            return self._drop(pkt.src, "fbu_no_badf")
        if badf.spi != 0:
            return self._drop(pkt.src, "fbu_spi")  # SPI 0: the SEND-based handover key (RFC 5568 §6.4.5)
        alt = m.first(mh.AlternateCoa)
        ncoa = alt.address if isinstance(alt, mh.AlternateCoa) else pkt.src
        if not hk.check(rec.at, rec.key, ncoa, pkt.dst, m.badf_input(), badf.authenticator):
            return self._drop(pkt.src, "fbu_bad_mac")
        f = mh.Fbu.of(m)
        if f.flags & 0xC000 != 0xC000:
            return self._drop(pkt.src, "fbu_flags")  # A and H MUST be set (RFC 5568 §6.2.2)
        last = self.seqs.get(str(pcoa))
        if last is not None and not seq_newer(f.seq, last):
            return self._drop(pkt.src, "fbu_replayed_seq")
        self.seqs[str(pcoa)] = f.seq
        acts: list[Action] = [Persist(FbuSeq(str(pcoa), f.seq))]
        if f.lifetime == 0:  # deregistration: stop forwarding
            acts += self._stop(str(pcoa))
            return acts, self._fback(pkt.dst, ncoa, pcoa, f.seq, 0, 0, pkt.src == pcoa)
        nar = next((a for a, p in self.nar_peers.items() if ncoa in p), None)
        if nar is None:
            self.ard._count("fbu_ncoa_unknown_prefix")
            return acts, self._fback(pkt.dst, ncoa, pcoa, f.seq, mh.FbackStatus.UNSPECIFIED, 0, pkt.src == pcoa)
        self._hi_seq = (self._hi_seq + 1) % 65536
        lla = m.first(mh.MhLinkLayerAddress)
        hi = mh.message(
            mh.Hi(self._hi_seq, 0 if pkt.src == pcoa else 1),  # Code 0: the FBU came from the PCoA (§6.2.1.1)
            (
                lla if isinstance(lla, mh.MhLinkLayerAddress) else mh.MhLinkLayerAddress(2, b""),
                mh.MhIpPrefix(1, 128, pcoa),
                mh.MhIpPrefix(2, 128, ncoa),
            ),
        )
        src = self.ard.router.global_address or pkt.dst
        p = _Pending(pcoa, ncoa, pkt.dst, nar, f.seq, f.lifetime, pkt.src == pcoa, hi.encode(src, nar), src)
        p.next_at = now + HI_TIMEOUT
        self.pending[self._hi_seq] = p
        self.ard._count("fbu_accepted")
        return acts, [Send(src, nar, p.hi)]

    def _fback(
        self, par: IPv6Address, ncoa: IPv6Address, pcoa: IPv6Address, seq: int, status: int, life: int, to_pcoa: bool
    ) -> list[Send]:
        """FBack to the NCoA with BADF keyed like the FBU, and in predictive mode (FBU sent from the PCoA)
        to the PCoA as well (RFC 5568 §6.2.3)."""
        rec = self.ard.keys.get(str(pcoa))
        if rec is None:
            return []  # the key has gone meanwhile (HK-LIFETIME): nothing can authenticate an FBack
        n = hk.ALGORITHMS[rec.at][1]
        draft = mh.message(mh.Fback(status, seq, life), (mh.Badf(0, bytes(n)),))
        auth = hk.authenticator(rec.at, rec.key, ncoa, par, draft.badf_input())
        msg = mh.message(mh.Fback(status, seq, life), (mh.Badf(0, auth),))
        self.ard._count("fback_sent")
        return [Send(par, d, msg.encode(par, d)) for d in ((ncoa, pcoa) if to_pcoa else (ncoa,))]

    # ---- PAR: HAck --------------------------------------------------------------------------------

    def hack(self, src: IPv6Address, m: mh.MhMessage, now: float) -> tuple[list[Action], list[Send]]:
        if m.mh_type != mh.MhType.HACK:
            return self._drop(src, "hack_not_hack")
        h = mh.Hack.of(m)
        p = self.pending.get(h.seq)
        if p is None or p.nar != src:
            return self._drop(src, "hack_unexpected")  # only the NAR we asked, for an HI we sent
        del self.pending[h.seq]
        if h.code >= 128:
            self.ard._count("hack_refused")
            return [], self._fback(p.par, p.ncoa, p.pcoa, p.fbu_seq, mh.FbackStatus.UNSPECIFIED, 0, p.predictive)
        life = min(p.lifetime, self.forward_s)
        fwd = Forwarding(str(p.pcoa), str(p.ncoa), now + life)
        self.forwarding[fwd.pcoa] = fwd
        self.ard._count("forwarding_started")
        acts: list[Action] = [Persist(fwd), Notify(fwd)]
        return acts, self._fback(p.par, p.ncoa, p.pcoa, p.fbu_seq, mh.FbackStatus.ACCEPTED, life, p.predictive)

    # ---- NAR: HI ----------------------------------------------------------------------------------

    def hi(self, src: IPv6Address, dst: IPv6Address, m: mh.MhMessage) -> tuple[list[Action], list[Send]]:
        if src not in self.par_peers:
            return self._drop(src, "hi_unauthorized")
        h = mh.Hi.of(m)
        ncoa = next((o.address for o in m.options if isinstance(o, mh.MhIpPrefix) and o.code == 2), None)
        ok = ncoa is not None and any(ncoa in p for p in self.own_prefixes)
        code = mh.HackCode.ACCEPTED if ok else mh.HackCode.NCOA_INVALID
        self.ard._count("hi_answered")
        return [], [Send(dst, src, mh.message(mh.Hack(h.seq, code)).encode(dst, src))]

    # ---- timers -----------------------------------------------------------------------------------

    def _stop(self, pcoa: str) -> list[Action]:
        if self.forwarding.pop(pcoa, None) is None:
            return []
        return [Persist(ForwardingEnded(pcoa)), Notify(ForwardingEnded(pcoa))]

    def expire(self, now: float) -> tuple[list[Action], list[Send]]:
        acts: list[Action] = []
        sends: list[Send] = []
        for pcoa, f in list(self.forwarding.items()):
            if f.expires <= now:
                acts += self._stop(pcoa)
                acts += self.ard.discard_key(pcoa)  # §3.6: the key goes when forwarding times out
        for seq, p in list(self.pending.items()):
            if p.next_at > now:
                continue
            if p.tries >= HI_RETRIES:
                del self.pending[seq]
                self.ard._count("hi_timeout")
                sends += self._fback(p.par, p.ncoa, p.pcoa, p.fbu_seq, mh.FbackStatus.UNSPECIFIED, 0, p.predictive)
                continue
            p.tries += 1
            p.next_at = now + HI_TIMEOUT * 2**p.tries
            sends.append(Send(p.hi_src, p.nar, p.hi))
        return acts, sends

    def next_deadline(self) -> float | None:
        times = [f.expires for f in self.forwarding.values()] + [p.next_at for p in self.pending.values()]
        return min(times, default=None)
