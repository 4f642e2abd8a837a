"""had daemon shell: the home agent (MIPv6/MIPv4 bindings, RFC 5026 bootstrapping, IKEv2 responder).

The service layer (config, control socket, sd_notify, watchdog, reload) is complete; the protocol
engines arrive with their issues (see the issue tracker).
"""

from __future__ import annotations

from typing import Any

from had.config import HadConfig
from mobility.service.control import Handler
from mobility.service.runner import DaemonContext


class HadDaemon:
    def __init__(self, cfg: HadConfig, ctx: DaemonContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.handlers: dict[str, Handler] = {}

    async def start(self) -> None:
        self.ctx.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    def reload(self, cfg: HadConfig) -> str:
        self.cfg = cfg
        return "configuration replaced"

    def status(self) -> dict[str, Any]:
        return {
            "role": "home agent (MIPv6/MIPv4 bindings, RFC 5026 bootstrapping, IKEv2 responder)",
            "engines": "not yet implemented",
        }
