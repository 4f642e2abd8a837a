"""The [ike] configuration shared by had (responder) and mobiled (initiator), and its translation
into engine policies. Proposal strings are strongSwan's ("aes128gcm16-prfsha256-x25519")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mobility.ike.policy import Credentials, Identity, Policy, Timers, ts_from_network
from mobility.ike.proposals import parse_suite
from mobility.wire.ikev2 import CfgAttribute, Protocol

DEFAULT_IKE = (
    "aes128gcm16-prfsha256-x25519",
    "aes128-sha256-x25519",
    "aes128gcm16-prfsha256-ecp256",
    "aes128-sha256-modp2048",
)
DEFAULT_ESP = ("aes128gcm16", "aes128-sha256")


@dataclass(frozen=True, slots=True)
class IkeConnection:
    name: str = field(default="default", metadata={"doc": "connection name (logs, mobilityctl)"})
    local_id: str = field(default="", metadata={"doc": 'our identity: FQDN, user@fqdn, IP or "keyid:hex"'})
    remote_id: str = field(default="", metadata={"doc": "the peer's identity (responder: which IDi this is for)"})
    auth: Literal["psk", "pubkey"] = field(default="psk", metadata={"doc": "shared key or certificates"})
    psk_file: Path | None = field(default=None, metadata={"doc": "file holding the shared secret (mode 0600)"})
    cert_file: Path | None = field(default=None, metadata={"doc": "PEM: our certificate, then intermediates"})
    key_file: Path | None = field(default=None, metadata={"doc": "PEM private key for cert_file (mode 0600)"})
    ca_files: tuple[Path, ...] = field(default=(), metadata={"doc": "PEM trust anchors for the peer's certificate"})
    proposals: tuple[str, ...] = field(default=DEFAULT_IKE, metadata={"doc": "IKE SA proposals, preferred first"})
    esp_proposals: tuple[str, ...] = field(default=DEFAULT_ESP, metadata={"doc": "Child SA proposals"})
    local_ts: tuple[str, ...] = field(default=(), metadata={"doc": "our side of the Child SA (prefixes)"})
    remote_ts: tuple[str, ...] = field(default=(), metadata={"doc": "the peer's side (prefixes)"})
    mode: Literal["tunnel", "transport"] = field(default="tunnel", metadata={"doc": "Child SA mode"})
    mobike: bool = field(
        default=False, metadata={"doc": "announce MOBIKE_SUPPORTED (RFC 4555; address updates: not yet)"}
    )
    rekey_time_s: float = field(
        default=14400.0, metadata={"doc": "initiator rekeys the IKE SA after this long (0: never)", "range": (0, 1e7)}
    )
    child_rekey_time_s: float = field(
        default=3600.0, metadata={"doc": "initiator rekeys each Child SA after this long (0: never)", "range": (0, 1e7)}
    )
    retransmit_timeout_s: float = field(default=4.0, metadata={"doc": "first retransmission", "range": (0.1, 60)})
    retransmit_tries: int = field(default=5, metadata={"doc": "retransmissions before giving up", "range": (0, 20)})


def _read_secret(path: Path) -> bytes:
    from mobility.service.config import read_secret_file

    return read_secret_file(path).strip()


def build_policy(c: IkeConnection, cp_request: tuple[CfgAttribute, ...] = ()) -> Policy:
    """Load credentials and parse suites; raises ValueError/OSError with the reason."""
    from mobility.crypto import ikeauth

    cred = Credentials()
    if c.auth == "psk":
        if c.psk_file is None:
            raise ValueError(f"connection {c.name}: auth = psk needs psk_file")
        cred = Credentials(psk=_read_secret(c.psk_file))
    else:
        if c.cert_file is None or c.key_file is None or not c.ca_files:
            raise ValueError(f"connection {c.name}: auth = pubkey needs cert_file, key_file and ca_files")
        anchors = tuple(a for p in c.ca_files for a in ikeauth.load_certificates(p.read_bytes()))
        cred = Credentials(
            private_key=ikeauth.load_private_key(_read_secret(c.key_file)),
            certs=tuple(ikeauth.load_certificates(c.cert_file.read_bytes())),
            anchors=anchors,
        )
    return Policy(
        name=c.name,
        local_id=Identity.parse(c.local_id),
        remote_id=Identity.parse(c.remote_id) if c.remote_id else None,
        auth=c.auth,
        credentials=cred,
        ike_suites=tuple(parse_suite(s, Protocol.IKE) for s in c.proposals),
        esp_suites=tuple(parse_suite(s, Protocol.ESP) for s in c.esp_proposals),
        local_ts=tuple(ts_from_network(t) for t in c.local_ts),
        remote_ts=tuple(ts_from_network(t) for t in c.remote_ts),
        transport=c.mode == "transport",
        cp_request=cp_request,
        mobike=c.mobike,
        timers=Timers(
            timeout_s=c.retransmit_timeout_s,
            tries=c.retransmit_tries,
            rekey_s=c.rekey_time_s,
            child_rekey_s=c.child_rekey_time_s,
        ),
    )
