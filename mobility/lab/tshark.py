"""tshark 4.0 as an oracle: field extraction, malformed/error detection, ESP decryption options.

Known dissector defects that callers whitelist are listed in ../shared/lab (HK options with pad >= 2,
MH checksums not verified, DNS-UPDATE MN-ID / BADF shown 2 bytes short); ESP with a bad ICV sets
`esp.icv_bad` but creates no expert item.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

MALFORMED = '_ws.malformed || _ws.expert.severity == "Error"'


def _tshark(pcap: Path, args: list[str]) -> str:
    res = subprocess.run(["tshark", "-n", "-r", str(pcap), *args], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"tshark failed on {pcap}: {res.stderr.strip()}")
    return res.stdout


def tshark_fields(
    pcap: Path, display_filter: str, fields: list[str], extra_opts: list[str] | None = None
) -> list[list[str]]:
    args = [
        *(extra_opts or []),
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]
    for f in fields:
        args += ["-e", f]
    out = _tshark(pcap, args)
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def malformed(pcap: Path, extra_opts: list[str] | None = None) -> list[str]:
    """One summary line per frame tshark marks malformed or with an error-level expert item."""
    return [line for line in _tshark(pcap, [*(extra_opts or []), "-Y", MALFORMED]).splitlines() if line.strip()]


def count(pcap: Path, display_filter: str, extra_opts: list[str] | None = None) -> int:
    return len(tshark_fields(pcap, display_filter, ["frame.number"], extra_opts))


KNOWN_HK_DEFECT = "Unknown Data (not interpreted)"  # HK Request/Reply with Pad Length >= 2 (lab notes)


def unexplained_errors(pcap: Path) -> list[str]:
    """Frames marked malformed or with an error-level expert item, except the known false positive on
    RFC 5269 Handover Key options whose Pad Length is 2 or more."""
    out = []
    fields = ["frame.number", "_ws.expert.message", "icmpv6.opt.hkr.pad_length"]
    for frame, messages, pads in tshark_fields(pcap, MALFORMED, fields):
        known = set(messages.split(",")) <= {KNOWN_HK_DEFECT, ""} and any(int(p) >= 2 for p in pads.split(",") if p)
        if not known:
            out.append(f"frame {frame}: {messages}")
    return out
