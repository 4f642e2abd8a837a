"""Action types shared by every sans-I/O engine (ARCHITECTURE.md "Rules of the house").

An engine is fed bytes or commands with an explicit `now` and returns a list of actions; the
daemon shell performs them in order. Order matters: a `Persist` placed before a `Send` must be
committed before the datagram leaves (nothing acknowledged is ever lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)  # not frozen: built per packet, and frozen __init__ is several times slower
class Send:
    """Send `data` as one UDP datagram to (addr, port) from the engine's socket."""

    addr: str
    port: int
    data: bytes


@dataclass(slots=True)
class IkeSend:
    """Send an IKE message from our UDP `sport` (500, or 4500 through natt with the non-ESP marker)."""

    dst: str
    dport: int
    sport: int
    data: bytes


@dataclass(slots=True)
class Deliver:
    """Hand a decapsulated inner IP packet to the local stack (TUN write)."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class Program:
    """A dataplane intent (install/remove routes, SAs, policies)."""

    op: Any


@dataclass(frozen=True, slots=True)
class Persist:
    """A state change that must be committed to the store before later actions run."""

    record: Any


@dataclass(frozen=True, slots=True)
class Notify:
    """An event (frozen dataclass, past tense) for the shell to log, count and route."""

    event: Any


Action = Send | IkeSend | Deliver | Program | Persist | Notify
