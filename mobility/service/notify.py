"""sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET (also used by the lab)."""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self) -> None:
        self._addr = os.environ.get("NOTIFY_SOCKET", "")

    def send(self, *lines: str) -> None:
        if not self._addr:
            return
        addr = "\0" + self._addr[1:] if self._addr.startswith("@") else self._addr
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            try:
                s.sendto("\n".join(lines).encode(), addr)
            except OSError:
                pass  # the manager is gone; nothing to tell

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def watchdog_ping(self) -> None:
        self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2e6
        except ValueError:
            return None
