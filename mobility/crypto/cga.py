"""Cryptographically Generated Addresses (RFC 3972): the CGA Parameters structure (§3), generation
(§4) and verification (§5), plus CGA signatures (§6).

Generation is split so that the modifier search (steps 2-3, the only expensive part for Sec >= 1)
can run on several cores: `search_modifier` and `scan_modifiers` scan a range of modifiers and are
pure; `find_modifier` is the driver that hands ranges to worker processes (Sec >= 2, about 2^32
SHA-1 on average) and reports progress. Randomness comes in as an argument.
Extension fields (RFC 4581) are hashed as given and otherwise ignored.

Operators: `python -m mobility.crypto.cga --sec 2 --key key.pem --prefix fe80::/64` searches on all
cores, shows progress on stderr and prints the address and the CGA Parameters (hex) on stdout.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import queue
import struct
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Any

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


def scan_modifiers(start: int, count: int, public_key: bytes, zero_bits: int, extensions: bytes = b"") -> int | None:
    """Steps 2-3 for any number of leading zero bits (16*Sec in real use): the first modifier in
    [start, start+count) modulo 2^128 whose Hash2 starts with `zero_bits` zero bits, else None.
    The worker of `find_modifier` (top level, so it pickles for spawned processes)."""
    if not 0 <= zero_bits <= 112:
        raise ValueError("Hash2 has 112 bits")
    sha1, pack_into = hashlib.sha1, struct.Struct(">I").pack_into
    first_below, shift = 256 >> min(zero_bits, 8), 112 - zero_bits
    tail = bytes(9) + public_key + extensions
    m, left = start % (1 << 128), count
    while left > 0:
        # only the low 32 bits change inside a run: packed in place into one buffer
        low = m & 0xFFFFFFFF
        n = min(left, (1 << 32) - low)
        buf = bytearray(m.to_bytes(16, "big") + tail)
        for i in range(low, low + n):
            pack_into(buf, 12, i)
            d = sha1(buf).digest()
            if d[0] < first_below and int.from_bytes(d[:14], "big") >> shift == 0:
                return m - low + i
        left -= n
        m = (m + n) % (1 << 128)
    return None


CHUNK = 1 << 18  # modifiers per task of the parallel search: a fraction of a second on one core


class _Ticker:
    """Puts None into a queue about every second (the progress cadence), from a daemon thread."""

    def __init__(self, q: queue.SimpleQueue[Any], period: float = 1.0) -> None:
        self.q, self.period, self.stop = q, period, threading.Event()
        self.thread = threading.Thread(target=self._run, name="cga-progress", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.period):
            self.q.put(None)

    def __enter__(self) -> _Ticker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def find_modifier(
    public_key: bytes,
    sec: int,
    rand: Callable[[int], bytes],
    *,
    extensions: bytes = b"",
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    zero_bits: int | None = None,
) -> int:
    """§4 steps 1-3. Sec 0: a random modifier at once. Sec 1 (about 2^16 SHA-1): searched here, from
    a random start. Sec >= 2 (about 2^(16*Sec)): `workers` processes (default: all cores) scan each
    from its own random start, CHUNK modifiers per task; the first hit wins and the rest is cancelled
    (a running chunk still finishes). `progress(hashes tried so far)` is called from this thread about
    every second and once at the end; an exception it raises stops the search (a time cap). `zero_bits`
    replaces 16*Sec (tests: a cheap search that still takes the Sec >= 2 path). The processes are
    spawned (not forked), so the caller's main module must be import-safe (`if __name__ == "__main__"`)."""
    if not 0 <= sec <= 7:
        raise ValueError("Sec must be 0..7")
    if sec == 0:
        return int.from_bytes(rand(16), "big")
    bits = 16 * sec if zero_bits is None else zero_bits
    n = workers if workers is not None else multiprocessing.cpu_count()
    if sec == 1 or n <= 1:
        return _search_here(public_key, bits, rand, extensions, progress)
    return _search_parallel(public_key, bits, rand, extensions, n, progress)


def _search_here(
    public_key: bytes,
    bits: int,
    rand: Callable[[int], bytes],
    extensions: bytes,
    progress: Callable[[int], None] | None,
) -> int:
    """Sequential from one random start (for Sec 1 the same modifier the former in-line loop found)."""
    m, tried, step = int.from_bytes(rand(16), "big"), 0, 1 << 16
    ticks: queue.SimpleQueue[Any] = queue.SimpleQueue()
    with _Ticker(ticks) if progress is not None else contextlib.nullcontext():
        while (found := scan_modifiers(m, step, public_key, bits, extensions)) is None:
            m, tried = (m + step) % (1 << 128), tried + step
            while progress is not None and not ticks.empty():
                ticks.get()
                progress(tried)
    if progress is not None:
        progress(tried + (found - m) % (1 << 128) + 1)
    return found


def _search_parallel(
    public_key: bytes,
    bits: int,
    rand: Callable[[int], bytes],
    extensions: bytes,
    workers: int,
    progress: Callable[[int], None] | None,
) -> int:
    # spawn, not fork: callers are daemons with threads (an asyncio loop, executors)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    events: queue.SimpleQueue[tuple[int, int, Future[int | None]] | None] = queue.SimpleQueue()
    nxt = [int.from_bytes(rand(16), "big") for _ in range(workers)]  # one random stream per process
    tried = 0

    def submit(stream: int) -> None:
        start = nxt[stream]
        nxt[stream] = (start + CHUNK) % (1 << 128)
        fut = pool.submit(scan_modifiers, start, CHUNK, public_key, bits, extensions)
        fut.add_done_callback(lambda f: events.put((stream, start, f)))

    try:
        with _Ticker(events):
            for stream in range(workers):
                submit(stream)
                submit(stream)  # a second task queued keeps each process busy while we resubmit
            while True:
                ev = events.get()
                if ev is None:  # a second went by
                    if progress is not None:
                        progress(tried)
                    continue
                stream, start, fut = ev
                found = fut.result()
                if found is not None:
                    if progress is not None:
                        progress(tried + (found - start) % (1 << 128) + 1)
                    return found
                tried += CHUNK
                submit(stream)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[IPv6Address, CgaParams]:
    """Generation (§4). Pass a `modifier` found earlier (or by a parallel search) to reuse it for a
    new prefix or after a DAD collision (§4: restart at step 4). Otherwise the modifier comes from
    `find_modifier`: Sec 0 and 1 in this process, Sec >= 2 on `workers` processes (default: all
    cores), with `progress(hashes tried)` about every second."""
    if not 0 <= sec <= 7 or prefix.prefixlen != 64:
        raise ValueError("Sec must be 0..7 and the prefix a /64")
    if collision_count >= MAX_COLLISIONS:
        raise CgaError("three DAD collisions: give up (RFC 3972 §4 step 8)")
    if modifier is None:
        modifier = find_modifier(public_key, sec, rand, extensions=extensions, workers=workers, progress=progress)
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


def _public_der(pem: bytes) -> bytes:
    """SubjectPublicKeyInfo DER of a PEM private key (unencrypted) or public key."""
    try:
        key = serialization.load_pem_private_key(pem, None).public_key()
    except (ValueError, TypeError):
        key = serialization.load_pem_public_key(pem)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def main(argv: list[str] | None = None) -> int:
    """python -m mobility.crypto.cga --sec 2 --key key.pem --prefix fe80::/64 [--workers N]"""
    import argparse
    import secrets

    ap = argparse.ArgumentParser(prog="python -m mobility.crypto.cga", description="CGA generation (RFC 3972 §4)")
    ap.add_argument("--sec", type=int, default=1, choices=range(8), help="Sec 0-7 (Sec 2: minutes to hours)")
    ap.add_argument("--key", required=True, help="PEM RSA key (private, unencrypted, or public)")
    ap.add_argument("--prefix", required=True, type=IPv6Network, help="the /64 subnet prefix")
    ap.add_argument("--workers", type=int, default=None, help="processes for Sec >= 2 (default: all cores)")
    args = ap.parse_args(argv)
    with open(args.key, "rb") as f:
        der = _public_der(f.read())
    calls, last = 0, 0

    def show(hashes: int) -> None:
        nonlocal calls, last
        calls, last = calls + 1, hashes  # one call a second: hashes per call is about the rate
        print(f"\r{hashes:,} hashes, ~{hashes / calls:,.0f} hashes/s ", end="", file=sys.stderr, flush=True)

    try:
        addr, params = generate(args.prefix, der, args.sec, secrets.token_bytes, workers=args.workers, progress=show)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print(f"\r{last:,} hashes tried{' ' * 24}", file=sys.stderr)  # the last call came at the end, not a second
    print(f"address {addr}\nsec {args.sec}\nmodifier {params.modifier:032x}\nparams {params.encode().hex()}")
    return 0


if __name__ == "__main__":
    from mobility.crypto import cga as _cga  # the importable module, so spawned workers find scan_modifiers

    sys.exit(_cga.main())
