"""natt daemon shell: owns UDP 4500, the TUN device or the kernel backend, the control commands
and the state store; everything else is NattEngine's."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import sys
from dataclasses import replace
from ipaddress import ip_address, ip_interface
from pathlib import Path
from typing import Any

from mobility.dataplane.sa import EspSaPair
from mobility.dataplane.xfrm import Replay
from mobility.engine import Action, Deliver, Notify, Persist, Program, Send
from mobility.service import msgids
from mobility.service.control import ControlConnection, Handler
from mobility.service.logging import RateLimitedLog
from mobility.service.runner import DaemonContext
from mobility.service.state import StateStore
from natt.config import NattConfig
from natt.engine import (
    Dropped,
    IkeReceived,
    NattEngine,
    RouteAdd,
    RouteDel,
    SaAdded,
    SaForgotten,
    SaPeerUpdated,
    SaRemoved,
    SaSeqExhausted,
    SaStored,
    SeqReserved,
)
from natt.sadb import Checkpoint

XFRM_KIND = "xfrm"  # state-store records of what the kernel data plane installed, for cleanup after a kill -9

log = logging.getLogger("natt")
drop_log = RateLimitedLog(logging.getLogger("natt.drops"))

SO_NO_CHECK = 11
SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104  # include/uapi/linux/udp.h
GSO_MAX_SEGMENTS, GSO_MAX_BYTES = 64, 60000
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
BATCH = 256  # datagrams or TUN packets handled per readiness callback


def choose_dataplane(wanted: str) -> tuple[str, str]:
    """`auto` probes whether this kernel can install an ESP XFRM state (ARCHITECTURE.md)."""
    from mobility.dataplane.probe import choose_backend, probe_kernel_esp

    return choose_backend(wanted, probe_kernel_esp, "dataplane")


class NattDaemon:
    def __init__(self, cfg: NattConfig, ctx: DaemonContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.engine = NattEngine(
            rand=os.urandom,
            keepalive_interval_s=cfg.keepalive.interval_s,
            keepalive_linger_s=cfg.keepalive.linger_s,
        )
        self.dataplane = "none"
        self.dataplane_reason = ""
        self._socks: dict[int, socket.socket] = {}
        self._tun: Any = None
        self._routing: Any = None
        self._kernel: Any = None
        self._kernel_poll: asyncio.Task[None] | None = None
        self._store: StateStore | None = None
        self._records: dict[int, dict[str, Any]] = {}
        self._added = 0  # install counter stored with each SA: a restore keeps the order (newest sibling last)
        self._left_in_kernel: dict[int, tuple[int, Replay | None]] = {}  # by SPI: what a killed run left counted
        self._ike_owner: ControlConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._gso = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self.handlers: dict[str, Handler] = {
            "sas": self._cmd_sas,
            "sa.add": self._cmd_sa_add,
            "sa.update": self._cmd_sa_update,
            "sa.del": self._cmd_sa_del,
            "stats": self._cmd_stats,
            "peers": self._cmd_peers,
            "ike.register": self._cmd_ike_register,
            "ike.send": self._cmd_ike_send,
            "addr.add": lambda a, c: self._cmd_addr(a, "replace"),
            "addr.del": lambda a, c: self._cmd_addr(a, "del"),
        }

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.cfg.log_secrets:
            log.warning("log_secrets = true: SA keys will be written to the log")
        self.dataplane, self.dataplane_reason = choose_dataplane(self.cfg.dataplane)
        if self.dataplane == "userspace" and self.cfg.dataplane == "auto":
            log.info("data plane: userspace ESP on TUN %s (%s)", self.cfg.tun.name, self.dataplane_reason)
        else:
            log.info("data plane: %s (%s)", self.dataplane, self.dataplane_reason)
        self._open_sockets()
        if self.dataplane == "userspace":
            self._open_tun()
        else:
            from mobility.dataplane.kernel import KernelEspBackend

            self._kernel = KernelEspBackend()
            self._kernel_poll = self._loop.create_task(self._poll_kernel_seq())
        self._store = StateStore(self.ctx.state_dir / "natt.sqlite")
        if self._kernel is not None:
            self._left_in_kernel = self._remove_leftovers()
        self._restore()
        self._left_in_kernel = {}
        self._rearm()

    def _open_sockets(self) -> None:
        from mobility.dataplane.userspace import mark_socket
        from mobility.dataplane.xfrm import socket_bypass

        assert self._loop is not None
        for addr in self.cfg.listen:
            family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
            sock = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            else:  # RFC 3948 §2.1, §2.3: the IPv4 UDP checksum SHOULD be sent as zero
                sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
            # bursts while the other core is busy: SO_*BUF alone is capped by net.core.[rw]mem_max
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 8 << 20)
            mark_socket(sock, self.cfg.tun.fwmark)
            socket_bypass(sock, required=False)  # our datagrams never enter an XFRM SA (transport mode)
            if self.dataplane == "userspace":
                try:  # receive bursts coalesced: one syscall for up to 64 datagrams of one flow
                    sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                except OSError as e:
                    log.debug("UDP_GRO unavailable: %s", e)
            if self.dataplane == "kernel":
                from mobility.dataplane.probe import set_udp_encap

                set_udp_encap(sock)  # the kernel decapsulates ESP; IKE and 0xFF still reach us
            sock.bind((str(addr), self.cfg.port))
            sock.setblocking(False)
            self._socks[addr.version] = sock
            self._loop.add_reader(sock.fileno(), self._on_udp, sock)
        log.info("listening on UDP %s port %d", ", ".join(str(a) for a in self.cfg.listen), self.cfg.port)

    def _open_tun(self) -> None:
        from mobility.dataplane.userspace import PolicyRouting, TunDevice

        assert self._loop is not None
        t = self.cfg.tun
        self._tun = TunDevice(t.name)
        self._routing = PolicyRouting(t.name, table=t.table, mark=t.fwmark, priority=t.rule_priority, mtu=t.mtu)
        self._routing.setup(t.addresses)
        self._loop.add_reader(self._tun.fd, self._on_tun)

    def _restore(self) -> None:
        """Persistent SAs in the order they were installed, so siblings (same selectors, same peer)
        come back with the newest still the newest; the kernel backend's reqid is stored with them."""
        assert self._store is not None
        now = self._now()
        records = self._store.all("sa")
        self._added = max((_added(rec) for rec in records.values()), default=0)
        for key, rec in sorted(records.items(), key=lambda item: (_added(item[1]), item[0])):
            spi = -1
            try:
                sa = EspSaPair.from_json(rec["sa"])
                spi = sa.spi_in
                cp = Checkpoint(out_reserved=int(rec["out_reserved"]), in_reserved=int(rec["in_reserved"]))
                self._records[spi] = rec  # keeps its install order when stored again
                self._install(sa, restored=cp, now=now)
            except (ValueError, KeyError, TypeError, OSError) as e:
                self._records.pop(spi, None)
                log.error("cannot restore SA %s from the state store: %s", key, e)

    async def stop(self) -> None:
        assert self._loop is not None
        if self._timer:
            self._timer.cancel()
        for sock in self._socks.values():
            self._loop.remove_reader(sock.fileno())
            sock.close()
        if self._tun is not None:
            self._loop.remove_reader(self._tun.fd)
            self._tun.close()
        if self._routing is not None:
            self._routing.teardown()
        if self._kernel is not None:
            if self._kernel_poll is not None:
                self._kernel_poll.cancel()
            if self._live_sas():
                # UDP 4500 is closed: no ESP reaches the states any more. A moment for packets already
                # inside the kernel's receive path, then their windows are final.
                await asyncio.sleep(0.05)
            for sa in self._live_sas():
                try:
                    counted = self._kernel.reading(sa) if sa.persistent else None
                    self._kernel.del_sa(sa)
                except OSError as e:
                    log.debug("kernel SA removal: %s", e)
                    continue
                if counted is None:
                    self._forget_in_kernel(sa.spi_in)
                else:  # the restart continues from it: nothing lost, nothing accepted twice
                    self._apply(self.engine.note_kernel_seq(sa.spi_in, counted[0], _top(counted[1])))
                    self._note_in_kernel(sa, counted=counted)
            self._kernel.close()
        if self._store is not None:
            self._store.close()

    def _remove_leftovers(self) -> dict[int, tuple[int, Replay | None]]:
        """Kernel data plane: the states and policies of every SA a previous run installed and did not
        remove (it was killed) go, so nothing stale selects or drops traffic and the persistent SAs
        can be installed again (no EEXIST). What the kernel had counted for them comes back by
        inbound SPI: the persistent SAs continue from it (sequence numbers, inbound window)."""
        assert self._store is not None and self._kernel is not None
        counted: dict[int, tuple[int, Replay | None]] = {}
        found = 0
        for key, rec in self._store.all(XFRM_KIND).items():
            for obj in rec.get("sas", []):
                try:
                    sa = EspSaPair.from_json(obj)
                    oseq, replay = self._kernel.remove_leftover(sa)
                    found += replay is not None
                    if replay is None and "window" in rec:  # stopped gracefully: the reading it stored
                        w = rec["window"]
                        oseq = max(oseq, int(rec.get("oseq", 0)))
                        replay = Replay(int(w["seq"]), bytes.fromhex(str(w["bitmap"])) or None)
                except (ValueError, KeyError, TypeError, OSError) as e:
                    log.error("cannot remove the kernel SA %s left by the previous run: %s", key, e)
                    continue
                old = counted.get(sa.spi_in)
                if old is None or oseq > old[0] or (replay is not None and old[1] is None):
                    counted[sa.spi_in] = (oseq, replay)
            self._store.delete(XFRM_KIND, key)
        if found:
            log.info("%d SA(s) a killed run left in the kernel removed", found)
        return counted

    def _note_in_kernel(self, *sas: EspSaPair, counted: tuple[int, Replay | None] | None = None) -> None:
        """Committed before the kernel gets the SA: enough to find its states and policies after a
        kill -9 (the SA's identity; its keys zeroed: a non-persistent SA's keys never reach the disk).
        On a graceful stop, a persistent SA's record keeps instead what the kernel had `counted` when
        its states went: the next start continues from there."""
        assert self._store is not None
        rec: dict[str, Any] = {"sas": [_keyless(sa).to_json() for sa in sas]}
        if counted is not None:
            oseq, window = counted
            rec["oseq"] = oseq
            if window is not None:
                rec["window"] = {"seq": window.seq, "bitmap": (window.bitmap or b"").hex()}
        self._store.put(XFRM_KIND, f"{sas[0].spi_in:08x}", rec)

    def _forget_in_kernel(self, spi_in: int) -> None:
        assert self._store is not None
        self._store.delete(XFRM_KIND, f"{spi_in:08x}")

    async def _poll_kernel_seq(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for sa in self._live_sas():
                if not sa.persistent:
                    continue
                try:
                    c = self._kernel.counters(sa)
                except OSError as e:
                    log.debug("kernel counters for %#x: %s", sa.spi_in, e)
                    continue
                self._apply(self.engine.note_kernel_seq(sa.spi_in, c["out_seq"], c["in_seq"]))

    def reload(self, cfg: NattConfig) -> str:
        fixed = ("listen", "port", "dataplane", "tun", "service")
        changed = [name for name in fixed if getattr(cfg, name) != getattr(self.cfg, name)]
        if changed:
            raise ValueError(f"changing {', '.join(changed)} needs a restart; kept the running configuration")
        self.engine.set_keepalive(cfg.keepalive.interval_s, cfg.keepalive.linger_s)
        self.cfg = cfg
        self._rearm()
        return f"keepalive interval {cfg.keepalive.interval_s:g} s, linger {cfg.keepalive.linger_s:g} s"

    def status(self) -> dict[str, Any]:
        return {
            "dataplane": self.dataplane,
            "dataplane_reason": self.dataplane_reason,
            "tun": self.cfg.tun.name if self.dataplane == "userspace" else "",  # where decapsulated packets arrive
            "port": self.cfg.port,
            "sas": len(self.engine.sas()),
            "peers": len(self.engine.peers()),
            "ike_owner": self._ike_owner is not None,
            "drops": sum(self.engine.drops.values()),
            "keepalives_sent": self.engine.stats["keepalive_tx"],
        }

    # ---- hot paths -------------------------------------------------------------------------------
    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_udp(self, sock: socket.socket) -> None:
        inbound, now, recv = self.engine.inbound, self._now(), sock.recvmsg
        tun_fd = self._tun.fd if self._tun is not None else -1
        space = socket.CMSG_SPACE(4)
        for _ in range(BATCH):
            try:
                data, anc, _flags, addr = recv(65535, space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ICMP errors surface here; never fatal
                log.debug("UDP receive: %s", e)
                continue
            datagrams = [data]
            if anc and anc[0][0] == SOL_UDP and anc[0][1] == UDP_GRO:
                seg = int.from_bytes(anc[0][2][:4], sys.byteorder)  # UDP_GRO: coalesced, split by size
                if 0 < seg < len(data):
                    datagrams = [data[i : i + seg] for i in range(0, len(data), seg)]
            for datagram in datagrams:
                actions = inbound(datagram, addr[0], addr[1], now=now)
                if len(actions) == 1 and type(actions[0]) is Deliver and tun_fd >= 0:
                    try:
                        os.write(tun_fd, actions[0].packet)
                    except OSError as e:
                        self.engine.drops["tun_write"] += 1
                        log.debug("TUN write refused: %s", e)
                elif actions:
                    self._apply(actions)

    def _on_tun(self) -> None:
        """Encrypt what the TUN device holds; consecutive datagrams of one size to one peer leave
        in one UDP GSO send, so the kernel (routing, NAT, veth) handles the burst once."""
        outbound, fd, now = self.engine.outbound, self._tun.fd, self._now()
        batch: list[bytes] = []
        dest: tuple[str, int] = ("", 0)
        seg = 0
        for _ in range(BATCH):
            try:
                packet = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            actions = outbound(packet, now=now)
            if len(actions) != 1 or type(actions[0]) is not Send:
                self._flush(batch, dest, seg)
                batch = []
                self._apply(actions)
                continue
            a = actions[0]
            size = len(a.data)
            if batch and (
                (a.addr, a.port) != dest
                or size > seg
                or len(batch) >= GSO_MAX_SEGMENTS
                or (len(batch) + 1) * seg > GSO_MAX_BYTES
            ):
                self._flush(batch, dest, seg)
                batch = []
            if not batch:
                dest, seg = (a.addr, a.port), size
            batch.append(a.data)
            if size < seg:  # a shorter datagram can only end a GSO batch
                self._flush(batch, dest, seg)
                batch = []
        self._flush(batch, dest, seg)

    def _flush(self, batch: list[bytes], dest: tuple[str, int], seg: int) -> None:
        if not batch:
            return
        sock = self._socks.get(6 if ":" in dest[0] else 4)
        if sock is None:
            self.engine.drops["no_socket"] += len(batch)
            return
        try:
            if len(batch) == 1 or not self._gso:
                for data in batch:
                    sock.sendto(data, dest)
                return
            v4 = sock.family == socket.AF_INET
            if v4:  # the kernel refuses GSO on a no-checksum socket: these carry a UDP checksum
                sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0)
            try:
                sock.sendmsg([b"".join(batch)], [(SOL_UDP, UDP_SEGMENT, seg.to_bytes(2, sys.byteorder))], 0, dest)
            finally:
                if v4:
                    sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        except OSError as e:
            if len(batch) > 1 and self._gso:
                log.info("UDP GSO send failed (%s): sending datagrams one by one from now on", e)
                self._gso = False
                self._flush(batch, dest, seg)
                return
            self.engine.drops["send_error"] += len(batch)
            log.debug("send to %s: %s", dest[0], e)

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            kind = type(a)
            if kind is Deliver:
                self._tun.write(a.packet)  # type: ignore[union-attr]
            elif kind is Send:
                self._send(a)  # type: ignore[arg-type]
            elif kind is Persist:
                self._persist(a.record)  # type: ignore[union-attr]
            elif kind is Notify:
                self._notify(a.event)  # type: ignore[union-attr]
            elif kind is Program:
                self._program(a.op)  # type: ignore[union-attr]

    def _send(self, a: Send) -> None:
        sock = self._socks.get(6 if ":" in a.addr else 4)
        if sock is None:
            self.engine.drops["no_socket"] += 1
            return
        try:
            sock.sendto(a.data, (a.addr, a.port))
        except OSError as e:
            self.engine.drops["send_error"] += 1
            log.debug("send to %s: %s", a.addr, e)

    # ---- slow paths ------------------------------------------------------------------------------
    def _persist(self, rec: Any) -> None:
        """Committed before the actions after it run (and before any control reply)."""
        assert self._store is not None
        if isinstance(rec, SaStored):
            prev = self._records.get(rec.spi_in)
            if prev is not None and "added" in prev:
                added = _added(prev)
            else:
                self._added += 1
                added = self._added
            self._records[rec.spi_in] = {
                "sa": rec.sa,
                "out_reserved": rec.out_reserved,
                "in_reserved": rec.in_reserved,
                "added": added,
            }
            self._store.put("sa", f"{rec.spi_in:08x}", self._records[rec.spi_in])
        elif isinstance(rec, SeqReserved):
            stored = self._records.get(rec.spi_in)
            if stored is not None:
                stored.update(out_reserved=rec.out_reserved, in_reserved=rec.in_reserved)
                self._store.put("sa", f"{rec.spi_in:08x}", stored)
                self.engine.note_commit(rec.spi_in, now=self._now())
        elif isinstance(rec, SaForgotten):
            self._records.pop(rec.spi_in, None)
            self._store.delete("sa", f"{rec.spi_in:08x}")

    def _program(self, op: Any) -> None:
        if self._routing is None:
            return  # kernel backend: XFRM policies select the traffic
        if isinstance(op, RouteAdd):
            self._routing.add_route(op.dst, op.src)
        elif isinstance(op, RouteDel):
            self._routing.del_route(op.dst)

    def _notify(self, ev: Any) -> None:
        if isinstance(ev, Dropped):
            drop_log.debug(ev.reason, "dropped from %s: %s %s", ev.src, ev.reason, ev.detail)
        elif isinstance(ev, IkeReceived):
            self._relay_ike(ev)
        elif isinstance(ev, SaAdded):
            log.info(
                "SA %#x/%#x %s with %s:%d%s",
                ev.spi_in,
                ev.spi_out,
                ev.mode,
                ev.peer,
                ev.peer_port,
                " (restored)" if ev.restored else "",
                extra={
                    "MESSAGE_ID": msgids.SA_ADDED,
                    "MOBILITY_SPI": f"{ev.spi_in:08x}",
                    "MOBILITY_PEER": ev.peer,
                },
            )
        elif isinstance(ev, SaRemoved):
            log.info(
                "SA %#x removed: %s",
                ev.spi_in,
                ev.reason,
                extra={"MESSAGE_ID": msgids.SA_REMOVED, "MOBILITY_SPI": f"{ev.spi_in:08x}"},
            )
        elif isinstance(ev, SaPeerUpdated):
            log.info("SA %#x now with %s:%d", ev.spi_in, ev.peer, ev.peer_port)
        elif isinstance(ev, SaSeqExhausted):
            log.warning("SA %#x used its last sequence number: rekey needed", ev.spi_in)

    def _relay_ike(self, ev: IkeReceived) -> None:
        owner = self._ike_owner
        if owner is None or owner.closed:
            self.engine.drops["ike_no_owner"] += 1
            return
        owner.send_event(
            {"event": "ike", "src": ev.src, "sport": ev.sport, "data": base64.b64encode(ev.message).decode()}
        )

    def _rearm(self) -> None:
        assert self._loop is not None
        at = self.engine.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at is not None:
            self._timer = self._loop.call_at(max(at, self._now()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._apply(self.engine.on_timer(now=self._now()))
        self._rearm()

    # ---- SA management ---------------------------------------------------------------------------
    def _live_sas(self) -> list[EspSaPair]:
        return [self.engine.sa(int(s["spi_in"])) for s in self.engine.sas()]

    def _install(self, sa: EspSaPair, *, now: float, restored: Checkpoint | None = None) -> EspSaPair:
        if self._kernel is not None:  # a sibling gets the reqid of the SA(s) whose policies it shares
            sa = replace(sa, reqid=self._kernel.reqid_for(sa))  # stored with the SA: same reqid after a restore
        actions = self.engine.add_sa(sa, now=now, restored=restored)  # ValueError: nothing changed
        if self._kernel is not None:
            # a restored SA continues above its persisted reservations (no IV reused, no packet accepted
            # twice), or where the kernel stood when the previous run was killed
            oseq, reserved = self.engine.restored_out_seq(sa.spi_in), self.engine.restored_in_seq(sa.spi_in)
            replay = Replay(reserved) if reserved else None
            left_oseq, left_replay = self._left_in_kernel.get(sa.spi_in, (0, None))
            if restored is not None:
                oseq, replay = max(oseq, left_oseq), left_replay or replay
            try:
                self._note_in_kernel(sa)
                self._kernel.add_sa(sa, oseq=oseq, replay=replay)
            except (OSError, ValueError) as e:
                self.engine.del_sa(sa.spi_in, now=now)
                self._forget_in_kernel(sa.spi_in)
                raise ValueError(f"kernel refused the SA: {e}") from None
            if restored is not None and left_replay is not None:
                actions += self.engine.restored_kernel_window(sa.spi_in, left_replay.seq)
        self._apply(actions)
        if self.cfg.log_secrets:
            log.warning("SA %#x keys: %s", sa.spi_in, sa.to_json())
        self._rearm()
        return sa

    def _cmd_sa_add(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        sa = self._install(EspSaPair.from_json(args), now=self._now())
        out: dict[str, Any] = {"spi_in": sa.spi_in, "spi_out": sa.spi_out}
        if self._kernel is not None:
            out["reqid"] = sa.reqid
        return out

    def _cmd_sa_update(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        """New peer address/port. With the kernel data plane an SA's siblings (same selectors, same
        peer) move with it: they share one set of XFRM policies naming one peer (KernelEspBackend.
        update_peer). The userspace data plane moves the named SA only."""
        spi = _spi(args)
        peer, port = ip_address(str(args["peer"])), int(args.get("peer_port", 4500))
        old = self.engine.sa(spi)
        moved = [spi]
        if self._kernel is not None:  # first: it refuses (ValueError) before anything changed
            group = [old, *self._kernel.siblings(old)]
            for sa in group:  # a kill -9 in between leaves states at either address
                self._note_in_kernel(sa, sa.with_peer(peer, port))
            moved = self._kernel.update_peer(old, old.with_peer(peer, port))
            for sa in group:
                self._note_in_kernel(sa.with_peer(peer, port) if sa.spi_in in moved else sa)
        actions: list[Action] = []
        for s in moved:
            actions += self.engine.update_sa_peer(s, peer, port, now=self._now())
        self._apply(actions)
        self._rearm()
        return {"spi_in": spi, "peer": str(peer), "peer_port": port, "moved": moved}

    def _cmd_sa_del(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        spi = _spi(args)
        sa = self.engine.sa(spi)
        actions = self.engine.del_sa(spi, now=self._now())
        if self._kernel is not None:
            try:
                self._kernel.del_sa(sa)
            except OSError as e:
                log.warning("kernel SA removal for %#x: %s", spi, e)
            else:
                self._forget_in_kernel(spi)
        self._apply(actions)
        self._rearm()
        return {"spi_in": spi, "deleted": True}

    def _cmd_sas(self, args: dict[str, Any], conn: ControlConnection) -> list[dict[str, Any]]:
        rows = self.engine.sas()
        if self._kernel is not None:
            for row in rows:
                try:
                    row.update(self._kernel.counters(self.engine.sa(int(row["spi_in"]))))
                except OSError as e:
                    row["kernel_error"] = str(e)
        return rows

    def _cmd_peers(self, args: dict[str, Any], conn: ControlConnection) -> list[dict[str, Any]]:
        now = self._now()
        return [
            {
                "peer": p["peer"],
                "port": p["port"],
                "keepalive_sas": p["keepalive_sas"],
                "idle_s": round(now - p["last_tx"], 1),
                "keepalive_linger_s": round(max(0.0, p["linger_until"] - now), 1),
            }
            for p in self.engine.peers()
        ]

    def _cmd_stats(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        return {
            "drops": dict(self.engine.drops),
            "counters": dict(self.engine.stats),
            "dataplane": self.dataplane,
        }

    def _cmd_ike_register(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        if self._ike_owner is not None and not self._ike_owner.closed and self._ike_owner is not conn:
            raise ValueError("another IKE owner is registered")
        self._ike_owner = conn

        def gone() -> None:
            if self._ike_owner is conn:
                self._ike_owner = None
                log.info("IKE owner went away")

        conn.on_close(gone)
        log.info("IKE owner registered")
        return {"registered": True}

    def _cmd_addr(self, args: dict[str, Any], op: str) -> dict[str, Any]:
        """addr.add / addr.del {"address": "10.200.0.1/32"}: inner addresses an IKE owner was assigned."""
        if self._routing is None:
            raise ValueError("the kernel data plane has no TUN device")
        addr = str(ip_interface(str(args["address"])))
        self._routing.address(op, addr)
        log.info("inner address %s %s", addr, "removed" if op == "del" else "added")
        return {"address": addr}

    def _cmd_ike_send(self, args: dict[str, Any], conn: ControlConnection) -> dict[str, Any]:
        dst, dport = str(ip_address(str(args["dst"]))), int(args.get("dport", 4500))
        data = base64.b64decode(str(args["data"]), validate=True)
        self._apply(self.engine.send_ike(dst, dport, data, now=self._now()))
        return {"sent": len(data) + 4}


def _top(window: Replay | None) -> int:
    return 0 if window is None else window.seq


def _keyless(sa: EspSaPair) -> EspSaPair:
    """The SA with its keys zeroed (same lengths, so it stays valid)."""
    return replace(
        sa,
        key_in=bytes(len(sa.key_in)),
        key_out=bytes(len(sa.key_out)),
        integ_key_in=bytes(len(sa.integ_key_in)),
        integ_key_out=bytes(len(sa.integ_key_out)),
    )


def _added(rec: dict[str, Any]) -> int:
    """A stored SA's install counter (0 for records from before it was stored)."""
    v = rec.get("added", 0)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _spi(args: dict[str, Any]) -> int:
    v = args.get("spi_in")
    if isinstance(v, str):
        return int(v, 0)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise ValueError("spi_in: expected an integer")


def state_path(state_dir: Path) -> Path:
    return state_dir / "natt.sqlite"
