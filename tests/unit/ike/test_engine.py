"""In-memory IKEv2 exchanges between our initiator and our responder (explicit `now`, no sockets)."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from mobility.crypto.ikesk import SkSuite, open_message, seal
from mobility.engine import Notify, Program
from mobility.ike.engine import IkeEngine
from mobility.ike.policy import (
    ChildSaInstall,
    ChildSaRemove,
    Credentials,
    Identity,
    IkeDropped,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    Policy,
    ts_from_network,
)
from mobility.ike.proposals import offer, parse_suite
from mobility.ike.sa import IkeSend
from mobility.wire.ikev2 import (
    CP,
    SA,
    SK,
    CfgAttr,
    CfgAttribute,
    ExchangeType,
    Flag,
    Header,
    Message,
    N,
    Protocol,
    TSi,
    TSr,
    UnknownPayload,
)
from mobility.wire.ikev2 import Notify as Nt

GW, MN = ("192.0.2.2", 500), ("198.51.100.7", 500)
PSK = b"lab-psk-not-secret-0123456789abcdef"


def policies(**kw: Any) -> tuple[Policy, Policy]:
    ike = (
        parse_suite("aes128gcm16-prfsha256-x25519", Protocol.IKE),
        parse_suite("aes128-sha256-modp2048", Protocol.IKE),
    )
    esp = (parse_suite("aes128gcm16", Protocol.ESP), parse_suite("aes128-sha256", Protocol.ESP))
    mn = Policy(
        name="home",
        local_id=Identity.parse("mn.example.test"),
        remote_id=Identity.parse("gw.example.test"),
        auth="psk",
        credentials=Credentials(psk=PSK),
        ike_suites=kw.pop("mn_ike", ike),
        esp_suites=esp,
        remote_ts=(ts_from_network("10.100.0.0/24"),),
        cp_request=kw.pop("cp", (CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS),)),
    )
    gw = Policy(
        name="rw",
        local_id=Identity.parse("gw.example.test"),
        remote_id=Identity.parse("mn.example.test"),
        auth="psk",
        credentials=Credentials(psk=kw.pop("gw_psk", PSK)),
        ike_suites=kw.pop("gw_ike", ike),
        esp_suites=esp,
        local_ts=(ts_from_network("10.100.0.0/24"),),
    )
    return mn, gw


def assign(policy: Policy, who: str, cp: CP | None, now: float) -> tuple[list[CfgAttribute], list[Any], list[Any]]:
    return [CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 200, 0, 1]))], [], []


def clock() -> datetime:
    return datetime.now(UTC)  # the lab PKI is issued around the real time


def pair(mn: Policy, gw: Policy, **kw: Any) -> tuple[IkeEngine, IkeEngine]:
    init = IkeEngine(rand=os.urandom, clock=clock)
    resp = IkeEngine(
        rand=os.urandom,
        clock=clock,
        suites=gw.ike_suites,
        lookup=lambda who: gw if who == "mn.example.test" else None,
        assigner=assign,
        local_addr=GW[0],
        **kw,
    )
    return init, resp


def run(init: IkeEngine, resp: IkeEngine, actions: list[Any], now: float = 0.0, rounds: int = 10) -> list[Any]:
    """Carry IkeSend actions between the two engines until nothing is left; return all other actions."""
    seen: list[Any] = []
    for _ in range(rounds):
        sends = [a for a in actions if isinstance(a, IkeSend)]
        seen += [a for a in actions if not isinstance(a, IkeSend)]
        if not sends:
            return seen
        actions = []
        for s in sends:
            if s.dst == GW[0]:
                actions += resp.datagram(s.data, MN[0], s.sport, s.dport, now=now)
            else:
                actions += init.datagram(s.data, GW[0], s.sport, s.dport, now=now)
    raise AssertionError("exchange did not finish")


def events(actions: list[Any], kind: type) -> list[Any]:
    return [a.event for a in actions if isinstance(a, Notify) and isinstance(a.event, kind)] + [
        a.op for a in actions if isinstance(a, Program) and isinstance(a.op, kind)
    ]


def test_psk_exchange_installs_matching_child_sas() -> None:
    mn, gw = policies()
    init, resp = pair(mn, gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    up = events(out, IkeSaEstablished)
    assert len(up) == 2
    kids = events(out, ChildSaInstall)
    assert len(kids) == 2
    a, b = kids[0].sa, kids[1].sa
    assert a.spi_in == b.spi_out and a.spi_out == b.spi_in
    assert a.key_in == b.key_out and a.key_out == b.key_in
    mn_up = next(e for e in up if e.name == "home")
    assert CfgAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes([10, 200, 0, 1])) in mn_up.attributes


def test_wrong_psk_fails_and_installs_nothing() -> None:
    mn, gw = policies(gw_psk=b"another-secret-entirely-0123456789")
    init, resp = pair(mn, gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    assert events(out, ChildSaInstall) == []
    assert events(out, IkeSaEstablished) == []
    assert len(events(out, IkeSaFailed)) == 2


def test_invalid_ke_retry() -> None:
    mn, gw = policies(gw_ike=(parse_suite("aes128-sha256-modp2048", Protocol.IKE),))
    init, resp = pair(mn, gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    assert len(events(out, IkeSaEstablished)) == 2
    assert resp.counters["refused_invalid_ke_payload"] == 1


def test_cookie_under_load() -> None:
    mn, gw = policies()
    init, resp = pair(mn, gw, cookie_threshold=0)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    assert len(events(out, IkeSaEstablished)) == 2
    assert resp.counters["cookie_demanded"] == 1


def test_tampered_message_is_dropped_without_state_change() -> None:
    mn, gw = policies()
    init, resp = pair(mn, gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    init_req = acts[0]
    r1 = resp.datagram(init_req.data, MN[0], 500, 500, now=0.0)
    a1 = init.datagram(r1[0].data, GW[0], 500, 500, now=0.0)
    auth = next(a for a in a1 if isinstance(a, IkeSend))
    bad = bytearray(auth.data)
    bad[-20] ^= 1
    out = resp.datagram(bytes(bad), MN[0], auth.sport, auth.dport, now=0.0)
    assert events(out, IkeDropped)[0].reason == "integrity"
    # the genuine message still works afterwards: nothing changed
    out = run(init, resp, resp.datagram(auth.data, MN[0], auth.sport, auth.dport, now=0.0))
    assert len(events(out, IkeSaEstablished)) == 2


def test_retransmitted_request_gets_cached_response() -> None:
    mn, gw = policies()
    init, resp = pair(mn, gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    r1 = resp.datagram(acts[0].data, MN[0], 500, 500, now=0.0)
    r1b = resp.datagram(acts[0].data, MN[0], 500, 500, now=1.0)
    assert r1[0].data == r1b[0].data
    a1 = init.datagram(r1[0].data, GW[0], 500, 500, now=0.0)
    auth = next(a for a in a1 if isinstance(a, IkeSend))
    r2 = resp.datagram(auth.data, MN[0], auth.sport, auth.dport, now=0.0)
    r2b = resp.datagram(auth.data, MN[0], auth.sport, auth.dport, now=1.0)
    assert [a.data for a in r2b if isinstance(a, IkeSend)] == [a.data for a in r2 if isinstance(a, IkeSend)]
    assert len(events(r2b, ChildSaInstall)) == 0  # not processed twice


def test_retransmission_then_failure() -> None:
    mn, _ = policies()
    init = IkeEngine(rand=os.urandom)
    _, _acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    sent = 1
    failed = []
    now = 0.0
    for _ in range(20):
        d = init.next_deadline()
        if d is None:
            break
        now = d
        out = init.on_timer(now)
        sent += sum(isinstance(a, IkeSend) for a in out)
        failed += events(out, IkeSaFailed)
    assert sent == 1 + mn.timers.tries and len(failed) == 1


# ---- certificates -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    from mobility.lab.pki import issue, make_ca

    ca, rogue = make_ca(), make_ca("rogue CA")
    return {
        "ca": ca,
        "gw": issue(ca, "gw", dns=("gw.example.test",)),
        "mn": issue(ca, "mn", dns=("mn.example.test",), kind="rsa"),
        "mn_other_name": issue(ca, "mn", dns=("someone-else.example.test",)),
        "mn_rogue": issue(rogue, "mn", dns=("mn.example.test",)),
    }


def cert_policies(pki: dict[str, Any], mn_cert: str = "mn") -> tuple[Policy, Policy]:
    mn, gw = policies()
    anchors = (pki["ca"].cert,)
    mn = replace(
        mn,
        auth="pubkey",
        credentials=Credentials(private_key=pki[mn_cert].key, certs=(pki[mn_cert].cert,), anchors=anchors),
    )
    gw = replace(
        gw, auth="pubkey", credentials=Credentials(private_key=pki["gw"].key, certs=(pki["gw"].cert,), anchors=anchors)
    )
    return mn, gw


def test_certificate_exchange(pki: dict[str, Any]) -> None:
    mn, gw = cert_policies(pki)
    init, resp = pair(mn, gw, signatures=True)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    assert len(events(out, IkeSaEstablished)) == 2 and len(events(out, ChildSaInstall)) == 2


@pytest.mark.parametrize("which", ["mn_rogue", "mn_other_name"], ids=["untrusted-ca", "fqdn-not-in-cert"])
def test_bad_initiator_certificate_is_refused(pki: dict[str, Any], which: str) -> None:
    mn, gw = cert_policies(pki, which)
    init, resp = pair(mn, gw, signatures=True)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    assert events(out, ChildSaInstall) == [] and events(out, IkeSaEstablished) == []
    assert all(s["state"] != "established" for s in resp.status())


def test_tampered_auth_payload_is_refused(pki: dict[str, Any]) -> None:
    """A peer with the session keys (so the SK ICV is right) but a forged AUTH value is refused."""
    from mobility.crypto import ikeauth

    mn, gw = cert_policies(pki)
    real_sign = ikeauth.sign

    def forged(key: Any, octets: bytes, **kw: Any) -> Any:
        method, sig = real_sign(key, octets, **kw)
        return method, sig[:-1] + bytes([sig[-1] ^ 1])

    init, resp = pair(mn, gw, signatures=True)
    ikeauth.sign = forged  # type: ignore[assignment]
    try:
        _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
        r1 = resp.datagram(acts[0].data, MN[0], 500, 500, now=0.0)
        a1 = init.datagram(r1[0].data, GW[0], 500, 500, now=0.0)
    finally:
        ikeauth.sign = real_sign  # type: ignore[assignment]
    out = run(init, resp, a1)
    assert events(out, ChildSaInstall) == [] and events(out, IkeSaEstablished) == []
    assert len(events(out, IkeSaFailed)) == 2


# ---- CREATE_CHILD_SA ----------------------------------------------------------------------------


def established() -> tuple[IkeEngine, IkeEngine, bytes, list[Any]]:
    mn, gw = policies()
    init, resp = pair(mn, gw)
    key, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    return init, resp, key, out


def keys_match(a: Any, b: Any) -> bool:
    return a.spi_in == b.spi_out and a.spi_out == b.spi_in and a.key_in == b.key_out and a.key_out == b.key_in


def test_rekey_child_installs_new_pair_and_deletes_old() -> None:
    init, resp, key, out = established()
    old = next(e.sa for e in events(out, ChildSaInstall) if e.sa.name == "home")
    # CREATE_CHILD_SA{N(REKEY_SA), SA, Ni, TSi, TSr} -->  <-- {SA, Nr, TSi, TSr};  INFORMATIONAL{D(ESP)} -->
    out = run(init, resp, init.rekey_child(key, old.spi_in, now=1.0), now=1.0)
    new = events(out, ChildSaInstall)
    assert len(new) == 2 and keys_match(new[0].sa, new[1].sa)
    assert new[0].sa.spi_in != old.spi_in and new[0].sa.key_out != old.key_out
    removed = {e.spi_in for e in events(out, ChildSaRemove)}
    assert old.spi_in in removed and old.spi_out in removed  # both ends dropped the old pair


def test_responder_rekeys_child_too() -> None:
    init, resp, _key, out = established()
    gw_child = next(e.sa for e in events(out, ChildSaInstall) if e.sa.name == "rw")
    (gw_key,) = resp.find("mn.example.test")
    out = run(init, resp, resp.rekey_child(gw_key, gw_child.spi_in, now=1.0), now=1.0)
    new = events(out, ChildSaInstall)
    assert len(new) == 2 and keys_match(new[0].sa, new[1].sa)


def test_new_child_sa() -> None:
    init, resp, key, out = established()
    tsi, tsr = (ts_from_network("10.200.0.1/32"),), (ts_from_network("10.100.0.0/24"),)
    out = run(init, resp, init.create_child(key, tsi, tsr, now=1.0), now=1.0)
    new = events(out, ChildSaInstall)
    assert len(new) == 2 and keys_match(new[0].sa, new[1].sa)


def test_rekey_ike_sa_moves_children_and_keeps_working() -> None:
    init, resp, key, out = established()
    out = run(init, resp, init.rekey_ike(key, now=1.0), now=1.0)
    assert events(out, ChildSaRemove) == []  # Child SAs survive the IKE rekey
    (new_key,) = init.find("gw.example.test")
    assert new_key != key and key not in init.sas
    assert len(resp.find("mn.example.test")) == 1
    # the successor carries requests: a liveness check and a Child SA rekey over the new keys
    assert run(init, resp, init.liveness(new_key, now=2.0), now=2.0) == []
    child = next(iter(init.sas[new_key].children))
    out = run(init, resp, init.rekey_child(new_key, child, now=3.0), now=3.0)
    assert len(events(out, ChildSaInstall)) == 2


def test_delete_ike_sa_removes_children_on_both_sides() -> None:
    init, resp, key, _ = established()
    out = run(init, resp, init.delete(key, now=1.0), now=1.0)
    assert len(events(out, ChildSaRemove)) >= 2 and not init.sas and not resp.sas


def test_delete_unanswered_is_a_deletion_not_a_failure() -> None:
    """A peer that restarted never answers our Delete: after the retransmissions the SA is gone and
    reported deleted (an IkeSaFailed would send a mobile node to its next home agent)."""
    init, _resp, key, _ = established()
    out = init.delete(key, now=1.0)
    assert len(events(out, ChildSaRemove)) >= 1 and len([a for a in out if isinstance(a, IkeSend)]) == 1
    while (d := init.next_deadline()) is not None:
        out += init.on_timer(d)
    assert [e.reason for e in events(out, IkeSaDeleted)] == ["deleted (no answer after 6 transmissions)"]
    assert not events(out, IkeSaFailed) and not init.sas


def test_initiator_rekeys_on_its_timers() -> None:
    mn, gw = policies()
    mn = replace(mn, timers=replace(mn.timers, rekey_s=100.0, child_rekey_s=50.0))
    init, resp = pair(mn, gw)
    key, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    run(init, resp, acts)
    assert init.next_deadline() == 50.0  # the Child SA is due first
    out = run(init, resp, init.on_timer(50.0), now=50.0)
    assert len(events(out, ChildSaInstall)) == 2 and len(events(out, ChildSaRemove)) == 2
    assert init.next_deadline() == 100.0
    out = run(init, resp, init.on_timer(100.0), now=100.0)
    (new_key,) = init.find("gw.example.test")
    assert new_key != key and len(resp.sas) == 1
    # the Child SA due at 100 was queued behind the IKE rekey: the successor picks it up
    assert init.next_deadline() == 100.0
    out = run(init, resp, init.on_timer(100.0), now=100.0)
    assert len(events(out, ChildSaInstall)) == 2
    assert init.next_deadline() == 150.0  # that Child SA again, the IKE SA at 200
    assert resp.next_deadline() is None  # the responder leaves rekeying to the initiator


def test_cookie_secret_rotates_and_old_cookies_expire() -> None:
    """§2.6: a cookie made with the previous secret is still honoured; one two rotations old is not
    (treated as absent: a fresh COOKIE is demanded and no state is kept)."""
    mn, gw = policies()
    init, resp = pair(mn, gw, cookie_threshold=0)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    first = acts[0].data
    (reply,) = resp.datagram(first, MN[0], 500, 500, now=0.0)
    retry = next(a for a in init.datagram(reply.data, GW[0], 500, 500, now=0.0) if isinstance(a, IkeSend)).data
    ok = resp.datagram(retry, MN[0], 500, 500, now=130.0)  # the secret rotated at 120 s
    assert len(resp.sas) == 1 and ok[0].data != reply.data  # accepted with the previous secret
    init2, resp2 = pair(mn, gw, cookie_threshold=0)
    _, acts = init2.initiate(mn, GW, (MN[0], 500), now=0.0)
    (reply,) = resp2.datagram(acts[0].data, MN[0], 500, 500, now=0.0)
    retry = next(a for a in init2.datagram(reply.data, GW[0], 500, 500, now=0.0) if isinstance(a, IkeSend)).data
    resp2.datagram(acts[0].data, MN[0], 501, 500, now=130.0)
    resp2.datagram(acts[0].data, MN[0], 502, 500, now=260.0)
    again = resp2.datagram(retry, MN[0], 500, 500, now=260.0)
    assert resp2.sas == {} and resp2.counters["cookie_demanded"] == 4 and len(again) == 1


# ---- refusals of authenticated but unacceptable messages (keys from the engine's own export) ---------

GCM128 = SkSuite(20, 128)  # the first suite of `policies()`: aes128gcm16-prfsha256-x25519


def _reseal(eng: IkeEngine, data: bytes, edit: Any, *, from_initiator: bool) -> bytes:
    """Decrypt one of our messages with the engine's exported keys, edit its payloads, seal it again."""
    msg = Message.decode(data)
    (k,) = [s for s in eng.status(secrets=True) if s["spi_i"] == msg.header.spi_i.hex()]
    e_key = bytes.fromhex(str(k["sk_ei" if from_initiator else "sk_er"]))
    sk = msg.payloads[-1]
    assert isinstance(sk, SK)
    inner = edit(open_message(GCM128, e_key, b"", data, sk))
    return seal(GCM128, e_key, b"", msg.header, inner, os.urandom(8))


def test_critical_unknown_payload_in_ike_sa_init_gets_the_notify_and_no_state() -> None:
    mn, gw = policies()
    init, resp = pair(mn, gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    msg = Message.decode(acts[0].data)
    bad = Message(msg.header, [*msg.payloads, UnknownPayload(200, b"future", critical=True)]).encode()
    (reply,) = resp.datagram(bad, MN[0], 500, 500, now=0.0)
    answer = Message.decode(reply.data)
    assert [n.type for n in answer.payloads if isinstance(n, N)] == [Nt.UNSUPPORTED_CRITICAL_PAYLOAD]
    assert resp.sas == {}


def test_critical_unknown_payload_inside_sk_is_refused_and_the_sa_stays() -> None:
    init, resp, key, _ = established()
    probe = init.liveness(key, now=1.0)[0]
    bad = _reseal(init, probe.data, lambda pl: [*pl, UnknownPayload(200, b"x", critical=True)], from_initiator=True)
    (reply,) = [a for a in resp.datagram(bad, MN[0], 500, 500, now=1.0) if isinstance(a, IkeSend)]
    (k,) = resp.status(secrets=True)
    sk = Message.decode(reply.data).payloads[-1]
    assert isinstance(sk, SK)
    inner = open_message(GCM128, bytes.fromhex(str(k["sk_er"])), b"", reply.data, sk)
    assert [n.type for n in inner if isinstance(n, N)] == [Nt.UNSUPPORTED_CRITICAL_PAYLOAD]
    assert k["state"] == "established"


def counting_pair(gw: Policy) -> tuple[IkeEngine, IkeEngine, list[str]]:
    """Initiator, responder whose address assigner records each identity it is asked for, and that record."""
    calls: list[str] = []

    def counting(policy: Policy, who: str, cp: CP | None, now: float) -> Any:
        calls.append(who)
        return assign(policy, who, cp, now)

    init = IkeEngine(rand=os.urandom, clock=clock)
    resp = IkeEngine(
        rand=os.urandom, clock=clock, suites=gw.ike_suites, lookup=lambda who: gw, assigner=counting, local_addr=GW[0]
    )
    return init, resp, calls


def test_auth_request_missing_traffic_selectors_takes_no_lease() -> None:
    mn, gw = policies()
    init, resp, calls = counting_pair(gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    (r1,) = resp.datagram(acts[0].data, MN[0], 500, 500, now=0.0)
    (auth,) = [a for a in init.datagram(r1.data, GW[0], 500, 500, now=0.0) if isinstance(a, IkeSend)]
    bad = _reseal(init, auth.data, lambda pl: [p for p in pl if not isinstance(p, TSi)], from_initiator=True)
    out = resp.datagram(bad, MN[0], auth.sport, auth.dport, now=0.0)
    assert events(out, IkeDropped)[0].reason == "malformed" and calls == [] and events(out, IkeSaEstablished) == []
    out = run(init, resp, resp.datagram(auth.data, MN[0], auth.sport, auth.dport, now=0.0))
    assert calls == ["mn.example.test"] and len(events(out, IkeSaEstablished)) == 2


def test_malformed_auth_response_leaves_the_initiator_waiting() -> None:
    mn, gw = policies()
    init, resp = pair(mn, gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    (r1,) = resp.datagram(acts[0].data, MN[0], 500, 500, now=0.0)
    (auth,) = [a for a in init.datagram(r1.data, GW[0], 500, 500, now=0.0) if isinstance(a, IkeSend)]
    (r2,) = [a for a in resp.datagram(auth.data, MN[0], auth.sport, auth.dport, now=0.0) if isinstance(a, IkeSend)]
    bad = _reseal(resp, r2.data, lambda pl: [p for p in pl if not isinstance(p, TSr)], from_initiator=False)
    out = init.datagram(bad, GW[0], r2.sport, r2.dport, now=0.0)
    assert events(out, IkeDropped)[0].reason == "malformed" and events(out, IkeSaEstablished) == []
    assert init.status()[0]["state"] == "expect-auth-response" and init.next_deadline() is not None
    out = init.datagram(r2.data, GW[0], r2.sport, r2.dport, now=0.0)
    assert len(events(out, IkeSaEstablished)) == 1 and len(events(out, ChildSaInstall)) == 1


# ---- review: unauthenticated input, authorization of addresses (RFC 5026 §9.2) -------------------------


def test_forged_ike_sa_init_error_changes_nothing() -> None:
    """RFC 7296 §2.21.1: an unprotected error notify may be forged; the initiator keeps waiting."""
    mn, gw = policies()
    init, resp = pair(mn, gw)
    key, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    req = Message.decode(acts[0].data).header
    before = init.status()
    for note in (N(Nt.NO_PROPOSAL_CHOSEN), N(Nt.INVALID_KE_PAYLOAD, (99).to_bytes(2, "big"))):
        h = Header(req.spi_i, bytes(8), 0, ExchangeType.IKE_SA_INIT, Flag.RESPONSE, 0)
        out = init.datagram(Message(h, [note]).encode(), "203.0.113.66", 500, 500, now=0.1)
        assert events(out, IkeDropped)[0].reason == "unauthenticated" and events(out, IkeSaFailed) == []
    assert init.status() == before and key in init.sas
    assert len(events(run(init, resp, acts), IkeSaEstablished)) == 2  # the genuine exchange still completes


def test_a_different_request_under_an_answered_message_id_is_not_answered() -> None:
    """The retransmission cache answers only the identical request, never any datagram with the right
    SPIs and message ID (which would make us send, and amplify, to a spoofed source)."""
    mn, gw = policies()
    init, resp = pair(mn, gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    r1 = resp.datagram(acts[0].data, MN[0], 500, 500, now=0.0)
    (auth,) = [a for a in init.datagram(r1[0].data, GW[0], 500, 500, now=0.0) if isinstance(a, IkeSend)]
    resp.datagram(auth.data, MN[0], auth.sport, auth.dport, now=0.0)
    garbage = bytearray(auth.data)
    garbage[-1] ^= 1
    out = resp.datagram(bytes(garbage), "203.0.113.99", auth.sport, auth.dport, now=1.0)
    assert not [a for a in out if isinstance(a, IkeSend)] and events(out, IkeDropped)[0].reason == "unexpected"
    again = resp.datagram(auth.data, MN[0], auth.sport, auth.dport, now=2.0)
    assert len([a for a in again if isinstance(a, IkeSend)]) == 1  # the genuine retransmission still is


HOME = ts_from_network("fd00:200::/64")


def home_prefix_pair(owned: dict[str, str]) -> tuple[IkeEngine, IkeEngine, bytes, list[str]]:
    """A home agent that hands out the home prefix fd00:200::/64 and authorizes autoconfigured
    addresses with `owned` (address -> identity) standing in for its pool."""
    mn, gw = policies(cp=(CfgAttribute(CfgAttr.MIP6_HOME_PREFIX),))
    mn = replace(mn, remote_ts=(ts_from_network("10.100.0.0/24"),))
    claims: list[str] = []

    def assign_prefix(policy: Policy, who: str, cp: CP | None, now: float) -> Any:
        value = (86400).to_bytes(4, "big") + HOME.start.packed + bytes([64])
        return [CfgAttribute(CfgAttr.MIP6_HOME_PREFIX, value)], [], []

    def claim(policy: Policy, who: str, address: Any, now: float) -> list[Any] | None:
        claims.append(str(address))
        if owned.get(str(address), who) != who:
            return None
        owned[str(address)] = who
        return []

    init = IkeEngine(rand=os.urandom, clock=clock)
    resp = IkeEngine(
        rand=os.urandom, clock=clock, suites=gw.ike_suites, lookup=lambda who: gw, assigner=assign_prefix,
        claimer=claim, local_addr=GW[0],
    )  # fmt: skip
    key, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    run(init, resp, acts)
    return init, resp, key, claims


def test_child_sa_for_another_nodes_home_address_or_the_whole_prefix_is_refused() -> None:
    init, resp, key, claims = home_prefix_pair({"fd00:200::5": "other.example.test"})
    (gw_key,) = resp.find("mn.example.test")
    children_before = set(resp.sas[gw_key].children)
    tsr = (ts_from_network("10.100.0.0/24"),)
    for tsi in ((ts_from_network("fd00:200::5/128"),), (HOME,)):
        out = run(init, resp, init.create_child(key, tsi, tsr, now=1.0), now=1.0)
        assert events(out, ChildSaInstall) == [] and set(resp.sas[gw_key].children) == children_before
    assert claims == ["fd00:200::5"]  # the prefix-wide selector is not even a candidate
    # its own autoconfigured address is authorized (claimed) and gets its Child SA
    out = run(init, resp, init.create_child(key, (ts_from_network("fd00:200::9/128"),), tsr, now=2.0), now=2.0)
    assert len(events(out, ChildSaInstall)) == 2 and claims[-1] == "fd00:200::9"


def test_responder_without_assigned_addresses_or_remote_ts_installs_no_child() -> None:
    """Fail closed: a policy that says nothing about the peer's side allows no Child SA."""
    mn, gw = policies()
    init = IkeEngine(rand=os.urandom, clock=clock)
    resp = IkeEngine(
        rand=os.urandom, clock=clock, suites=gw.ike_suites, lookup=lambda who: gw,
        assigner=lambda p, w, cp, now: ([], [], []), local_addr=GW[0],
    )  # fmt: skip
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    assert len(events(out, IkeSaEstablished)) == 2 and events(out, ChildSaInstall) == []


def test_use_assigned_hoa_is_status_not_error() -> None:
    """RFC 5026 §5.3.2: with USE_ASSIGNED_HoA both sides install the Child SA for the assigned address."""
    mn, gw = policies(cp=(CfgAttribute(CfgAttr.MIP6_HOME_PREFIX),))

    def assign_hoa(policy: Policy, who: str, cp: CP | None, now: float) -> Any:
        return (
            [CfgAttribute(CfgAttr.INTERNAL_IP6_ADDRESS, HOME.start.packed[:15] + b"\x07" + b"\x40")],
            [N(Nt.USE_ASSIGNED_HOA)],
            [],
        )

    init = IkeEngine(rand=os.urandom, clock=clock)
    resp = IkeEngine(
        rand=os.urandom, clock=clock, suites=gw.ike_suites, lookup=lambda who: gw, assigner=assign_hoa,
        local_addr=GW[0],
    )  # fmt: skip
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    up = events(out, IkeSaEstablished)
    assert len(up) == 2 and any(Nt.USE_ASSIGNED_HOA in e.notifies for e in up)
    assert len(events(out, ChildSaInstall)) == 2


def test_ike_rekey_answer_with_a_suite_we_did_not_offer_is_dropped() -> None:
    init, resp, key, _ = established()
    req = init.rekey_ike(key, now=1.0)
    (send,) = [a for a in req if isinstance(a, IkeSend)]
    (answer,) = [a for a in resp.datagram(send.data, MN[0], send.sport, send.dport, now=1.0) if isinstance(a, IkeSend)]
    weak = parse_suite("aes256gcm16-prfsha384-x25519", Protocol.IKE)

    def downgrade(pl: list[Any]) -> list[Any]:
        sa = next(p for p in pl if isinstance(p, SA))
        prop = offer([weak], Protocol.IKE, sa.proposals[0].spi)[0]
        return [SA((prop,)) if isinstance(p, SA) else p for p in pl]

    bad = _reseal(resp, answer.data, downgrade, from_initiator=False)
    before = init.status()
    out = init.datagram(bad, GW[0], answer.sport, answer.dport, now=1.0)
    assert events(out, IkeDropped)[0].reason == "malformed" and init.status() == before and key in init.sas


def test_wrong_psk_takes_no_lease() -> None:
    """RFC 5026 §9.2 / STYLE: the address pool is asked only after the initiator authenticated."""
    mn, gw = policies(gw_psk=b"another-secret-of-enough-length-0123")
    init, resp, calls = counting_pair(gw)
    _, acts = init.initiate(mn, GW, (MN[0], 500), now=0.0)
    out = run(init, resp, acts)
    assert events(out, IkeSaEstablished) == [] and events(out, ChildSaInstall) == [] and calls == []


def test_esp_integrity_other_than_sha256_is_refused_in_configuration() -> None:
    """The ESP data planes are keyed for HMAC-SHA-256-128 only: a sha384/sha512 ESP suite would install
    keys the peer does not use, so configuration refuses it."""
    for bad in ("aes128-sha384", "aes256-sha512"):
        with pytest.raises(ValueError, match="ESP integrity"):
            parse_suite(bad, Protocol.ESP)
    assert parse_suite("aes256-sha384-ecp256", Protocol.IKE)  # IKE itself supports them
