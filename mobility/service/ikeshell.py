"""The I/O around an IkeEngine, shared by had and mobiled: UDP 500 sockets, port 4500 through natt
(IKE relayed over natt's control socket, so our messages leave from 4500 with the non-ESP marker),
Child SAs handed to natt (`sa.add` / `sa.del`), one loop timer, and the engine's events."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mobility.dataplane.xfrm import socket_bypass
from mobility.engine import Action, IkeSend, Notify, Persist, Program
from mobility.ike.engine import IkeEngine
from mobility.ike.policy import ChildSaInstall, ChildSaRemove, IkeBug, IkeDropped
from mobility.service.control import AsyncControlClient, ControlError
from mobility.service.logging import RateLimitedLog

log = logging.getLogger("mobility.ike")
SO_MARK = 36
drop_log = RateLimitedLog(logging.getLogger("mobility.ike.drops"))


def wall_clock() -> datetime:
    """Certificate validity needs real time: the shell hands this to the engine (it never reads a clock)."""
    return datetime.now(UTC)


def source_for(peer: str, port: int = 500) -> str:
    """The local address the kernel would use towards `peer` (a connected UDP socket, nothing sent)."""
    fam = socket.AF_INET6 if ":" in peer else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.connect((peer, port))
        return str(s.getsockname()[0])


class IkeShell:
    def __init__(
        self,
        engine: IkeEngine,
        *,
        natt_socket: Path,
        listen: tuple[str, ...],
        port: int = 500,
        on_event: Callable[[Any], None] | None = None,
        on_persist: Callable[[Any], None] | None = None,
        fwmark: int = 0x4500,
        on_child: Callable[[int, str, bool], None] | None = None,
        on_natt_restart: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.engine, self.natt_socket, self.listen, self.port = engine, natt_socket, listen, port
        self.on_event, self.on_persist, self.fwmark = on_event, on_persist, fwmark
        self.on_child = on_child  # (spi_in, peer, up): after natt installed (up) or was told to remove it
        self.on_natt_restart = on_natt_restart  # natt's new status, once we are registered with it again
        self.natt: AsyncControlClient | None = None
        self.natt_status: dict[str, Any] = {}
        self._natt_tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._socks: list[socket.socket] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.installed: dict[int, dict[str, Any]] = {}

    def handlers(self, *, secrets: bool = False) -> dict[str, Any]:
        """Control commands shared by had and mobiled: list, rekey and delete IKE SAs."""
        return {
            "ike.sas": lambda a, c: self.engine.status(secrets=secrets),
            "ike.rekey": lambda a, c: self._cmd_rekey(a),
            "ike.delete": lambda a, c: self._cmd_delete(a),
        }

    def _key(self, args: dict[str, Any]) -> bytes:
        want = str(args.get("spi_i", ""))
        keys = [k for k, sa in self.engine.sas.items() if not want or sa.spi_i.hex() == want]
        if len(keys) != 1:
            raise ValueError(f"{len(keys)} IKE SAs match; give spi_i")
        return keys[0]

    def _cmd_rekey(self, args: dict[str, Any]) -> dict[str, Any]:
        key = self._key(args)
        if args.get("child"):
            spis = list(self.engine.sas[key].children)
            for spi in spis:
                self.apply(self.engine.rekey_child(key, spi, now=self.now()))
            return {"rekeying_children": len(spis)}
        self.apply(self.engine.rekey_ike(key, now=self.now()))
        return {"rekeying": key.hex()}

    def _cmd_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        key = self._key(args)
        self.apply(self.engine.delete(key, now=self.now()))
        return {"deleting": key.hex()}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for addr in self.listen:
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # IKE itself never enters the tunnel, even when a Child SA covers the peer's address:
            # natt's routing rules send packets carrying its mark around the tunnel table
            s.setsockopt(socket.SOL_SOCKET, SO_MARK, self.fwmark)
            socket_bypass(s, required=False)  # and no XFRM policy wraps IKE in the SAs it negotiates
            s.bind((addr, self.port))
            s.setblocking(False)
            self._loop.add_reader(s.fileno(), self._on_udp, s)
            self._socks.append(s)
        await self._connect_natt()

    async def _connect_natt(self) -> None:
        """Register as natt's IKE owner and follow its events and its connection."""
        assert self._loop is not None
        client = await AsyncControlClient.connect(self.natt_socket)
        try:
            await client.call("ike.register")
            status = await client.call("status")
        except BaseException:
            await client.close()
            raise
        self.natt, self.natt_status = client, status
        self._natt_tasks = [self._loop.create_task(c) for c in (self._natt_events(client), self._watch(client))]

    async def _watch(self, client: AsyncControlClient) -> None:
        """natt went away (restarted, or killed and restarted by systemd): connect again, then repair what
        it lost. Its persistent SAs come back by themselves; ours are not persistent, so natt has none of
        them. Installing them again would restart their sequence numbers under the same keys (GCM IVs
        reused, RFC 4106 §3): each is rekeyed instead (RFC 7296 §2.8), with fresh keys and SPIs."""
        await client.closed.wait()
        if self._stopping:
            return
        for t in self._natt_tasks:  # the old connection's event reader
            if t is not asyncio.current_task():
                t.cancel()
        log.warning("natt closed the control connection: connecting again")
        delay = 0.2
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._connect_natt()
                break
            except (OSError, ControlError) as e:
                log.debug("natt not back yet: %s", e)
                delay = min(2 * delay, 5.0)
        else:
            return
        try:
            await self._repair_children()
            if self.on_natt_restart:
                self.on_natt_restart(self.natt_status)
        except Exception:  # the daemon's part failed: say so, the IKE SAs and this shell go on
            log.exception("repairing after natt's restart failed")

    async def _repair_children(self) -> None:
        rows = await self._natt_call("sas") or []
        kept = {int(r["spi_in"]) for r in rows}
        lost = [spi for spi in self.installed if spi not in kept]
        log.warning("natt is back; %d of our %d Child SA(s) lost with it: rekeyed", len(lost), len(self.installed))
        for spi in lost:
            gone = self.installed.pop(spi)
            if self.on_child:
                self.on_child(spi, str(gone["peer"]), False)
            key = next((k for k, sa in self.engine.sas.items() if spi in sa.children), None)
            if key is not None:
                self.apply(self.engine.rekey_child(key, spi, now=self.now()))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._natt_tasks:
            t.cancel()
        if self._timer:
            self._timer.cancel()
        for s in self._socks:
            if self._loop:
                self._loop.remove_reader(s.fileno())
            s.close()
        for t in self._tasks:
            t.cancel()
        if self.natt is not None:
            for spi in list(self.installed):
                await self._natt_call("sa.del", spi_in=spi)
            await self.natt.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # ---- input ----------------------------------------------------------------------------------

    def _on_udp(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("recv: %s", e)
                return
            self.apply(self.engine.datagram(data, addr[0], addr[1], self.port, now=self.now()))

    async def _natt_events(self, client: AsyncControlClient) -> None:
        while True:
            ev = await client.events.get()
            if ev.get("event") != "ike":
                continue
            try:
                data = base64.b64decode(str(ev["data"]), validate=True)
                src, sport = str(ev["src"]), int(ev["sport"])
            except (KeyError, ValueError) as e:
                log.warning("bad IKE relay event from natt: %s", e)
                continue
            self.apply(self.engine.datagram(data, src, sport, 4500, now=self.now()))

    # ---- output ---------------------------------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, IkeSend):
                self._send(a)
            elif isinstance(a, Program):
                self._program(a.op)
            elif isinstance(a, Persist):
                if self.on_persist:
                    self.on_persist(a.record)
            elif isinstance(a, Notify):
                if isinstance(a.event, IkeBug):
                    log.critical("IKE SA %s torn down by an internal error:\n%s", a.event.name, a.event.traceback)
                elif isinstance(a.event, IkeDropped):
                    drop_log.debug(
                        a.event.reason, "IKE from %s dropped: %s %s", a.event.src, a.event.reason, a.event.detail
                    )
                elif self.on_event:
                    self.on_event(a.event)
        self._rearm()

    def _send(self, a: IkeSend) -> None:
        if a.sport == 4500:
            self._spawn(self._natt_call("ike.send", dst=a.dst, dport=a.dport, data=base64.b64encode(a.data).decode()))
            return
        fam = socket.AF_INET6 if ":" in a.dst else socket.AF_INET
        sock = next((s for s in self._socks if s.family == fam), None)
        if sock is None:
            log.warning("no IKE socket for %s", a.dst)
            return
        try:
            sock.sendto(a.data, (a.dst, a.dport))
        except OSError as e:
            log.debug("send to %s: %s", a.dst, e)

    def natt_command(self, cmd: str, **args: Any) -> None:
        """Queue a natt control command behind everything already sent (the connection keeps the order)."""
        self._spawn(self._natt_call(cmd, **args))

    def _program(self, op: Any) -> None:
        if isinstance(op, ChildSaInstall):
            js = op.sa.to_json()
            self.installed[op.sa.spi_in] = js
            self._spawn(self._install(op.sa.spi_in, js))
        elif isinstance(op, ChildSaRemove):
            gone = self.installed.pop(op.spi_in, None)
            if gone is not None:
                self._spawn(self._natt_call("sa.del", spi_in=op.spi_in))
                if self.on_child:
                    self.on_child(op.spi_in, str(gone["peer"]), False)
        elif self.on_event:
            self.on_event(op)

    async def _install(self, spi_in: int, js: dict[str, Any]) -> None:
        if await self._natt_call("sa.add", **js) is not None and self.on_child and spi_in in self.installed:
            self.on_child(spi_in, str(js["peer"]), True)  # natt has it: traffic is protected from now on

    async def _natt_call(self, cmd: str, **args: Any) -> Any:
        assert self.natt is not None
        try:
            return await self.natt.call(cmd, **args)
        except Exception as e:  # natt refused: the SA is not usable, say so loudly
            log.error("natt %s failed: %s", cmd, e)
            return None

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        t = self._loop.create_task(coro)
        self._tasks.append(t)
        t.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    def _rearm(self) -> None:
        assert self._loop is not None
        if self._timer:
            self._timer.cancel()
            self._timer = None
        d = self.engine.next_deadline()
        if d is not None:
            self._timer = self._loop.call_at(max(d, self._loop.time()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.apply(self.engine.on_timer(self.now()))
