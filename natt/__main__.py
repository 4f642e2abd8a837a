"""natt: NAT traversal for IPsec on UDP 4500 (RFC 3948)."""

from __future__ import annotations

import sys

from mobility.service.runner import run_daemon
from natt.config import NattConfig
from natt.daemon import NattDaemon


def main(argv: list[str] | None = None) -> int:
    return run_daemon("natt", NattConfig, NattDaemon, argv)


if __name__ == "__main__":
    sys.exit(main())
