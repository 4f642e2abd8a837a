"""tests/kernel runs inside the qemu guest booting Debian's stock kernel (make test does that)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.guest)


@pytest.fixture(autouse=True)
def _in_guest() -> None:
    if os.environ.get("MOBILITY_IN_GUEST") != "1":
        pytest.fail(
            "tests/kernel must run inside the kernel guest: python -m mobility.lab.guest -- pytest tests/kernel"
        )
