"""The common daemon main: config, logging, control socket, sd_notify, watchdog and signals.

A daemon supplies a schema and a factory for its app; the runner does everything else the same
way for all four daemons (strongSwan's charon-systemd front end plays this role there).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mobility.service import msgids
from mobility.service.config import ConfigError, control_socket_path, load_config, state_dir_path
from mobility.service.control import ControlConnection, ControlServer, Handler
from mobility.service.logging import setup_logging
from mobility.service.notify import Notifier

log = logging.getLogger("mobility.service")


class DaemonApp(Protocol):
    handlers: dict[str, Handler]

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def reload(self, cfg: Any) -> str: ...
    def status(self) -> dict[str, Any]: ...


@dataclass
class DaemonContext:
    name: str
    config_path: Path
    state_dir: Path
    control_path: Path
    notifier: Notifier
    loop: asyncio.AbstractEventLoop
    verbose: bool


def _status_line(status: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in status.items() if not isinstance(v, dict | list))


class _Runner:
    def __init__(
        self,
        name: str,
        schema: type,
        factory: Callable[[Any, DaemonContext], DaemonApp],
        cfg: Any,
        ctx: DaemonContext,
    ) -> None:
        self.name, self.schema, self.factory, self.cfg, self.ctx = name, schema, factory, cfg, ctx
        self.stop_event = asyncio.Event()
        self.app: DaemonApp | None = None

    def reload(self) -> str:
        assert self.app is not None
        n = self.ctx.notifier
        n.reloading()
        try:
            new: Any = load_config(self.ctx.config_path, self.schema)
            summary = self.app.reload(new)
        except (ConfigError, ValueError) as e:
            log.error("reload refused, keeping the running configuration:\n%s", e)
            n.ready(f"reload refused: {str(e).splitlines()[0]}")
            raise ValueError(f"reload refused: {e}") from None
        self.cfg = new
        log.info("configuration reloaded: %s", summary, extra={"MESSAGE_ID": msgids.CONFIG_RELOADED})
        n.ready(_status_line(self.app.status()))
        return summary

    async def watchdog(self, interval: float) -> None:
        assert self.app is not None
        while True:
            await asyncio.sleep(interval)
            self.ctx.notifier.send("WATCHDOG=1", f"STATUS={_status_line(self.app.status())}")

    async def run(self) -> int:
        ctx, loop = self.ctx, self.ctx.loop
        app = self.app = self.factory(self.cfg, ctx)
        handlers: dict[str, Handler] = {
            "status": lambda args, conn: app.status(),
            "ping": lambda args, conn: "pong",
            "reload": lambda args, conn: self.reload(),
        }
        handlers.update(app.handlers)
        control = ControlServer(ctx.control_path, handlers)
        try:
            await app.start()
            control.handlers.update(app.handlers)  # engines may add commands while starting
            await control.start()
        except Exception as e:
            log.error("%s cannot start: %s", self.name, e)
            ctx.notifier.status(f"failed to start: {e}")
            await _quietly(app.stop())
            return 1
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: _quiet_reload(self))
        ctx.notifier.ready(_status_line(app.status()))
        log.info(
            "%s ready; control socket %s",
            self.name,
            ctx.control_path,
            extra={"MESSAGE_ID": msgids.DAEMON_STARTED},
        )
        interval = ctx.notifier.watchdog_interval()
        dog = loop.create_task(self.watchdog(interval)) if interval else None
        await self.stop_event.wait()
        ctx.notifier.stopping()
        log.info("%s stopping", self.name, extra={"MESSAGE_ID": msgids.DAEMON_STOPPING})
        if dog:
            dog.cancel()
        await control.close()
        await _quietly(app.stop())
        return 0


def _quiet_reload(r: _Runner) -> None:
    try:
        r.reload()
    except ValueError:
        pass


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except Exception:
        log.exception("while stopping")


def run_daemon(
    name: str, schema: type, factory: Callable[[Any, DaemonContext], DaemonApp], argv: list[str] | None = None
) -> int:
    p = argparse.ArgumentParser(prog=name, description=f"mobility {name} daemon")
    p.add_argument("-c", "--config", type=Path, default=Path(f"/etc/mobility/{name}.toml"))
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit 0/1")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    notifier = Notifier()
    try:
        cfg: Any = load_config(args.config, schema)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        notifier.status(f"configuration error: {e.errors[0]}")
        return 1
    if args.check_config:
        print(f"ok: {args.config}")
        return 0
    setup_logging(name, args.verbose)
    svc = cfg.service

    async def main() -> int:
        ctx = DaemonContext(
            name,
            args.config,
            state_dir_path(svc),
            control_socket_path(svc, name),
            notifier,
            asyncio.get_running_loop(),
            args.verbose,
        )
        return await _Runner(name, schema, factory, cfg, ctx).run()

    return asyncio.run(main())


__all__ = ["ControlConnection", "DaemonApp", "DaemonContext", "run_daemon"]
