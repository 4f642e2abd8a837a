"""Cipher suites written as strongSwan-style proposal strings ("aes128gcm16-prfsha256-ecp256",
"aes128-sha256-x25519", "aes128gcm16-esn"), turned into SA proposals (RFC 7296 §3.3), and the
responder's choice of exactly one transform per type from one offered proposal (§2.7, §3.3.6).

Supported (the project set, specs/ikev2-mobike-natt.md §9.2): ENCR AES-CBC 128/256 (12) and
AES-GCM-16 128/256 (20); PRF HMAC-SHA2-256/384/512 (5/6/7); INTEG HMAC-SHA2-256-128/384-192/
512-256 (12/13/14); D-H 14, 19, 31; ESN 0/1. Anything else in a string is a configuration error.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobility.wire.ikev2 import Proposal, Protocol, Transform, TransformType

_ENCR = {
    "aes128": (12, 128),
    "aes256": (12, 256),
    "aes128gcm16": (20, 128),
    "aes256gcm16": (20, 256),
    "aes128gcm128": (20, 128),
    "aes256gcm128": (20, 256),
}
_HASH = {"sha256": (5, 12), "sha384": (6, 13), "sha512": (7, 14)}  # (PRF id, INTEG id)
_DH = {"modp2048": 14, "ecp256": 19, "x25519": 31, "curve25519": 31}


@dataclass(frozen=True, slots=True)
class Suite:
    """One combination: at most one transform of each type."""

    transforms: tuple[Transform, ...]

    def get(self, ttype: int) -> Transform | None:
        return next((t for t in self.transforms if t.type == ttype), None)

    @property
    def dh(self) -> int | None:
        t = self.get(TransformType.DH)
        return t.id if t else None


def parse_suite(text: str, protocol: Protocol) -> Suite:
    """Parse one proposal string; raise ValueError naming the bad token."""
    encr: Transform | None = None
    prf = integ = dh = esn = None
    for tok in text.lower().split("-"):
        if tok in _ENCR:
            encr = Transform(TransformType.ENCR, _ENCR[tok][0], _ENCR[tok][1])
        elif tok.startswith("prf") and tok[3:] in _HASH:
            prf = Transform(TransformType.PRF, _HASH[tok[3:]][0])
        elif tok in _HASH:
            integ = Transform(TransformType.INTEG, _HASH[tok][1])
        elif tok in _DH:
            dh = Transform(TransformType.DH, _DH[tok])
        elif tok in ("esn", "noesn"):
            esn = Transform(TransformType.ESN, 1 if tok == "esn" else 0)
        else:
            raise ValueError(f"{text!r}: unknown algorithm {tok!r}")
    if encr is None:
        raise ValueError(f"{text!r}: no encryption algorithm")
    aead = encr.id == 20
    if protocol == Protocol.IKE:
        if prf is None and integ is not None:  # "aes128-sha256": sha256 is PRF and (non-AEAD) INTEG
            prf = Transform(TransformType.PRF, next(p for p, i in _HASH.values() if i == integ.id))
        if aead:
            integ = None
        if prf is None or dh is None or (not aead and integ is None):
            raise ValueError(f"{text!r}: an IKE proposal needs encryption, PRF, integrity (unless AEAD) and D-H")
        parts = [encr, prf] + ([integ] if integ else []) + [dh]
    else:
        if prf is not None:
            raise ValueError(f"{text!r}: an ESP proposal has no PRF")
        if not aead and integ is None:
            raise ValueError(f"{text!r}: AES-CBC needs an integrity algorithm")
        if not aead and integ is not None and integ.id != 12:
            # the ESP data planes (natt userspace, XFRM) are keyed for HMAC-SHA-256-128 only (sa.esp_pair)
            raise ValueError(f"{text!r}: ESP integrity must be sha256 (AUTH_HMAC_SHA2_256_128)")
        parts = [encr] + ([integ] if integ and not aead else []) + ([dh] if dh else [])
        parts.append(esn or Transform(TransformType.ESN, 0))
    return Suite(tuple(parts))


def offer(suites: list[Suite], protocol: Protocol, spi: bytes = b"") -> tuple[Proposal, ...]:
    """One proposal per suite, numbered from 1 (§3.3.1)."""
    return tuple(Proposal(i + 1, protocol, spi, s.transforms) for i, s in enumerate(suites))


def _matches(suite: Suite, prop: Proposal) -> bool:
    offered = set(prop.transforms)
    types = {t.type for t in prop.transforms}
    ours = {t.type for t in suite.transforms}
    if types - ours - {TransformType.DH}:  # offered a type we do not use (e.g. INTEG with AEAD)
        return False
    if TransformType.DH in types and TransformType.DH not in ours and prop.protocol == Protocol.IKE:
        return False
    return all(t in offered for t in suite.transforms)


def choose(
    offered: tuple[Proposal, ...], ours: list[Suite], protocol: Protocol, ke_group: int | None
) -> tuple[Proposal, Suite] | None:
    """Pick (their proposal, our suite): initiator's order first, preferring the group of its KE."""
    candidates = [(p, s) for p in offered if p.protocol == protocol for s in ours if _matches(s, p)]
    if ke_group is not None:
        for p, s in candidates:
            if s.dh == ke_group:
                return p, s
    return candidates[0] if candidates else None


def selected(prop: Proposal, suite: Suite, spi: bytes) -> Proposal:
    """The responder's SA payload: the chosen proposal number with one transform per type."""
    return Proposal(prop.num, prop.protocol, spi, suite.transforms)


def offered(suite: Suite, suites: list[Suite] | tuple[Suite, ...]) -> bool:
    """Is the suite the peer chose one we offered? (RFC 7296 §2.7: it must be)"""
    return any(set(suite.transforms) == set(s.transforms) for s in suites)


def suite_of(prop: Proposal) -> Suite:
    """The initiator's view of a responder's single-transform-per-type reply."""
    seen: set[int] = set()
    for t in prop.transforms:
        if t.type in seen:
            raise ValueError(f"more than one transform of type {t.type} in the reply")
        seen.add(t.type)
    return Suite(prop.transforms)
