"""Every unit passes `systemd-analyze verify`, and `systemd-analyze security` rates its exposure OK."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "systemd").glob("mobility-*.service"))


def test_units_exist_for_every_daemon() -> None:
    assert [u.name for u in UNITS] == [f"mobility-{d}.service" for d in ("ard", "had", "mobiled", "natt")]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_and_is_hardened(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text()
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "StateDirectory=mobility",
        "RuntimeDirectory=mobility",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
    ):
        assert key in text, key
    # the installed binaries live in /usr/local/bin; verify a copy pointing at stand-ins
    for binary in set(re.findall(r"/usr/local/bin/(\w+)", text)):
        stub = tmp_path / binary
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(text.replace("/usr/local/bin/", f"{tmp_path}/"))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
    sec = subprocess.run(["systemd-analyze", "security", "--offline=true", str(copy)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", sec.stdout)
    assert m, sec.stdout[-500:] + sec.stderr
    print(f"{unit.name}: systemd-analyze security exposure {m.group(1)} {m.group(2)}")
    assert float(m.group(1)) <= 3.0
