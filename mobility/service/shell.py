"""A daemon whose protocol engines have not landed yet: the full service layer (config, control
socket, sd_notify, watchdog, reload) around a role description. mobiled, ard and had use it until
their issues bring their engines."""

from __future__ import annotations

from typing import Any

from mobility.service.control import Handler
from mobility.service.runner import DaemonContext


class ServiceShell:
    ROLE = ""

    def __init__(self, cfg: Any, ctx: DaemonContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.handlers: dict[str, Handler] = {}

    async def start(self) -> None:
        self.ctx.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    def reload(self, cfg: Any) -> str:
        self.cfg = cfg
        return "configuration replaced"

    def status(self) -> dict[str, Any]:
        return {"role": self.ROLE, "engines": "not yet implemented"}
