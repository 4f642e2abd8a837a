"""UDP 4500 demux, ESP header and IP helpers: round trips and malformed input."""

from __future__ import annotations

import struct
from ipaddress import ip_address

import pytest

from mobility.wire import ip
from mobility.wire.buffer import DecodeError, Reader
from mobility.wire.esp import EspHeader, Kind, classify, ike_datagram


def test_classify() -> None:
    assert classify(b"\xff") is Kind.KEEPALIVE
    assert classify(ike_datagram(bytes(28))) is Kind.IKE
    assert classify(b"\x00\x00\x10\x01" + bytes(40)) is Kind.ESP
    for bad, field in [
        (b"", "payload"),
        (b"\x00", "keepalive"),
        (b"\xff\xff", "payload"),
        (b"\0\0\0\0" + bytes(27), "ike_header"),
        (b"\x01\x02\x03\x04" + bytes(20), "length"),
    ]:
        with pytest.raises(DecodeError) as e:
            classify(bad)
        assert e.value.field == field


def test_esp_header_round_trip_and_spi_zero() -> None:
    h = EspHeader(0xDEADBEEF, 42)
    assert EspHeader.decode(h.encode()) == h
    with pytest.raises(DecodeError, match="SPI 0"):
        EspHeader.decode(bytes(8))
    with pytest.raises(DecodeError):
        EspHeader.decode(b"\x01\x02")


def test_reader_bounds() -> None:
    r = Reader(b"\x01\x02\x03", "t")
    assert r.u16("a") == 0x0102
    with pytest.raises(DecodeError) as e:
        r.u16("b")
    assert e.value.field == "b" and e.value.offset == 2
    assert r.u8("c") == 3
    r.end()


def test_checksums_against_scapy() -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    for pkt in (
        IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=5, dport=80) / b"abc",
        IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5, dport=53) / b"abcd",
    ):
        raw = bytes(pkt)
        hdr = ip.parse_ip(raw)
        seg = raw[hdr.header_len :]
        assert ip.l4_checksum_ok(hdr.src, hdr.dst, hdr.proto, seg)
        new_src = ip_address("10.9.9.9" if hdr.version == 4 else "fd00::99").packed
        moved = ip.rewrite_address(raw, hdr, src=new_src)
        h2 = ip.parse_ip(moved)
        assert ip.l4_checksum_ok(h2.src, h2.dst, h2.proto, moved[h2.header_len :])
        ref = bytes((IP if hdr.version == 4 else IPv6)(raw))
        assert len(ref) == len(moved)
        if hdr.version == 4:
            assert ip.ones_sum(moved[:20]) in (0, 0xFFFF)
        recomputed = ip.recompute_l4(new_src, h2.dst, h2.proto, seg)
        assert recomputed == moved[h2.header_len :]


def test_parse_ip_rejects_inconsistent_lengths() -> None:
    good = ip.build_ip(bytes(4), bytes(4), 17, bytes(8))
    assert ip.parse_ip(good).proto == 17
    for bad in (
        good[:-1],
        good + b"\0",
        b"\x45" + good[1:2] + struct.pack("!H", 5) + good[4:],
        b"\x75" + good[1:],
        b"",
        b"\x60" + bytes(10),
    ):
        with pytest.raises(DecodeError):
            ip.parse_ip(bad)
    v6 = ip.build_ip(bytes(16), bytes(16), 58, bytes(4))
    assert ip.parse_ip(v6).header_len == 40
    with pytest.raises(DecodeError):
        ip.parse_ip(v6[:-1])


def test_ike_traffic_selector_with_end_below_start_is_malformed() -> None:
    from ipaddress import IPv4Address

    from mobility.wire.ikev2 import TrafficSelector, TSi

    body = TSi((TrafficSelector(IPv4Address("10.0.0.9"), IPv4Address("10.0.0.1")),)).body()
    with pytest.raises(DecodeError) as e:
        TSi.parse(Reader(body, "ikev2"))
    assert e.value.field == "ts.end"
