"""mobiled: the mobility suite's mobile node (IKEv2 initiator, MIPv6/MIPv4 registration, handover keys)."""

from __future__ import annotations

import sys

from mobiled.config import MobiledConfig
from mobiled.daemon import MobiledDaemon
from mobility.service.runner import run_daemon


def main(argv: list[str] | None = None) -> int:
    return run_daemon("mobiled", MobiledConfig, MobiledDaemon, argv)


if __name__ == "__main__":
    sys.exit(main())
