"""ard daemon shell: the access router (SEND, RFC 5269 handover keys, FBU verification).

The service layer (config, control socket, sd_notify, watchdog, reload) is complete; the protocol
engines arrive with their issues (see the issue tracker).
"""

from __future__ import annotations

from typing import Any

from ard.config import ArdConfig
from mobility.service.control import Handler
from mobility.service.runner import DaemonContext


class ArdDaemon:
    def __init__(self, cfg: ArdConfig, ctx: DaemonContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.handlers: dict[str, Handler] = {}

    async def start(self) -> None:
        self.ctx.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    def reload(self, cfg: ArdConfig) -> str:
        self.cfg = cfg
        return "configuration replaced"

    def status(self) -> dict[str, Any]:
        return {
            "role": "access router (SEND, RFC 5269 handover keys, FBU verification)",
            "engines": "not yet implemented",
        }
