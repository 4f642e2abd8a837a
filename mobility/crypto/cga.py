"""Cryptographically Generated Addresses (RFC 3972): the CGA Parameters structure (§3), generation
(§4) and verification (§5), plus CGA signatures (§6).

Generation is split so that the modifier search (steps 2-3, the only expensive part for Sec >= 1)
can run on several cores: `search_modifier` scans a range of modifiers and is pure; a driver in
the daemon hands out ranges (`mobiled.cgagen`). Randomness comes in as an argument.
Extension fields (RFC 4581) are hashed as given and otherwise ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mobility.wire.buffer import Reader, der_length

MASK1 = 0x1CFFFFFFFFFFFFFF  # RFC 3972 §5 step 4: ignore Sec (bits 0-2) and u/g (bits 6-7)
SEND_TYPE_TAG = bytes.fromhex("086FCA5E10B200C99C8CE00164277C08")  # RFC 3971 §5.2
MAX_COLLISIONS = 3  # RFC 3972 §4 step 8


class CgaError(ValueError):
    """The address is not a CGA of these parameters (the failing step in the message)."""


@dataclass(frozen=True, slots=True)
class CgaParams:
    modifier: int
    prefix: bytes  # 8 octets
    collision_count: int
    public_key: bytes  # DER SubjectPublicKeyInfo
    extensions: bytes = b""

    def encode(self) -> bytes:
        return (
            self.modifier.to_bytes(16, "big")
            + self.prefix
            + bytes([self.collision_count])
            + self.public_key
            + (self.extensions)
        )

    @classmethod
    def decode(cls, data: bytes) -> CgaParams:
        """Split the structure: the public key's DER length tells where extensions begin (§3)."""
        r = Reader(data, "cga")
        modifier = int.from_bytes(r.take(16, "modifier"), "big")
        prefix = r.take(8, "prefix")
        cc = r.u8("collision_count")
        key_len = der_length(data, r.offset, "cga")
        key = r.take(key_len, "public_key")
        return cls(modifier, prefix, cc, key, r.rest())

    def rsa_key(self) -> rsa.RSAPublicKey:
        try:
            key = serialization.load_der_public_key(self.public_key)
        except ValueError as e:
            raise CgaError("public key does not parse") from e
        if not isinstance(key, rsa.RSAPublicKey):
            raise CgaError("CGA key is not RSA")
        return key


def hash2(modifier: int, public_key: bytes, extensions: bytes = b"") -> bytes:
    """Leftmost 112 bits of SHA-1(modifier | 9 zero octets | key | extensions) (§3, §4 step 2)."""
    return hashlib.sha1(modifier.to_bytes(16, "big") + bytes(9) + public_key + extensions).digest()[:14]


def hash1(params: CgaParams) -> bytes:
    return hashlib.sha1(params.encode()).digest()[:8]  # §4 step 5


def sec_ok(h2: bytes, sec: int) -> bool:
    return h2[: 2 * sec] == bytes(2 * sec)  # leftmost 16*Sec bits zero


def search_modifier(start: int, count: int, public_key: bytes, sec: int, extensions: bytes = b"") -> int | None:
    """Steps 2-3: the first modifier in [start, start+count) whose Hash2 has 16*Sec zero bits."""
    prefix_bytes = bytes(9)
    base = hashlib.sha1()
    for m in range(start, start + count):
        h = base.copy()
        h.update((m % (1 << 128)).to_bytes(16, "big") + prefix_bytes + public_key + extensions)
        if h.digest()[: 2 * sec] == bytes(2 * sec):
            return m % (1 << 128)
    return None


def address(prefix: IPv6Network, params: CgaParams, sec: int) -> IPv6Address:
    """Steps 5-7: Hash1 with Sec in bits 0-2 and u/g (bits 6-7) cleared."""
    iid = bytearray(hash1(params))
    iid[0] = (sec << 5) | (iid[0] & 0x1C)
    return IPv6Address(prefix.network_address.packed[:8] + bytes(iid))


def generate(
    prefix: IPv6Network,
    public_key: bytes,
    sec: int,
    rand: Callable[[int], bytes],
    *,
    collision_count: int = 0,
    modifier: int | None = None,
    extensions: bytes = b"",
) -> tuple[IPv6Address, CgaParams]:
    """Single-core generation (§4). Pass a `modifier` found earlier (or by a parallel search) to reuse
    it for a new prefix or after a DAD collision (§4: restart at step 4)."""
    if not 0 <= sec <= 7 or prefix.prefixlen != 64:
        raise ValueError("Sec must be 0..7 and the prefix a /64")
    if collision_count >= MAX_COLLISIONS:
        raise CgaError("three DAD collisions: give up (RFC 3972 §4 step 8)")
    if modifier is None:
        m = int.from_bytes(rand(16), "big")
        if sec:
            while (found := search_modifier(m, 1 << 16, public_key, sec, extensions)) is None:
                m = (m + (1 << 16)) % (1 << 128)
            m = found
        modifier = m
    params = CgaParams(modifier, prefix.network_address.packed[:8], collision_count, public_key, extensions)
    return address(prefix, params, sec), params


def verify(addr: IPv6Address, params: CgaParams) -> int:
    """RFC 3972 §5 steps 1-7, stopping at the first failure; returns Sec."""
    if params.collision_count > 2:
        raise CgaError("step 1: collision count above 2")
    if params.prefix != addr.packed[:8]:
        raise CgaError("step 2: subnet prefix differs from the address")
    iid = int.from_bytes(addr.packed[8:], "big")
    if int.from_bytes(hash1(params), "big") & MASK1 != iid & MASK1:
        raise CgaError("step 4: Hash1 does not match the interface identifier")
    sec = iid >> 61
    if not sec_ok(hash2(params.modifier, params.public_key, params.extensions), sec):
        raise CgaError(f"step 7: Hash2 lacks {16 * sec} leading zero bits")
    return sec


def sign(key: rsa.RSAPrivateKey, type_tag: bytes, message: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-1 over type tag | message (RFC 3972 §6)."""
    return key.sign(type_tag + message, padding.PKCS1v15(), hashes.SHA1())


def verify_signature(key: rsa.RSAPublicKey, type_tag: bytes, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, type_tag + message, padding.PKCS1v15(), hashes.SHA1())
    except (InvalidSignature, ValueError):
        return False
    return True


def key_hash(public_key_der: bytes) -> bytes:
    """Leftmost 128 bits of SHA-1 over the DER public key (RFC 3971 §5.2 Key Hash)."""
    return hashlib.sha1(public_key_der).digest()[:16]
