"""The protected exchanges of one IKE SA: IKE_AUTH in both roles (RFC 7296 §1.2, §2.15, §2.19 with
RFC 5026 §5.3 configuration payloads) and INFORMATIONAL (delete, liveness; §1.4). Every handler parses
and checks all it needs before it changes anything (a malformed message leaves the SA as it was).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

from mobility.crypto import ikeauth
from mobility.crypto.ikeprf import child_keymat
from mobility.dataplane.sa import EspSaPair
from mobility.engine import Action, Notify, Program
from mobility.ike import proposals as props
from mobility.ike.policy import (
    ChildSaInstall,
    ChildSaRemove,
    Identity,
    IkeSaEstablished,
    Policy,
    any_ts,
    narrow,
    ts_from_network,
)
from mobility.ike.sa import STATUS_OF_INTEREST, IkeSaCore, Refused, State, _one, esp_pair, keymat_len
from mobility.wire.buffer import DecodeError
from mobility.wire.ikev2 import (
    AUTH,
    CERT,
    CERTREQ,
    CP,
    SA,
    CfgAttr,
    CfgAttribute,
    CfgType,
    Delete,
    ExchangeType,
    IDi,
    IDr,
    Message,
    N,
    Payload,
    Protocol,
    TrafficSelector,
    TSi,
    TSr,
)
from mobility.wire.ikev2 import (
    Notify as Nt,
)


class IkeSaAuth(IkeSaCore):
    # ---- IKE_AUTH, initiator ------------------------------------------------------------------

    def _send_auth(self, now: float) -> list[Action]:
        p = self.policy
        assert p is not None
        idi = IDi(p.local_id.id_type, p.local_id.data)
        self.child_spi = int.from_bytes(self.rand(4), "big") | 0x100  # never 0 (RFC 4303 §2.1)
        pl: list[Payload] = [idi, *self._cert_payloads(p)]
        if p.auth == "pubkey":
            pl.append(CERTREQ(4, b"".join(ikeauth.certreq_hash(a) for a in p.credentials.anchors)))
        if p.remote_id is not None:
            pl.append(IDr(p.remote_id.id_type, p.remote_id.data))
        pl += self._our_auth(p, idi)
        if p.cp_request:
            pl.append(CP(CfgType.REQUEST, p.cp_request))  # §3.15: before SA
        pl.append(SA(props.offer(list(p.esp_suites), Protocol.ESP, self.child_spi.to_bytes(4, "big"))))
        pl += [TSi(self._initiator_tsi()), TSr(p.remote_ts or (any_ts(4),))]
        if p.mobike:
            pl.append(N(Nt.MOBIKE_SUPPORTED))
        if p.transport:
            pl.append(N(Nt.USE_TRANSPORT_MODE))
        self.state = State.EXPECT_AUTH_RESPONSE
        self.next_mid = 1
        return self._request(ExchangeType.IKE_AUTH, pl, now)

    def _initiator_tsi(self) -> tuple[TrafficSelector, ...]:
        p = self.policy
        assert p is not None
        wants = {a.type for a in p.cp_request}
        if wants & {CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP6_ADDRESS, CfgAttr.MIP6_HOME_PREFIX}:
            fams = ([4] if CfgAttr.INTERNAL_IP4_ADDRESS in wants else []) + (
                [6] if wants & {CfgAttr.INTERNAL_IP6_ADDRESS, CfgAttr.MIP6_HOME_PREFIX} else []
            )
            return tuple(any_ts(f) for f in fams)  # narrowed by the responder to what it assigns
        return p.local_ts or (ts_from_network(self.local[0]),)

    def on_auth_response(self, data: bytes, msg: Message, now: float) -> list[Action]:
        p = self.policy
        assert p is not None
        inner = self._unprotect(data, msg)  # IntegrityError: dropped by the engine, nothing changed
        nts = {n.type: n for n in inner if isinstance(n, N)}
        if Nt.AUTHENTICATION_FAILED in nts:
            return self._fail("peer refused our authentication", notify_peer=False)
        idr, auth = _one(inner, IDr), _one(inner, AUTH)
        # error notifies (< 16384) mean no Child SA; USE_ASSIGNED_HoA (42) is RFC 5026 §5.3.2 status
        errors = [t for t in nts if t < 16384 and t != Nt.USE_ASSIGNED_HOA]
        child = None if errors else self._initiator_child(inner)  # parsed, not installed
        if p.remote_id is not None and not p.remote_id.matches(Identity(idr.id_type, idr.data)):
            return self._fail(f"responder identity {idr.text()} is not {p.remote_id}", notify_peer=False)
        try:
            self._verify_peer(p, idr, auth, [c for c in inner if type(c) is CERT])
        except ikeauth.AuthError as e:
            failed = self._fail(f"responder authentication failed: {e}", notify_peer=True)
            return [*self._request(ExchangeType.INFORMATIONAL, [Delete(Protocol.IKE)], now), *failed]
        self.pending = None
        self.remote_id = idr.text()
        self.state = State.ESTABLISHED
        self.up_at = now
        cps = [c for c in inner if isinstance(c, CP) and c.cfg_type == CfgType.REPLY]
        self.attributes = cps[0].attributes if cps else ()
        # the event first: the owner configures its assigned addresses before the Child SA's routes
        out: list[Action] = [Notify(self._established(tuple(t for t in nts if t in STATUS_OF_INTEREST)))]
        if child is not None:
            child.extra["at"] = now
            self.children[child.spi_in] = child
            out.append(Program(ChildSaInstall(self.spi_i, child)))
        return out

    def _initiator_child(self, inner: list[Payload]) -> EspSaPair:
        """The Child SA of an IKE_AUTH response, checked and keyed but not yet installed."""
        p = self.policy
        assert p is not None
        sa = _one(inner, SA)
        if len(sa.proposals) != 1 or len(sa.proposals[0].spi) != 4:
            raise DecodeError("ikev2", "sa", 0, "child SA reply needs one ESP proposal with a 4-octet SPI")
        suite = props.suite_of(sa.proposals[0])
        if not props.offered(suite, p.esp_suites):
            raise DecodeError("ikev2", "sa", 0, "responder chose an ESP suite we did not offer")
        tsi, tsr = _one(inner, TSi), _one(inner, TSr)
        transport = any(isinstance(n, N) and n.type == Nt.USE_TRANSPORT_MODE for n in inner) and p.transport
        km = child_keymat(self.prf, self._sk_d(), self.ni, self.nr, keymat_len(suite))
        pair = esp_pair(
            self,
            suite,
            self.child_spi,
            int.from_bytes(sa.proposals[0].spi, "big"),
            tsi.selectors,
            tsr.selectors,
            transport,
            km,
        )
        pair.extra.update(tsi=tsi.selectors, tsr=tsr.selectors)
        return pair

    def _sk_d(self) -> bytes:
        assert self.keys is not None
        return self.keys.sk_d

    def _established(self, notifies: tuple[int, ...]) -> IkeSaEstablished:
        assert self.policy is not None
        return IkeSaEstablished(
            self.name,
            self.spi_i,
            self.spi_r,
            str(self.policy.local_id),
            self.remote_id,
            self.peer[0],
            self.peer[1],
            self.nat_local,
            self.nat_remote,
            self.attributes,
            notifies,
        )

    # ---- IKE_AUTH, responder ------------------------------------------------------------------

    def on_auth_request(self, data: bytes, msg: Message, now: float) -> list[Action]:
        inner = self._unprotect(data, msg)
        idi, auth = _one(inner, IDi), _one(inner, AUTH)
        _one(inner, SA), _one(inner, TSi), _one(inner, TSr)  # DecodeError now, not after leases were taken
        who = Identity(idi.id_type, idi.data)
        policy = self.lookup(str(who)) if self.lookup else None
        try:
            if policy is None:
                raise ikeauth.AuthError(f"no connection for {who}")
            self._verify_peer(policy, idi, auth, [c for c in inner if type(c) is CERT])
        except ikeauth.AuthError as e:
            reply = self._respond(ExchangeType.IKE_AUTH, msg.header.message_id, [N(Nt.AUTHENTICATION_FAILED)])
            return [reply, *self._fail(f"initiator {who} failed authentication: {e}", notify_peer=False)]
        self.policy, self.remote_id = policy, str(who)
        idr = IDr(policy.local_id.id_type, policy.local_id.data)
        reply_pl: list[Payload] = [idr, *self._cert_payloads(policy), *self._our_auth(policy, idr)]
        out: list[Action] = []
        try:
            attrs, extra, acts = self._assign(policy, inner, now)
            out += acts
            child_pl, child_acts = self._responder_child(policy, inner, attrs)
            reply_pl += [CP(CfgType.REPLY, tuple(attrs))] if attrs else []
            reply_pl += child_pl
            reply_pl += extra
            out += child_acts
        except Refused as r:
            reply_pl.append(N(r.notify, r.data))
        if policy.mobike and any(isinstance(n, N) and n.type == Nt.MOBIKE_SUPPORTED for n in inner):
            reply_pl.append(N(Nt.MOBIKE_SUPPORTED))
        self.state = State.ESTABLISHED
        self.up_at = now
        out.append(self._respond(ExchangeType.IKE_AUTH, msg.header.message_id, reply_pl))
        out.append(Notify(self._established(())))
        return out

    def _assign(
        self, policy: Policy, inner: list[Payload], now: float
    ) -> tuple[list[CfgAttribute], list[N], list[Action]]:
        cps = [c for c in inner if isinstance(c, CP) and c.cfg_type == CfgType.REQUEST]
        if not cps or self.assigner is None:
            return [], [], []
        attrs, notifies, acts = self.assigner(policy, self.remote_id, cps[0], now)
        self.attributes = tuple(attrs)
        return attrs, notifies, acts

    def _responder_child(
        self, policy: Policy, inner: list[Payload], attrs: list[CfgAttribute]
    ) -> tuple[list[Payload], list[Action]]:
        sa, tsi, tsr = _one(inner, SA), _one(inner, TSi), _one(inner, TSr)
        pick = props.choose(sa.proposals, list(policy.esp_suites), Protocol.ESP, None)
        if pick is None or any(len(p.spi) != 4 for p in sa.proposals):
            raise Refused(Nt.NO_PROPOSAL_CHOSEN, "no acceptable ESP proposal")
        prop, suite = pick
        vips = _addresses(attrs)
        allowed_i = vips or policy.remote_ts  # nothing assigned or configured: no Child SA (fail closed)
        new_tsi, new_tsr = narrow(tsi.selectors, allowed_i), narrow(tsr.selectors, policy.local_ts or tsr.selectors)
        if not new_tsi or not new_tsr:
            raise Refused(Nt.TS_UNACCEPTABLE, "traffic selectors outside policy")
        transport = policy.transport and any(isinstance(n, N) and n.type == Nt.USE_TRANSPORT_MODE for n in inner)
        spi_in = int.from_bytes(self.rand(4), "big") | 0x100
        km = child_keymat(self.prf, self._sk_d(), self.ni, self.nr, keymat_len(suite))
        pair = esp_pair(self, suite, spi_in, int.from_bytes(prop.spi, "big"), new_tsr, new_tsi, transport, km)
        pair.extra.update(tsi=new_tsr, tsr=new_tsi)  # our side first, for our own rekeys
        self.children[spi_in] = pair
        pl: list[Payload] = [SA((props.selected(prop, suite, spi_in.to_bytes(4, "big")),)), TSi(new_tsi), TSr(new_tsr)]
        if transport:
            pl.append(N(Nt.USE_TRANSPORT_MODE))
        return pl, [Program(ChildSaInstall(self.spi_i, pair))]

    # ---- INFORMATIONAL / CREATE_CHILD_SA -------------------------------------------------------

    def on_request(self, data: bytes, msg: Message, now: float) -> list[Action]:
        """A request from the peer on an established SA (window 1: only peer_mid is new)."""
        inner = self._unprotect(data, msg)
        ex = msg.header.exchange
        if ex == ExchangeType.CREATE_CHILD_SA:
            return self.on_create_child(inner, msg.header.message_id, now)
        if ex != ExchangeType.INFORMATIONAL:
            raise DecodeError("ikev2", "exchange", 18, f"exchange {ex} on an established SA")
        out: list[Action] = []
        reply: list[Payload] = []
        for d in (p for p in inner if isinstance(p, Delete)):
            if d.protocol == Protocol.IKE:
                out.append(self._respond(ex, msg.header.message_id, []))
                return out + self._gone("deleted by peer")
            if d.protocol == Protocol.ESP:
                ours = self._delete_children({int.from_bytes(s, "big") for s in d.spis if len(s) == 4})
                out += [Program(ChildSaRemove(self.spi_i, s)) for s in ours]
                if ours:
                    reply.append(Delete(Protocol.ESP, tuple(s.to_bytes(4, "big") for s in ours)))
        out.append(self._respond(ex, msg.header.message_id, reply))
        return out

    def _delete_children(self, their_spis: set[int]) -> list[int]:
        ours = [s for s, c in self.children.items() if c.spi_out in their_spis]
        for s in ours:
            del self.children[s]
        return ours

    def on_create_child(self, inner: list[Payload], mid: int, now: float) -> list[Action]:
        raise NotImplementedError

    def on_response(self, data: bytes, msg: Message, now: float) -> list[Action]:
        """The answer to one of our requests on an established SA; then the next queued request."""
        inner = self._unprotect(data, msg)
        p = self.pending
        self.pending = None
        if self.state == State.DELETING:
            return self._gone("deleted")
        try:
            out = self.on_answer(p, inner, now) if p is not None else []
        except (DecodeError, ValueError):
            self.pending = p  # still waiting: retransmissions go on until the retry limit
            raise
        if self.queue and self.pending is None and self.state == State.ESTABLISHED:
            out += self.queue.pop(0)(now)
        return out

    def on_answer(self, p: object, inner: list[Payload], now: float) -> list[Action]:
        return []

    def delete(self, now: float) -> list[Action]:
        """Close the IKE SA (and its Child SAs) with an INFORMATIONAL Delete (§1.4.1)."""
        if self.state != State.ESTABLISHED:
            return self._gone("aborted")
        self.state = State.DELETING
        out = self._request(ExchangeType.INFORMATIONAL, [Delete(Protocol.IKE)], now)
        return out + [Program(ChildSaRemove(self.spi_i, s)) for s in self.children]

    def liveness(self, now: float) -> list[Action]:
        if self.state != State.ESTABLISHED or self.pending is not None:
            return []
        return self._request(ExchangeType.INFORMATIONAL, [], now)


def _addresses(attrs: list[CfgAttribute] | tuple[CfgAttribute, ...]) -> tuple[TrafficSelector, ...]:
    """Selectors for the addresses a CFG_REPLY assigns (the responder narrows TSi to them)."""
    out = []
    for a in attrs:
        if a.type == CfgAttr.INTERNAL_IP4_ADDRESS and len(a.value) == 4:
            v4 = IPv4Address(a.value)
            out.append(TrafficSelector(v4, v4))
        elif a.type == CfgAttr.INTERNAL_IP6_ADDRESS and len(a.value) == 17:
            v6 = IPv6Address(a.value[:16])
            out.append(TrafficSelector(v6, v6))
        elif a.type == CfgAttr.MIP6_HOME_PREFIX and len(a.value) == 21 and a.value[20] <= 128:
            net = ip_network((IPv6Address(a.value[4:20]), a.value[20]), strict=False)
            out.append(TrafficSelector(net.network_address, net.broadcast_address))
    return tuple(out)


__all__ = ["IkeSaAuth"]
