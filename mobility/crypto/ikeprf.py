"""IKEv2 key material: PRFs and prf+ (RFC 7296 §2.13), SKEYSEED and the IKE SA keys (§2.14), Child
SA KEYMAT (§2.17), IKE SA rekey (§2.18), Diffie-Hellman groups 14 (RFC 3526 §3), 19 (RFC 5903 §7,
§8: x‖y public value, x-only shared secret) and 31 (Curve25519, RFC 8031), NAT detection hashes
(§2.23) and stateless cookies (§2.6).

Randomness is always passed in (`rand(n) -> bytes`): nothing here draws on its own. Finite-field DH
is plain modular exponentiation, so it does not depend on `cryptography`'s deprecated DH API.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from mobility.crypto.secret import Secret

Rand = Callable[[int], bytes]


class DhError(ValueError):
    """A peer's public value that is not valid for its group (drop the message)."""


# ---- PRFs (RFC 7296 §3.3.2, RFC 4868) --------------------------------------------------------

PRF_HASHES = {2: "sha1", 5: "sha256", 6: "sha384", 7: "sha512"}


@dataclass(frozen=True, slots=True)
class Prf:
    id: int

    @property
    def hash(self) -> str:
        return PRF_HASHES[self.id]

    @property
    def key_size(self) -> int:  # preferred key size = output length for HMAC PRFs (§2.13)
        return hashlib.new(self.hash).digest_size

    def __call__(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self.hash)

    def plus(self, key: bytes, seed: bytes, n: int) -> bytes:
        """prf+ (K, S) = T1 | T2 | ... with T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n) (§2.13)."""
        out, t, i = bytearray(), b"", 1
        while len(out) < n:
            if i > 255:
                raise ValueError("prf+ cannot produce that much key material")
            t = self(key, t + seed + bytes([i]))
            out += t
            i += 1
        return bytes(out[:n])


# ---- Diffie-Hellman groups --------------------------------------------------------------------

MODP2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)  # RFC 3526 §3, generator 2


class DhGroup:
    id: int
    size: int  # octets of the KE data

    def generate(self, rand: Rand) -> tuple[object, bytes]:
        """Return (private state, public KE data)."""
        raise NotImplementedError

    def shared(self, private: object, peer: bytes) -> Secret:
        raise NotImplementedError


class Modp2048(DhGroup):
    id, size = 14, 256

    def generate(self, rand: Rand) -> tuple[object, bytes]:
        x = int.from_bytes(rand(64), "big") | (1 << 511)  # 512-bit exponent, > 2x the group's strength
        return x, pow(2, x, MODP2048_P).to_bytes(self.size, "big")

    def shared(self, private: object, peer: bytes) -> Secret:
        if len(peer) != self.size:
            raise DhError(f"MODP-2048 public value of {len(peer)} octets")
        y = int.from_bytes(peer, "big")
        if not 1 < y < MODP2048_P - 1:
            raise DhError("MODP-2048 public value out of range")
        assert isinstance(private, int)
        return Secret(pow(y, private, MODP2048_P).to_bytes(self.size, "big"))  # padded to the modulus (§2.14)


class Ecp256(DhGroup):
    id, size = 19, 64

    def generate(self, rand: Rand) -> tuple[object, bytes]:
        n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        d = int.from_bytes(rand(40), "big") % (n - 1) + 1
        key = ec.derive_private_key(d, ec.SECP256R1())
        pub = key.public_key().public_numbers()
        return key, pub.x.to_bytes(32, "big") + pub.y.to_bytes(32, "big")  # RFC 5903 §7

    def shared(self, private: object, peer: bytes) -> Secret:
        if len(peer) != self.size:
            raise DhError(f"ECP-256 public value of {len(peer)} octets")
        try:
            pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + peer)
        except ValueError as e:
            raise DhError("ECP-256 point not on the curve") from e
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        return Secret(private.exchange(ec.ECDH(), pub))  # x coordinate only (RFC 5903 §7)


class Curve25519(DhGroup):
    id, size = 31, 32

    def generate(self, rand: Rand) -> tuple[object, bytes]:
        key = x25519.X25519PrivateKey.from_private_bytes(rand(32))
        return key, key.public_key().public_bytes_raw()

    def shared(self, private: object, peer: bytes) -> Secret:
        if len(peer) != self.size:
            raise DhError(f"Curve25519 public value of {len(peer)} octets")
        assert isinstance(private, x25519.X25519PrivateKey)
        try:
            out = private.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        except ValueError as e:  # all-zero result (RFC 7748 §6.1)
            raise DhError("Curve25519 all-zero shared secret") from e
        return Secret(out)


DH_GROUPS: dict[int, DhGroup] = {g.id: g for g in (Modp2048(), Ecp256(), Curve25519())}


# ---- IKE SA and Child SA keys -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeKeys:
    sk_d: Secret
    sk_ai: Secret
    sk_ar: Secret
    sk_ei: Secret
    sk_er: Secret
    sk_pi: Secret
    sk_pr: Secret


def ike_keys(prf: Prf, skeyseed: bytes, seed: bytes, integ_len: int, encr_len: int) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)."""
    p = prf.key_size
    sizes = (p, integ_len, integ_len, encr_len, encr_len, p, p)
    km = prf.plus(skeyseed, seed, sum(sizes))
    parts, pos = [], 0
    for n in sizes:
        parts.append(Secret(km[pos : pos + n]))
        pos += n
    return IkeKeys(*parts)


def skeyseed(prf: Prf, ni: bytes, nr: bytes, g_ir: bytes) -> Secret:
    """SKEYSEED = prf(Ni | Nr, g^ir) (§2.14; HMAC PRFs take the whole nonces)."""
    return Secret(prf(ni + nr, g_ir))


def rekey_skeyseed(prf: Prf, old_sk_d: bytes, g_ir: bytes, ni: bytes, nr: bytes) -> Secret:
    """SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) (§2.18)."""
    return Secret(prf(old_sk_d, g_ir + ni + nr))


def child_keymat(prf: Prf, sk_d: bytes, ni: bytes, nr: bytes, n: int, g_ir: bytes = b"") -> Secret:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (§2.17)."""
    return Secret(prf.plus(sk_d, g_ir + ni + nr, n))


# ---- NAT detection and cookies -----------------------------------------------------------------


def natd_hash(spi_i: bytes, spi_r: bytes, addr: bytes, port: int) -> bytes:
    """SHA-1(SPIi | SPIr | IP | port) (RFC 7296 §2.23); addr is the packed 4 or 16 octets."""
    return hashlib.sha1(spi_i + spi_r + addr + port.to_bytes(2, "big")).digest()


def cookie(secret_version: int, secret: bytes, ni: bytes, addr: bytes, spi_i: bytes) -> bytes:
    """<VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>) (RFC 7296 §2.6)."""
    return bytes([secret_version & 0xFF]) + hashlib.sha256(ni + addr + spi_i + secret).digest()
