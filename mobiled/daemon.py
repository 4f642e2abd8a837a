"""mobiled daemon shell: the mobile node (IKEv2 initiator, MIPv6/MIPv4 registration, handover keys).

The service layer (config, control socket, sd_notify, watchdog, reload) is complete; the protocol
engines arrive with their issues (see the issue tracker).
"""

from __future__ import annotations

from typing import Any

from mobiled.config import MobiledConfig
from mobility.service.control import Handler
from mobility.service.runner import DaemonContext


class MobiledDaemon:
    def __init__(self, cfg: MobiledConfig, ctx: DaemonContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.handlers: dict[str, Handler] = {}

    async def start(self) -> None:
        self.ctx.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def stop(self) -> None:
        return None

    def reload(self, cfg: MobiledConfig) -> str:
        self.cfg = cfg
        return "configuration replaced"

    def status(self) -> dict[str, Any]:
        return {
            "role": "mobile node (IKEv2 initiator, MIPv6/MIPv4 registration, handover keys)",
            "engines": "not yet implemented",
        }
