"""The access router's handover-key engine (sans-I/O): SEND-protected RtSolPr in, signed PrRtAdv out,
handover keys provisioned per RFC 5269 §3.2 and kept per CGA (§3.6).

Order of work for each RtSolPr (STYLE.md §2.4; RFC 5269 §5): hop limit, parse, then SEND validation
(CGA ownership, RSA signature, Timestamp window, Nonce present and not replayed; verification is cheap
next to signing), then the per-source rate limit for valid requests. Invalid ones share one global
budget of signed refusals, so a forger spoofing a victim's address cannot use up the victim's rate.
Only a valid request may create or return key state; an invalid one is still answered,
without a Handover Key Reply, and changes nothing (§3.2). Unresolved solicitations leave no state
beyond the bounded timestamp and nonce caches and the rate-limit buckets.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mobility.crypto import hk, sendsig
from mobility.engine import Action, Notify, Persist
from mobility.wire import nd
from mobility.wire.buffer import DecodeError

HOP_LIMIT = 255  # RFC 4861 §6.1, RFC 5568 §6.1.1


@dataclass(frozen=True, slots=True)
class Neighbor:
    """What the PrRtAdv tells about an access point's router (RFC 5568 §6.1.2, Code 0)."""

    ap_lla: bytes
    nar_lla: bytes
    nar_address: IPv6Address
    nar_prefix: IPv6Network


@dataclass(frozen=True, slots=True)
class HkRecord:
    cga: str
    key: bytes
    at: int
    expires: float  # wall-clock seconds
    cga_key: bytes  # the CGA public key the key was issued for (§3.6: unique per CGA key)


@dataclass(frozen=True, slots=True)
class HkIssued:  # Persist record and event
    record: HkRecord
    reused: bool


@dataclass(frozen=True, slots=True)
class HkExpired:
    cga: str


@dataclass(frozen=True, slots=True)
class SolicitationRefused:
    src: str
    reason: str


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass
class RouterIdentity:
    key: rsa.RSAPrivateKey
    address: IPv6Address  # the router's CGA on the link (a link-local CGA)
    cga_params: bytes  # its CGA Parameters, sent in the CGA option
    lla: bytes = b""
    certs: tuple[bytes, ...] = ()  # DER, CPA order: issued by the trust anchor first, the router's own last
    prefix: IPv6Network | None = None  # advertised on the link (must be inside the certified prefixes)
    global_address: IPv6Address | None = None  # advertised with the R flag (RFC 6275 §7.2)
    ra_lifetime: int = 1800


@dataclass
class ArdEngine:
    router: RouterIdentity
    rand: Callable[[int], bytes]
    neighbors: tuple[Neighbor, ...] = ()
    hk_lifetime_s: int = hk.HK_LIFETIME
    rate_per_s: float = 3.0  # MAX_RTSOLPR_RATE per source (RFC 5568 §9)
    burst: float = 3.0
    max_sources: int = 4096
    solicited_ra_per_s: float = 10.0  # signed RAs in answer to RS, all sources together
    refusals_per_s: float = 20.0  # all sources together: signed answers to requests that failed validation
    keys: dict[str, HkRecord] = field(default_factory=dict)
    timestamps: sendsig.TimestampCache = field(default_factory=sendsig.TimestampCache)
    nonces: sendsig.NonceCache = field(default_factory=sendsig.NonceCache)
    counters: dict[str, int] = field(default_factory=dict)
    _buckets: OrderedDict[bytes, _Bucket] = field(default_factory=OrderedDict)
    _refusals: _Bucket = field(default_factory=lambda: _Bucket(0.0, 0.0))
    _cpa_budget: _Bucket = field(default_factory=lambda: _Bucket(10.0, 0.0))
    _ra_budget: _Bucket = field(default_factory=lambda: _Bucket(10.0, 0.0))

    def restore(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            rec = HkRecord(
                r["cga"], bytes.fromhex(r["key"]), int(r["at"]), float(r["expires"]), bytes.fromhex(r["cga_key"])
            )
            self.keys[rec.cga] = rec

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    # ---- RtSolPr ------------------------------------------------------------------------------

    def rtsolpr(
        self, data: bytes, src: IPv6Address, dst: IPv6Address, hop_limit: int, *, now: float
    ) -> tuple[list[Action], bytes | None]:
        """Returns (actions, PrRtAdv octets to unicast to `src`, or None to stay silent)."""
        if hop_limit != HOP_LIMIT:
            return self._refuse(src, "hop_limit"), None
        try:
            msg = nd.NdMessage.decode(data)
        except DecodeError as e:
            return self._refuse(src, "malformed", str(e)), None
        if msg.type != nd.IcmpType.FMIPV6 or msg.subtype != nd.Subtype.RTSOLPR or msg.code != 0:
            return self._refuse(src, "not_rtsolpr"), None
        nonce, reason = self._validate(msg, src, dst, now)
        if reason:
            out = self._refuse(src, reason)
            if not self._take(self._refusals, self.refusals_per_s, self.refusals_per_s, now):
                return out, None  # forged floods from many sources must not buy a signature each
            return out, self._prrtadv(msg, src, nonce, None, now)  # answer, but no key (§3.2)
        # The per-source limit counts only requests signed by that CGA's key: forgeries carrying a
        # victim's address spend the global refusal budget above, never the victim's allowance.
        if not self._allow(src, now):
            return self._refuse(src, "rate_limited"), None
        req = _covered(msg, nd.HandoverKeyRequest)
        if not isinstance(req, nd.HandoverKeyRequest):
            self._count("rtsolpr_without_hk")
            return [], self._prrtadv(msg, src, nonce, None, now)
        out, reply = self._provision(msg, src, req, now)
        return out, self._prrtadv(msg, src, nonce, reply, now)

    def _validate(self, msg: nd.NdMessage, src: IPv6Address, dst: IPv6Address, now: float) -> tuple[bytes, str]:
        nonce_opt = _covered(msg, nd.Nonce)
        nonce = nonce_opt.nonce if isinstance(nonce_opt, nd.Nonce) else b""
        try:
            sendsig.verify_cga_signed(msg, src, dst)
        except sendsig.SendError as e:
            return nonce, "send_invalid:" + str(e)[:60]
        if not nonce:
            return nonce, "no_nonce"  # a signed solicitation without a Nonce is discarded (RFC 3971 §5.3.4)
        ts = _covered(msg, nd.Timestamp)
        if not self.timestamps.check(src, ts if isinstance(ts, nd.Timestamp) else None, now):
            return nonce, "timestamp"
        if not self.nonces.fresh(src, nonce, now):
            return nonce, "replayed_nonce"
        return nonce, ""

    def _provision(
        self, msg: nd.NdMessage, src: IPv6Address, req: nd.HandoverKeyRequest, now: float
    ) -> tuple[list[Action], nd.HandoverKeyReply | None]:
        cga_opt = msg.first(nd.CgaOption)
        assert isinstance(cga_opt, nd.CgaOption)
        from mobility.crypto.cga import CgaParams

        cga_key = CgaParams.decode(cga_opt.params).public_key
        try:
            enc_key = serialization.load_der_public_key(req.public_key)
            sig_key = serialization.load_der_public_key(cga_key)
        except ValueError:
            return self._refuse(src, "hk_key_unparsable"), None
        if not (
            isinstance(enc_key, rsa.RSAPublicKey)
            and isinstance(sig_key, rsa.RSAPublicKey)
            and enc_key.key_size == sig_key.key_size
        ):
            return self._refuse(src, "hk_key_not_like_cga_key"), None  # §4.1: same algorithm and parameters
        if req.public_key == cga_key:
            return self._refuse(src, "hk_key_is_cga_key"), None  # §3.1: never the signing key
        old = self.keys.get(str(src))
        reused = old is not None and old.expires > now and old.cga_key == cga_key
        if reused and old is not None:
            # the existing key MUST be returned (§3.2); in its second half its lifetime starts again, or
            # the renewal the MN MUST make before HK-LIFETIME ends (§3.3) would get the same deadline
            # back and ask forever (earlier, nothing changes: no state write for a repeated request)
            fresh = old.expires - now > self.hk_lifetime_s / 2
            rec = old if fresh else replace(old, expires=now + self.hk_lifetime_s)
        else:
            rec = HkRecord(str(src), hk.new_key(self.rand), hk.choose_at(req.at), now + self.hk_lifetime_s, cga_key)
        self.keys[rec.cga] = rec
        self._count("hk_reused" if reused else "hk_issued")
        lifetime = max(0, min(0xFFFF, int(rec.expires - now)))
        reply = nd.HandoverKeyReply(rec.at, lifetime, hk.encrypt(enc_key, rec.key))
        acts: list[Action] = [] if rec is old else [Persist(HkIssued(rec, reused))]
        return [*acts, Notify(HkIssued(rec, reused))], reply

    def _prrtadv(
        self, msg: nd.NdMessage, dst: IPv6Address, nonce: bytes, reply: nd.HandoverKeyReply | None, now: float
    ) -> bytes:
        opts: list[nd.NdOption] = []
        if self.router.lla:
            opts.append(nd.LinkLayerAddress(4, self.router.lla))
        code = self._neighbor_info(msg, opts)
        if reply is not None:
            opts.append(reply)
        opts += [nd.CgaOption(self.router.cga_params), nd.Timestamp.at(now)]
        if nonce:
            opts.append(nd.Nonce(nonce))  # echo the solicitation's nonce (RFC 3971 §5.3.3, RFC 5269 §3.2)
        adv = nd.prrtadv(code, msg.identifier, tuple(opts))
        signed = sendsig.sign(adv, self.router.address, dst, self.router.key)
        self._count("prrtadv_sent")
        return signed.encode(self.router.address, dst)

    def _neighbor_info(self, msg: nd.NdMessage, opts: list[nd.NdOption]) -> int:
        """RFC 5568 §6.1.2: Code 0 with [AP-ID, AR-Info] tuples for the APs asked about (all of ours
        for a wildcard), Code 2 with Option-Code 6 (no prefix information) for APs we do not know."""
        wanted = [o for o in msg.options if isinstance(o, nd.LinkLayerAddress) and o.code in (0, 1)]
        wildcard = any(o.code == 0 for o in wanted)
        known = {n.ap_lla: n for n in self.neighbors}
        asked = list(known) if wildcard else [o.lla for o in wanted]
        hits = [known[a] for a in asked if a in known]
        for n in hits:
            opts += [
                nd.LinkLayerAddress(1, n.ap_lla),
                nd.LinkLayerAddress(3, n.nar_lla),
                nd.IpAddressPrefix(3, 128, n.nar_address),
                nd.IpAddressPrefix(4, n.nar_prefix.prefixlen, n.nar_prefix.network_address),
            ]
        if hits:
            return 0
        opts += [nd.LinkLayerAddress(6, a) for a in asked] or [nd.LinkLayerAddress(6, b"")]
        return 2

    # ---- bookkeeping ----------------------------------------------------------------------------

    def _allow(self, src: IPv6Address, now: float) -> bool:
        """Token bucket per source, at most `max_sources` buckets (oldest evicted)."""
        b = self._buckets.get(src.packed)
        if b is None:
            b = self._buckets[src.packed] = _Bucket(self.burst, now)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        return self._take(b, self.rate_per_s, self.burst, now)

    @staticmethod
    def _take(b: _Bucket, rate: float, burst: float, now: float) -> bool:
        b.tokens = min(burst, b.tokens + (now - b.at) * rate)
        b.at = now
        if b.tokens < 1:
            return False
        b.tokens -= 1
        return True

    def _refuse(self, src: IPv6Address, reason: str, detail: str = "") -> list[Action]:
        self._count("drop_" + reason.split(":")[0])
        return [Notify(SolicitationRefused(str(src), reason + (f": {detail}" if detail else "")))]

    def discard_key(self, cga: str) -> list[Action]:
        if self.keys.pop(cga, None) is None:
            return []
        return [Persist(HkExpired(cga)), Notify(HkExpired(cga))]

    # ---- Router Advertisements and certification paths ----------------------------------------

    def router_advertisement(self, dst: IPv6Address, nonce: bytes, now: float) -> bytes:
        """A SEND-signed RA (RFC 3971 §7.1): Source LLA, the link prefix with the router's global address
        (R flag), CGA, Timestamp, the solicitation's Nonce if any, RSA Signature last."""
        opts: list[nd.NdOption] = []
        if self.router.lla:
            opts.append(nd.SourceLla(self.router.lla))
        if self.router.prefix is not None:
            addr = self.router.global_address or self.router.prefix.network_address
            opts.append(nd.PrefixInfo(self.router.prefix.prefixlen, 0xE0, 86400, 14400, addr))  # L A R
        opts += [nd.CgaOption(self.router.cga_params), nd.Timestamp.at(now)]
        if nonce:
            opts.append(nd.Nonce(nonce))
        ra = nd.router_advertisement(self.router.ra_lifetime, tuple(opts))
        self._count("ra_sent")
        return sendsig.sign(ra, self.router.address, dst, self.router.key).encode(self.router.address, dst)

    def router_solicitation(
        self, data: bytes, src: IPv6Address, hop_limit: int, now: float
    ) -> tuple[IPv6Address, bytes] | None:
        """RFC 4861 §6.2.6: answer an RS; a signed RS's Nonce is echoed (RFC 3971 §7.1). An RS from the
        unspecified address, or one that is not valid, gets the multicast RA."""
        if hop_limit != HOP_LIMIT:
            self._count("drop_rs")
            return None
        # one budget for all solicited RAs (each costs a signature); not the per-source RtSolPr bucket,
        # which an RS with a spoofed source would otherwise drain for its victim
        if not self._take(self._ra_budget, self.solicited_ra_per_s, self.solicited_ra_per_s, now):
            self._count("drop_rs_rate_limited")
            return None
        try:
            msg = nd.NdMessage.decode(data)
        except DecodeError:
            self._count("drop_rs_malformed")
            return None
        if msg.type != nd.IcmpType.ROUTER_SOLICITATION or msg.code != 0:
            return None
        nonce = msg.first(nd.Nonce)
        if src == IPv6Address("::") or not isinstance(nonce, nd.Nonce):
            dst = IPv6Address("ff02::1")
            return dst, self.router_advertisement(dst, b"", now)
        return src, self.router_advertisement(src, nonce.nonce, now)

    def certification_path(
        self, data: bytes, src: IPv6Address, hop_limit: int, now: float
    ) -> list[tuple[IPv6Address, bytes]]:
        """RFC 3971 §6.4.5: a CPS is answered with one CPA per certificate, Component N-1 down to 0,
        from the one issued by the trust anchor to the router's own; to the solicitation's source
        (All-Nodes for ::), at most MAX_CPA_RATE (10) CPAs per second (§10.1). CPAs are not signed."""
        if hop_limit != HOP_LIMIT:
            self._count("drop_cps_hop_limit")
            return []
        try:
            msg = nd.NdMessage.decode(data)
        except DecodeError:
            self._count("drop_cps_malformed")
            return []
        if msg.type != nd.IcmpType.CPS or msg.code != 0 or msg.identifier == 0:
            self._count("drop_cps_invalid")
            return []
        component = int.from_bytes(msg.body[2:4], "big")
        certs = self.router.certs
        n = len(certs)
        wanted = range(n - 1, -1, -1) if component == 0xFFFF else [component] if component < n else []
        dst = IPv6Address("ff02::1") if src == IPv6Address("::") else src
        ident = 0 if dst.is_multicast else msg.identifier  # Identifier 0 to All-Nodes (§6.4.2)
        out: list[tuple[IPv6Address, bytes]] = []
        anchors = tuple(o for o in msg.options if isinstance(o, nd.TrustAnchor))
        if not n:  # no path: a CPA without certificates, echoing the solicited anchors (§6.4.5)
            return [(dst, nd.cpa(ident, 0, 0, anchors).encode(self.router.address, dst))]
        for c in wanted:
            if not self._take(self._cpa_budget, 10.0, 10.0, now):
                self._count("cpa_rate_limited")
                break
            opts = (nd.Certificate(1, certs[n - 1 - c]),)  # Cert Type 1: X.509v3 (RFC 3971 §6.4.4)
            out.append((dst, nd.cpa(ident, n, c, opts).encode(self.router.address, dst)))
            self._count("cpa_sent")
        return out

    def expire(self, now: float) -> list[Action]:
        """HK-LIFETIME ends the key (RFC 5269 §3.6)."""
        out: list[Action] = []
        for cga, rec in list(self.keys.items()):
            if rec.expires <= now:
                del self.keys[cga]
                out += [Persist(HkExpired(cga)), Notify(HkExpired(cga))]
        return out

    def next_deadline(self) -> float | None:
        return min((r.expires for r in self.keys.values()), default=None)


def _covered(msg: nd.NdMessage, cls: type[nd.NdOption]) -> nd.NdOption | None:
    """The first option of a type among those the signature covers (RFC 3971 §5.2.2)."""
    try:
        end = sendsig.signature_index(msg)
    except sendsig.SendError:
        end = len(msg.options)
    return next((o for o in msg.options[:end] if type(o) is cls), None)
