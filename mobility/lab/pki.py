"""A throwaway lab PKI: a CA and end-entity certificates whose subjectAltName carries the IKE identity
(dNSName for FQDN identities, as RFC 5026 §9.5 requires). Written as PEM files for strongSwan
(swanctl/x509, x509ca, private) and for our daemons (cert_file, key_file, ca_files)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from ipaddress import IPv6Network
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mobility.crypto.sendcert import IP_ADDR_BLOCKS_OID, SEND_ROUTER_EKU, encode_ip_addr_blocks


@dataclass
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write(self, cert_path: Path, key_path: Path | None = None) -> None:
        cert_path.write_bytes(self.cert_pem())
        if key_path is not None:
            key_path.write_bytes(self.key_pem())
            key_path.chmod(0o600)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mobility lab"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _key(kind: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())


def _ip_addr_blocks(prefixes: tuple[IPv6Network, ...]) -> x509.UnrecognizedExtension:
    """RFC 3779 §2.2.1 IP Address Delegation extension value (cryptography does not know the type)."""
    return x509.UnrecognizedExtension(IP_ADDR_BLOCKS_OID, encode_ip_addr_blocks(prefixes))


def make_ca(
    cn: str = "mobility lab CA", kind: str = "ecdsa", prefixes: tuple[IPv6Network, ...] | None = None
) -> Issued:
    """A self-signed CA; with prefixes, also a SEND trust anchor for exactly those IPv6 prefixes
    (critical ipAddrBlocks, RFC 3779 §2.2.2, RFC 3971 §6.3.1)."""
    key = _key(kind)
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    )
    if prefixes is not None:
        b = b.add_extension(_ip_addr_blocks(prefixes), critical=True)
    return Issued(b.sign(key, hashes.SHA256()), key)


def issue(
    ca: Issued,
    cn: str,
    *,
    dns: tuple[str, ...] = (),
    kind: str = "ecdsa",
    days: float = 30,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> Issued:
    """An end-entity certificate; `extensions` are (extension, critical) pairs added after the others.
    Negative days give an expired one."""
    key = _key(kind)
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, now + dt.timedelta(days=days)) - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    return Issued(b.sign(ca.key, hashes.SHA256()), key)


def issue_send_router(
    ca: Issued, cn: str, prefixes: tuple[IPv6Network, ...], *, days: float = 30, eku: bool = True
) -> Issued:
    """A SEND router certificate (RFC 3971 §6.3.1, RFC 6494): RSA-2048 key, critical ipAddrBlocks for the
    prefixes the router may advertise (RFC 3779 §2.2.1, RFC 6494 §4) and, unless eku is False, the
    non-critical extendedKeyUsage id-kp-sendRouter (RFC 6494 §7). Negative days give an expired one."""
    exts: tuple[tuple[x509.ExtensionType, bool], ...] = ((_ip_addr_blocks(prefixes), True),)
    if eku:
        exts += ((x509.ExtendedKeyUsage([SEND_ROUTER_EKU]), False),)
    return issue(ca, cn, kind="rsa", days=days, extensions=exts)
