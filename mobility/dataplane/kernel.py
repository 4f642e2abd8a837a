"""Kernel ESP backend: XFRM states and policies with `encap espinudp` (the counterpart of strongSwan's
kernel-netlink plugin). natt keeps UDP 4500 (with UDP_ENCAP set) for IKE demux and keepalives.

Sibling SAs (two Child SAs with the same selectors to the same peer: a rekeyed Child SA beside its
predecessor until that is deleted, RFC 7296 §2.8, or a restarted peer's new Child SA before the old
one goes) share one reqid and one set of policies, as in strongSwan's kernel-netlink: the kernel
keeps one policy per selector and direction, and its template matches states by reqid, so the older
SA's inbound packets pass the policy check only when its states carry the same reqid. For outbound,
Linux picks the newest valid state among those with that reqid and addresses (`xfrm_state_find`
prefers the later `curlft.add_time`; adding a state bumps its older siblings' genid, so cached
bundles are looked up again): the newest SA carries the traffic, as in natt's userspace data plane.
Deleting an SA removes its states; the policies go with the last SA of the group.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from ipaddress import ip_network
from typing import Any

from mobility.dataplane.sa import Cipher, EspSaPair, IPAddress, Mode
from mobility.dataplane.xfrm import (
    XFRM_MODE_TRANSPORT,
    XFRM_MODE_TUNNEL,
    XFRM_POLICY_FWD,
    XFRM_POLICY_IN,
    XFRM_POLICY_OUT,
    Replay,
    Selector,
    XfrmSocket,
    algo,
    algo_aead,
    algo_auth,
    encap_tmpl,
    user_tmpl,
)  # fmt: skip

REQID_MAX = 0x7FFFFFFF
GONE = (ProcessLookupError, FileNotFoundError)  # Linux: ESRCH for a state, ENOENT for a policy


def _crypto(sa: EspSaPair, key: bytes, integ_key: bytes) -> dict[str, Any]:
    if sa.cipher is Cipher.AES_GCM_16:
        return {"aead": algo_aead("rfc4106(gcm(aes))", key, 128)}
    return {"crypt": algo("cbc(aes)", key), "auth": algo_auth("hmac(sha256)", integ_key, 128)}


def _host(a: Any) -> Any:
    return ip_network(f"{a}/{a.max_prefixlen}")


def selectors(sa: EspSaPair) -> list[tuple[Selector, Selector]]:
    """(outbound, inbound) selector pairs of the SA's policies."""
    if sa.mode is Mode.TRANSPORT:
        local, remote = _host(sa.local), _host(sa.peer_alias or sa.peer)
        return [(Selector(local, remote), Selector(remote, local))]
    any_net = ip_network("0.0.0.0/0" if sa.remote_ts[0].version == 4 else "::/0")
    locals_ = [n for n in sa.local_ts if n.version == sa.remote_ts[0].version] or [any_net]
    return [(Selector(lo, re), Selector(re, lo)) for lo in locals_ for re in sa.remote_ts]


@dataclass(frozen=True, slots=True)
class GroupKey:
    """What siblings have in common: the policies (selectors, mode, template addresses) and the peer."""

    selectors: frozenset[tuple[Selector, Selector]]
    mode: Mode
    local: IPAddress
    peer: IPAddress
    peer_port: int

    @classmethod
    def of(cls, sa: EspSaPair) -> GroupKey:
        return cls(frozenset(selectors(sa)), sa.mode, sa.local, sa.peer, sa.peer_port)


@dataclass(slots=True)
class SaGroup:
    key: GroupKey
    reqid: int
    members: dict[int, EspSaPair] = field(default_factory=dict)  # by inbound SPI, oldest first


@dataclass(frozen=True, slots=True)
class AddPlan:
    reqid: int
    new_policies: bool  # first SA of its group: the policies must be installed


class SiblingTable:
    """Installed SAs grouped by policy selectors and peer; decides reqids and when policies come and
    go. Pure: the backend asks it first and tells it what the kernel accepted."""

    def __init__(self) -> None:
        self._groups: dict[GroupKey, SaGroup] = {}
        self._by_spi: dict[int, SaGroup] = {}
        self._by_selector: dict[Selector, SaGroup] = {}  # outbound selector -> the group owning it

    def group_of(self, spi_in: int) -> SaGroup | None:
        return self._by_spi.get(spi_in)

    def siblings(self, spi_in: int) -> list[EspSaPair]:
        """The other SAs sharing this one's policies, oldest first."""
        group = self._by_spi.get(spi_in)
        return [] if group is None else [sa for spi, sa in group.members.items() if spi != spi_in]

    def reqid_for(self, sa: EspSaPair) -> int:
        """The reqid `sa` will get: its own when it has one, its siblings' when it has some, else a
        free one derived from its inbound SPI (deterministic for a given table)."""
        if sa.reqid:
            return sa.reqid
        group = self._groups.get(GroupKey.of(sa))
        if group is not None:
            return group.reqid
        used = {g.reqid for g in self._groups.values()}
        rid = (sa.spi_in & REQID_MAX) or 1
        while rid in used:
            rid = rid % REQID_MAX + 1
        return rid

    def plan_add(self, sa: EspSaPair) -> AddPlan:
        """Raises ValueError (nothing changed) when the kernel could not hold `sa` beside the others."""
        if sa.spi_in in self._by_spi:
            raise ValueError(f"SA with inbound SPI {sa.spi_in:#x} already in the kernel")
        key = GroupKey.of(sa)
        rid = self.reqid_for(sa)
        group = self._groups.get(key)
        if group is not None:
            if rid != group.reqid:
                raise ValueError(
                    f"reqid {rid} differs from {group.reqid} of its sibling SA(s) {_spis(group)}: siblings share"
                    " one set of policies, which matches their states by reqid"
                )
            return AddPlan(group.reqid, new_policies=False)
        self._check_selectors_free(key, moving=None)
        return AddPlan(rid, new_policies=True)

    def _check_selectors_free(self, key: GroupKey, moving: SaGroup | None) -> None:
        for out_sel, _ in key.selectors:
            owner = self._by_selector.get(out_sel)
            if owner is not None and owner is not moving:
                raise ValueError(
                    f"policy {out_sel.src} -> {out_sel.dst} belongs to SA(s) {_spis(owner)} with "
                    f"{owner.key.peer} port {owner.key.peer_port} ({owner.key.mode}); only an SA with the same "
                    "selectors, mode and peer may share it"
                )

    def add(self, sa: EspSaPair, reqid: int) -> None:
        key = GroupKey.of(sa)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = SaGroup(key, reqid)
            for out_sel, _ in key.selectors:
                self._by_selector[out_sel] = group
        group.members[sa.spi_in] = sa
        self._by_spi[sa.spi_in] = group

    def remove(self, spi_in: int) -> tuple[EspSaPair, bool] | None:
        """Forget an SA: (the SA as installed, whether it was the last of its group) or None."""
        group = self._by_spi.pop(spi_in, None)
        if group is None:
            return None
        sa = group.members.pop(spi_in)
        if group.members:
            return sa, False
        self._drop_group(group)
        return sa, True

    def _drop_group(self, group: SaGroup) -> None:
        del self._groups[group.key]
        for out_sel, _ in group.key.selectors:
            if self._by_selector.get(out_sel) is group:
                del self._by_selector[out_sel]

    def owns_selectors(self, sa: EspSaPair) -> bool:
        return any(out_sel in self._by_selector for out_sel, _ in selectors(sa))

    def plan_move(self, spi_in: int, peer: IPAddress, peer_port: int) -> tuple[SaGroup, GroupKey, list[EspSaPair]]:
        """MOBIKE for a group: (the group, its new key, its members at the new address), or ValueError
        when the new selectors are another group's."""
        group = self._by_spi.get(spi_in)
        if group is None:
            raise KeyError(f"no SA with inbound SPI {spi_in:#x} in the kernel")
        moved = [sa.with_peer(peer, peer_port) for sa in group.members.values()]
        key = GroupKey.of(moved[0])
        if key != group.key:
            if key in self._groups:
                raise ValueError(
                    f"SA(s) {_spis(self._groups[key])} already hold these selectors at {peer} port {peer_port}"
                )
            self._check_selectors_free(key, moving=group)
        return group, key, moved

    def move(self, group: SaGroup, key: GroupKey, moved: list[EspSaPair]) -> None:
        self._drop_group(group)
        new = self._groups[key] = SaGroup(key, group.reqid)
        for out_sel, _ in key.selectors:
            self._by_selector[out_sel] = new
        for sa in moved:
            new.members[sa.spi_in] = sa
            self._by_spi[sa.spi_in] = new


def _spis(group: SaGroup) -> str:
    return ", ".join(f"{spi:#x}" for spi in group.members)


class KernelEspBackend:
    def __init__(self, xfrm: XfrmSocket | None = None) -> None:
        self._x = xfrm if xfrm is not None else XfrmSocket()
        self._table = SiblingTable()

    def close(self) -> None:
        self._x.close()

    def reqid_for(self, sa: EspSaPair) -> int:
        """The reqid `add_sa` will give `sa` (its siblings' when it has some); natt stores it with the
        SA so a restore gives the siblings the same reqid whatever their order."""
        return self._table.reqid_for(sa)

    def siblings(self, sa: EspSaPair) -> list[EspSaPair]:
        return self._table.siblings(sa.spi_in)

    def add_sa(self, sa: EspSaPair, *, oseq: int = 0, replay: Replay | None = None) -> int:
        """Install the states, and the policies unless a sibling already has them; returns the reqid.
        A restored SA continues its numbering (`oseq`) and its inbound window (`replay`). ValueError
        when the SA cannot share (nothing changed); OSError from the kernel, after undoing what this
        call installed."""
        plan = self._table.plan_add(sa)
        undo: list[Callable[[], None]] = []
        try:
            self._add_states(sa, oseq, plan.reqid, undo, replay)
            if plan.new_policies:
                self._policies(sa, plan.reqid, update=False, undo=undo)
        except OSError:
            for step in reversed(undo):
                with suppress(OSError):
                    step()
            raise
        self._table.add(sa, plan.reqid)
        return plan.reqid

    def _add_states(
        self,
        sa: EspSaPair,
        oseq: int,
        reqid: int,
        undo: list[Callable[[], None]] | None = None,
        replay: Replay | None = None,
    ) -> None:
        """Inbound (peer → us, our SPI) and outbound (us → peer, the peer's SPI) ESP-in-UDP states."""
        mode = XFRM_MODE_TUNNEL if sa.mode is Mode.TUNNEL else XFRM_MODE_TRANSPORT
        common: dict[str, Any] = {
            "mode": mode,
            "reqid": reqid,
            "replay_window": sa.replay_window,
            "esn": sa.esn,
        }
        self._x.add_state(
            src=sa.peer,
            dst=sa.local,
            spi=sa.spi_in,
            encap=encap_tmpl(sa.peer_port, sa.local_port),
            replay=replay,
            **common,
            **_crypto(sa, sa.key_in, sa.integ_key_in),
        )
        if undo is not None:
            undo.append(partial(self._x.del_state, sa.local, sa.spi_in))
        self._x.add_state(
            src=sa.local,
            dst=sa.peer,
            spi=sa.spi_out,
            encap=encap_tmpl(sa.local_port, sa.peer_port),
            oseq=oseq,
            **common,
            **_crypto(sa, sa.key_out, sa.integ_key_out),
        )
        if undo is not None:
            undo.append(partial(self._x.del_state, sa.peer, sa.spi_out))

    def _policies(
        self, sa: EspSaPair, reqid: int, *, update: bool, undo: list[Callable[[], None]] | None = None
    ) -> None:
        mode = XFRM_MODE_TUNNEL if sa.mode is Mode.TUNNEL else XFRM_MODE_TRANSPORT
        out_t = user_tmpl(sa.local, sa.peer, 0, mode, reqid)
        in_t = user_tmpl(sa.peer, sa.local, 0, mode, reqid)
        for out_sel, in_sel in selectors(sa):
            todo = [(out_sel, XFRM_POLICY_OUT, out_t), (in_sel, XFRM_POLICY_IN, in_t)]
            if sa.mode is Mode.TUNNEL:
                todo.append((in_sel, XFRM_POLICY_FWD, in_t))
            for sel, direction, tmpl in todo:
                self._x.add_policy(sel, direction, tmpl, update=update)
                if undo is not None:
                    undo.append(partial(self._x.del_policy, sel, direction))

    def _del_policies(self, sa: EspSaPair) -> None:
        for out_sel, in_sel in selectors(sa):
            for sel, d in ((out_sel, XFRM_POLICY_OUT), (in_sel, XFRM_POLICY_IN), (in_sel, XFRM_POLICY_FWD)):
                if d == XFRM_POLICY_FWD and sa.mode is Mode.TRANSPORT:
                    continue
                try:
                    self._x.del_policy(sel, d)
                except GONE:
                    pass

    def update_peer(self, old: EspSaPair, new: EspSaPair) -> list[int]:
        """MOBIKE: the states are keyed by address, so they are replaced; policies are updated in place
        (or replaced, in transport mode, where the peer's address is the selector).

        Siblings move together: they share one set of policies, whose template names one peer, so
        moving one alone would leave the other's inbound packets failing the policy check. (MOBIKE
        moves an IKE SA with all its Child SAs, RFC 4555 §3.5; a rekey's siblings belong to one IKE SA,
        and a restarted peer's stale SA is about to be deleted.) Returns the inbound SPIs moved, this
        SA's first; a later update of a sibling to the same address has nothing left to do. ValueError
        (nothing changed) when the new selectors belong to another SA."""
        group = self._table.group_of(old.spi_in)
        installed = old if group is None else group.members[old.spi_in]
        if (installed.peer, installed.peer_port) == (new.peer, new.peer_port):
            return [old.spi_in]
        group, key, moved = self._table.plan_move(old.spi_in, new.peer, new.peer_port)
        for before, after in zip(list(group.members.values()), moved, strict=True):
            # keep the numbering (no GCM IV reused) and the inbound window (no packet accepted twice)
            oseq = self._x.get_state(before.peer, before.spi_out).get("oseq", 0)
            replay = self._x.get_state(before.local, before.spi_in).get("window")
            self._del_states(before)
            self._add_states(after, oseq, group.reqid, replay=replay)
        if key.selectors == group.key.selectors:
            self._policies(moved[-1], group.reqid, update=True)
        else:
            self._del_policies(next(iter(group.members.values())))
            self._policies(moved[-1], group.reqid, update=False)
        self._table.move(group, key, moved)
        return [old.spi_in, *(sa.spi_in for sa in moved if sa.spi_in != old.spi_in)]

    def _del_states(self, sa: EspSaPair) -> None:
        for dst, spi in ((sa.local, sa.spi_in), (sa.peer, sa.spi_out)):
            try:
                self._x.del_state(dst, spi)
            except GONE:
                pass

    def del_sa(self, sa: EspSaPair) -> None:
        """Remove the SA's states; its policies too when no sibling still needs them."""
        gone = self._table.remove(sa.spi_in)
        if gone is None:  # not installed by us: its states, and policies no group of ours holds
            self._del_states(sa)
            if not self._table.owns_selectors(sa):
                self._del_policies(sa)
            return
        installed, last = gone
        self._del_states(installed)
        if last:
            self._del_policies(installed)

    def reading(self, sa: EspSaPair) -> tuple[int, Replay | None]:
        """What the kernel counted for the SA: the last outbound sequence number and the inbound window
        (0 and None for states it does not hold)."""
        oseq, replay = 0, None
        with suppress(*GONE):
            oseq = self._x.get_state(sa.peer, sa.spi_out).get("oseq", 0)
        with suppress(*GONE):
            replay = self._x.get_state(sa.local, sa.spi_in).get("window")
        return oseq, replay

    def remove_leftover(self, sa: EspSaPair) -> tuple[int, Replay | None]:
        """An SA a previous run installed and did not remove (killed): its states and policies go, and
        what the kernel had counted comes back (`reading`), so that the SA can be installed again where
        it stood."""
        counted = self.reading(sa)
        self.del_sa(sa)
        return counted

    def counters(self, sa: EspSaPair) -> dict[str, int]:
        """Packet counters, with the highest sequence numbers sent (`out_seq`) and accepted (`in_seq`)."""
        i = self._x.get_state(sa.local, sa.spi_in)
        o = self._x.get_state(sa.peer, sa.spi_out)
        return {
            "out_seq": o.get("oseq", o["packets"]),
            "in_seq": i["window"].seq if "window" in i else 0,
            "in_packets": i["packets"],
            "in_bytes": i["bytes"],
            "out_packets": o["packets"],
            "out_bytes": o["bytes"],
            "drop_replay": i["replay"] + i.get("replay_window", 0),  # seen, or too old for the window
            "drop_icv": i["integrity_failed"],
        }
