"""Our ESP transforms against scapy's independent ESP implementation (oracle), both directions."""

from __future__ import annotations

import os

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation

from mobility.crypto.esp import AesCbcHmacSha256, AesGcm16, IntegrityError, check_padding, pad_trailer
from mobility.crypto.replay import ReplayWindow

GCM_KEY = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")  # key ‖ salt
CBC_KEY, HMAC_KEY = bytes(range(16)), bytes(range(32, 64))


def scapy_sa(kind: str, spi: int) -> SecurityAssociation:
    if kind == "gcm":
        return SecurityAssociation(ESP, spi=spi, crypt_algo="AES-GCM", crypt_key=GCM_KEY)
    return SecurityAssociation(
        ESP, spi=spi, crypt_algo="AES-CBC", crypt_key=CBC_KEY, auth_algo="SHA2-256-128", auth_key=HMAC_KEY
    )


def ours(kind: str) -> AesGcm16 | AesCbcHmacSha256:
    return AesGcm16(GCM_KEY) if kind == "gcm" else AesCbcHmacSha256(CBC_KEY, HMAC_KEY)


@pytest.mark.parametrize("kind", ["gcm", "cbc"])
def test_scapy_decrypts_ours(kind: str) -> None:
    inner = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"payload-123")
    t = ours(kind)
    header = (0x1234).to_bytes(4, "big") + (7).to_bytes(4, "big")
    iv = (7).to_bytes(8, "big") if t.iv_len == 8 else os.urandom(16)
    body = t.seal(header, None, inner + pad_trailer(len(inner), t.block) + b"\x04", iv)
    pkt = IP(src="192.0.2.1", dst="192.0.2.2", proto=50) / (header + body)
    pkt = IP(bytes(pkt))
    dec = scapy_sa(kind, 0x1234).decrypt(pkt)
    assert bytes(dec[IP].payload) == inner or bytes(dec.payload) == inner


@pytest.mark.parametrize("kind", ["gcm", "cbc"])
def test_we_decrypt_scapy(kind: str) -> None:
    inner = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / (b"x" * 33)
    sa = scapy_sa(kind, 0x4321)
    enc = sa.encrypt(IP(src="192.0.2.1", dst="192.0.2.2") / inner.payload)  # transport mode
    esp = bytes(enc[ESP])
    plain = ours(kind).open(esp[:8], None, esp[8:])
    end, nh = check_padding(plain)
    want = bytes(inner.payload)  # scapy redid the UDP checksum for the outer addresses: skip it
    assert nh == 17 and plain[:6] == want[:6] and plain[8:end] == want[8:]


def test_tampering_and_lengths_raise_integrity_error() -> None:
    for t in (ours("gcm"), ours("cbc")):
        header = bytes(8)
        body = t.seal(header, None, b"abcdefgh" + pad_trailer(8, t.block) + b"\x11", os.urandom(t.iv_len))
        for bad in (body[:-1] + bytes([body[-1] ^ 1]), body[:10], b"", body + b"\0"):
            with pytest.raises(IntegrityError):
                t.open(header, None, bad)
        with pytest.raises(IntegrityError):
            t.open(b"\x00\x00\x00\x01" + header[4:], None, body)  # AAD/ICV covers the SPI
        with pytest.raises(IntegrityError):
            t.open(header, b"\x00\x00\x00\x01", body)  # and the implicit ESN high bits


def test_padding_rules() -> None:
    for n in range(0, 40):
        for block in (4, 16):
            tr = pad_trailer(n, block)
            assert (n + len(tr) + 1) % block == 0
            assert check_padding(bytes(n) + tr + b"\x06") == (n, 6)
    with pytest.raises(IntegrityError):
        check_padding(b"\x01\x09\x02\x06")  # pad bytes must be 1, 2, ...
    with pytest.raises(IntegrityError):
        check_padding(b"\x05\x06")  # pad length beyond the payload


def test_replay_window_model_and_esn_inference() -> None:
    w = ReplayWindow(64)
    assert not w.check(0)
    for s in (1, 5, 3, 70):
        assert w.check(s)
        w.accept(s)
    assert not w.check(5) and not w.check(3) and not w.check(6)  # 6 <= 70-64 is left of the window
    assert w.check(69) and w.check(71)
    # RFC 4303 App. A2.2 across the 2**32 boundary
    w = ReplayWindow(64, top=(1 << 32) - 10)
    assert w.infer_esn(5) == (1 << 32) + 5
    assert w.infer_esn(0xFFFFFFF0) == 0xFFFFFFF0
    w = ReplayWindow(64, top=(1 << 32) + 3)
    assert w.infer_esn(0xFFFFFFF0) == 0xFFFFFFF0  # just left of the edge, previous epoch
    assert w.infer_esn(10) == (1 << 32) + 10
    filled = ReplayWindow(64, top=100, fill=True)
    assert not filled.check(100) and not filled.check(60) and filled.check(101)
