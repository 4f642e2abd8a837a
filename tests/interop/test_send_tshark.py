"""tshark as the oracle for the SEND/FMIPv6 messages we emit: RtSolPr with a Handover Key Request and
PrRtAdv with a Handover Key Reply, both SEND-signed, dissect with every option named and nothing
malformed except the known tshark defect on HK options whose Pad Length is 2 or more
(../shared/lab/tshark-and-kernel-guest.md)."""

from __future__ import annotations

import os
from ipaddress import IPv6Address

from cryptography.hazmat.primitives.asymmetric import rsa

from mobility.crypto import hk, sendsig
from mobility.lab.netns import CAPTURES
from mobility.lab.pcap import ipv6, write_pcap
from mobility.lab.tshark import tshark_fields, unexplained_errors
from mobility.wire import nd
from tests.unit.crypto.test_send import AR, make_mn, rtsolpr, signed


def test_emitted_fmipv6_send_messages_dissect() -> None:
    mn = make_mn()
    src = mn["addr"]
    assert isinstance(src, IPv6Address)
    sol = signed(mn, rtsolpr(mn))
    router = rsa.generate_private_key(65537, 1024)
    hkek = mn["hkek"]
    assert isinstance(hkek, rsa.RSAPrivateKey)
    reply = nd.prrtadv(
        0,
        0x1234,
        (
            nd.LinkLayerAddress(3, bytes.fromhex("020000000002")),
            nd.IpAddressPrefix(4, 64, IPv6Address("2001:db8:20::")),
            nd.HandoverKeyReply(1, hk.HK_LIFETIME, hk.encrypt(hkek.public_key(), hk.new_key(os.urandom))),
            nd.Timestamp.at(1_700_000_000.5),
            nd.Nonce(b"n" * 6),
        ),
    )
    adv = sendsig.sign(reply, AR, src, router).encode(AR, src)
    pcap = write_pcap(
        CAPTURES / "test_send_tshark" / "fmipv6-send.pcap",
        [ipv6(src.packed, AR.packed, 58, sol), ipv6(AR.packed, src.packed, 58, adv)],
    )
    rows = tshark_fields(pcap, "icmpv6", ["icmpv6.fmip6.subtype", "icmpv6.opt.type", "icmpv6.checksum.status"])
    assert [r[0] for r in rows] == ["2", "3"]
    assert set(rows[0][1].split(",")) >= {"19", "27", "11", "13", "14", "12"}
    assert set(rows[1][1].split(",")) >= {"19", "17", "28", "13", "14", "12"}
    assert all(r[2] == "1" for r in rows)  # checksums good
    assert not unexplained_errors(pcap)
