"""Lab helpers for natt scenarios (tests, demo, bench): config, starting natt in a host, SA pairs with random keys."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobility.service.control import ControlClient


@dataclass
class NattHandle:
    host: str
    daemon: Any  # mobility.lab Daemon
    socket: Path
    config: Path

    def ctl(self, cmd: str, **args: Any) -> Any:
        with ControlClient(self.socket) as c:
            return c.call(cmd, **args)


def natt_config(
    run: Path,
    *,
    interval_s: float = 20,
    linger_s: float = 300,
    listen: tuple[str, ...] = ("0.0.0.0", "::"),
    dataplane: str = "userspace",
    tun_addresses: tuple[str, ...] = (),
    log_secrets: bool = True,
) -> str:
    listen_s = ", ".join(f'"{a}"' for a in listen)
    addrs = ", ".join(f'"{a}"' for a in tun_addresses)
    return f"""
listen = [{listen_s}]
dataplane = "{dataplane}"
log_secrets = {str(log_secrets).lower()}

[keepalive]
interval_s = {interval_s}
linger_s = {linger_s}

[tun]
addresses = [{addrs}]

[service]
control_socket = "{run}/run/natt.sock"
state_dir = "{run}/state"
"""


def start_natt(lab: Any, host: str, **cfg: Any) -> NattHandle:
    run = Path(lab.daemon_dir(host, "natt"))
    (run / "run").mkdir(parents=True, exist_ok=True)
    (run / "state").mkdir(parents=True, exist_ok=True)
    conf = run / "natt.toml"
    conf.write_text(natt_config(run, **cfg))
    d = lab.start_daemon(host, "natt", [sys.executable, "-m", "natt", "-v", "-c", str(conf)])
    return NattHandle(host, d, run / "run" / "natt.sock", conf)


def restart_natt(lab: Any, h: NattHandle) -> NattHandle:
    d = lab.start_daemon(h.host, "natt", [sys.executable, "-m", "natt", "-v", "-c", str(h.config)])
    return NattHandle(h.host, d, h.socket, h.config)


def sa_pair(
    *,
    client_local: str,
    client_peer: str,
    gw_local: str,
    gw_peer: str,
    gw_peer_port: int,
    mode: str = "tunnel",
    cipher: str = "aes-gcm-16",
    client_ts: list[str] | None = None,
    gw_ts: list[str] | None = None,
    **gw_extra: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Matching client/gateway SA JSON (as `sa.add` takes it) with fresh random SPIs and keys."""
    spi_c, spi_g = (int.from_bytes(os.urandom(4), "big") | 0x1000 for _ in range(2))
    if cipher == "aes-gcm-16":
        k1, k2 = os.urandom(20).hex(), os.urandom(20).hex()
        crypto_c = dict(cipher=cipher, key_in=k2, key_out=k1)
        crypto_g = dict(cipher=cipher, key_in=k1, key_out=k2)
    else:
        k1, k2, i1, i2 = (
            os.urandom(16).hex(),
            os.urandom(16).hex(),
            os.urandom(32).hex(),
            os.urandom(32).hex(),
        )
        crypto_c = dict(
            cipher=cipher, integ="hmac-sha256-128", key_in=k2, key_out=k1, integ_key_in=i2, integ_key_out=i1
        )
        crypto_g = dict(
            cipher=cipher, integ="hmac-sha256-128", key_in=k1, key_out=k2, integ_key_in=i1, integ_key_out=i2
        )
    client = dict(
        spi_in=spi_c,
        spi_out=spi_g,
        local=client_local,
        peer=client_peer,
        mode=mode,
        keepalive=True,
        local_ts=client_ts or [],
        remote_ts=gw_ts or [],
        **crypto_c,
    )
    gw = dict(
        spi_in=spi_g,
        spi_out=spi_c,
        local=gw_local,
        peer=gw_peer,
        peer_port=gw_peer_port,
        mode=mode,
        local_ts=gw_ts or [],
        remote_ts=client_ts or [],
        **crypto_g,
    )
    gw.update(gw_extra)
    return client, gw


def tshark_esp_records(*sas: dict[str, Any]) -> list[str]:
    """`-o uat:esp_sa:...` options that let tshark decrypt both directions of each SA."""
    opts = ["-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"]
    for sa in sas:
        proto = "IPv6" if ":" in sa["local"] else "IPv4"
        for spi, key, ikey in (
            (sa["spi_in"], sa["key_in"], sa.get("integ_key_in")),
            (sa["spi_out"], sa["key_out"], sa.get("integ_key_out")),
        ):
            if sa["cipher"] == "aes-gcm-16":
                rec = f'"{proto}","*","*","{spi:#010x}","AES-GCM with 16 octet ICV [RFC4106]","0x{key}","NULL",""'
            else:
                rec = (
                    f'"{proto}","*","*","{spi:#010x}","AES-CBC [RFC3602]","0x{key}",'
                    f'"HMAC-SHA-256-128 [RFC4868]","0x{ikey}"'
                )
            opts += ["-o", f"uat:esp_sa:{rec}"]
    return opts
