"""FMIPv6 handover keys (RFC 5269): key generation (§3.6), RSAES-PKCS1-v1_5 encryption under the
MN's handover-key encryption public key (§3.2), and the FBU/FBack authenticator of the Binding
Authorization Data for FMIPv6 option (RFC 5568 §6.4.5, computed as RFC 6275 §6.2.7 with the PAR
address for the correspondent and the handover key for Kbm).

Algorithm Type (AT) values are not defined by any RFC (specs/fmipv6.md §7.1). Project convention:
AT 0 = HMAC-SHA1-96 (the BADF default), AT 1 = HMAC-SHA256-128; larger = stronger.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from ipaddress import IPv6Address

from cryptography.hazmat.primitives.asymmetric import padding, rsa

ALGORITHMS = {0: ("sha1", 12), 1: ("sha256", 16)}  # AT -> (hash, authenticator octets)
KEY_LEN = 32  # "sufficient strength" for both (§3.6)
HK_LIFETIME = 43200  # seconds (§3.7)


def choose_at(preferred: int) -> int:
    """The MN's preferred AT if supported, else one of equal or greater strength (§3.2)."""
    if preferred in ALGORITHMS:
        return preferred
    stronger = [a for a in ALGORITHMS if a >= preferred]
    return min(stronger) if stronger else max(ALGORITHMS)


def new_key(rand: Callable[[int], bytes]) -> bytes:
    return rand(KEY_LEN)


def encrypt(public_key: rsa.RSAPublicKey, key: bytes) -> bytes:
    return public_key.encrypt(key, padding.PKCS1v15())


def decrypt(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return private_key.decrypt(data, padding.PKCS1v15())


def authenticator(at: int, key: bytes, coa: IPv6Address, par: IPv6Address, mh_data: bytes) -> bytes:
    """First(n, HMAC(handover key, CoA | PAR address | MH Data)), MH Data without the Authenticator
    and with the MH checksum zeroed (RFC 6275 §6.2.7 as adapted by RFC 5568 §6.4.5)."""
    name, n = ALGORITHMS[at]
    return hmac.digest(key, coa.packed + par.packed + mh_data, name)[:n]


def check(at: int, key: bytes, coa: IPv6Address, par: IPv6Address, mh_data: bytes, got: bytes) -> bool:
    return at in ALGORITHMS and hmac.compare_digest(authenticator(at, key, coa, par, mh_data), got)
