"""CREATE_CHILD_SA (RFC 7296 §1.3) in both roles: a new Child SA (RFC 5026 §5.3.2 runs one for an
autoconfigured HoA), rekeying a Child SA (§1.3.3, REKEY_SA; the old one is deleted by the rekeying
side afterwards, §2.8), and rekeying the IKE SA (§1.3.2, §2.18: new SPIs and D-H, SKEYSEED =
prf(SK_d (old), g^ir (new) | Ni | Nr) with the old PRF, Child SAs move over, message IDs restart at 0,
the side that started the rekey is the new SA's original initiator). No PFS for Child SAs (no KE).
"""

from __future__ import annotations

from typing import Any

from mobility.crypto.ikeprf import DH_GROUPS, Prf, child_keymat, ike_keys, rekey_skeyseed
from mobility.crypto.ikesk import SkSuite
from mobility.engine import Action, Notify, Program
from mobility.ike import proposals as props
from mobility.ike.exchanges import IkeSaAuth, _addresses
from mobility.ike.policy import ChildSaInstall, ChildSaRemove, IkeDropped, narrow
from mobility.ike.sa import Pending, Refused, State, _one, esp_pair, keymat_len
from mobility.wire.buffer import DecodeError
from mobility.wire.ikev2 import (
    KE,
    SA,
    Delete,
    ExchangeType,
    N,
    Nonce,
    Payload,
    Protocol,
    TrafficSelector,
    TransformType,
    TSi,
    TSr,
)
from mobility.wire.ikev2 import Notify as Nt

CCS = ExchangeType.CREATE_CHILD_SA


class IkeSa(IkeSaAuth):
    clock_now = 0.0  # the `now` of the message being handled (for the successor's rekey schedule)

    # ---- timer-driven rekeying (the original initiator rekeys; RFC 7296 §2.8 leaves it to either) ----

    def _rekey_due(self) -> float | None:
        p = self.policy
        if p is None or not self.initiator or self.state != State.ESTABLISHED:
            return None
        dues = []
        if p.timers.rekey_s and not self.rekeying:
            dues.append(self.up_at + p.timers.rekey_s)
        if p.timers.child_rekey_s:
            dues += [
                c.extra.get("at", 0.0) + p.timers.child_rekey_s
                for c in self.children.values()
                if not c.extra.get("rekeying")
            ]
        return min(dues) if dues else None

    def deadline(self) -> float | None:
        ds = [d for d in (super().deadline(), self._rekey_due()) if d is not None]
        return min(ds) if ds else None

    def on_timer(self, now: float) -> list[Action]:
        out = super().on_timer(now)
        p = self.policy
        if p is None or not self.initiator or self.state != State.ESTABLISHED:
            return out
        if p.timers.rekey_s and not self.rekeying and now >= self.up_at + p.timers.rekey_s:
            self.rekeying = True
            out += self.rekey_ike(now)
        for spi, c in list(self.children.items()):
            if p.timers.child_rekey_s and not c.extra.get("rekeying"):
                c.extra.setdefault("at", now)
                if now >= c.extra["at"] + p.timers.child_rekey_s:
                    c.extra["rekeying"] = True
                    out += self.rekey_child(spi, now)
        return out

    # ---- commands (initiator of the exchange) -----------------------------------------------------

    def _enqueue(self, fn: Any, now: float) -> list[Action]:
        if self.state != State.ESTABLISHED:
            return []
        if self.pending is None:
            return list(fn(now))
        self.queue.append(fn)
        return []

    def create_child(
        self, tsi: tuple[TrafficSelector, ...], tsr: tuple[TrafficSelector, ...], now: float
    ) -> list[Action]:
        return self._enqueue(lambda t: self._child_request(None, tsi, tsr, t), now)

    def rekey_child(self, spi_in: int, now: float) -> list[Action]:
        old = self.children.get(spi_in)
        if old is None:
            return []
        tsi, tsr = old.extra.get("tsi", ()), old.extra.get("tsr", ())
        return self._enqueue(lambda t: self._child_request(spi_in, tsi, tsr, t), now)

    def rekey_ike(self, now: float) -> list[Action]:
        return self._enqueue(self._ike_rekey_request, now)

    def _child_request(self, rekey_of: int | None, tsi: Any, tsr: Any, now: float) -> list[Action]:
        p = self.policy
        assert p is not None
        spi = int.from_bytes(self.rand(4), "big") | 0x100
        ni = self.rand(32)
        pl: list[Payload] = []
        if rekey_of is not None:
            pl.append(N(Nt.REKEY_SA, protocol=Protocol.ESP, spi=rekey_of.to_bytes(4, "big")))
        pl += [
            SA(props.offer(list(p.esp_suites), Protocol.ESP, spi.to_bytes(4, "big"))),
            Nonce(ni),
            TSi(tuple(tsi)),
            TSr(tuple(tsr)),
        ]
        if p.transport:
            pl.append(N(Nt.USE_TRANSPORT_MODE))
        return self._request(CCS, pl, now, "child", (spi, ni, rekey_of))

    def _ike_rekey_request(self, now: float) -> list[Action]:
        p = self.policy
        assert p is not None and self.suite is not None
        spi, ni = self.rand(8), self.rand(32)
        group = self.suite.dh or 19
        priv, pub = DH_GROUPS[group].generate(self.rand)
        mine = [s for s in p.ike_suites if s.dh == group] or list(p.ike_suites)
        pl: list[Payload] = [SA(props.offer(mine, Protocol.IKE, spi)), Nonce(ni), KE(group, pub)]
        return self._request(CCS, pl, now, "rekey_ike", (spi, ni, priv, group))

    # ---- answers to our requests ---------------------------------------------------------------

    def on_answer(self, p: object, inner: list[Payload], now: float) -> list[Action]:
        assert isinstance(p, Pending)
        errors = [n.type for n in inner if isinstance(n, N) and n.type < 16384]
        if errors:
            return [Notify(IkeDropped("refused", self.peer[0], f"{p.kind} refused with notify {errors[0]}"))]
        if p.kind == "child":
            return self._child_answer(p.ctx, inner, now)
        if p.kind == "rekey_ike":
            return self._ike_rekey_answer(p.ctx, inner, now)
        if p.kind == "delete_child":
            self.children.pop(p.ctx, None)
            return [Program(ChildSaRemove(self.spi_i, p.ctx))]
        return []

    def _child_answer(self, ctx: Any, inner: list[Payload], now: float) -> list[Action]:
        spi, ni, rekey_of = ctx
        p = self.policy
        assert p is not None
        sa, nonce, tsi, tsr = _one(inner, SA), _one(inner, Nonce), _one(inner, TSi), _one(inner, TSr)
        if len(sa.proposals) != 1 or len(sa.proposals[0].spi) != 4:
            raise DecodeError("ikev2", "sa", 0, "CREATE_CHILD_SA reply needs one ESP proposal")
        suite = props.suite_of(sa.proposals[0])
        if not props.offered(suite, p.esp_suites):
            raise DecodeError("ikev2", "sa", 0, "responder chose an ESP suite we did not offer")
        km = child_keymat(self.prf, self._sk_d(), ni, nonce.data, keymat_len(suite))
        pair = esp_pair(
            self,
            suite,
            spi,
            int.from_bytes(sa.proposals[0].spi, "big"),
            tsi.selectors,
            tsr.selectors,
            p.transport,
            km,
            initiated=True,
        )
        pair.extra.update(tsi=tsi.selectors, tsr=tsr.selectors, at=now)
        self.children[spi] = pair
        out: list[Action] = [Program(ChildSaInstall(self.spi_i, pair))]
        if rekey_of is not None and rekey_of in self.children:  # §2.8: the rekeying side deletes the old one
            old_spi = rekey_of
            self.queue.insert(
                0,
                lambda t: self._request(
                    ExchangeType.INFORMATIONAL,
                    [Delete(Protocol.ESP, (old_spi.to_bytes(4, "big"),))],
                    t,
                    "delete_child",
                    old_spi,
                ),
            )
        return out

    def _ike_rekey_answer(self, ctx: Any, inner: list[Payload], now: float) -> list[Action]:
        spi, ni, priv, group = ctx
        self.clock_now = now
        sa, nonce, ke = _one(inner, SA), _one(inner, Nonce), _one(inner, KE)
        if len(sa.proposals) != 1 or len(sa.proposals[0].spi) != 8 or ke.group != group:
            raise DecodeError("ikev2", "sa", 0, "IKE rekey reply needs one IKE proposal and our D-H group")
        suite = props.suite_of(sa.proposals[0])
        assert self.policy is not None
        if not props.offered(suite, self.policy.ike_suites):
            raise DecodeError("ikev2", "sa", 0, "IKE rekey reply with a suite we did not offer")
        g_ir = DH_GROUPS[group].shared(priv, ke.data)
        new = self._successor(True, spi, sa.proposals[0].spi, suite, g_ir, ni, nonce.data)
        out = self._handover(new)
        self.state = State.DELETING  # §2.18: the side that rekeyed deletes the old IKE SA
        return out + self._request(ExchangeType.INFORMATIONAL, [Delete(Protocol.IKE)], now, "delete")

    def _successor(
        self,
        we_initiated: bool,
        our_spi: bytes,
        their_spi: bytes,
        suite: props.Suite,
        g_ir: bytes,
        ni: bytes,
        nr: bytes,
    ) -> IkeSa:
        spi_i, spi_r = (our_spi, their_spi) if we_initiated else (their_spi, our_spi)
        new = IkeSa(
            initiator=we_initiated,
            spi_i=spi_i,
            rand=self.rand,
            local=self.local,
            peer=self.peer,
            policy=self.policy,
            clock=self.clock,
        )
        new.spi_r, new.ni, new.nr, new.suite, new.dh_group = spi_r, ni, nr, suite, suite.dh or 0
        prf_t, encr, integ = (
            suite.get(TransformType.PRF),
            suite.get(TransformType.ENCR),
            suite.get(TransformType.INTEG),
        )
        assert prf_t is not None and encr is not None and encr.key_length is not None
        new.prf = Prf(prf_t.id)
        new.sk = SkSuite(encr.id, encr.key_length, integ.id if integ else None)
        seed = rekey_skeyseed(self.prf, self._sk_d(), g_ir, ni, nr)  # old SA's PRF and SK_d
        new.keys = ike_keys(new.prf, seed, ni + nr + spi_i + spi_r, new.sk.integ_key_len, new.sk.encr_key_len)
        new.state, new.next_mid, new.peer_mid = State.ESTABLISHED, 0, 0
        new.up_at = self.clock_now
        for attr in (
            "use_4500",
            "nat_local",
            "nat_remote",
            "remote_id",
            "attributes",
            "assigner",
            "releaser",
            "claimer",
            "lookup",
            "peer_hashes",
            "created",
        ):
            setattr(new, attr, getattr(self, attr))
        return new

    def _handover(self, new: IkeSa) -> list[Action]:
        """Child SAs move to the new IKE SA (their SPIs and keys do not change)."""
        new.children, self.children = self.children, {}
        for c in new.children.values():
            c.extra.pop("rekeying", None)  # requests queued on the old IKE SA die with it
        self.rekeyed = True
        self.spawned.append(new)
        return []  # the dataplane does not change

    # ---- CREATE_CHILD_SA, responder -------------------------------------------------------------

    def on_create_child(self, inner: list[Payload], mid: int, now: float) -> list[Action]:
        self.clock_now = now
        try:
            sa = _one(inner, SA)
            if sa.proposals and sa.proposals[0].protocol == Protocol.IKE:
                pl, out = self._ike_rekey_reply(inner)
            else:
                pl, out = self._child_reply(inner)
        except Refused as r:
            return [self._respond(CCS, mid, [N(r.notify, r.data)])]
        return [*out, self._respond(CCS, mid, pl)]

    def _child_reply(self, inner: list[Payload]) -> tuple[list[Payload], list[Action]]:
        p = self.policy
        assert p is not None
        sa, nonce, tsi, tsr = _one(inner, SA), _one(inner, Nonce), _one(inner, TSi), _one(inner, TSr)
        if any(isinstance(x, KE) for x in inner):
            raise Refused(Nt.NO_PROPOSAL_CHOSEN, "PFS for Child SAs is not supported")
        rekey = next((x for x in inner if isinstance(x, N) and x.type == Nt.REKEY_SA), None)
        if rekey is not None:
            old = int.from_bytes(rekey.spi, "big") if len(rekey.spi) == 4 else -1
            if not any(c.spi_out == old for c in self.children.values()):
                raise Refused(Nt.CHILD_SA_NOT_FOUND, f"no Child SA with SPI {old:#x}")
        pick = props.choose(sa.proposals, list(p.esp_suites), Protocol.ESP, None)
        if pick is None or any(len(x.spi) != 4 for x in sa.proposals):
            raise Refused(Nt.NO_PROPOSAL_CHOSEN, "no acceptable ESP proposal")
        prop, suite = pick
        old_child = next((c for c in self.children.values() if rekey is not None and c.spi_out == old), None)
        peers, claims = self._peer_side(tsi.selectors, old_child)
        new_tsi, new_tsr = narrow(tsi.selectors, peers), narrow(tsr.selectors, p.local_ts or tsr.selectors)
        if not new_tsi or not new_tsr:
            raise Refused(Nt.TS_UNACCEPTABLE, "traffic selectors outside policy")
        spi_in, nr = int.from_bytes(self.rand(4), "big") | 0x100, self.rand(32)
        km = child_keymat(self.prf, self._sk_d(), nonce.data, nr, keymat_len(suite))
        pair = esp_pair(
            self, suite, spi_in, int.from_bytes(prop.spi, "big"), new_tsr, new_tsi, p.transport, km, initiated=False
        )
        pair.extra.update(tsi=new_tsr, tsr=new_tsi)  # from our side, for our own rekeys
        self.children[spi_in] = pair
        pl: list[Payload] = [
            SA((props.selected(prop, suite, spi_in.to_bytes(4, "big")),)),
            Nonce(nr),
            TSi(new_tsi),
            TSr(new_tsr),
        ]
        return pl, [*claims, Program(ChildSaInstall(self.spi_i, pair))]

    def _peer_side(
        self, proposed: tuple[TrafficSelector, ...], old_child: Any
    ) -> tuple[tuple[TrafficSelector, ...], list[Action]]:
        """What the initiator's side of a new Child SA may cover, failing closed (RFC 5026 §9.2: the home
        agent MUST authorize each home address allocation and use). A rekey keeps what the old Child SA
        had. Otherwise: addresses the CFG_REPLY assigned and the configured remote_ts; inside an
        assigned home prefix only single addresses that the address pool lets this identity claim
        (never another node's configured or leased address). Nothing configured: nothing."""
        p = self.policy
        assert p is not None
        if old_child is not None:
            return tuple(old_child.extra.get("tsr", ())), []
        assigned = _addresses(self.attributes)
        allowed = [t for t in assigned if t.start == t.end] + list(p.remote_ts)
        prefixes = [t for t in assigned if t.start != t.end]
        acts: list[Action] = []
        for t in proposed:
            inside = any(t.start.version == x.start.version and x.start <= t.start <= x.end for x in prefixes)  # type: ignore[operator]
            if t.start != t.end or not inside or self.claimer is None or self.remote_id is None:
                continue
            claim = self.claimer(p, self.remote_id, t.start, self.clock_now)  # type: ignore[arg-type]
            if claim is not None:
                allowed.append(TrafficSelector(t.start, t.end))
                acts += claim
        return tuple(allowed), acts

    def _sides(self) -> tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]:
        """What our side and the peer's side of a Child SA may cover (empty: whatever is proposed). The
        addresses a CFG_REPLY assigned bind the mobile node's side in both roles."""
        p = self.policy
        assert p is not None
        vips = _addresses(self.attributes)
        if self.initiator:
            return vips or p.local_ts, p.remote_ts
        return p.local_ts, vips or p.remote_ts

    def _ike_rekey_reply(self, inner: list[Payload]) -> tuple[list[Payload], list[Action]]:
        p = self.policy
        assert p is not None
        sa, nonce, ke = _one(inner, SA), _one(inner, Nonce), _one(inner, KE)
        pick = props.choose(sa.proposals, list(p.ike_suites), Protocol.IKE, ke.group)
        if pick is None or any(len(x.spi) != 8 for x in sa.proposals):
            raise Refused(Nt.NO_PROPOSAL_CHOSEN, "no acceptable IKE rekey proposal")
        prop, suite = pick
        if suite.dh != ke.group:
            raise Refused(Nt.INVALID_KE_PAYLOAD, f"KE group {ke.group}", (suite.dh or 0).to_bytes(2, "big"))
        priv, pub = DH_GROUPS[ke.group].generate(self.rand)
        g_ir = DH_GROUPS[ke.group].shared(priv, ke.data)
        our_spi, nr = self.rand(8), self.rand(32)
        new = self._successor(False, our_spi, prop.spi, suite, g_ir, nonce.data, nr)
        out = self._handover(new)
        pl: list[Payload] = [SA((props.selected(prop, suite, our_spi),)), Nonce(nr), KE(ke.group, pub)]
        return pl, out
