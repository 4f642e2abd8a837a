"""mobilityctl: one CLI for every daemon's control socket; tables by default, --json on request."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mobility.service.control import ControlClient, ControlError

# Default table columns per (daemon, command); --all shows every field, --json the raw result.
COLUMNS: dict[tuple[str, str], list[str]] = {
    ("natt", "sas"): [
        "spi_in",
        "spi_out",
        "mode",
        "cipher",
        "peer",
        "peer_port",
        "remote_ts",
        "inner_nat",
        "peer_alias",
        "persistent",
        "in_packets",
        "out_packets",
        "drop_replay",
        "drop_icv",
    ],
}


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def table(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    cells = [[_cell(row.get(c, ""), c) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(v: Any, key: str = "") -> str:
    if key.startswith("spi") and isinstance(v, int):
        return f"{v:#010x}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def render(result: Any, indent: str = "") -> str:
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        return "\n".join(indent + line for line in table(result).splitlines())
    if isinstance(result, list) and not result:
        return indent + "(none)"
    if isinstance(result, dict):
        out = []
        for k, v in result.items():
            if isinstance(v, dict | list) and v:
                out.append(f"{indent}{k}:")
                out.append(render(v, indent + "  "))
            else:
                out.append(f"{indent}{k}: {_cell(v) if v != {} else '(none)'}")
        return "\n".join(out)
    return indent + str(result)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mobilityctl", description="talk to a mobility daemon's control socket")
    p.add_argument("--json", action="store_true", help="print the raw JSON result")
    p.add_argument("--all", action="store_true", help="tables: show every column")
    p.add_argument("--socket", type=Path, help="control socket (default /run/mobility/<daemon>.sock)")
    p.add_argument("daemon", help="natt, had, mobiled or ard")
    p.add_argument("command", nargs="?", default="status", help="e.g. status, sas, stats, help")
    p.add_argument("args", nargs="*", help="key=value (values parsed as JSON when they parse)")
    a = p.parse_args(argv)
    args: dict[str, Any] = {}
    for item in a.args:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"mobilityctl: argument {item!r} is not key=value", file=sys.stderr)
            return 2
        args[key] = parse_value(value)
    path = a.socket or Path(f"/run/mobility/{a.daemon}.sock")
    if not path.exists():
        print(f"mobilityctl: {a.daemon} is not running (no {path})", file=sys.stderr)
        return 1
    try:
        with ControlClient(path) as c:
            result = c.call(a.command, **args)
    except ControlError as e:
        print(f"mobilityctl: {a.daemon} {a.command}: {e}", file=sys.stderr)
        return 1
    cols = COLUMNS.get((a.daemon, a.command))
    if cols and not a.all and isinstance(result, list):
        result = [{k: row.get(k, "") for k in cols} for row in result if isinstance(row, dict)]
    print(json.dumps(result, indent=2) if a.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
