"""ESP transforms: AES-GCM-16 (RFC 4106) and AES-CBC (RFC 3602) with HMAC-SHA-256-128 (RFC 4868).

Pure functions of their inputs: the caller supplies the IV (GCM: the 64-bit sequence number, a
counter unique per key, RFC 4106 §3.1; CBC: random bytes from the shell's generator, RFC 3602 §2.4).
`seal` returns the ESP payload after the 8-octet SPI/Sequence header: IV ‖ ciphertext ‖ ICV.
`open` verifies before decrypting and raises `IntegrityError` for any authentication failure.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class IntegrityError(ValueError):
    """ICV mismatch or an impossible ciphertext length: drop and count (RFC 4303 §3.4.4)."""


_PADS = [bytes(range(1, n + 1)) for n in range(256)]
_TRAILERS = [_PADS[n] + bytes((n,)) for n in range(256)]


def pad_trailer(payload_len: int, block: int) -> bytes:
    """Padding ‖ Pad Length (RFC 4303 §2.4): monotonic 1, 2, 3, ... up to a multiple of `block`."""
    return _TRAILERS[-(payload_len + 2) % block]


def check_padding(plain: bytes) -> tuple[int, int]:
    """Return (payload length, next header) after checking the default padding (RFC 4303 §2.4)."""
    if len(plain) < 2:
        raise IntegrityError("no room for the ESP trailer")
    pad_len, nh = plain[-2], plain[-1]
    end = len(plain) - 2 - pad_len
    if end < 0:
        raise IntegrityError("pad length exceeds the payload")
    if pad_len and plain[end:-2] != _PADS[pad_len]:
        raise IntegrityError("padding bytes are not 1, 2, 3, ...")
    return end, nh


class AesGcm16:
    """RFC 4106: nonce = salt ‖ 8-octet IV, AAD = SPI ‖ Seq (‖ high ESN bits), 16-octet tag."""

    iv_len, icv_len, block = 8, 16, 4

    def __init__(self, key_and_salt: bytes) -> None:
        if len(key_and_salt) not in (20, 28, 36):
            raise ValueError("AES-GCM key+salt must be 20, 28 or 36 bytes (RFC 4106 §8.1)")
        self._aead = AESGCM(key_and_salt[:-4])
        self._salt = key_and_salt[-4:]

    @staticmethod
    def _aad(header: bytes, seq_hi: bytes | None) -> bytes:
        # RFC 4106 §5: with ESN the AAD is SPI ‖ 64-bit sequence number (high bits first)
        return header if seq_hi is None else header[:4] + seq_hi + header[4:]

    def seal(self, header: bytes, seq_hi: bytes | None, plain: bytes, iv: bytes) -> bytes:
        return iv + self._aead.encrypt(self._salt + iv, plain, self._aad(header, seq_hi))

    def open(self, header: bytes, seq_hi: bytes | None, body: bytes) -> bytes:
        if len(body) < 8 + 16 + 4 or (len(body) - 24) % 4:
            raise IntegrityError("ciphertext length")
        try:
            return self._aead.decrypt(self._salt + body[:8], body[8:], self._aad(header, seq_hi))
        except InvalidTag:
            raise IntegrityError("ICV mismatch") from None


class AesCbcHmacSha256:
    """RFC 3602 AES-CBC + RFC 4868 HMAC-SHA-256-128; ICV over SPI ‖ Seq ‖ IV ‖ ciphertext (‖ Seqh)."""

    iv_len, icv_len, block = 16, 16, 16

    def __init__(self, key: bytes, integ_key: bytes) -> None:
        if len(key) not in (16, 24, 32) or len(integ_key) != 32:
            raise ValueError("AES-CBC key 16/24/32 bytes, HMAC-SHA-256 key 32 bytes")
        self._algo = algorithms.AES(key)
        self._mac = hmac.new(integ_key, digestmod=hashlib.sha256)

    def _icv(self, header: bytes, body: bytes, seq_hi: bytes | None) -> bytes:
        m = self._mac.copy()
        m.update(header)
        m.update(body)
        if seq_hi is not None:
            m.update(seq_hi)  # RFC 4303 §2.2.1: implicit high-order ESN bits after the trailer
        return m.digest()[:16]

    def seal(self, header: bytes, seq_hi: bytes | None, plain: bytes, iv: bytes) -> bytes:
        enc = Cipher(self._algo, modes.CBC(iv)).encryptor()
        body = iv + enc.update(plain) + enc.finalize()
        return body + self._icv(header, body, seq_hi)

    def open(self, header: bytes, seq_hi: bytes | None, body: bytes) -> bytes:
        if len(body) < 16 + 16 + 16 or (len(body) - 32) % 16:
            raise IntegrityError("ciphertext length")
        icv = body[-16:]
        if not hmac.compare_digest(icv, self._icv(header, body[:-16], seq_hi)):
            raise IntegrityError("ICV mismatch")
        dec = Cipher(self._algo, modes.CBC(body[:16])).decryptor()
        return dec.update(body[16:-16]) + dec.finalize()


EspTransform = AesGcm16 | AesCbcHmacSha256
