"""The mobile node's side of RFC 5269 and FMIPv6 (sans-I/O): SEND-validated Router Advertisements with
the router's certification path fetched by CPS/CPA (RFC 3971 §6.4, §6.3.1), handover keys obtained
with a SEND-signed RtSolPr and validated PrRtAdv (RFC 5269 §3.1, §3.3), the authenticated FBU to the
previous access router and its FBack (§3.4, RFC 5568 §6.2.2-§6.2.3).

Keys are indexed by (AR address, own care-of CGA) (§3.3): the AR address is the router's global
address from its RA (Prefix Information with the R flag, RFC 6275 §7.2), where the FBU goes; the
router's link-local CGA names it on the link.

A PrRtAdv must be signed with the router's *certified* key (§3.3): the CGA key of its source must equal
the key of a certification path to one of our trust anchors. Without a cached path, the message waits
(one per router) while CPS/CPA fetches it; it is processed once the path validates, dropped otherwise.
A PrRtAdv whose Nonce matches no outstanding RtSolPr is dropped (§3.3), as is one without a valid HK
Reply for the key we asked with. The handover-key encryption key pair is RSA of the CGA key's size,
never the CGA key (§3.1), replaced after HKEPK-LIFETIME or HKEPK-HANDOVERS (§3.7).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mobility.crypto import hk, sendcert, sendsig
from mobility.crypto.cga import CgaParams
from mobility.engine import Action, Notify, Persist
from mobility.wire import mh, nd
from mobility.wire.buffer import DecodeError

HOP_LIMIT = 255
HKEPK_LIFETIME, HKEPK_HANDOVERS = 43200, 10  # RFC 5269 §3.7
CPS_RETRY, CPS_RETRY_MAX = 1.0, 15.0  # RFC 3971 §10.1
RTSOLPR_RETRIES, RTSOLPR_TIMEOUT = 3, 0.1  # RFC 5568 §9, §6.1.1 (RTT unknown)
FBU_RETRIES = 3
RENEW_BACKOFF = 30.0  # a renewal that did not extend the key is asked again only after this long (s)
MAX_PATH_FETCHES = 8  # routers whose certification path is being fetched at once (bounded state)


@dataclass(frozen=True, slots=True)
class IcmpSend:
    src: IPv6Address | None  # None: let the kernel choose
    dst: IPv6Address
    data: bytes


@dataclass(frozen=True, slots=True)
class MhSend:
    src: IPv6Address
    dst: IPv6Address
    payload: bytes  # Destination Options (HoA) + Mobility Header, or a bare Mobility Header
    next_header: int


@dataclass
class Router:
    link_local: IPv6Address
    cga_key: bytes  # DER of the router's CGA key (its RA and PrRtAdv signer)
    lla: bytes = b""
    prefix: IPv6Network | None = None
    address: IPv6Address | None = None  # global address (R flag)
    certified: bool = False


@dataclass(frozen=True, slots=True)
class RouterFound:  # event: a router whose RA validated with a certified key and authorised prefix
    link_local: str
    prefix: str
    address: str


@dataclass(frozen=True, slots=True)
class DefaultRouter:  # event: a validated RA's Router Lifetime (RFC 4861 §6.3.4; 0 = no longer a default)
    link_local: str
    lifetime: int


@dataclass(frozen=True, slots=True)
class HandoverKey:  # Persist record and event
    ar: str  # where FBUs go
    cga: str  # our care-of CGA the key belongs to
    router_ll: str
    key: bytes
    at: int
    expires: float
    nars: tuple[tuple[str, str, str], ...] = ()  # (AP LLA hex, NAR address, NAR prefix) from the PrRtAdv


@dataclass(frozen=True, slots=True)
class FastHandover:  # event: FBack accepted; traffic for `pcoa` arrives tunnelled from `par`
    par: str
    pcoa: str
    ncoa: str
    status: int
    lifetime: int


@dataclass(frozen=True, slots=True)
class Dropped:
    what: str
    reason: str


@dataclass
class _Solicitation:
    router_ll: IPv6Address
    cga: IPv6Address
    enc_key: rsa.RSAPrivateKey
    at: int
    params: bytes
    sent: float
    tries: int = 0


@dataclass
class _PathFetch:
    router_ll: IPv6Address
    identifier: int
    certs: dict[int, bytes] = field(default_factory=dict)
    total: int = -1
    started: float = 0.0
    next_at: float = 0.0
    tries: int = 0
    parked: list[tuple[bytes, IPv6Address, IPv6Address, int]] = field(default_factory=list)


@dataclass
class _Fbu:
    par: IPv6Address
    pcoa: IPv6Address
    ncoa: IPv6Address
    seq: int
    send: MhSend
    next_at: float
    tries: int = 0
    reactive: bool = False  # sent from the NCoA on the NAR's link (retransmissions too)


@dataclass
class FmipClient:
    sig_key: rsa.RSAPrivateKey  # the CGA key
    anchors: tuple[x509.Certificate, ...]
    rand: Callable[[int], bytes]
    lla: bytes = b""
    keygen: Callable[[int], rsa.RSAPrivateKey] = lambda bits: rsa.generate_private_key(65537, bits)
    at: int = 0  # preferred FBU algorithm (project AT values, mobility.crypto.hk)
    fbu_lifetime: int = 10
    hkepk_lifetime_s: float = HKEPK_LIFETIME
    hkepk_handovers: int = HKEPK_HANDOVERS
    routers: dict[IPv6Address, Router] = field(default_factory=dict)
    keys: dict[tuple[str, str], HandoverKey] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    timestamps: sendsig.TimestampCache = field(default_factory=sendsig.TimestampCache)
    enc_key: rsa.RSAPrivateKey | None = None
    enc_created: float = 0.0
    enc_handovers: int = 0
    _sol: dict[bytes, _Solicitation] = field(default_factory=dict)
    _asked: dict[str, float] = field(default_factory=dict)  # CGA -> when we last sent an RtSolPr for it
    _paths: dict[IPv6Address, _PathFetch] = field(default_factory=dict)
    _fbu: dict[tuple[str, str], _Fbu] = field(default_factory=dict)
    _seq: int = 0
    _auth: dict[IPv6Address, sendcert.RouterAuthorization] = field(default_factory=dict)

    def restore(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            nars = tuple((str(a), str(b), str(c)) for a, b, c in r.get("nars", ()))
            k = HandoverKey(
                r["ar"], r["cga"], r["router_ll"], bytes.fromhex(r["key"]), int(r["at"]), float(r["expires"]), nars
            )
            self.keys[(k.ar, k.cga)] = k

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    def _drop(self, what: str, reason: str) -> list[Action]:
        self._count(f"drop_{what}_{reason}")
        return [Notify(Dropped(what, reason))]

    # ---- receive ----------------------------------------------------------------------------------

    def icmp(
        self, data: bytes, src: IPv6Address, dst: IPv6Address, hop_limit: int, now: float
    ) -> tuple[list[Action], list[IcmpSend]]:
        if not data:
            return [], []
        kind = data[0]
        if kind == nd.IcmpType.CPA:
            return self._cpa(data, src, now)
        if kind not in (nd.IcmpType.ROUTER_ADVERTISEMENT, nd.IcmpType.FMIPV6):
            return [], []
        if hop_limit != HOP_LIMIT:
            return self._drop("nd", "hop_limit"), []
        try:
            msg = nd.NdMessage.decode(data)
            params = sendsig.verify_cga_signed(msg, src, dst)  # the router's CGA and its signature
        except (DecodeError, sendsig.SendError) as e:
            return self._drop("nd", "send_invalid:" + type(e).__name__), []
        if kind == nd.IcmpType.FMIPV6 and msg.subtype != nd.Subtype.PRRTADV:
            return [], []
        auth = self._auth.get(src)
        if auth is None or sendsig.public_der(auth.key) != params.public_key:
            if auth is not None:  # a path is cached and this key is not the certified one (§3.3)
                return self._drop("nd", "uncertified_key"), []
            return [], self._park(data, src, dst, hop_limit, now)
        ts = msg.first(nd.Timestamp)
        if not self.timestamps.check(src, ts if isinstance(ts, nd.Timestamp) else None, now):
            return self._drop("nd", "timestamp"), []
        if kind == nd.IcmpType.ROUTER_ADVERTISEMENT:
            return self._ra(msg, src, params, auth), []
        return self._prrtadv(msg, src, now), []

    def _ra(
        self, msg: nd.NdMessage, src: IPv6Address, params: CgaParams, auth: sendcert.RouterAuthorization
    ) -> list[Action]:
        r = self.routers.get(src) or Router(src, params.public_key)
        r.cga_key, r.certified = params.public_key, True
        lla = msg.first(nd.SourceLla)
        r.lla = lla.lla if isinstance(lla, nd.SourceLla) else r.lla
        out: list[Action] = []
        for o in msg.options[: sendsig.signature_index(msg)]:
            if not isinstance(o, nd.PrefixInfo) or o.prefix_len != 64:
                continue
            net = IPv6Network((o.prefix, 64), strict=False)
            if not auth.authorizes(net):
                self._count("drop_ra_prefix_not_certified")  # treated as unsecured (RFC 3971 §7.3)
                continue
            new = r.prefix != net
            r.prefix = net
            if o.flags & 0x20:
                r.address = o.prefix
            if new:
                out.append(Notify(RouterFound(str(src), str(net), str(r.address or ""))))
        self.routers[src] = r
        self._count("ra_valid")
        # the kernel takes no RAs on a SEND interface (unsecured ones would reach it): the default router
        # comes from the secured RAs only, refreshed by each one (RFC 3971 §8, RFC 4861 §6.3.4)
        out.append(Notify(DefaultRouter(str(src), int.from_bytes(msg.body[2:4], "big"))))
        return out

    def _prrtadv(self, msg: nd.NdMessage, src: IPv6Address, now: float) -> list[Action]:
        end = sendsig.signature_index(msg)
        covered = msg.options[:end]
        nonce = next((o.nonce for o in covered if isinstance(o, nd.Nonce)), None)
        sol = self._sol.get(nonce) if nonce else None
        if sol is None or sol.router_ll != src:
            return self._drop("prrtadv", "unmatched_nonce")  # §3.3
        reply = next((o for o in covered if isinstance(o, nd.HandoverKeyReply)), None)
        if reply is None:
            return self._drop("prrtadv", "no_hk_reply")  # the solicitation stays outstanding: retried
        if reply.at not in hk.ALGORITHMS:
            return self._drop("prrtadv", "unsupported_at")
        try:
            key = hk.decrypt(sol.enc_key, reply.encrypted_key)
        except ValueError:
            return self._drop("prrtadv", "undecryptable")
        if len(key) < 16:
            return self._drop("prrtadv", "short_key")
        del self._sol[nonce]  # type: ignore[arg-type]
        router = self.routers.get(src)
        ar = router.address if router is not None and router.address is not None else src
        nars = _nar_info(covered)
        rec = HandoverKey(str(ar), str(sol.cga), str(src), key, reply.at, now + reply.lifetime, nars)
        self.keys[(rec.ar, rec.cga)] = rec
        self._count("hk_obtained")
        return [Persist(rec), Notify(rec)]

    def _park(self, data: bytes, src: IPv6Address, dst: IPv6Address, hop: int, now: float) -> list[IcmpSend]:
        """Keep the message until the router's certification path arrives (RFC 5269 §3.3); ask for it."""
        f = self._paths.get(src)
        if f is None and len(self._paths) >= MAX_PATH_FETCHES:
            self._count("drop_nd_too_many_unverified_routers")  # anyone can make a CGA and sign with it
            return []
        if f is None:
            ident = int.from_bytes(self.rand(2), "big") or 1
            f = self._paths[src] = _PathFetch(src, ident, started=now)
        f.parked = [*f.parked[-3:], (data, src, dst, hop)]
        self._count("nd_parked")
        if f.tries:
            return []
        return self._send_cps(f, now)

    def _send_cps(self, f: _PathFetch, now: float) -> list[IcmpSend]:
        f.tries += 1
        f.next_at = now + CPS_RETRY * 2 ** (f.tries - 1)
        anchors = tuple(nd.TrustAnchor(1, a.subject.public_bytes()) for a in self.anchors[:1])
        self._count("cps_sent")
        return [
            IcmpSend(None, f.router_ll, nd.cps(f.identifier, 0xFFFF, anchors).encode(IPv6Address("::"), f.router_ll))
        ]

    def _cpa(self, data: bytes, src: IPv6Address, now: float) -> tuple[list[Action], list[IcmpSend]]:
        f = self._paths.get(src)
        try:
            msg = nd.NdMessage.decode(data)
        except DecodeError:
            return self._drop("cpa", "malformed"), []
        if f is None or msg.identifier not in (f.identifier, 0):
            return self._drop("cpa", "unsolicited"), []
        total, comp = int.from_bytes(msg.body[2:4], "big"), int.from_bytes(msg.body[4:6], "big")
        cert = msg.first(nd.Certificate)
        if not isinstance(cert, nd.Certificate) or comp >= total or total > 8:
            return self._drop("cpa", "no_certificate"), []
        f.total = total
        f.certs[comp] = cert.cert
        if len(f.certs) < total:
            return [], []
        del self._paths[src]
        try:
            chain = [x509.load_der_x509_certificate(f.certs[c]) for c in range(total - 1, -1, -1)]
            auth = sendcert.validate_router_path(chain, self.anchors, dt.datetime.fromtimestamp(now, dt.UTC))
        except (ValueError, sendcert.CertPathError) as e:
            return self._drop("cpa", "path_invalid:" + str(e)[:40]), []
        self._auth[src] = auth
        self._count("path_validated")
        acts: list[Action] = []
        sends: list[IcmpSend] = []
        for data_, s, d, hop in f.parked:
            a, o = self.icmp(data_, s, d, hop, now)
            acts += a
            sends += o
        return acts, sends

    # ---- send -------------------------------------------------------------------------------------

    def _enc_key(self, now: float) -> rsa.RSAPrivateKey:
        """§3.1: same algorithm and parameters as the CGA key, discarded after HKEPK-LIFETIME or
        HKEPK-HANDOVERS handovers (§3.7)."""
        k = self.enc_key
        if k is None or now - self.enc_created >= self.hkepk_lifetime_s or self.enc_handovers >= self.hkepk_handovers:
            k = self.enc_key = self.keygen(self.sig_key.key_size)
            self.enc_created, self.enc_handovers = now, 0
            self._count("hkepk_generated")
        return k

    def rtsolpr(self, router_ll: IPv6Address, cga: IPv6Address, params: bytes, now: float, tries: int = 0) -> IcmpSend:
        """RtSolPr with HK Request, CGA, Timestamp, Nonce and RSA Signature from our CGA (§3.1). Each
        (re)transmission is a new message with a fresh Nonce: the router refuses a repeated one."""
        enc = self._enc_key(now)
        self._asked[str(cga)] = now
        nonce = self.rand(14)  # the Nonce option is then exactly 16 octets (RFC 3971 §5.3.2)
        opts: list[nd.NdOption] = []
        if self.lla:
            opts.append(nd.LinkLayerAddress(4, self.lla))
        opts += [
            nd.LinkLayerAddress(0, b""),  # wildcard: all nearby APs (RFC 5568 §6.1.1)
            nd.HandoverKeyRequest(self.at, sendsig.public_der(enc.public_key())),
            nd.CgaOption(params),
            nd.Timestamp.at(now),
            nd.Nonce(nonce),
        ]
        ident = int.from_bytes(self.rand(2), "big")
        signed = sendsig.sign(nd.rtsolpr(ident, tuple(opts)), cga, router_ll, self.sig_key)
        data = signed.encode(cga, router_ll)
        self._sol[nonce] = _Solicitation(router_ll, cga, enc, self.at, params, now, tries)
        self._count("rtsolpr_sent")
        return IcmpSend(cga, router_ll, data)

    def fbu(
        self, par: IPv6Address, pcoa: IPv6Address, ncoa: IPv6Address, now: float, *, reactive: bool = False
    ) -> MhSend:
        """An FBU to the PAR with the handover key of (PAR, PCoA) (§3.4): the PCoA in a Home Address
        option, our LLA, BADF last. Predictive mode: sent from the PCoA on the PAR's link, the NCoA in
        Alternate CoA (RFC 5568 §6.2.2: MUST there). Reactive mode: sent from the NCoA on the NAR's
        link, which the PAR takes as the NCoA (§3.2). The Mobility Header checksum's pseudo-header
        source is the home address, the PCoA, either way (RFC 6275 §6.1.1)."""
        k = self.keys.get((str(par), str(pcoa)))
        if k is None or k.expires <= now:
            raise KeyError(f"no handover key for ({par}, {pcoa})")
        self._seq = (self._seq + 1) % 65536
        opts: tuple[mh.MhOption, ...] = (mh.MhLinkLayerAddress(2, self.lla),)
        if not reactive:
            opts = (mh.AlternateCoa(ncoa), *opts)
        n = hk.ALGORITHMS[k.at][1]
        fixed = mh.Fbu(self._seq, self.fbu_lifetime)
        draft = mh.message(fixed, (*opts, mh.Badf(0, bytes(n))))
        auth = hk.authenticator(k.at, k.key, ncoa, par, draft.badf_input())
        msg = mh.message(fixed, (*opts, mh.Badf(0, auth)))
        payload = mh.hoa_dstopts(pcoa) + msg.encode(pcoa, par)
        send = MhSend(ncoa if reactive else pcoa, par, payload, mh.IPPROTO_DSTOPTS)
        self._fbu[(str(par), str(pcoa))] = _Fbu(par, pcoa, ncoa, self._seq, send, now + 1.0, reactive=reactive)
        self.enc_handovers += 1
        self._count("fbu_sent")
        return send

    def fback(self, src: IPv6Address, dst: IPv6Address, data: bytes, now: float) -> list[Action]:
        try:
            m = mh.MhMessage.decode(data, src, dst)
        except DecodeError:
            return self._drop("fback", "malformed")
        if m.mh_type != mh.MhType.FBACK:
            return self._drop("mh", "not_fback")
        fb = mh.Fback.of(m)
        p = next((p for p in self._fbu.values() if p.par == src and p.seq == fb.seq), None)
        if p is None:
            return self._drop("fback", "unexpected")
        k = self.keys.get((str(p.par), str(p.pcoa)))
        badf = m.options[-1] if m.options else None
        if k is None or not isinstance(badf, mh.Badf):
            return self._drop("fback", "no_badf")
        if not hk.check(k.at, k.key, p.ncoa, src, m.badf_input(), badf.authenticator):
            return self._drop("fback", "bad_mac")
        del self._fbu[(str(p.par), str(p.pcoa))]
        self._count("fback_accepted" if fb.status < 128 else "fback_refused")
        return [Notify(FastHandover(str(p.par), str(p.pcoa), str(p.ncoa), fb.status, fb.lifetime))]

    # ---- timers -----------------------------------------------------------------------------------

    def tick(self, now: float) -> tuple[list[Action], list[IcmpSend], list[MhSend]]:
        """Retransmissions (RtSolPr, CPS, FBU), key renewal before HK-LIFETIME ends (§3.3)."""
        acts: list[Action] = []
        icmp: list[IcmpSend] = []
        mhs: list[MhSend] = []
        for n, s in list(self._sol.items()):
            if now - s.sent >= RTSOLPR_TIMEOUT * 2**s.tries:
                if s.tries >= RTSOLPR_RETRIES:
                    del self._sol[n]
                    self._count("rtsolpr_unanswered")
                    continue
                del self._sol[n]
                icmp.append(self.rtsolpr(s.router_ll, s.cga, s.params, now, s.tries + 1))
        for r, f in list(self._paths.items()):
            if f.next_at <= now:
                if now - f.started > CPS_RETRY_MAX:
                    del self._paths[r]
                    self._count("cps_gave_up")
                    continue
                icmp += self._send_cps(f, now)
        for key, p in list(self._fbu.items()):
            if p.next_at <= now:
                if p.tries >= FBU_RETRIES:
                    del self._fbu[key]
                    acts += self._drop("fbu", "unanswered")  # no fast handover support (RFC 5568 §4)
                    continue
                # a retransmission is a new FBU with a newer sequence number (RFC 6275 §11.8)
                again = self.fbu(p.par, p.pcoa, p.ncoa, now, reactive=p.reactive)
                self.enc_handovers -= 1  # the same handover
                q = self._fbu[key]
                q.tries, q.next_at = p.tries + 1, now + 2.0 ** (p.tries + 1)
                mhs.append(again)
        for k in list(self.keys.values()):
            if k.expires <= now:
                del self.keys[(k.ar, k.cga)]
                acts.append(Notify(Dropped("hk", "expired:" + k.cga)))
        return acts, icmp, mhs

    def renewals(self, now: float, margin: float) -> list[HandoverKey]:
        """Keys that end within `margin` seconds: ask the router again (§3.3 MUST renew)."""
        busy = {s.cga for s in self._sol.values()}
        return [
            k
            for k in self.keys.values()
            if k.expires - now < margin
            and IPv6Address(k.cga) not in busy
            and now - self._asked.get(k.cga, -1e18) >= RENEW_BACKOFF  # a router that keeps the old deadline
        ]


def _nar_info(options: tuple[nd.NdOption, ...]) -> tuple[tuple[str, str, str], ...]:
    """[AP-ID, AR-Info] tuples of a PrRtAdv Code 0 (RFC 5568 §6.1.2) in option order."""
    out: list[tuple[str, str, str]] = []
    ap, addr = "", ""
    for o in options:
        if isinstance(o, nd.LinkLayerAddress) and o.code == 1:
            ap = o.lla.hex()
        elif isinstance(o, nd.IpAddressPrefix) and o.code == 3:
            addr = str(o.address)
        elif isinstance(o, nd.IpAddressPrefix) and o.code == 4 and ap and addr:
            out.append((ap, addr, f"{o.address}/{o.prefix_len}"))
            ap, addr = "", ""
    return (out and tuple(out)) or ()
