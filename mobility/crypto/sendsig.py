"""SEND message protection (RFC 3971): the signed octets and RSA Signature option (§5.2), CGA
ownership (§5.1, RFC 3972 §5), the timestamp window (§5.3.4.2, defaults §10.2) and nonce
bookkeeping (§5.3.4.1), for ND and FMIPv6 RtSolPr/PrRtAdv (RFC 5269 §3.1-§3.3).

Signed octets, in order: CGA Message Type tag, source, destination, ICMP type, code, checksum,
the message body after the checksum, and every option before the first RSA Signature option.
The checksum value signed is the one computed over the message truncated before the signature
option (the interpretation two independent implementations share, specs/send-cga.md §3.2).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import IPv6Address

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mobility.crypto import cga
from mobility.wire.nd import CgaOption, NdMessage, RsaSignature, Timestamp, with_checksum

TIMESTAMP_DELTA, TIMESTAMP_FUZZ, TIMESTAMP_DRIFT = 300.0, 1.0, 0.01  # RFC 3971 §10.2
MIN_KEY_BITS, MAX_KEY_BITS = 1024, 2048  # §5.1.3: minbits default, upper limit at least 2048


class SendError(ValueError):
    """The message is not SEND-valid (silently discarded; the reason goes to DEBUG logs)."""


def public_der(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def signed_octets(src: IPv6Address, dst: IPv6Address, msg: NdMessage, before: int) -> bytes:
    """RFC 3971 §5.2 items 1-6 for options[:before]."""
    head = bytes([msg.type, msg.code, 0, 0]) + msg.body
    opts = b"".join(o.encode() for o in msg.options[:before])
    truncated = with_checksum(src, dst, head + opts)
    return cga.SEND_TYPE_TAG + src.packed + dst.packed + truncated


def sign(msg: NdMessage, src: IPv6Address, dst: IPv6Address, key: rsa.RSAPrivateKey) -> NdMessage:
    """Append the RSA Signature option as the last option (§5.2.1)."""
    octets = signed_octets(src, dst, msg, len(msg.options))
    sig = cga.sign(key, cga.SEND_TYPE_TAG, octets[16:])
    opt = RsaSignature(cga.key_hash(public_der(key.public_key())), sig)
    return NdMessage(msg.type, msg.code, msg.body, (*msg.options, opt))


def signature_index(msg: NdMessage) -> int:
    for i, o in enumerate(msg.options):
        if isinstance(o, RsaSignature):
            return i
    raise SendError("no RSA Signature option")


def verify(msg: NdMessage, src: IPv6Address, dst: IPv6Address, key: rsa.RSAPublicKey) -> None:
    """§5.2.2: the Key Hash names this key and the signature over the preceding options verifies.
    Options after the first signature option are ignored (the caller must not use them)."""
    i = signature_index(msg)
    opt = msg.options[i]
    assert isinstance(opt, RsaSignature)
    if opt.key_hash != cga.key_hash(public_der(key)):
        raise SendError("Key Hash does not name the key")
    if not MIN_KEY_BITS <= key.key_size <= 4096:
        raise SendError(f"RSA key of {key.key_size} bits outside policy")
    size = (key.key_size + 7) // 8
    sig, pad = opt.signature[:size], opt.signature[size:]
    if len(sig) != size or any(pad):
        raise SendError("signature length does not fit the key")
    octets = signed_octets(src, dst, msg, i)
    if not cga.verify_signature(key, cga.SEND_TYPE_TAG, octets[16:], sig):
        raise SendError("RSA signature does not verify")


def cga_key(msg: NdMessage, src: IPv6Address) -> tuple[rsa.RSAPublicKey, cga.CgaParams]:
    """§5.1.2: the source must be a CGA of the parameters in the CGA option; returns its key."""
    opt = msg.first(CgaOption)
    if not isinstance(opt, CgaOption):
        raise SendError("no CGA option")
    try:
        params = cga.CgaParams.decode(opt.params)
        cga.verify(src, params)
        key = params.rsa_key()  # a valid CGA of an EC key is still no RSA signer (RFC 3971 §5.2)
    except (cga.CgaError, ValueError) as e:
        raise SendError(f"source is not a usable CGA of the parameters: {e}") from e
    return key, params


def verify_cga_signed(msg: NdMessage, src: IPv6Address, dst: IPv6Address) -> cga.CgaParams:
    """CGA ownership plus a signature by the CGA key (the host-to-router direction, RFC 5269 §3.2)."""
    key, params = cga_key(msg, src)
    verify(msg, src, dst, key)
    return params


@dataclass(slots=True)
class _Peer:
    rd_last: float
    ts_last: float


class TimestampCache:
    """RFC 3971 §5.3.4.2 per-peer timestamp check, bounded; `now` is wall-clock seconds."""

    def __init__(self, *, delta: float = TIMESTAMP_DELTA, fuzz: float = TIMESTAMP_FUZZ,
                 drift: float = TIMESTAMP_DRIFT, size: int = 4096) -> None:  # fmt: skip
        self.delta, self.fuzz, self.drift, self.size = delta, fuzz, drift, size
        self._peers: OrderedDict[bytes, _Peer] = OrderedDict()

    def check(self, peer: IPv6Address, ts: Timestamp | None, now: float) -> bool:
        """True if acceptable (and then recorded when newer, §5.3.4.2)."""
        if ts is None:
            return False  # signed but no Timestamp: MUST be discarded (§5.3.4)
        tsn, key = ts.seconds, peer.packed
        known = self._peers.get(key)
        if known is None:
            if not -self.delta < now - tsn < self.delta:
                return False
            self._peers[key] = _Peer(now, tsn)
            while len(self._peers) > self.size:
                self._peers.popitem(last=False)  # full: evict the oldest (§5.3.4)
            return True
        ok = tsn + self.fuzz > known.ts_last + (now - known.rd_last) * (1 - self.drift) - self.fuzz
        if ok and tsn > known.ts_last:
            known.rd_last, known.ts_last = now, tsn
            self._peers.move_to_end(key)
        return ok


class NonceCache:
    """Recently seen (sender, nonce) pairs, kept for the timestamp window: a replayed solicitation is
    refused even inside TIMESTAMP_FUZZ. Bounded; the oldest entries go first."""

    def __init__(self, *, ttl: float = 2 * TIMESTAMP_DELTA, size: int = 8192) -> None:
        self.ttl, self.size = ttl, size
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def fresh(self, sender: IPv6Address, nonce: bytes, now: float) -> bool:
        while self._seen and next(iter(self._seen.values())) < now - self.ttl:
            self._seen.popitem(last=False)
        key = sender.packed + nonce
        if key in self._seen:
            return False
        self._seen[key] = now
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True
