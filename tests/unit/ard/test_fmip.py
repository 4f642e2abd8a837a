"""RFC 5269 / RFC 5568 in memory with the real engines on both sides: mobiled's FmipClient learns a
certified router from its signed RA (CPS/CPA), obtains a handover key from ArdEngine, and its FBU
makes the PAR's FmipEngine run HI/HAck and forward. Every forgery changes no key record and no
forwarding state."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ard.engine import ArdEngine, Neighbor, RouterIdentity
from ard.fmip import FmipEngine, Forwarding, Send
from mobiled.fmip import (
    RENEW_BACKOFF,
    DefaultRouter,
    FastHandover,
    FmipClient,
    HandoverKey,
    IcmpSend,
    MhSend,
    RouterFound,
)
from mobility.crypto import cga, hk, sendsig
from mobility.engine import Notify, Persist
from mobility.lab import pki
from mobility.wire import mh, nd

NOW = dt.datetime.now(dt.UTC).timestamp()
PAR_GLOBAL, NAR = IPv6Address("2001:db8:10::1"), IPv6Address("2001:db8:20::1")
PREFIX, NAR_PREFIX = IPv6Network("2001:db8:10::/64"), IPv6Network("2001:db8:20::/64")


def router_identity(issued: pki.Issued, prefix: IPv6Network = PREFIX) -> RouterIdentity:
    key = issued.key
    assert isinstance(key, rsa.RSAPrivateKey)
    addr, params = cga.generate(IPv6Network("fe80::/64"), sendsig.public_der(key.public_key()), 0, os.urandom)
    der = issued.cert.public_bytes(serialization.Encoding.DER)
    return RouterIdentity(key, addr, params.encode(), bytes.fromhex("020000000001"), (der,), prefix, PAR_GLOBAL)


@pytest.fixture(scope="module")
def pkiset() -> dict[str, Any]:
    ca = pki.make_ca("SEND CA", kind="rsa", prefixes=(IPv6Network("2001:db8::/32"),))
    other_ca = pki.make_ca("rogue CA", kind="rsa", prefixes=(IPv6Network("2001:db8::/32"),))
    return {
        "ca": ca,
        "par": router_identity(pki.issue_send_router(ca, "par", (PREFIX,))),
        "rogue": router_identity(pki.issue_send_router(other_ca, "rogue", (PREFIX,))),
        "mn_key": rsa.generate_private_key(65537, 1024),
    }


class World:
    """One PAR (ArdEngine + FmipEngine) and one MN (FmipClient), messages passed by hand."""

    def __init__(self, p: dict[str, Any], router: RouterIdentity | None = None) -> None:
        self.router = router or p["par"]
        nar = Neighbor(bytes.fromhex("0200000000aa"), bytes.fromhex("020000000002"), NAR, NAR_PREFIX)
        self.ard = ArdEngine(router=self.router, rand=os.urandom, neighbors=(nar,))
        self.fmip = FmipEngine(self.ard, nar_peers={NAR: NAR_PREFIX})
        self.mn = FmipClient(p["mn_key"], (p["ca"].cert,), os.urandom, lla=bytes.fromhex("02000000000c"))
        self.mn_ll = IPv6Address("fe80::c")
        der = sendsig.public_der(p["mn_key"].public_key())
        self.pcoa, params = cga.generate(PREFIX, der, 0, os.urandom)
        self.params = params.encode()
        self.ncoa = cga.address(NAR_PREFIX, replace(params, prefix=NAR_PREFIX.network_address.packed[:8]), 0)

    def to_mn(self, data: bytes, dst: IPv6Address, now: float = NOW) -> tuple[list[Any], list[IcmpSend]]:
        return self.mn.icmp(data, self.router.address, dst, 255, now)

    def cps_round(self, sends: list[IcmpSend], now: float = NOW) -> list[Any]:
        """Answer the MN's CPS with the PAR's CPAs; returns the MN's actions."""
        acts: list[Any] = []
        for s in sends:
            assert s.data[0] == nd.IcmpType.CPS
            for dst, cpa in self.ard.certification_path(s.data, self.mn_ll, 255, now):
                a, more = self.mn.icmp(cpa, self.router.address, dst, 255, now)
                acts += a
                assert not more
        return acts

    def learn_router(self) -> list[Any]:
        ra = self.ard.router_advertisement(IPv6Address("ff02::1"), b"", NOW)
        acts, sends = self.to_mn(ra, IPv6Address("ff02::1"))
        assert not acts and len(sends) == 1  # parked, CPS sent
        return self.cps_round(sends)

    def get_key(self) -> HandoverKey:
        acts = self.learn_router()
        assert any(isinstance(a, Notify) and isinstance(a.event, RouterFound) for a in acts)
        sol = self.mn.rtsolpr(self.router.address, self.pcoa, self.params, NOW)
        _, adv = self.ard.rtsolpr(sol.data, self.pcoa, self.router.address, 255, now=NOW)
        assert adv is not None
        acts, _ = self.to_mn(adv, self.pcoa)
        keys = [a.record for a in acts if isinstance(a, Persist) and isinstance(a.record, HandoverKey)]
        assert len(keys) == 1
        return keys[0]

    def fbu_packet(self, send: MhSend) -> mh.MhPacket:
        return mh.parse_ipv6_mh(mh.build_ipv6(send.src, send.dst, send.payload, send.next_header))

    def state(self) -> tuple[Any, ...]:
        return dict(self.ard.keys), dict(self.fmip.forwarding), dict(self.fmip.seqs), dict(self.fmip.pending)


def test_key_then_fbu_hi_hack_fback_and_forwarding(pkiset: dict[str, Any]) -> None:
    w = World(pkiset)
    k = w.get_key()
    assert (k.ar, k.cga) == (str(PAR_GLOBAL), str(w.pcoa))  # indexed by (AR address, own CGA) (§3.3)
    assert k.key == w.ard.keys[str(w.pcoa)].key and k.nars == (("0200000000aa", str(NAR), str(NAR_PREFIX)),)
    send = w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW)
    acts, out = w.fmip.fbu(w.fbu_packet(send), NOW)
    assert len(out) == 1 and out[0].dst == NAR  # HI to the NAR, nothing forwarded yet
    hi = mh.MhMessage.decode(out[0].data, out[0].src, out[0].dst)
    assert hi.mh_type == mh.MhType.HI and mh.Hi.of(hi).code == 0  # the FBU came from the PCoA
    assert {(o.code, o.address) for o in hi.options if isinstance(o, mh.MhIpPrefix)} == {(1, w.pcoa), (2, w.ncoa)}
    assert not w.fmip.forwarding
    hack = mh.message(mh.Hack(mh.Hi.of(hi).seq, mh.HackCode.ACCEPTED)).encode(NAR, out[0].src)
    acts, fbacks = w.fmip.hack(NAR, mh.MhMessage.decode(hack), NOW + 0.01)
    assert [type(a.record) for a in acts if isinstance(a, Persist)] == [Forwarding]
    assert w.fmip.forwarding[str(w.pcoa)].ncoa == str(w.ncoa)
    assert {s.dst for s in fbacks} == {w.ncoa, w.pcoa}  # predictive: to both (RFC 5568 §6.2.3)
    acts = w.mn.fback(fbacks[0].src, fbacks[0].dst, fbacks[0].data, NOW)
    ev = [a.event for a in acts if isinstance(a, Notify)]
    assert isinstance(ev[0], FastHandover) and ev[0].status == 0 and ev[0].lifetime == 10
    # forwarding ends: the PAR discards the key (RFC 5269 §3.6)
    acts, _ = w.fmip.expire(NOW + 11)
    assert not w.fmip.forwarding and str(w.pcoa) not in w.ard.keys


def test_reactive_fbu_from_the_ncoa(pkiset: dict[str, Any]) -> None:
    """Reactive mode (RFC 5568 §3.2): the FBU leaves from the NCoA, the PCoA in the Home Address option
    (the checksum's pseudo-header source, RFC 6275 §6.1.1), no Alternate CoA; the PAR takes the source
    as the NCoA, sends HI Code 1 and the FBack to the NCoA only."""
    w = World(pkiset)
    w.get_key()
    send = w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW, reactive=True)
    pkt = w.fbu_packet(send)  # parse_ipv6_mh checks the checksum with the home address
    assert (pkt.src, pkt.home) == (w.ncoa, w.pcoa) and pkt.mh.first(mh.AlternateCoa) is None
    _, out = w.fmip.fbu(pkt, NOW)
    hi = mh.MhMessage.decode(out[0].data, out[0].src, out[0].dst)
    assert mh.Hi.of(hi).code == 1 and {(o.code, o.address) for o in hi.options if isinstance(o, mh.MhIpPrefix)} == {
        (1, w.pcoa),
        (2, w.ncoa),
    }
    hack = mh.message(mh.Hack(mh.Hi.of(hi).seq, mh.HackCode.ACCEPTED)).encode(NAR, out[0].src)
    _, fbacks = w.fmip.hack(NAR, mh.MhMessage.decode(hack), NOW + 0.01)
    assert [s.dst for s in fbacks] == [w.ncoa] and w.fmip.forwarding[str(w.pcoa)].ncoa == str(w.ncoa)
    ev = [a.event for a in w.mn.fback(fbacks[0].src, fbacks[0].dst, fbacks[0].data, NOW) if isinstance(a, Notify)]
    assert isinstance(ev[0], FastHandover) and ev[0].status == 0 and ev[0].ncoa == str(w.ncoa)


def test_reactive_fbu_retransmitted_from_the_ncoa(pkiset: dict[str, Any]) -> None:
    """An unanswered reactive FBU is sent again (newer sequence number) still from the NCoA without an
    Alternate CoA: the MN is on the NAR's link, the PCoA is not its source there."""
    w = World(pkiset)
    w.get_key()
    first = w.fbu_packet(w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW, reactive=True))
    _, _, mhs = w.mn.tick(NOW + 1.5)
    assert len(mhs) == 1
    again = w.fbu_packet(mhs[0])
    assert (again.src, again.home) == (w.ncoa, w.pcoa) and again.mh.first(mh.AlternateCoa) is None
    assert mh.Fbu.of(again.mh).seq == mh.Fbu.of(first.mh).seq + 1
    _, out = w.fmip.fbu(again, NOW + 1.5)  # and the PAR accepts it: HI Code 1
    assert mh.Hi.of(mh.MhMessage.decode(out[0].data, out[0].src, out[0].dst)).code == 1


def test_default_router_only_from_secured_ras(pkiset: dict[str, Any]) -> None:
    """The MN's default route follows the RAs that validated (with their Router Lifetime), never an
    unsecured or uncertified one (RFC 3971 §8)."""
    w = World(pkiset)
    acts = w.learn_router()
    assert [a.event for a in acts if isinstance(a, Notify) and isinstance(a.event, DefaultRouter)] == [
        DefaultRouter(str(w.router.address), w.router.ra_lifetime)
    ]
    ra = bytearray(w.ard.router_advertisement(IPv6Address("ff02::1"), b"", NOW + 1))
    ra[6:8] = (0).to_bytes(2, "big")  # a lifetime-0 RA whose signature no longer matches
    acts, _ = w.to_mn(bytes(ra), IPv6Address("ff02::1"), NOW + 1)
    assert not [a for a in acts if isinstance(a, Notify) and isinstance(a.event, DefaultRouter)]
    rogue = World(pkiset, pkiset["rogue"])  # a router certified by nobody we trust
    ra2 = rogue.ard.router_advertisement(IPv6Address("ff02::1"), b"", NOW)
    acts, _ = w.mn.icmp(ra2, rogue.router.address, IPv6Address("ff02::1"), 255, NOW)
    assert not [a for a in acts if isinstance(a, Notify) and isinstance(a.event, DefaultRouter)]


def forged_fbu(w: World, kind: str) -> mh.MhPacket:
    send = w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW)
    if kind == "wrong_mac":
        good = w.mn.keys[(str(PAR_GLOBAL), str(w.pcoa))]
        w.mn.keys[(good.ar, good.cga)] = replace(good, key=os.urandom(32))
        send = w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW)
        w.mn.keys[(good.ar, good.cga)] = good
    elif kind == "unknown_cga":
        stranger = IPv6Address("2001:db8:10::dead")
        k = w.mn.keys[(str(PAR_GLOBAL), str(w.pcoa))]
        w.mn.keys[(str(PAR_GLOBAL), str(stranger))] = replace(k, cga=str(stranger))
        send = w.mn.fbu(PAR_GLOBAL, stranger, w.ncoa, NOW)
    elif kind == "tampered":
        p = bytearray(send.payload)
        p[24 + 11] ^= 1  # the FBU Lifetime's low octet (after 24 octets of dstopts, MH offset 11)
        send = replace(send, payload=bytes(p))
        data = mh.build_ipv6(send.src, send.dst, send.payload, send.next_header)
        fixed = mh.with_checksum(w.pcoa, PAR_GLOBAL, data[40 + 24 :])  # keep the checksum right
        return mh.parse_ipv6_mh(data[: 40 + 24] + fixed)
    elif kind == "no_ack_flags":  # a correctly authenticated FBU without A and H (RFC 5568 §6.2.2: MUST be 1)
        k = w.mn.keys[(str(PAR_GLOBAL), str(w.pcoa))]
        fixed, opts = mh.Fbu(99, 10, flags=0), (mh.AlternateCoa(w.ncoa),)
        draft = mh.message(fixed, (*opts, mh.Badf(0, bytes(12))))
        auth = hk.authenticator(k.at, k.key, w.ncoa, PAR_GLOBAL, draft.badf_input())
        body = mh.message(fixed, (*opts, mh.Badf(0, auth))).encode(w.pcoa, PAR_GLOBAL)
        return mh.parse_ipv6_mh(mh.build_ipv6(w.pcoa, PAR_GLOBAL, mh.hoa_dstopts(w.pcoa) + body, mh.IPPROTO_DSTOPTS))
    elif kind == "no_hoa":
        pkt = w.fbu_packet(send)
        return replace(pkt, home=None)
    elif kind == "reactive_redirected":
        # a reactive FBU (RFC 5568 §3.2) captured and sent again from the attacker's address on the NAR's
        # link: the PAR takes the source as the NCoA, and the authenticator covers the NCoA (RFC 5269 §3.4)
        # while the checksum covers only the home address, so only the key can tell
        send = w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW, reactive=True)
        return w.fbu_packet(replace(send, src=NAR_PREFIX.network_address + 0xBAD))
    elif kind == "spi":
        pkt = w.fbu_packet(send)
        badf = pkt.mh.options[-1]
        assert isinstance(badf, mh.Badf)
        return replace(pkt, mh=replace(pkt.mh, options=(*pkt.mh.options[:-1], replace(badf, spi=7))))
    return w.fbu_packet(send)


@pytest.mark.parametrize(
    "kind", ["wrong_mac", "unknown_cga", "tampered", "no_ack_flags", "no_hoa", "spi", "reactive_redirected"]
)
def test_forged_fbus_change_nothing(pkiset: dict[str, Any], kind: str) -> None:
    w = World(pkiset)
    w.get_key()
    pkt = forged_fbu(w, kind)
    before = w.state()
    acts, out = w.fmip.fbu(pkt, NOW)
    assert out == [] and not any(isinstance(a, Persist) for a in acts)
    assert w.state() == before
    assert sum(v for c, v in w.ard.counters.items() if c.startswith("drop_fbu")) == 1


def test_replayed_fbu_changes_nothing(pkiset: dict[str, Any]) -> None:
    w = World(pkiset)
    w.get_key()
    pkt = w.fbu_packet(w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW))
    _, out = w.fmip.fbu(pkt, NOW)
    assert len(out) == 1
    before = w.state()
    _acts, out = w.fmip.fbu(pkt, NOW + 1)  # the same FBU again: its sequence number is not newer
    assert out == [] and w.state() == before and w.ard.counters["drop_fbu_replayed_seq"] == 1


def test_hack_from_elsewhere_and_hi_from_strangers(pkiset: dict[str, Any]) -> None:
    w = World(pkiset)
    w.get_key()
    _, out = w.fmip.fbu(w.fbu_packet(w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW)), NOW)
    seq = mh.Hi.of(mh.MhMessage.decode(out[0].data)).seq
    hack = mh.MhMessage.decode(mh.message(mh.Hack(seq, 0)).encode(NAR, PAR_GLOBAL))
    before = w.state()
    _acts, sent = w.fmip.hack(IPv6Address("2001:db8:66::1"), hack, NOW)  # not the NAR we asked
    assert sent == [] and w.state() == before
    hi = mh.MhMessage.decode(mh.message(mh.Hi(1, 0)).encode(PAR_GLOBAL, NAR))
    nar = FmipEngine(w.ard, par_peers=frozenset({PAR_GLOBAL}), own_prefixes=(NAR_PREFIX,))
    assert nar.hi(IPv6Address("2001:db8:66::1"), NAR, hi)[1] == []
    _, answer = nar.hi(PAR_GLOBAL, NAR, hi)
    assert mh.Hack.of(mh.MhMessage.decode(answer[0].data)).code == mh.HackCode.NCOA_INVALID  # no NCoA option


def test_hi_timeout_refuses_with_an_authenticated_fback(pkiset: dict[str, Any]) -> None:
    w = World(pkiset)
    w.get_key()
    w.fmip.fbu(w.fbu_packet(w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW)), NOW)
    sends: list[Send] = []
    t = NOW
    for _ in range(6):
        t += 2
        sends += w.fmip.expire(t)[1]
    assert [s.dst for s in sends].count(NAR) == 3  # HI_RETRIES
    fback = next(s for s in sends if s.dst == w.ncoa)
    ev = [a.event for a in w.mn.fback(fback.src, fback.dst, fback.data, t) if isinstance(a, Notify)]
    assert isinstance(ev[0], FastHandover) and ev[0].status == mh.FbackStatus.UNSPECIFIED
    assert not w.fmip.forwarding


def test_prrtadv_with_a_nonce_never_sent_is_dropped(pkiset: dict[str, Any]) -> None:
    w = World(pkiset)
    w.learn_router()
    other = FmipClient(pkiset["mn_key"], (pkiset["ca"].cert,), os.urandom)
    sol = other.rtsolpr(w.router.address, w.pcoa, w.params, NOW)  # a solicitation our MN never sent
    _, adv = w.ard.rtsolpr(sol.data, w.pcoa, w.router.address, 255, now=NOW)
    assert adv is not None
    acts, _ = w.to_mn(adv, w.pcoa)
    assert not w.mn.keys and not any(isinstance(a, Persist) for a in acts)
    assert w.mn.counters["drop_prrtadv_unmatched_nonce"] == 1


def test_prrtadv_signed_by_an_uncertified_key_is_dropped(pkiset: dict[str, Any]) -> None:
    """A router whose path leads to an anchor we do not trust: its RA and PrRtAdv wait for a path that
    never validates; no router, no key."""
    w = World(pkiset, router=pkiset["rogue"])
    acts = w.learn_router()
    assert not any(isinstance(a, Notify) and isinstance(a.event, RouterFound) for a in acts)
    assert any(c.startswith("drop_cpa_path_invalid") for c in w.mn.counters)
    sol = w.mn.rtsolpr(w.router.address, w.pcoa, w.params, NOW)
    _, adv = w.ard.rtsolpr(sol.data, w.pcoa, w.router.address, 255, now=NOW)
    assert adv is not None
    acts, sends = w.to_mn(adv, w.pcoa)
    acts += w.cps_round(sends)
    assert not w.mn.keys and not any(isinstance(a, Persist) for a in acts)


def test_prrtadv_from_the_routers_address_signed_by_another_key(pkiset: dict[str, Any]) -> None:
    """The path is cached, but the PrRtAdv claims the router's address while signed by another key:
    the source is not a CGA of that key, so SEND validation drops it."""
    w = World(pkiset)
    w.get_key()
    w.mn.keys.clear()
    impostor_key = rsa.generate_private_key(65537, 1024)
    der = sendsig.public_der(impostor_key.public_key())
    _addr, params = cga.generate(IPv6Network("fe80::/64"), der, 0, os.urandom)
    impostor = replace(w.router, key=impostor_key, cga_params=params.encode(), address=w.router.address)
    w2 = ArdEngine(router=impostor, rand=os.urandom)
    sol = w.mn.rtsolpr(w.router.address, w.pcoa, w.params, NOW)
    _, adv = w2.rtsolpr(sol.data, w.pcoa, w.router.address, 255, now=NOW)
    assert adv is not None
    acts, _ = w.to_mn(adv, w.pcoa)  # the source is not a CGA of the impostor's key: SEND-invalid
    assert not w.mn.keys and not any(isinstance(a, Persist) for a in acts)
    assert any(c.startswith("drop_nd_") for c in w.mn.counters)


def test_hk_encryption_key_rotates_after_hkepk_handovers(pkiset: dict[str, Any]) -> None:
    w = World(pkiset)
    w.get_key()
    w.mn.hkepk_handovers = 2
    first = w.mn.enc_key
    for _ in range(2):
        w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW)
    w.mn.rtsolpr(w.router.address, w.pcoa, w.params, NOW)
    assert w.mn.enc_key is not first and w.mn.enc_handovers == 0
    assert w.mn.enc_key is not None
    assert sendsig.public_der(w.mn.enc_key.public_key()) != sendsig.public_der(pkiset["mn_key"].public_key())


def test_fback_with_a_bad_mac_is_dropped(pkiset: dict[str, Any]) -> None:
    w = World(pkiset)
    k = w.get_key()
    w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW)
    seq = w.mn._seq
    draft = mh.message(mh.Fback(0, seq, 10), (mh.Badf(0, bytes(12)),))
    bad = hk.authenticator(k.at, os.urandom(32), w.ncoa, PAR_GLOBAL, draft.badf_input())
    data = mh.message(mh.Fback(0, seq, 10), (mh.Badf(0, bad),)).encode(PAR_GLOBAL, w.ncoa)
    acts = w.mn.fback(PAR_GLOBAL, w.ncoa, data, NOW)
    assert not any(isinstance(a, Notify) and isinstance(a.event, FastHandover) for a in acts)
    assert w.mn.counters["drop_fback_bad_mac"] == 1


def test_impostor_serving_the_real_routers_certificate_is_not_certified(pkiset: dict[str, Any]) -> None:
    """An impostor with its own CGA answers our CPS with the genuine router's (public) certificate: the
    path validates, but its key is not the one that signed the RA and PrRtAdv (RFC 5269 §3.3)."""
    rogue = pkiset["rogue"]
    w = World(pkiset, router=replace(rogue, certs=pkiset["par"].certs))
    acts = w.learn_router()
    assert not any(isinstance(a, Notify) and isinstance(a.event, RouterFound) for a in acts)
    assert w.mn.counters["path_validated"] == 1 and w.mn.counters["drop_nd_uncertified_key"] == 1
    sol = w.mn.rtsolpr(w.router.address, w.pcoa, w.params, NOW)
    _, adv = w.ard.rtsolpr(sol.data, w.pcoa, w.router.address, 255, now=NOW)
    assert adv is not None and isinstance(nd.NdMessage.decode(adv).first(nd.HandoverKeyReply), nd.HandoverKeyReply)
    acts, sends = w.to_mn(adv, w.pcoa)
    assert not sends and not w.mn.keys and not any(isinstance(a, Persist) for a in acts)
    assert w.mn.counters["drop_nd_uncertified_key"] == 2


def test_fbu_whose_ncoa_is_on_no_known_nar_prefix(pkiset: dict[str, Any]) -> None:
    """RFC 5568 §6.3 / specs §6.3: the PAR checks the NCoA against its neighbours' prefixes; an unknown
    one gets an authenticated FBack 128, no HI and no forwarding."""
    w = World(pkiset)
    w.get_key()
    stray = IPv6Address("2001:db8:99::5")
    acts, out = w.fmip.fbu(w.fbu_packet(w.mn.fbu(PAR_GLOBAL, w.pcoa, stray, NOW)), NOW)
    assert NAR not in {s.dst for s in out} and not w.fmip.forwarding and not w.fmip.pending
    assert not any(isinstance(a, Persist) and isinstance(a.record, Forwarding) for a in acts)
    fb = next(s for s in out if s.dst == stray)
    ev = [a.event for a in w.mn.fback(fb.src, fb.dst, fb.data, NOW) if isinstance(a, Notify)]
    assert isinstance(ev[0], FastHandover) and ev[0].status == mh.FbackStatus.UNSPECIFIED


def test_unverified_routers_are_bounded(pkiset: dict[str, Any]) -> None:
    """Anyone can form a CGA and sign an RA with it: the MN fetches at most MAX_PATH_FETCHES paths at
    once and drops (counts) the rest instead of keeping state for each."""
    from mobiled.fmip import MAX_PATH_FETCHES

    w = World(pkiset, router=pkiset["rogue"])
    key = pkiset["rogue"].key
    sent = 0
    for _ in range(MAX_PATH_FETCHES + 4):
        addr, params = cga.generate(IPv6Network("fe80::/64"), sendsig.public_der(key.public_key()), 0, os.urandom)
        ard = ArdEngine(router=replace(pkiset["rogue"], address=addr, cga_params=params.encode()), rand=os.urandom)
        ra = ard.router_advertisement(IPv6Address("ff02::1"), b"", NOW)
        _, sends = w.mn.icmp(ra, addr, IPv6Address("ff02::1"), 255, NOW)
        sent += len(sends)
    assert len(w.mn._paths) == MAX_PATH_FETCHES and sent == MAX_PATH_FETCHES
    assert w.mn.counters["drop_nd_too_many_unverified_routers"] == 4


def test_the_mn_renews_its_key_before_hk_lifetime_ends(pkiset: dict[str, Any]) -> None:
    """§3.3: prior to HK-LIFETIME expiring the MN MUST request a new key; the PAR returns the same key
    with the lifetime started again, so the MN stops asking until the next renewal is due."""
    w = World(pkiset)
    k = w.get_key()
    assert w.mn.renewals(NOW, margin=600) == []
    later = k.expires - 300
    assert w.mn.renewals(later, margin=600) == [k]
    sol = w.mn.rtsolpr(IPv6Address(k.router_ll), w.pcoa, w.params, later)
    assert w.mn.renewals(later, margin=600) == []  # one solicitation at a time
    _, adv = w.ard.rtsolpr(sol.data, w.pcoa, w.router.address, 255, now=later)
    assert adv is not None
    acts, _ = w.to_mn(adv, w.pcoa, now=later)
    renewed = [a.record for a in acts if isinstance(a, Persist) and isinstance(a.record, HandoverKey)]
    assert len(renewed) == 1 and renewed[0].key == k.key and renewed[0].expires > k.expires
    assert w.mn.keys[(k.ar, k.cga)].expires == renewed[0].expires
    assert w.mn.renewals(later + 1, margin=600) == []


def test_a_renewal_that_does_not_extend_the_key_is_not_asked_again_at_once(pkiset: dict[str, Any]) -> None:
    """A router that answers a renewal with the old deadline (or not at all) gets the next request only
    after RENEW_BACKOFF, not at every tick: each request costs it an RSA signature."""
    w = World(pkiset)
    k = w.get_key()
    later = k.expires - 300
    sol = w.mn.rtsolpr(IPv6Address(k.router_ll), w.pcoa, w.params, later)
    for n in list(w.mn._sol):  # the solicitation went unanswered: its retransmissions are over
        del w.mn._sol[n]
    assert sol.data and w.mn.renewals(later + 1, margin=600) == []
    assert w.mn.renewals(later + RENEW_BACKOFF, margin=600) == [k]


def test_the_mn_uses_the_at_the_router_returned(pkiset: dict[str, Any]) -> None:
    """§3.2: for an AT it does not support the AR picks one of equal or greater strength; §3.3: the MN
    MUST use the returned AT. Asked for AT 7, the PAR answers AT 1 (HMAC-SHA256-128): the FBU's
    authenticator is 16 octets and verifies at the PAR."""
    w = World(pkiset)
    w.mn.at = 7
    k = w.get_key()
    assert k.at == 1 and w.ard.keys[str(w.pcoa)].at == 1
    send = w.mn.fbu(PAR_GLOBAL, w.pcoa, w.ncoa, NOW)
    pkt = w.fbu_packet(send)
    badf = pkt.mh.options[-1]
    assert isinstance(badf, mh.Badf) and len(badf.authenticator) == hk.ALGORITHMS[1][1]
    _, out = w.fmip.fbu(pkt, NOW)
    assert len(out) == 1 and out[0].dst == NAR  # accepted: HI to the NAR
