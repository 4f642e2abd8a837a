"""Start had (IKE responder) and mobiled (IKE initiator) in lab namespaces, each next to its natt,
with generated TOML configs and a PSK file (mode 0600)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobility.lab.natt import NattHandle
from mobility.service.control import ControlClient

LAB_PSK = "lab-psk-not-secret-0123456789abcdef"


@dataclass
class IkeDaemon:
    host: str
    daemon: Any
    socket: Path

    def ctl(self, cmd: str, **args: Any) -> Any:
        with ControlClient(self.socket) as c:
            return c.call(cmd, **args)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return '"' + str(v) + '"'


def _conn_toml(prefix: str, conn: dict[str, Any]) -> str:
    return f"[{prefix}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in conn.items())


def _write_secret(run: Path, psk: str) -> Path:
    p = run / "psk.secret"
    p.write_text(psk)
    p.chmod(0o600)
    return p


def start_had(
    lab: Any, host: str, natt: NattHandle, *, address: str, conns: list[dict[str, Any]], psk: str = LAB_PSK, **ike: Any
) -> IkeDaemon:
    run = Path(lab.daemon_dir(host, "had"))
    (run / "state").mkdir(parents=True, exist_ok=True)
    secret = _write_secret(run, psk)
    body = {"enabled": True, "listen": ["0.0.0.0", "::"], "address": address, "natt_socket": str(natt.socket), **ike}
    text = "[ike]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items())
    for c in conns:
        extra = {} if c.get("auth") == "pubkey" else {"psk_file": str(secret)}
        text += "\n" + _conn_toml("[ike.connections]", {**extra, **c})
    text += f'\n[service]\ncontrol_socket = "{run}/had.sock"\nstate_dir = "{run}/state"\n'
    conf = run / "had.toml"
    conf.write_text(text)
    d = lab.start_daemon(host, "had", [sys.executable, "-m", "had", "-v", "-c", str(conf)])
    return IkeDaemon(host, d, run / "had.sock")


def start_mobiled(
    lab: Any,
    host: str,
    natt: NattHandle,
    *,
    home_agents: list[str],
    conn: dict[str, Any],
    psk: str = LAB_PSK,
    request: tuple[str, ...] = ("ip4",),
    home_address: str = "",
    fqdn: str = "mn.example.test",
) -> IkeDaemon:
    run = Path(lab.daemon_dir(host, "mobiled"))
    (run / "state").mkdir(parents=True, exist_ok=True)
    secret = _write_secret(run, psk)
    text = f"home_agents = {_toml(home_agents)}\nfqdn = {_toml(fqdn)}\n\n[ike]\nenabled = true\n"
    text += (
        f"natt_socket = {_toml(str(natt.socket))}\nrequest = {_toml(request)}\nhome_address = {_toml(home_address)}\n"
    )
    extra = {} if conn.get("auth") == "pubkey" else {"psk_file": str(secret)}
    text += "\n" + _conn_toml("ike.connection", {**extra, **conn})
    text += f'\n[service]\ncontrol_socket = "{run}/mobiled.sock"\nstate_dir = "{run}/state"\n'
    conf = run / "mobiled.toml"
    conf.write_text(text)
    d = lab.start_daemon(host, "mobiled", [sys.executable, "-m", "mobiled", "-v", "-c", str(conf)])
    return IkeDaemon(host, d, run / "mobiled.sock")


def wait_home(mn: IkeDaemon, timeout: float = 20.0, state: str = "established") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    home: dict[str, Any] = {}
    while time.monotonic() < deadline:
        home = mn.ctl("home")
        if home.get("state") == state:
            return home
        time.sleep(0.1)
    raise AssertionError(f"mobiled did not reach {state}: {home}\n{mn.daemon.log_tail()}")
