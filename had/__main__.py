"""had: the mobility suite's home agent (MIPv6/MIPv4 bindings, RFC 5026 bootstrapping, IKEv2 responder)."""

from __future__ import annotations

import sys

from had.config import HadConfig
from had.daemon import HadDaemon
from mobility.service.runner import run_daemon


def main(argv: list[str] | None = None) -> int:
    return run_daemon("had", HadConfig, HadDaemon, argv)


if __name__ == "__main__":
    sys.exit(main())
