"""The control protocol every daemon speaks: JSON lines over a root-only unix stream socket.

Request `{"id": 1, "cmd": "sa.add", "args": {...}}` → reply `{"id": 1, "ok": true, "result": ...}`
or `{"id": 1, "ok": false, "error": "..."}`. A daemon may also push `{"event": ...}` lines to a
connection (IKE relay). Bad requests get an error reply and never end the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import os
import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("mobility.control")

MAX_LINE = 1 << 20
Handler = Callable[[dict[str, Any], "ControlConnection"], Any]
_ids = itertools.count(1)


class ControlError(Exception):
    """The daemon answered ok=false, or could not be reached."""


class ControlConnection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._on_close: list[Callable[[], None]] = []
        self.closed = False
        self.peer_id = next(_ids)

    def write(self, obj: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self._writer.write(json.dumps(obj, default=str).encode() + b"\n")
        except (ConnectionError, RuntimeError):
            self.closed = True

    def send_event(self, obj: dict[str, Any]) -> None:
        self.write(obj)

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    def _close(self) -> None:
        self.closed = True
        for cb in self._on_close:
            try:
                cb()
            except Exception:
                log.exception("control close callback failed")


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = dict(handlers)
        self.handlers.setdefault("help", lambda args, conn: sorted(self.handlers))
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ControlConnection(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    conn.write({"id": None, "ok": False, "error": "request line too long"})
                    break
                except ConnectionError:
                    break
                if not line:
                    break
                conn.write(await self._dispatch(line, conn))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
        finally:
            conn._close()
            writer.close()

    async def _dispatch(self, line: bytes, conn: ControlConnection) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return {"id": None, "ok": False, "error": f"bad request: {e}"}
        rid, cmd, args = req.get("id"), req.get("cmd"), req.get("args") or {}
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {"id": rid, "ok": False, "error": f"unknown command {cmd!r} (try help)"}
        if not isinstance(args, dict):
            return {"id": rid, "ok": False, "error": "args must be an object"}
        try:
            result = handler(args, conn)
            if inspect.isawaitable(result):
                result = await result
        except (ValueError, KeyError, TypeError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            return {"id": rid, "ok": False, "error": str(msg)}
        except Exception:
            log.exception("control command %s failed", cmd)
            return {"id": rid, "ok": False, "error": "internal error"}
        return {"id": rid, "ok": True, "result": result}


class ControlClient:
    """Blocking client for mobilityctl and tests."""

    def __init__(self, path: Path | str, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except OSError as e:
            self._sock.close()
            raise ControlError(f"cannot connect to {self.path}: {e.strerror or e}") from None
        self._buf = b""
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _lines(self) -> Iterator[dict[str, Any]]:
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                yield json.loads(line)
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ControlError("connection closed by the daemon")
            self._buf += chunk

    def call(self, cmd: str, **args: Any) -> Any:
        rid = next(_ids)
        self._sock.sendall(json.dumps({"id": rid, "cmd": cmd, "args": args}).encode() + b"\n")
        for msg in self._lines():
            if "event" in msg:
                self._events.append(msg)
                continue
            if msg.get("id") == rid:
                if not msg.get("ok"):
                    raise ControlError(str(msg.get("error")))
                return msg.get("result")
        raise ControlError("no reply")

    def read_event(self, timeout: float) -> dict[str, Any] | None:
        if self._events:
            return self._events.pop(0)
        if b"\n" not in self._buf:
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                return None
        for msg in self._lines():
            if "event" in msg:
                return msg
        return None


class AsyncControlClient:
    """asyncio client for IKE owners: calls plus a queue of pushed events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()  # set when the daemon closed the connection (it stopped or died)
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, path: Path | str) -> AsyncControlClient:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                msg = json.loads(line)
                if "event" in msg:
                    await self.events.put(msg)
                elif (fut := self._pending.pop(msg.get("id"), None)) is not None:
                    fut.set_result(msg)
        except (OSError, ValueError) as e:  # reset, or a line that is not JSON: the connection is done
            log.warning("control connection to %s: %s", self._writer.get_extra_info("peername"), e)
        finally:
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ControlError("connection closed by the daemon"))
            self._pending.clear()

    async def call(self, cmd: str, **args: Any) -> Any:
        if self.closed.is_set():
            raise ControlError("connection closed by the daemon")
        rid = next(_ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._writer.write(json.dumps({"id": rid, "cmd": cmd, "args": args}).encode() + b"\n")
        msg = await fut
        if not msg.get("ok"):
            raise ControlError(str(msg.get("error")))
        return msg.get("result")

    async def close(self) -> None:
        self._task.cancel()
        self._writer.close()
