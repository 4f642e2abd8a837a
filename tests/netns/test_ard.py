"""ard as a real process on a link with a SEND mobile node: RFC 5269 handover keys over raw ICMPv6,
persisted across kill -9, forged requests answered without a key and without changing any record."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mobility.lab.netns import Lab
from mobility.lab.topology import End, Link, Topology
from mobility.lab.tshark import tshark_fields
from mobility.service.control import ControlClient

TOPO = Topology(
    hosts=("par", "mn"),
    links=(Link(End("par", "eth0", ("2001:db8:10::1/64",)), End("mn", "eth0", ())),),
)


class Ard:
    def __init__(self, lab: Lab) -> None:
        self.lab, self.run = lab, Path(lab.daemon_dir("par", "ard"))
        (self.run / "state").mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(65537, 1024)
        kf = self.run / "router.key"
        kf.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        kf.chmod(0o600)
        self.pub = self.run / "router.pub"
        self.pub.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        self.conf = self.run / "ard.toml"
        self.conf.write_text(
            f'interfaces = ["eth0"]\nkey_file = "{kf}"\nsec = 1\n\n[service]\n'
            f'control_socket = "{self.run}/ard.sock"\nstate_dir = "{self.run}/state"\n'
        )
        self.start()

    def start(self) -> None:
        self.daemon = self.lab.start_daemon("par", "ard", [sys.executable, "-m", "ard", "-v", "-c", str(self.conf)])

    def ctl(self, cmd: str) -> object:
        with ControlClient(self.run / "ard.sock") as c:
            return c.call(cmd)


def ask(lab: Lab, ard: Ard, nonce: str, forge: bool = False) -> dict[str, object]:
    router = ard.ctl("status")["address"]  # type: ignore[index]
    argv = [
        sys.executable,
        "-m",
        "tests.support.send_client",
        str(ard.run.parent / "mn-state"),
        "eth0",
        "2001:db8:10::/64",
        router,
        str(ard.pub),
        nonce,
    ] + (["forge"] if forge else [])
    out = lab.run("mn", *argv, timeout=30)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def ard_lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory(TOPO)


def test_handover_key_provisioning_and_restart(ard_lab: Lab) -> None:
    lab = ard_lab
    ard = Ard(lab)
    first = ask(lab, ard, "a1a1a1a1a1a1")
    assert first["prrtadv"] and first["signature_ok"] is True and first["nonce_echoed"]
    assert first["at"] == 1 and first["lifetime"] == 43200 and len(str(first["key"])) == 64
    assert [k["cga"] for k in ard.ctl("keys")] == [first["cga"]]  # type: ignore[union-attr,index]
    # a forged request is answered without a key and changes no record
    forged = ask(lab, ard, "b2b2b2b2b2b2", forge=True)
    assert forged["prrtadv"] and "key" not in forged
    assert ard.ctl("stats")["drop_send_invalid"] == 1  # type: ignore[index]
    # kill -9: the issued key is in SQLite and is returned again after the restart (RFC 5269 §3.2)
    ard.daemon.kill()
    ard.start()
    again = ask(lab, ard, "c3c3c3c3c3c3")
    assert again["key"] == first["key"] and again["signature_ok"] is True
    pcap = next(p for p in lab.stop_captures() if p.name.startswith("mn-eth0"))
    subtypes = {r[0] for r in tshark_fields(pcap, "icmpv6.type == 154", ["icmpv6.fmip6.subtype"]) if r}
    assert subtypes == {"2", "3"}
