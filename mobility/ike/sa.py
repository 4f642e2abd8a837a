"""One IKE SA (RFC 7296): its keys, message IDs, retransmissions and the exchanges it runs in either
role. The multiplexer in mobility.ike.engine hands it authenticated-or-not messages by SPI.

Order of work on every received message (STYLE.md §2.4): parse, check the message ID window,
verify the ICV, then authenticate (AUTH, certificates), and only then change state. A message that
fails any step changes nothing and is reported as `IkeDropped`.

This module holds IKE_SA_INIT in both roles (cookies §2.6, INVALID_KE_PAYLOAD retry §1.2, NAT
detection §2.23) and the authentication steps; IKE_AUTH and INFORMATIONAL are in `exchanges`,
CREATE_CHILD_SA in `child`. Certificate validation needs wall-clock time: the shell passes `clock`
(the engine never reads the clock itself); without one, certificate authentication fails closed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv6Address, ip_address
from typing import Any

from mobility.crypto import ikeauth
from mobility.crypto.esp import IntegrityError
from mobility.crypto.ikeprf import DH_GROUPS, IkeKeys, Prf, ike_keys, natd_hash, skeyseed
from mobility.crypto.ikesk import SkSuite, open_message, seal
from mobility.dataplane.sa import Cipher, EspSaPair, Integ, Mode
from mobility.engine import Action, IkeSend, Notify, Program
from mobility.ike import proposals as props
from mobility.ike.policy import (
    ChildSaRemove,
    IkeSaDeleted,
    IkeSaFailed,
    Policy,
    ts_networks,
)
from mobility.wire.buffer import DecodeError
from mobility.wire.ikev2 import (
    AUTH,
    CERT,
    CERTREQ,
    CP,
    KE,
    SA,
    SK,
    CfgAttribute,
    ExchangeType,
    Flag,
    Header,
    IDi,
    Message,
    N,
    Nonce,
    Payload,
    PayloadType,
    Protocol,
    TransformType,
)
from mobility.wire.ikev2 import (
    Notify as Nt,
)

ZERO_SPI = bytes(8)
STATUS_OF_INTEREST = (Nt.USE_ASSIGNED_HOA, Nt.MOBIKE_SUPPORTED, Nt.USE_TRANSPORT_MODE)


class State(enum.Enum):
    EXPECT_INIT_RESPONSE = "expect-init-response"
    EXPECT_AUTH_REQUEST = "expect-auth-request"
    EXPECT_AUTH_RESPONSE = "expect-auth-response"
    ESTABLISHED = "established"
    DELETING = "deleting"
    DEAD = "dead"


class Unauthenticated(ValueError):
    """An unprotected message that may be forged (an error notify in an IKE_SA_INIT response): it is
    dropped and counted, nothing changes (RFC 7296 §2.21.1)."""


class Refused(Exception):
    """A request we answer with an error notify (and no state change)."""

    def __init__(self, notify: Nt, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.notify, self.reason, self.data = notify, reason, data


@dataclass(slots=True)
class Pending:
    data: bytes
    mid: int
    exchange: int
    sent: int
    deadline: float
    kind: str = ""  # what the answer completes: "delete", "dpd", "child", "rekey_ike", "delete_child"
    ctx: Any = None


# Responder hook: (policy, peer identity, CFG_REQUEST or None, now) -> (reply attributes, notifies, actions)
Assigner = Callable[[Policy, str, CP | None, float], tuple[list[CfgAttribute], list[N], list[Action]]]
Releaser = Callable[[Policy, str, bytes, float], list[Action]]
# RFC 5026 §9.2: may this identity use this address of the home prefix? Persist actions if yes, None if not
Claimer = Callable[[Policy, str, IPv6Address, float], list[Action] | None]


class IkeSaCore:
    """State, keys and plumbing; the exchanges are in mobility.ike.exchanges.IkeSa."""

    def __init__(
        self,
        *,
        initiator: bool,
        spi_i: bytes,
        rand: Callable[[int], bytes],
        local: tuple[str, int],
        peer: tuple[str, int],
        policy: Policy | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.initiator, self.rand, self.policy = initiator, rand, policy
        self.spi_i, self.spi_r = spi_i, (ZERO_SPI if initiator else rand(8))
        self.local, self.peer = local, peer
        self.clock = clock
        self.state = State.EXPECT_INIT_RESPONSE if initiator else State.EXPECT_AUTH_REQUEST
        self.ni = self.nr = b""
        self.dh_group, self.ke_pub = 0, b""
        self.dh_priv: object = None
        self.suite: props.Suite | None = None
        self.prf = Prf(5)
        self.sk: SkSuite | None = None
        self.keys: IkeKeys | None = None
        self.init_req = self.init_resp = b""
        self.cookie = b""
        self.retries = 0
        self.next_mid = 0  # our next request
        self.peer_mid = 0  # the peer's next request
        self.last_response: tuple[int, bytes] | None = None
        self.last_request: bytes = b""  # SHA-256 of the request last_response answers
        self.pending: Pending | None = None
        self.use_4500 = local[1] == 4500
        self.nat_local = self.nat_remote = False
        self.peer_hashes: frozenset[int] = frozenset()
        self.remote_id = ""
        self.children: dict[int, EspSaPair] = {}
        self.child_spi = 0
        self.attributes: tuple[CfgAttribute, ...] = ()
        self.created = 0.0
        self.assigner: Assigner | None = None
        self.releaser: Releaser | None = None
        self.claimer: Claimer | None = None
        self.lookup: Callable[[str], Policy | None] | None = None
        self.rekeyed = False
        self.up_at = 0.0
        self.rekeying = False  # a timer-driven IKE SA rekey is under way
        self.spawned: list[Any] = []  # IKE SAs created by a rekey, picked up by the engine
        self.queue: list[Callable[[float], list[Action]]] = []  # our requests waiting for the window (§2.3)

    # ---- plumbing --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.policy.name if self.policy else "?"

    def _flags(self, response: bool) -> int:
        return (Flag.INITIATOR if self.initiator else 0) | (Flag.RESPONSE if response else 0)

    def _send(self, data: bytes) -> IkeSend:
        return IkeSend(self.peer[0], self.peer[1], 4500 if self.use_4500 else self.local[1], data)

    def _protect(self, exchange: int, mid: int, response: bool, payloads: list[Payload]) -> bytes:
        assert self.keys is not None and self.sk is not None
        h = Header(self.spi_i, self.spi_r, PayloadType.SK, exchange, self._flags(response), mid)
        k = self.keys
        sk_e, sk_a = (k.sk_ei, k.sk_ai) if self.initiator else (k.sk_er, k.sk_ar)
        return seal(self.sk, sk_e, sk_a, h, payloads, self.rand(self.sk.iv_len))

    def _unprotect(self, data: bytes, msg: Message) -> list[Payload]:
        if self.keys is None or self.sk is None or not msg.payloads or not isinstance(msg.payloads[-1], SK):
            raise IntegrityError("no SK payload")
        k = self.keys
        sk_e, sk_a = (k.sk_er, k.sk_ar) if self.initiator else (k.sk_ei, k.sk_ai)
        return open_message(self.sk, sk_e, sk_a, data, msg.payloads[-1])

    def _request(
        self, exchange: int, payloads: list[Payload], now: float, kind: str = "", ctx: Any = None
    ) -> list[Action]:
        data = self._protect(exchange, self.next_mid, False, payloads)
        self.pending = Pending(data, self.next_mid, exchange, 1, now + self._timeout(0), kind, ctx)
        self.next_mid += 1
        return [self._send(data)]

    def _respond(self, exchange: int, mid: int, payloads: list[Payload]) -> IkeSend:
        data = self._protect(exchange, mid, True, payloads)
        self.last_response = (mid, data)
        self.peer_mid = mid + 1
        return self._send(data)

    def _timeout(self, n: int) -> float:
        t = self.policy.timers if self.policy else None
        return (t.timeout_s if t else 4.0) * (t.base if t else 1.8) ** n

    def deadline(self) -> float | None:
        if self.pending is not None:
            return self.pending.deadline
        if self.state == State.EXPECT_AUTH_REQUEST and self.policy is None:
            return self.created + 30.0
        return None

    def on_timer(self, now: float) -> list[Action]:
        p = self.pending
        if p is None:
            if self.state == State.EXPECT_AUTH_REQUEST and now >= self.created + 30.0:
                self.state = State.DEAD  # half-open responder SA timed out
            return []
        if now < p.deadline:
            return []
        tries = self.policy.timers.tries if self.policy else 5
        if p.sent > tries:
            if self.state == State.DELETING:  # we were closing it anyway: deleted, not failed (§1.4.1)
                return self._gone(f"deleted (no answer after {p.sent} transmissions)")
            return self._fail(f"no response after {p.sent} transmissions", notify_peer=False)
        p.deadline = now + self._timeout(p.sent)
        p.sent += 1
        return [self._send(p.data)]

    def _fail(self, reason: str, *, notify_peer: bool) -> list[Action]:
        self.state = State.DEAD
        self.pending = None
        out: list[Action] = [Program(ChildSaRemove(self.spi_i, spi)) for spi in self.children]
        out.append(Notify(IkeSaFailed(self.name, self.peer[0], reason)))
        return out + self._release()

    def _gone(self, reason: str) -> list[Action]:
        self.state = State.DEAD
        self.pending = None
        out: list[Action] = [Program(ChildSaRemove(self.spi_i, s)) for s in self.children]
        self.children.clear()
        if not self.rekeyed:
            out.append(Notify(IkeSaDeleted(self.name, self.spi_i, self.remote_id, reason)))
        return out + self._release()

    def _release(self) -> list[Action]:
        if self.rekeyed:
            return []  # the identity lives on in the new IKE SA (§2.18)
        if self.releaser is None or self.policy is None or not self.remote_id:
            return []
        return self.releaser(self.policy, self.remote_id, self.spi_i, 0.0)

    # ---- IKE_SA_INIT ------------------------------------------------------------------------

    def _dh_new(self, group: int) -> None:
        self.dh_group = group
        self.dh_priv, self.ke_pub = DH_GROUPS[group].generate(self.rand)

    def _natd(self, spi_r: bytes, fake_source: bool) -> list[Payload]:
        src = natd_hash(self.spi_i, spi_r, ip_address(self.local[0]).packed, self.local[1])
        if fake_source:
            src = self.rand(20)  # RFC 7296 §2.23 permits forcing encapsulation; strongSwan's encap=yes
        dst = natd_hash(self.spi_i, spi_r, ip_address(self.peer[0]).packed, self.peer[1])
        return [N(Nt.NAT_DETECTION_SOURCE_IP, src), N(Nt.NAT_DETECTION_DESTINATION_IP, dst)]

    def start(self, now: float) -> list[Action]:
        """Initiator: send IKE_SA_INIT (RFC 7296 §1.2)."""
        assert self.policy is not None
        self.created = now
        self._dh_new(self.policy.ike_suites[0].dh or 19)
        self.ni = self.rand(32)
        return self._send_init(now)

    def _send_init(self, now: float) -> list[Action]:
        assert self.policy is not None
        pl: list[Payload] = [N(Nt.COOKIE, self.cookie)] if self.cookie else []
        pl += [SA(props.offer(list(self.policy.ike_suites), Protocol.IKE)), KE(self.dh_group, self.ke_pub)]
        pl += [Nonce(self.ni), *self._natd(ZERO_SPI, self.policy.force_encap)]
        if self.policy.auth == "pubkey":
            pl.append(N(Nt.SIGNATURE_HASH_ALGORITHMS, b"\x00\x02\x00\x03\x00\x04"))
        h = Header(self.spi_i, ZERO_SPI, 0, ExchangeType.IKE_SA_INIT, Flag.INITIATOR, 0)
        self.init_req = Message(h, pl).encode()
        self.pending = Pending(self.init_req, 0, ExchangeType.IKE_SA_INIT, 1, now + self._timeout(0))
        return [self._send(self.init_req)]

    def on_init_response(self, data: bytes, msg: Message, now: float) -> list[Action]:
        assert self.policy is not None
        nts = msg.notifies()
        if Nt.COOKIE in nts and self.retries < 3:  # §2.6: resend with the cookie first
            self.retries += 1
            self.cookie = nts[Nt.COOKIE].data
            return self._send_init(now)
        if Nt.INVALID_KE_PAYLOAD in nts and self.retries < 3:
            want = int.from_bytes(nts[Nt.INVALID_KE_PAYLOAD].data[:2], "big")
            if want not in {s.dh for s in self.policy.ike_suites} or want == self.dh_group:
                raise Unauthenticated(f"INVALID_KE_PAYLOAD for D-H group {want}, which we cannot use")
            self.retries += 1
            self._dh_new(want)  # §1.3: retry with the group asked for, full proposal list again
            return self._send_init(now)
        errors = [n for n in nts if n < 16384]
        if errors:
            # §2.21.1: an unprotected error may be forged; keep waiting, the retransmission limit decides
            raise Unauthenticated(f"IKE_SA_INIT refused: {_notify_name(errors[0])}")
        sa, ke, nonce = _one(msg, SA), _one(msg, KE), _one(msg, Nonce)
        if msg.header.spi_r == ZERO_SPI or len(sa.proposals) != 1 or ke.group != self.dh_group:
            raise DecodeError("ikev2", "sa", 0, "IKE_SA_INIT response without one proposal or with another group")
        suite = props.suite_of(sa.proposals[0])
        if not props.offered(suite, self.policy.ike_suites):
            raise DecodeError("ikev2", "sa", 0, "responder chose a suite we did not offer")
        g_ir = DH_GROUPS[self.dh_group].shared(self.dh_priv, ke.data)  # DhError: nothing changed yet
        self.spi_r, self.nr, self.init_resp = msg.header.spi_r, nonce.data, data
        self._derive(suite, g_ir)
        self._check_natd(nts)
        self.pending = None
        self.peer_mid, self.next_mid = 0, 1
        if (self.nat_local or self.nat_remote) and self.policy.follow_nat:
            self.use_4500 = True  # §2.23: move to 4500 from IKE_AUTH on
            self.peer = (self.peer[0], 4500)
        return self._send_auth(now)

    def _send_auth(self, now: float) -> list[Action]:
        raise NotImplementedError

    def _derive(self, suite: props.Suite, g_ir: bytes) -> None:
        prf_t, encr, integ = (
            suite.get(TransformType.PRF),
            suite.get(TransformType.ENCR),
            suite.get(TransformType.INTEG),
        )
        assert prf_t is not None and encr is not None and encr.key_length is not None
        self.suite, self.prf = suite, Prf(prf_t.id)
        self.sk = SkSuite(encr.id, encr.key_length, integ.id if integ else None)
        seed = skeyseed(self.prf, self.ni, self.nr, g_ir)
        spis = self.spi_i + self.spi_r
        self.keys = ike_keys(self.prf, seed, self.ni + self.nr + spis, self.sk.integ_key_len, self.sk.encr_key_len)

    def _check_natd(self, nts: dict[int, N]) -> None:
        src, dst = nts.get(Nt.NAT_DETECTION_SOURCE_IP), nts.get(Nt.NAT_DETECTION_DESTINATION_IP)
        if src is None or dst is None:
            return
        spi_r = self.spi_r if self.initiator else ZERO_SPI
        mine = natd_hash(self.spi_i, spi_r, ip_address(self.local[0]).packed, self.local[1])
        theirs = natd_hash(self.spi_i, spi_r, ip_address(self.peer[0]).packed, self.peer[1])
        self.nat_local = dst.data != mine  # we are behind a NAT: keepalives, 4500
        self.nat_remote = src.data != theirs  # the peer is behind a NAT (or forces encapsulation)

    def respond_init(
        self, data: bytes, msg: Message, suites: list[props.Suite], now: float, hashes: bool
    ) -> list[Action]:
        """Responder: choose a suite, do D-H, answer (RFC 7296 §1.2). Raises Refused."""
        sa, ke, nonce = _one(msg, SA), _one(msg, KE), _one(msg, Nonce)
        pick = props.choose(sa.proposals, suites, Protocol.IKE, ke.group)
        if pick is None:
            raise Refused(Nt.NO_PROPOSAL_CHOSEN, "no acceptable IKE proposal")
        prop, suite = pick
        if suite.dh != ke.group:
            raise Refused(Nt.INVALID_KE_PAYLOAD, f"KE group {ke.group}", (suite.dh or 0).to_bytes(2, "big"))
        self.created, self.ni, self.init_req = now, nonce.data, data
        nts = msg.notifies()
        if Nt.SIGNATURE_HASH_ALGORITHMS in nts:
            raw = nts[Nt.SIGNATURE_HASH_ALGORITHMS].data
            self.peer_hashes = frozenset(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2))
        self._dh_new(suite.dh or 0)
        self.nr = self.rand(32)
        self._derive(suite, DH_GROUPS[self.dh_group].shared(self.dh_priv, ke.data))
        self._check_natd(nts)
        if self.nat_remote or self.local[1] == 4500:
            self.use_4500 = True
        pl: list[Payload] = [
            SA((props.selected(prop, suite, b""),)),
            KE(self.dh_group, self.ke_pub),
            Nonce(self.nr),
            *self._natd(self.spi_r, fake_source=True),
        ]
        if hashes:
            pl += [CERTREQ(4, b""), N(Nt.SIGNATURE_HASH_ALGORITHMS, b"\x00\x02\x00\x03\x00\x04")]
        h = Header(self.spi_i, self.spi_r, 0, ExchangeType.IKE_SA_INIT, Flag.RESPONSE, 0)
        self.init_resp = Message(h, pl).encode()
        self.peer_mid, self.last_response = 1, (0, self.init_resp)
        return [IkeSend(self.peer[0], self.peer[1], self.local[1], self.init_resp)]

    # ---- authentication --------------------------------------------------------------------

    def _auth(self, id_body: bytes, *, ours: bool) -> bytes:
        """RealMessage | Nonce | prf(SK_p, ID') for our AUTH (ours) or the peer's (RFC 7296 §2.15)."""
        assert self.keys is not None
        mine_is_i = self.initiator == ours
        real = self.init_req if mine_is_i else self.init_resp
        nonce = self.nr if mine_is_i else self.ni
        sk_p = self.keys.sk_pi if mine_is_i else self.keys.sk_pr
        return ikeauth.signed_octets(real, nonce, self.prf, sk_p, id_body)

    def _our_auth(self, policy: Policy, id_payload: IDi) -> list[Payload]:
        octets = self._auth(id_payload.body(), ours=True)
        cred = policy.credentials
        if policy.auth == "psk":
            assert cred.psk is not None
            return [AUTH(ikeauth.AuthMethod.SHARED_KEY, ikeauth.psk_auth(self.prf, cred.psk, octets))]
        method, sig = ikeauth.sign(cred.private_key, octets, hashes_ok=self.peer_hashes)
        return [AUTH(method, sig)]

    def _verify_peer(self, policy: Policy, idp: IDi, auth: AUTH, certs: list[CERT]) -> None:
        """Raise ikeauth.AuthError unless the peer proved `idp` (RFC 7296 §2.15, RFC 5026 §9.5)."""
        octets = self._auth(idp.body(), ours=False)
        cred = policy.credentials
        if policy.auth == "psk":
            if auth.method != ikeauth.AuthMethod.SHARED_KEY or cred.psk is None:
                raise ikeauth.AuthError(f"expected PSK authentication, got method {auth.method}")
            ikeauth.verify_psk(self.prf, cred.psk, octets, auth.data)
            return
        x509s = [c for c in certs if c.encoding == 4]
        if not x509s:
            raise ikeauth.AuthError("no certificate")
        if self.clock is None:
            raise ikeauth.AuthError("no wall clock to check certificate validity against")
        chain = [ikeauth.load_der_certificate(c.data) for c in x509s[:4]]  # CERT encoding 4 is DER (§3.6)
        ikeauth.validate_chain(chain[0], chain[1:], cred.anchors, now=self.clock())
        if not ikeauth.id_matches_certificate(chain[0], idp.id_type, idp.data):
            raise ikeauth.AuthError(f"identity {idp.text()} is not in the certificate")
        ikeauth.verify_signature(chain[0].public_key(), auth.method, auth.data, octets)

    def _cert_payloads(self, policy: Policy) -> list[Payload]:
        if policy.auth != "pubkey":
            return []
        from cryptography.hazmat.primitives.serialization import Encoding

        return [CERT(4, c.public_bytes(Encoding.DER)) for c in policy.credentials.certs]


def _notify_name(n: int) -> str:
    try:
        return Nt(n).name
    except ValueError:
        return str(n)


def _one(msg: Message | list[Payload], ptype: type[Any]) -> Any:
    pl = msg.payloads if isinstance(msg, Message) else msg
    found = [p for p in pl if type(p) is ptype]
    if len(found) != 1:
        raise DecodeError("ikev2", ptype.__name__, 0, f"expected one {ptype.__name__} payload, got {len(found)}")
    return found[0]


def esp_pair(
    sa: IkeSaCore,
    suite: props.Suite,
    spi_in: int,
    spi_out: int,
    local_ts: Any,
    remote_ts: Any,
    transport: bool,
    km: bytes,
    initiated: bool | None = None,
) -> EspSaPair:
    """Split KEYMAT (§2.17: the exchange initiator's outbound keys first, encryption before integrity).
    `initiated`: we initiated the exchange that created this Child SA (default: the IKE SA's role)."""
    we_i = sa.initiator if initiated is None else initiated
    encr, integ = suite.get(TransformType.ENCR), suite.get(TransformType.INTEG)
    assert encr is not None and encr.key_length is not None
    ek = encr.key_length // 8 + (4 if encr.id == 20 else 0)
    ik = 32 if integ else 0
    i2r_e, i2r_a = km[:ek], km[ek : ek + ik]
    r2i_e, r2i_a = km[ek + ik : 2 * ek + ik], km[2 * ek + ik : 2 * (ek + ik)]
    ours_e, ours_a, theirs_e, theirs_a = (i2r_e, i2r_a, r2i_e, r2i_a) if we_i else (r2i_e, r2i_a, i2r_e, i2r_a)
    return EspSaPair(
        spi_in=spi_in,
        spi_out=spi_out,
        local=ip_address(sa.local[0]),
        peer=ip_address(sa.peer[0]),
        cipher=Cipher.AES_GCM_16 if encr.id == 20 else Cipher.AES_CBC,
        key_in=theirs_e,
        key_out=ours_e,
        integ=Integ.HMAC_SHA256_128 if integ else Integ.NONE,
        integ_key_in=theirs_a,
        integ_key_out=ours_a,
        mode=Mode.TRANSPORT if transport else Mode.TUNNEL,
        local_port=4500,
        peer_port=sa.peer[1] if sa.use_4500 else 4500,  # ESP-in-UDP never goes to port 500 (RFC 7296 §2.23)
        local_ts=ts_networks(local_ts),
        remote_ts=ts_networks(remote_ts),
        esn=any(t.type == TransformType.ESN and t.id == 1 for t in suite.transforms),
        keepalive=sa.nat_local,
        name=sa.name,
    )


def keymat_len(suite: props.Suite) -> int:
    encr, integ = suite.get(TransformType.ENCR), suite.get(TransformType.INTEG)
    assert encr is not None and encr.key_length is not None
    return 2 * (encr.key_length // 8 + (4 if encr.id == 20 else 0) + (32 if integ else 0))
