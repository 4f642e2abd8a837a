"""Engines and codecs stay sans-I/O (STYLE.md §2.1): no sockets, event loop, clock, randomness, OS,
netlink or systemd imports in wire/, crypto/, ike/ or the daemons' engine modules; and imports go one
way (wire never imports crypto, ike or service)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "socket", "asyncio", "time", "random", "os", "pyroute2", "systemd", "subprocess", "select", "pathlib",
}  # fmt: skip
ENGINES = sorted(
    [f for d in ("wire", "crypto", "ike") for f in (REPO / "mobility" / d).glob("*.py")]
    + [
        REPO / p
        for p in ("natt/engine.py", "natt/sadb.py", "ard/engine.py", "ard/fmip.py", "mobiled/fmip.py", "had/pool.py")
    ]
)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", ENGINES, ids=lambda p: str(p.relative_to(REPO)))
def test_engine_modules_do_no_io(path: Path) -> None:
    bad = {n for n in imported(path) if n.split(".")[0] in FORBIDDEN or n.startswith("mobility.service")}
    assert not bad, f"{path.name} imports {sorted(bad)}"  # files, sockets and the service layer stay in shells


@pytest.mark.parametrize("path", sorted((REPO / "mobility" / "wire").glob("*.py")), ids=lambda p: p.name)
def test_wire_imports_nothing_above_it(path: Path) -> None:
    up = {n for n in imported(path) if n.startswith(("mobility.crypto", "mobility.ike", "mobility.service"))}
    assert not up, f"{path.name} imports {sorted(up)}"
