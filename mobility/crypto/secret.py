"""Key material that never shows up in a repr or a log line (STYLE.md §2.4)."""

from __future__ import annotations


class Secret(bytes):
    """bytes whose repr is `<secret N bytes>`."""

    def __repr__(self) -> str:
        return f"<secret {len(self)} bytes>"

    __str__ = __repr__
