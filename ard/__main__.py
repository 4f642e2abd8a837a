"""ard: the mobility suite's access router (SEND, RFC 5269 handover keys, FBU verification)."""

from __future__ import annotations

import sys

from ard.config import ArdConfig
from ard.daemon import ArdDaemon
from mobility.service.runner import run_daemon


def main(argv: list[str] | None = None) -> int:
    return run_daemon("ard", ArdConfig, ArdDaemon, argv)


if __name__ == "__main__":
    sys.exit(main())
