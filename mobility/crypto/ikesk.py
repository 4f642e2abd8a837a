"""The Encrypted and Authenticated payload (RFC 7296 §3.14) with AES-CBC + HMAC-SHA2 and, as an AEAD,
AES-GCM with a 16-octet ICV (RFC 5282 §3-§5: 8-octet IV, AAD = IKE header through the SK payload's
generic header, nonce = 4-octet salt | IV, SK_a* empty).

`seal` builds a whole protected message; `open_message` checks the ICV over exactly the octets the RFC
names and only then parses the inner chain. Anything wrong raises IntegrityError (or DecodeError
for a well-authenticated but malformed inner chain, which a peer with our keys could send).
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mobility.crypto.esp import IntegrityError
from mobility.wire.ikev2 import HEADER_LEN, SK, Header, Payload, PayloadType, decode_chain, encode_chain

ENCR_AES_CBC, ENCR_AES_GCM_16 = 12, 20  # RFC 7296 §3.3.2, RFC 5282 §7.2
INTEG_HASH = {12: ("sha256", 32, 16), 13: ("sha384", 48, 24), 14: ("sha512", 64, 32)}  # RFC 4868 §2.1


@dataclass(frozen=True, slots=True)
class SkSuite:
    encr: int
    key_bits: int
    integ: int | None = None

    def __post_init__(self) -> None:
        if self.encr not in (ENCR_AES_CBC, ENCR_AES_GCM_16) or self.key_bits not in (128, 192, 256):
            raise ValueError(f"unsupported IKE cipher {self.encr}/{self.key_bits}")
        if (self.encr == ENCR_AES_GCM_16) != (self.integ is None) or (self.integ and self.integ not in INTEG_HASH):
            raise ValueError("AEAD takes no integrity transform, AES-CBC needs one of HMAC-SHA2")

    @property
    def aead(self) -> bool:
        return self.encr == ENCR_AES_GCM_16

    @property
    def encr_key_len(self) -> int:
        return self.key_bits // 8 + (4 if self.aead else 0)  # salt, RFC 5282 §7.1

    @property
    def integ_key_len(self) -> int:
        return 0 if self.integ is None else INTEG_HASH[self.integ][1]

    @property
    def iv_len(self) -> int:
        return 8 if self.aead else 16

    @property
    def icv_len(self) -> int:
        return 16 if self.integ is None else INTEG_HASH[self.integ][2]


def seal(suite: SkSuite, sk_e: bytes, sk_a: bytes, header: Header, inner: list[Payload], iv: bytes) -> bytes:
    """Encode `header` + SK{inner} with a fresh `iv` (the caller draws it at random)."""
    first, plain = encode_chain(inner)
    if suite.aead:
        padded = plain + b"\x00"  # Pad Length 0: AEAD needs no alignment (RFC 5282 §3)
    else:
        pad = -(len(plain) + 1) % 16
        padded = plain + bytes(pad) + bytes([pad])
    length = HEADER_LEN + 4 + len(iv) + len(padded) + suite.icv_len
    head = header.encode(length)
    head = head[:16] + bytes([PayloadType.SK]) + head[17:]
    gen = struct.pack("!BBH", first, 0, length - HEADER_LEN)
    if suite.aead:
        ct = AESGCM(sk_e[:-4]).encrypt(sk_e[-4:] + iv, padded, head + gen)
        return head + gen + iv + ct
    enc = Cipher(algorithms.AES(sk_e), modes.CBC(iv)).encryptor()
    body = head + gen + iv + enc.update(padded) + enc.finalize()
    return body + _icv(suite, sk_a, body)


def _icv(suite: SkSuite, sk_a: bytes, data: bytes) -> bytes:
    assert suite.integ is not None
    name, _, trunc = INTEG_HASH[suite.integ]
    return hmac.digest(sk_a, data, name)[:trunc]


def open_message(suite: SkSuite, sk_e: bytes, sk_a: bytes, data: bytes, sk: SK) -> list[Payload]:
    """Authenticate and decrypt the SK payload that ends `data`; return the inner payloads."""
    sk_start = len(data) - 4 - len(sk.data)  # SK is always the last payload (§3.14)
    body = sk.data
    if len(body) < suite.iv_len + suite.icv_len + (1 if suite.aead else 16):
        raise IntegrityError("SK payload too short")
    iv = body[: suite.iv_len]
    if suite.aead:
        try:
            plain = AESGCM(sk_e[:-4]).decrypt(sk_e[-4:] + iv, body[suite.iv_len :], data[: sk_start + 4])
        except InvalidTag as e:
            raise IntegrityError("SK ICV") from e
    else:
        icv = data[-suite.icv_len :]
        if not hmac.compare_digest(icv, _icv(suite, sk_a, data[: -suite.icv_len])):
            raise IntegrityError("SK ICV")
        ct = body[suite.iv_len : -suite.icv_len]
        if len(ct) % 16:
            raise IntegrityError("SK ciphertext is not a whole number of blocks")
        dec = Cipher(algorithms.AES(sk_e), modes.CBC(iv)).decryptor()
        plain = dec.update(ct) + dec.finalize()
    pad = plain[-1]
    if pad + 1 > len(plain):
        raise IntegrityError("SK pad length exceeds the plaintext")
    return decode_chain(sk.first, plain[: len(plain) - pad - 1])
