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


def strongswan_conf(d: Path) -> str:
    return f"""charon-systemd {{
    load = {PLUGINS}
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
            path = {d}/charon.log
            time_format = %T
            time_add_ms = yes
            append = no
            flush_line = yes
            default = 1
            ike = 1
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


def start_charon(lab: Any, host: str, swanctl_conf: str, *, timeout: float = 10.0) -> Charon:
    d = Path(lab.daemon_dir(host, "charon")).resolve()
    (d / "swanctl").mkdir(parents=True, exist_ok=True)
    for sub in ("x509", "x509ca", "private"):
        (d / "swanctl" / sub).mkdir(exist_ok=True)
    (d / "strongswan.conf").write_text(strongswan_conf(d))
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


def psk_gateway(local_addrs: str, local_ts: str, pool4: str, psk: str, esp: str = "aes128gcm16") -> str:
    return f"""connections {{
    rw {{
        version = 2
        local_addrs = {local_addrs}
        proposals = aes128-sha256-x25519
        pools = pool4
        local {{
            auth = psk
            id = gw.example.test
        }}
        remote {{
            auth = psk
            id = mn.example.test
        }}
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
}}
secrets {{
    ike-mn {{
        id-gw = gw.example.test
        id-mn = mn.example.test
        secret = "{psk}"
    }}
}}
"""


def psk_client(remote_addrs: str, remote_ts: str, psk: str, esp: str = "aes128gcm16") -> str:
    return f"""connections {{
    home {{
        version = 2
        remote_addrs = {remote_addrs}
        proposals = aes128-sha256-x25519
        vips = 0.0.0.0
        local {{
            auth = psk
            id = mn.example.test
        }}
        remote {{
            auth = psk
            id = gw.example.test
        }}
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
secrets {{
    ike-gw {{
        id-gw = gw.example.test
        id-mn = mn.example.test
        secret = "{psk}"
    }}
}}
"""
