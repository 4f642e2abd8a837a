"""pytest fixtures for namespace scenarios: one Lab per test, named after it, always torn down."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from mobility.lab.netns import Lab
from mobility.lab.topology import Topology


@pytest.fixture
def lab_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Lab]]:
    if os.geteuid() != 0:
        pytest.fail("namespace tests need root")
    labs: list[Lab] = []

    def make(topology: Topology, *, bad: bool = False, name: str | None = None) -> Lab:
        lab = Lab(topology, name or request.node.name, bad=bad)
        labs.append(lab)
        lab.__enter__()
        return lab

    try:
        yield make
    finally:
        for lab in reversed(labs):
            lab.teardown()
