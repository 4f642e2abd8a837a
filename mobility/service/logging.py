"""Logging: journald with structured fields under systemd, stderr otherwise (STYLE.md §2.6)."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any


def setup_logging(ident: str, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if "JOURNAL_STREAM" in os.environ:  # started by systemd: fields, not prefixes
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER=ident)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("pyroute2").setLevel(max(level, logging.INFO))  # its netlink dumps drown ours


class RateLimitedLog:
    """DEBUG lines for drops of unauthenticated input, at most `per_second` per key."""

    def __init__(self, logger: logging.Logger, per_second: int = 5) -> None:
        self._log, self._limit = logger, per_second
        self._window: dict[str, tuple[int, int]] = {}

    def debug(self, key: str, msg: str, *args: Any) -> None:
        if not self._log.isEnabledFor(logging.DEBUG):
            return
        second = int(time.monotonic())
        start, count = self._window.get(key, (second, 0))
        if start != second:
            start, count = second, 0
        if count < self._limit:
            self._log.debug(msg, *args)
        self._window[key] = (start, count + 1)
