"""Real strongSwan peers in lab namespaces: charon-systemd with kernel-libipsec (userspace ESP).

Each instance gets its own strongswan.conf (STRONGSWAN_CONF replaces /etc/strongswan.conf, so the
explicit `load` list decides: kernel-libipsec must precede kernel-netlink), its own vici socket
and log. Used by the natt benchmark as the real-peer baseline and by the IKE interop tests.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLUGINS = (
    "random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints kdf "
    "kernel-libipsec kernel-netlink socket-default vici"
)


def strongswan_conf(d: Path, log: Path | None = None, extra: str = "", ike_level: int = 2) -> str:
    return f"""charon-systemd {{
    load = {PLUGINS}
{extra}
    port = 500
    port_nat_t = 4500
    keep_alive = 20s
    retransmit_tries = 3
    install_routes = yes
    plugins {{
        vici {{
            socket = unix://{d}/charon.vici
        }}
    }}
    journal {{
        default = -1
    }}
    filelog {{
        log {{
            path = {log or d / "charon.log"}
            time_format = %T
            time_add_ms = yes
            append = no
            flush_line = yes
            default = 1
            ike = {ike_level}
            chd = 2
            knl = 1
            esp = 0
        }}
    }}
}}
"""


@dataclass
class Charon:
    host: str
    dir: Path
    proc: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        return f"unix://{self.dir}/charon.vici"


def start_charon(lab: Any, host: str, swanctl_conf: str, *, timeout: float = 10.0, extra: str = "") -> Charon:
    d = Path(lab.daemon_dir(host, "charon")).resolve()
    (d / "swanctl").mkdir(parents=True, exist_ok=True)
    for sub in ("x509", "x509ca", "private"):
        (d / "swanctl" / sub).mkdir(exist_ok=True)
    (d / "strongswan.conf").write_text(strongswan_conf(d, Path(lab.capture_dir) / f"{host}-charon.log", extra))
    (d / "swanctl" / "swanctl.conf").write_text(swanctl_conf)
    (d / "swanctl" / "swanctl.conf").chmod(0o600)
    vici = d / "charon.vici"
    vici.unlink(missing_ok=True)
    out = open(d / "stdout.log", "wb")  # noqa: SIM115 - kept open for the process lifetime
    proc = lab.popen(
        host,
        ["env", f"STRONGSWAN_CONF={d}/strongswan.conf", "/usr/sbin/charon-systemd"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while not vici.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"charon in {host} did not start: {(d / 'stdout.log').read_text()[-2000:]}")
        time.sleep(0.02)
    c = Charon(host, d, proc)
    swanctl(lab, c, "--load-all", "--file", str(d / "swanctl" / "swanctl.conf"))
    return c


def swanctl(lab: Any, c: Charon, *args: str, timeout: float = 30) -> str:
    res = lab.run(
        c.host,
        "env",
        f"STRONGSWAN_CONF={c.dir}/strongswan.conf",
        f"SWANCTL_DIR={c.dir}/swanctl",
        "swanctl",
        *args,
        "--uri",
        c.uri,
        timeout=timeout,
    )
    return str(res.stdout)


def stop_charon(c: Charon) -> None:
    if c.proc.poll() is None:
        c.proc.terminate()
        try:
            c.proc.wait(10)
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()


def _auth_block(side: str, ident: str, auth: str, cert: str) -> str:
    extra = f"\n            certs = {cert}" if auth == "pubkey" and cert else ""
    return f"""        {side} {{
            auth = {auth}
            id = {ident}{extra}
        }}
"""


def _secrets(psk: str, auth: str) -> str:
    if auth != "psk":
        return ""
    return f"""secrets {{
    ike-lab {{
        id-gw = gw.example.test
        id-mn = mn.example.test
        secret = "{psk}"
    }}
}}
"""


def psk_gateway(
    local_addrs: str,
    local_ts: str,
    pool4: str,
    psk: str,
    esp: str = "aes128gcm16",
    *,
    pool6: str = "",
    auth: str = "psk",
    proposals: str = "aes128-sha256-x25519",
) -> str:
    """A charon responder (VPN gateway) handing out virtual IPs from pools; auth psk or pubkey
    (pubkey: gw.pem / gw.key in swanctl/x509 and private, the CA in x509ca)."""
    pools = "pool4" + (", pool6" if pool6 else "")
    pool6_block = f"    pool6 {{\n        addrs = {pool6}\n    }}\n" if pool6 else ""
    return f"""connections {{
    rw {{
        version = 2
        local_addrs = {local_addrs}
        proposals = {proposals}
        pools = {pools}
{_auth_block("local", "gw.example.test", auth, "gw.pem")}\
{_auth_block("remote", "mn.example.test", auth, "")}\
        children {{
            rw {{
                local_ts = {local_ts}
                esp_proposals = {esp}
                mode = tunnel
            }}
        }}
    }}
}}
pools {{
    pool4 {{
        addrs = {pool4}
    }}
{pool6_block}}}
{_secrets(psk, auth)}"""


def psk_client(
    remote_addrs: str,
    remote_ts: str,
    psk: str,
    esp: str = "aes128gcm16",
    *,
    vips: str = "0.0.0.0",
    auth: str = "psk",
    proposals: str = "aes128-sha256-x25519",
) -> str:
    """A charon initiator asking for virtual IPs (CFG_REQUEST), started with `swanctl --initiate`."""
    return f"""connections {{
    home {{
        version = 2
        remote_addrs = {remote_addrs}
        proposals = {proposals}
        vips = {vips}
{_auth_block("local", "mn.example.test", auth, "mn.pem")}\
{_auth_block("remote", "gw.example.test", auth, "")}\
        children {{
            home {{
                remote_ts = {remote_ts}
                esp_proposals = {esp}
                mode = tunnel
                start_action = none
            }}
        }}
    }}
}}
{_secrets(psk, auth)}"""
