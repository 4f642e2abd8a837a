"""The IKEv2 multiplexer (sans-I/O): maps datagrams to IKE SAs by our SPI (RFC 7296 §2.6), answers
IKE_SA_INIT statelessly with a cookie when too many SAs are half-open (§2.6: `<VersionIDofSecret> |
Hash(Ni | IPi | SPIi | <secret>)`, secret rotated), resends cached responses to retransmitted
requests (§2.1), and drives every SA's timers.

Inputs: `datagram(data, src, sport, local_port, now=...)`, `initiate(policy, peer, local, now=...)`,
`delete(key, now=...)`, `on_timer(now)`. Outputs: actions (IkeSend, Program, Persist, Notify).
"""

from __future__ import annotations

import hashlib
import hmac
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from ipaddress import ip_address
from typing import Any

from mobility.crypto.esp import IntegrityError
from mobility.crypto.ikeprf import DhError, cookie
from mobility.engine import Action, IkeSend, Notify
from mobility.ike.child import IkeSa
from mobility.ike.policy import IkeBug, IkeDropped, Policy
from mobility.ike.proposals import Suite
from mobility.ike.sa import ZERO_SPI, Assigner, Claimer, Refused, Releaser, State, Unauthenticated
from mobility.wire.buffer import DecodeError
from mobility.wire.ikev2 import ExchangeType, Flag, Header, IkeError, Message, N, Nonce
from mobility.wire.ikev2 import Notify as Nt

COOKIE_ROTATE_S = 120.0


class IkeEngine:
    def __init__(
        self,
        *,
        rand: Callable[[int], bytes],
        suites: tuple[Suite, ...] = (),
        lookup: Callable[[str], Policy | None] | None = None,
        assigner: Assigner | None = None,
        releaser: Releaser | None = None,
        claimer: Claimer | None = None,
        clock: Callable[[], datetime] | None = None,
        cookie_threshold: int = 64,
        signatures: bool = False,
        local_addr: str = "0.0.0.0",
    ) -> None:
        self.rand, self.suites, self.lookup = rand, suites, lookup
        self.assigner, self.releaser, self.clock = assigner, releaser, clock
        self.claimer = claimer
        self.cookie_threshold, self.signatures, self.local_addr = cookie_threshold, signatures, local_addr
        self.sas: dict[bytes, IkeSa] = {}  # by our SPI
        self._half_open: dict[tuple[bytes, str, int], IkeSa] = {}
        self._secrets: list[tuple[int, bytes]] = []
        self._secret_at = -1e18
        self.counters: Counter[str] = Counter()

    # ---- commands -----------------------------------------------------------------------------

    def initiate(
        self, policy: Policy, peer: tuple[str, int], local: tuple[str, int], *, now: float
    ) -> tuple[bytes, list[Action]]:
        sa = IkeSa(
            initiator=True,
            spi_i=self._new_spi(),
            rand=self.rand,
            local=local,
            peer=peer,
            policy=policy,
            clock=self.clock,
        )
        self.sas[sa.spi_i] = sa
        return sa.spi_i, sa.start(now)

    def delete(self, key: bytes, *, now: float) -> list[Action]:
        sa = self.sas.get(key)
        return sa.delete(now) if sa else []

    def liveness(self, key: bytes, *, now: float) -> list[Action]:
        sa = self.sas.get(key)
        return sa.liveness(now) if sa else []

    def rekey_child(self, key: bytes, spi_in: int, *, now: float) -> list[Action]:
        sa = self.sas.get(key)
        return sa.rekey_child(spi_in, now) if sa else []

    def rekey_ike(self, key: bytes, *, now: float) -> list[Action]:
        """Rekey the IKE SA; once answered, `find(remote_id)` names the successor."""
        sa = self.sas.get(key)
        return sa.rekey_ike(now) if sa else []

    def create_child(self, key: bytes, tsi: tuple[Any, ...], tsr: tuple[Any, ...], *, now: float) -> list[Action]:
        sa = self.sas.get(key)
        return sa.create_child(tsi, tsr, now) if sa else []

    def find(self, remote_id: str) -> list[bytes]:
        """Our keys of the established IKE SAs with that peer identity."""
        return [k for k, s in self.sas.items() if s.remote_id == remote_id and s.state == State.ESTABLISHED]

    # ---- datagrams ----------------------------------------------------------------------------

    def datagram(self, data: bytes, src: str, sport: int, local_port: int, *, now: float) -> list[Action]:
        try:
            msg = Message.decode(data)
        except IkeError as e:
            return self._unprotected_error(data, e, src, sport, local_port)
        except DecodeError as e:
            return self._drop("malformed", src, str(e))
        h = msg.header
        if h.from_initiator and not h.is_response and h.spi_r == ZERO_SPI:
            if h.exchange != ExchangeType.IKE_SA_INIT or h.message_id != 0:
                return self._drop("unexpected", src, "zero responder SPI outside IKE_SA_INIT")
            return self._on_init_request(data, msg, src, sport, local_port, now)
        ours = h.spi_r if h.from_initiator else h.spi_i
        sa = self.sas.get(ours)
        if sa is None or sa.state == State.DEAD or (sa.initiator == h.from_initiator):
            return self._drop("unknown_spi", src, ours.hex())
        if not sa.initiator and h.spi_i != sa.spi_i:
            return self._drop("unknown_spi", src, h.spi_i.hex())
        before = (sa.peer, sa.use_4500, sa.local, sa.pending, sa.state, sa.remote_id, sa.policy)
        try:
            answered = sa.peer_mid
            out = self._dispatch(sa, data, msg, src, sport, local_port, now)
            if not h.is_response and sa.peer_mid > answered:  # this request was processed and answered
                sa.last_request = hashlib.sha256(data).digest()
        except Unauthenticated as e:
            _restore(sa, before)
            return self._drop("unauthenticated", src, str(e))
        except IkeError as e:  # raised only once the ICV verified: an authenticated message we must refuse
            _restore(sa, (sa.peer, sa.use_4500, sa.local, *before[3:]))  # answer where it came from
            out = self._protected_error(sa, h, e)
        except (DecodeError, IntegrityError, DhError, ValueError) as e:
            _restore(sa, before)
            kind = "integrity" if isinstance(e, IntegrityError) else "malformed"
            return self._drop(kind, src, str(e))
        except Exception as e:  # a bug in this flow: tear the IKE SA down, keep the daemon (STYLE.md §2.7)
            self.counters["internal_error"] += 1
            out = [
                Notify(IkeBug(sa.name, traceback.format_exc())),
                *sa._fail(f"internal error: {e!r}", notify_peer=False),
            ]
        self._adopt(sa)
        self._reap()
        return out

    def _protected_error(self, sa: IkeSa, h: Header, e: IkeError) -> list[Action]:
        """RFC 7296 §2.5: a request with an unsupported critical payload is rejected, and the response
        MUST carry UNSUPPORTED_CRITICAL_PAYLOAD. An IKE_AUTH so refused ends the half-open SA."""
        self.counters[f"refused_{e.notify.name.lower()}"] += 1
        if h.is_response or sa.keys is None:
            return [Notify(IkeDropped("refused", sa.peer[0], e.reason))]
        out: list[Action] = [sa._respond(h.exchange, h.message_id, [N(e.notify, e.data)])]
        if sa.state == State.EXPECT_AUTH_REQUEST:
            out += sa._fail(f"IKE_AUTH refused: {e.reason}", notify_peer=False)
        return out

    def _unprotected_error(self, data: bytes, e: IkeError, src: str, sport: int, lport: int) -> list[Action]:
        """An IKE_SA_INIT request with an unsupported critical payload gets UNSUPPORTED_CRITICAL_PAYLOAD
        (§2.5) and no state; a message of another major version is dropped (§2.5: SHOULD notify)."""
        if e.notify != Nt.UNSUPPORTED_CRITICAL_PAYLOAD:
            return self._drop("version", src, str(e))
        h = Header.decode_fields(data)
        if h is None or h.is_response or h.exchange != ExchangeType.IKE_SA_INIT or h.spi_r != ZERO_SPI:
            return self._drop("malformed", src, str(e))
        self.counters["refused_unsupported_critical_payload"] += 1
        return [self._plain_reply(h, src, sport, lport, N(e.notify, e.data))]

    def _adopt(self, sa: IkeSa) -> None:
        """Register the IKE SAs a rekey created (keyed by our SPI in them)."""
        for new in sa.spawned:
            self.sas[new.spi_i if new.initiator else new.spi_r] = new
        sa.spawned.clear()

    def _dispatch(
        self, sa: IkeSa, data: bytes, msg: Message, src: str, sport: int, lport: int, now: float
    ) -> list[Action]:
        h = msg.header
        if h.is_response:
            p = sa.pending
            if p is None or h.message_id != p.mid or h.exchange != p.exchange:
                return self._drop("unexpected", src, f"response {h.message_id} matches no request")
            if sa.state == State.EXPECT_INIT_RESPONSE:
                return sa.on_init_response(data, msg, now)
            if sa.state == State.EXPECT_AUTH_RESPONSE:
                return sa.on_auth_response(data, msg, now)
            return sa.on_response(data, msg, now)
        if sa.last_response is not None and h.message_id == sa.last_response[0] and h.message_id < sa.peer_mid:
            # §2.1: resend the cached response, no reprocessing, but only for the very same request: any
            # datagram with the right SPIs and message ID must not make us send (and amplify) to its source
            if not hmac.compare_digest(sa.last_request, hashlib.sha256(data).digest()):
                return self._drop("unexpected", src, f"a different request {h.message_id} after the answer")
            self.counters["retransmit_answered"] += 1
            return [IkeSend(src, sport, sa.local[1] if lport != 4500 else 4500, sa.last_response[1])]
        if h.message_id != sa.peer_mid:
            return self._drop("message_id", src, f"request {h.message_id}, expected {sa.peer_mid}")
        if sa.state == State.EXPECT_AUTH_REQUEST:
            if h.exchange != ExchangeType.IKE_AUTH:
                return self._drop("unexpected", src, f"exchange {h.exchange} before IKE_AUTH")
            sa.peer, sa.local = (src, sport), (sa.local[0], lport)  # RFC 4555 §3.3: from IKE_AUTH's header
            sa.use_4500 = lport == 4500
            out = sa.on_auth_request(data, msg, now)
            self._half_open.pop((sa.spi_i, src, sport), None)
            return out
        if sa.state in (State.ESTABLISHED, State.DELETING):
            return sa.on_request(data, msg, now)
        return self._drop("unexpected", src, f"request in state {sa.state.value}")

    def _on_init_request(self, data: bytes, msg: Message, src: str, sport: int, lport: int, now: float) -> list[Action]:
        h = msg.header
        dup = self._half_open.get((h.spi_i, src, sport))
        if dup is not None and dup.state != State.DEAD:
            if hmac.compare_digest(dup.init_req, data):
                self.counters["retransmit_answered"] += 1
                return [IkeSend(src, sport, lport, dup.init_resp)]
            return self._drop("unexpected", src, "different IKE_SA_INIT for a half-open SA")
        if not self.suites or self.lookup is None:
            return self._drop("not_responder", src, "no responder policy")
        try:
            nonce = next((p for p in msg.payloads if isinstance(p, Nonce)), None)
            if nonce is None:
                raise DecodeError("ikev2", "nonce", 0, "IKE_SA_INIT without Ni")
            if self._need_cookie(now) and not self._cookie_ok(msg, nonce.data, src):
                self.counters["cookie_demanded"] += 1
                return [self._plain_reply(h, src, sport, lport, N(Nt.COOKIE, self._cookie(nonce.data, src, h.spi_i)))]
            sa = IkeSa(
                initiator=False,
                spi_i=h.spi_i,
                rand=self.rand,
                local=(self.local_addr, lport),
                peer=(src, sport),
                clock=self.clock,
            )
            out = sa.respond_init(data, msg, list(self.suites), now, self.signatures)
        except Refused as r:
            self.counters[f"refused_{r.notify.name.lower()}"] += 1
            return [self._plain_reply(h, src, sport, lport, N(r.notify, r.data))]
        except (DecodeError, DhError, ValueError) as e:
            return self._drop("malformed", src, str(e))
        except Exception:  # a bug: nothing was created, say so loudly (STYLE.md §2.7)
            self.counters["internal_error"] += 1
            return [Notify(IkeBug("IKE_SA_INIT", traceback.format_exc()))]
        sa.lookup, sa.assigner, sa.releaser, sa.claimer = self.lookup, self.assigner, self.releaser, self.claimer
        self.sas[sa.spi_r] = sa
        self._half_open[(h.spi_i, src, sport)] = sa
        return out

    def _plain_reply(self, h: Header, src: str, sport: int, lport: int, n: N) -> IkeSend:
        reply = Message(Header(h.spi_i, ZERO_SPI, 0, ExchangeType.IKE_SA_INIT, Flag.RESPONSE, 0), [n])
        return IkeSend(src, sport, lport, reply.encode())

    # ---- cookies (§2.6) -----------------------------------------------------------------------

    def _need_cookie(self, now: float) -> bool:
        if now - self._secret_at > COOKIE_ROTATE_S or not self._secrets:
            version = (self._secrets[-1][0] + 1) & 0xFF if self._secrets else 0
            self._secrets = [*self._secrets[-1:], (version, self.rand(32))]
            self._secret_at = now
        half = sum(1 for s in self.sas.values() if s.state == State.EXPECT_AUTH_REQUEST and s.policy is None)
        return half >= self.cookie_threshold

    def _cookie(self, ni: bytes, src: str, spi_i: bytes, version: int | None = None) -> bytes:
        for v, secret in reversed(self._secrets):
            if version is None or v == version:
                return cookie(v, secret, ni, ip_address(src).packed, spi_i)
        return b""

    def _cookie_ok(self, msg: Message, ni: bytes, src: str) -> bool:
        first = msg.payloads[0] if msg.payloads else None
        if not isinstance(first, N) or first.type != Nt.COOKIE or not first.data:
            return False
        want = self._cookie(ni, src, msg.header.spi_i, first.data[0])
        return bool(want) and hmac.compare_digest(want, first.data)

    # ---- timers -------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        ds = [d for d in (s.deadline() for s in self.sas.values()) if d is not None]
        return min(ds) if ds else None

    def on_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        for sa in list(self.sas.values()):
            try:
                out += sa.on_timer(now)
            except Exception as e:  # a bug in one SA's timers: tear that SA down, keep the others running
                self.counters["internal_error"] += 1
                out += [
                    Notify(IkeBug(sa.name, traceback.format_exc())),
                    *sa._fail(f"internal error: {e!r}", notify_peer=False),
                ]
        self._reap()
        return out

    def _reap(self) -> None:
        for k, sa in list(self.sas.items()):
            if sa.state == State.DEAD:
                del self.sas[k]
        for hk, half in list(self._half_open.items()):
            if half.state != State.EXPECT_AUTH_REQUEST:
                del self._half_open[hk]

    def _drop(self, reason: str, src: str, detail: str) -> list[Action]:
        self.counters[f"drop_{reason}"] += 1
        return [Notify(IkeDropped(reason, src, detail))]

    def _new_spi(self) -> bytes:
        while True:
            spi = self.rand(8)
            if spi != ZERO_SPI and spi not in self.sas:
                return spi

    def status(self, *, secrets: bool = False) -> list[dict[str, object]]:
        return [
            {
                **(_keys(sa) if secrets else {}),
                "name": sa.name,
                "spi_i": sa.spi_i.hex(),
                "spi_r": sa.spi_r.hex(),
                "role": "initiator" if sa.initiator else "responder",
                "state": sa.state.value,
                "peer": f"{sa.peer[0]}:{sa.peer[1]}",
                "remote_id": sa.remote_id,
                "nat_local": sa.nat_local,
                "nat_remote": sa.nat_remote,
                "children": len(sa.children),
            }
            for sa in self.sas.values()
        ]


_TSHARK_ENCR = {
    (20, 128): "AES-GCM-128 with 16 octet ICV [RFC5282]",
    (20, 256): "AES-GCM-256 with 16 octet ICV [RFC5282]",
    (12, 128): "AES-CBC-128 [RFC3602]",
    (12, 256): "AES-CBC-256 [RFC3602]",
}
_TSHARK_INTEG = {
    None: "NONE [RFC4306]",
    12: "HMAC_SHA2_256_128 [RFC4868]",
    13: "HMAC_SHA2_384_192 [RFC4868]",
    14: "HMAC_SHA2_512_256 [RFC4868]",
}


def _keys(sa: IkeSa) -> dict[str, object]:
    """SK_e*/SK_a* and algorithm names as tshark's ikev2_decryption_table wants them (log_secrets only)."""
    if sa.keys is None or sa.sk is None:
        return {}
    k = sa.keys
    return {
        "sk_ei": k.sk_ei.hex(),
        "sk_er": k.sk_er.hex(),
        "sk_ai": k.sk_ai.hex(),
        "sk_ar": k.sk_ar.hex(),
        "encr": _TSHARK_ENCR.get((sa.sk.encr, sa.sk.key_bits), ""),
        "integ": _TSHARK_INTEG.get(sa.sk.integ, ""),
    }


def _restore(sa: IkeSa, before: tuple[Any, ...]) -> None:
    """Undo what a handler changed before it found the message unusable."""
    sa.peer, sa.use_4500, sa.local, sa.pending, sa.state, sa.remote_id, sa.policy = before
