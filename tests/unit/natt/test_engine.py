"""natt engine pairs joined back to back: tunnel/transport, GCM/CBC, v4/v6, replay, NAT procedures."""

from __future__ import annotations

import itertools
import os
import struct
from dataclasses import replace
from ipaddress import ip_address, ip_network

import pytest

from mobility.dataplane.sa import Cipher, EspSaPair, Integ, Mode
from mobility.engine import Deliver, Notify, Persist, Program, Send
from mobility.wire import ip
from natt.engine import IkeReceived, NattEngine, RouteAdd, SaStored, SeqReserved
from natt.sadb import Checkpoint

KEY_A = bytes(range(20))
KEY_B = bytes(range(100, 120))


def gcm_pair(mode: Mode = Mode.TUNNEL, v6: bool = False, **kw: object) -> tuple[EspSaPair, EspSaPair]:
    """Client (behind NAT, private 10.99.1.2) and gateway (192.0.2.2) views of one Child SA."""
    c_out, g_out = ("fd99:1::2", "2001:db8:1::2") if v6 else ("10.99.1.2", "192.0.2.2")
    nat_pub = "2001:db8:1::1" if v6 else "192.0.2.1"
    inner_c = "fd00:200::1/128" if v6 else "10.200.0.1/32"
    inner_g = "fd00:100::/64" if v6 else "10.100.0.0/24"
    common = dict(cipher=Cipher.AES_GCM_16, mode=mode)
    client = EspSaPair(
        spi_in=0x1001,
        spi_out=0x2002,
        local=ip_address(c_out),
        peer=ip_address(g_out),
        key_in=KEY_B,
        key_out=KEY_A,
        keepalive=True,
        local_ts=(ip_network(inner_c),),
        remote_ts=(ip_network(inner_g),),
        **common,  # type: ignore[arg-type]
    )
    gw = EspSaPair(
        spi_in=0x2002,
        spi_out=0x1001,
        local=ip_address(g_out),
        peer=ip_address(nat_pub),
        peer_port=40000,
        key_in=KEY_A,
        key_out=KEY_B,
        local_ts=(ip_network(inner_g),),
        remote_ts=(ip_network(inner_c),),
        **common,  # type: ignore[arg-type]
    )
    return replace(client, **kw), replace(gw, **kw)  # type: ignore[arg-type]


def engine() -> NattEngine:
    return NattEngine(rand=os.urandom, keepalive_interval_s=20, keepalive_linger_s=300)


def udp_packet(src: str, dst: str, payload: bytes = b"hello", sport: int = 1234, dport: int = 5678) -> bytes:
    s, d = ip_address(src).packed, ip_address(dst).packed
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    seg = ip.recompute_l4(s, d, ip.PROTO_UDP, seg)
    if len(s) == 4:  # force a checksum even for IPv4 so we can check the NAT fix-ups
        seg = (
            seg[:6]
            + ip.checksum(ip.pseudo_header(s, d, 17, len(seg)) + seg[:6] + b"\0\0" + seg[8:]).to_bytes(2, "big")
            + seg[8:]
        )
    return ip.build_ip(s, d, ip.PROTO_UDP, seg)


def sends(actions: list) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def delivered(actions: list) -> list[bytes]:
    return [a.packet for a in actions if isinstance(a, Deliver)]


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("cipher", ["gcm", "cbc"])
def test_tunnel_round_trip(v6: bool, cipher: str) -> None:
    kw = {}
    if cipher == "cbc":
        kw = dict(
            cipher=Cipher.AES_CBC,
            integ=Integ.HMAC_SHA256_128,
            key_in=bytes(16),
            key_out=bytes(16),
            integ_key_in=bytes(32),
            integ_key_out=bytes(32),
        )
    csa, gsa = gcm_pair(v6=v6, **kw)
    c, g = engine(), engine()
    acts = c.add_sa(csa, now=0)
    assert any(isinstance(a, Program) and isinstance(a.op, RouteAdd) for a in acts)
    g.add_sa(gsa, now=0)
    src = "fd00:200::1" if v6 else "10.200.0.1"
    dst = "fd00:100::1" if v6 else "10.100.0.1"
    pkt = udp_packet(src, dst)
    (out,) = sends(c.outbound(pkt, now=1))
    assert (out.addr, out.port) == (str(csa.peer), 4500)
    assert out.data[:4] == (0x2002).to_bytes(4, "big") and out.data[4:8] == (1).to_bytes(4, "big")
    assert delivered(g.inbound(out.data, "2001:db8:1::1" if v6 else "192.0.2.1", 40000, now=1)) == [pkt]
    # and back
    reply = udp_packet(dst, src)
    (back,) = sends(g.outbound(reply, now=2))
    assert (back.addr, back.port) == (str(gsa.peer), 40000)
    assert delivered(c.inbound(back.data, str(csa.peer), 4500, now=2)) == [reply]


def test_replayed_truncated_wrong_spi_bad_icv_garbage_change_nothing() -> None:
    csa, gsa = gcm_pair()
    c, g = engine(), engine()
    c.add_sa(csa, now=0)
    g.add_sa(gsa, now=0)
    pkt = udp_packet("10.200.0.1", "10.100.0.1")
    (out,) = sends(c.outbound(pkt, now=1))
    assert delivered(g.inbound(out.data, "192.0.2.1", 40000, now=1)) == [pkt]
    before = g.sas()[0]
    (fresh,) = sends(c.outbound(pkt, now=1))  # seq 2, never delivered: only its ICV is wrong
    bad = {
        "replay": out.data,
        "malformed": out.data[:20],
        "unknown_spi": (0x9999).to_bytes(4, "big") + out.data[4:],
        "icv": fresh.data[:-1] + bytes([fresh.data[-1] ^ 1]),
    }
    for reason, data in bad.items():
        acts = g.inbound(data, "192.0.2.1", 40000, now=2)
        assert delivered(acts) == [] and g.drops[reason] >= 1, reason
    for junk in (b"", b"\x00", b"\xfe", b"\x00\x00\x00", b"\x00" * 8, os.urandom(60)):
        assert delivered(g.inbound(junk, "192.0.2.1", 40000, now=2)) == []
    after = g.sas()[0]
    assert after["replay_top"] == before["replay_top"] == 1
    assert after["in_packets"] == before["in_packets"] == 1
    # the untampered packet and a later one still get through after the flood
    assert delivered(g.inbound(fresh.data, "192.0.2.1", 40000, now=3)) == [pkt]
    (out2,) = sends(c.outbound(pkt, now=3))
    assert delivered(g.inbound(out2.data, "192.0.2.1", 40000, now=3)) == [pkt]


def test_replay_window_accepts_reordering_inside_window_only() -> None:
    csa, gsa = gcm_pair()
    c, g = engine(), engine()
    c.add_sa(csa, now=0)
    g.add_sa(gsa, now=0)
    pkt = udp_packet("10.200.0.1", "10.100.0.1")
    outs = [sends(c.outbound(pkt, now=1))[0].data for _ in range(100)]
    assert delivered(g.inbound(outs[99], "192.0.2.1", 40000, now=1)) == [pkt]
    assert delivered(g.inbound(outs[50], "192.0.2.1", 40000, now=1)) == [pkt]  # inside 64
    assert delivered(g.inbound(outs[50], "192.0.2.1", 40000, now=1)) == []  # duplicate
    assert delivered(g.inbound(outs[10], "192.0.2.1", 40000, now=1)) == []  # left of window
    assert g.drops["replay"] == 2


def test_tunnel_inner_source_must_match_sa() -> None:
    csa, gsa = gcm_pair()
    c, g = engine(), engine()
    c.add_sa(csa, now=0)
    g.add_sa(gsa, now=0)
    spoof = udp_packet("10.200.0.9", "10.100.0.1")  # not the client's assigned address
    (out,) = sends(c.outbound(spoof, now=1))
    assert delivered(g.inbound(out.data, "192.0.2.1", 40000, now=1)) == []
    assert g.drops["inner"] == 1


def test_two_clients_same_inner_address_tn1_inner_nat() -> None:
    """RFC 3948 §5.1: both clients use 10.99.1.2 inside; the gateway gives each a unique address."""
    g = engine()
    clients = []
    for n, (spi_c, spi_g, port) in enumerate([(0x1001, 0x2002, 40000), (0x1003, 0x2004, 40001)]):
        csa, gsa = gcm_pair(spi_in=spi_c, spi_out=spi_g, local_ts=(ip_network("10.99.1.2/32"),))
        gsa = replace(
            gsa,
            spi_in=spi_g,
            spi_out=spi_c,
            peer_port=port,
            remote_ts=(ip_network("10.99.1.2/32"),),
            inner_nat=ip_address(f"10.200.0.{n + 1}"),
        )
        c = engine()
        c.add_sa(csa, now=0)
        g.add_sa(gsa, now=0)
        clients.append((c, port))
    for n, (c, port) in enumerate(clients):
        pkt = udp_packet("10.99.1.2", "10.100.0.1", payload=b"from %d" % n)
        (out,) = sends(c.outbound(pkt, now=1))
        (got,) = delivered(g.inbound(out.data, "192.0.2.1", port, now=1))
        hdr = ip.parse_ip(got)
        assert str(hdr.src_addr) == f"10.200.0.{n + 1}"
        assert ip.ones_sum(got[:20]) in (0, 0xFFFF)  # IPv4 header checksum still right
        assert ip.l4_checksum_ok(hdr.src, hdr.dst, ip.PROTO_UDP, got[20:])
        # the reply to the unique address goes to the right client, rewritten back to 10.99.1.2
        (back,) = sends(g.outbound(udp_packet("10.100.0.1", f"10.200.0.{n + 1}", b"to %d" % n), now=2))
        assert back.port == port
        (rx,) = delivered(c.inbound(back.data, "192.0.2.2", 4500, now=2))
        assert str(ip.parse_ip(rx).dst_addr) == "10.99.1.2" and rx.endswith(b"to %d" % n)


def test_conflicting_sas_are_refused_and_change_nothing() -> None:
    """RFC 3948 §5.2: a second transport SA to the same NAT address without an alias conflicts."""
    g = engine()
    _, gsa = gcm_pair(mode=Mode.TRANSPORT)
    g.add_sa(gsa, now=0)
    second = replace(gsa, spi_in=0x3003, spi_out=0x4004, peer_port=40001)
    with pytest.raises(ValueError, match="conflicting"):
        g.add_sa(second, now=0)
    assert [s["spi_in"] for s in g.sas()] == [0x2002]
    g.add_sa(replace(second, peer_alias=ip_address("100.64.0.2")), now=0)
    assert len(g.sas()) == 2


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("nat_oa", [False, True])
def test_transport_mode_checksum_fixups(v6: bool, nat_oa: bool) -> None:
    """RFC 3948 §3.1.2 options 1 (incremental with NAT-OA) and 2 (recompute)."""
    csa, gsa = gcm_pair(mode=Mode.TRANSPORT, v6=v6, local_ts=(), remote_ts=())
    if nat_oa:
        gsa = replace(gsa, nat_oa_src=csa.local, nat_oa_dst=csa.peer)
    c, g = engine(), engine()
    c.add_sa(csa, now=0)
    g.add_sa(gsa, now=0)
    pkt = udp_packet(str(csa.local), str(csa.peer))  # the client's real addresses
    (out,) = sends(c.outbound(pkt, now=1))
    (got,) = delivered(g.inbound(out.data, str(gsa.peer), 40000, now=1))
    hdr = ip.parse_ip(got)
    assert hdr.src_addr == gsa.peer and hdr.dst_addr == gsa.local  # as the NAT made them
    assert ip.l4_checksum_ok(hdr.src, hdr.dst, ip.PROTO_UDP, got[hdr.header_len :])
    assert got.endswith(b"hello")


def test_ike_marker_demux_and_send() -> None:
    g = engine()
    ike = bytes(range(28)) + b"payload"
    acts = g.inbound(b"\0\0\0\0" + ike, "192.0.2.1", 40000, now=0)
    assert acts == [Notify(IkeReceived("192.0.2.1", 40000, ike))]
    (s,) = sends(g.send_ike("192.0.2.1", 40000, ike, now=0))
    assert s.data == b"\0\0\0\0" + ike
    assert g.inbound(b"\xff", "192.0.2.1", 40000, now=0) == [] and g.stats["keepalive_rx"] == 1


def test_keepalives_idle_only_and_stop_after_linger() -> None:
    csa, _ = gcm_pair()
    c = NattEngine(rand=os.urandom, keepalive_interval_s=2, keepalive_linger_s=10)
    c.add_sa(csa, now=0)
    assert c.next_deadline() == 2
    pkt = udp_packet("10.200.0.1", "10.100.0.1")
    for t in range(0, 10):  # traffic every second: never a keepalive
        c.outbound(pkt, now=t)
        assert sends(c.on_timer(now=t + 0.5)) == []
    ka = sends(c.on_timer(now=11.5))
    assert ka == [Send("192.0.2.2", 4500, b"\xff")]
    c.del_sa(csa.spi_in, now=12)
    times = [t for t in itertools.takewhile(lambda x: x < 40, itertools.count(12, 0.5)) if sends(c.on_timer(now=t))]
    assert times and max(times) < 22.5  # linger N = 10 s after the last SA ended
    assert c.next_deadline() is None


def test_persistent_sa_reserves_sequence_numbers() -> None:
    csa, gsa = gcm_pair(persistent=True)
    c = engine()
    acts = c.add_sa(csa, now=0)
    stored = [a.record for a in acts if isinstance(a, Persist)]
    assert isinstance(stored[0], SaStored) and stored[0].out_reserved == 1 << 16
    # restore from a checkpoint: continues above the reservation, treats <= in_reserved as replayed
    c2 = engine()
    c2.add_sa(csa, now=0, restored=Checkpoint(out_reserved=5000, in_reserved=70))
    (out,) = sends(c2.outbound(udp_packet("10.200.0.1", "10.100.0.1"), now=1))
    assert int.from_bytes(out.data[4:8], "big") == 5001
    g = engine()
    g.add_sa(gsa, now=0, restored=Checkpoint(out_reserved=0, in_reserved=5001))
    assert delivered(g.inbound(out.data, "192.0.2.1", 40000, now=1)) == []  # 5001 <= 5001
    (out2,) = sends(c2.outbound(udp_packet("10.200.0.1", "10.100.0.1"), now=1))
    acts = g.inbound(out2.data, "192.0.2.1", 40000, now=1)
    kinds = [type(a) for a in acts]
    assert kinds.index(Persist) < kinds.index(Deliver)  # reservation committed before delivery
    assert isinstance(acts[0].record, SeqReserved)


def test_esn_round_trip_across_the_32_bit_boundary() -> None:
    """RFC 4303 §2.2.1: 64-bit counters, only the low 32 bits on the wire, the high bits in the ICV."""
    csa, gsa = gcm_pair(esn=True, persistent=True)
    c, g = engine(), engine()
    start = (1 << 32) - 3
    c.add_sa(csa, now=0, restored=Checkpoint(out_reserved=start, in_reserved=0))
    g.add_sa(gsa, now=0, restored=Checkpoint(out_reserved=0, in_reserved=start - 10))
    pkt = udp_packet("10.200.0.1", "10.100.0.1")
    seqs = []
    for _ in range(6):
        (out,) = sends(c.outbound(pkt, now=1))
        seqs.append(int.from_bytes(out.data[4:8], "big"))
        assert delivered(g.inbound(out.data, "192.0.2.1", 40000, now=1)) == [pkt]
    assert seqs == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 2, 3]
    assert g.sas()[0]["replay_top"] == (1 << 32) + 3


def test_mobike_peer_update_moves_traffic_and_keepalives() -> None:
    _csa, gsa = gcm_pair()
    g = engine()
    g.add_sa(replace(gsa, keepalive=True), now=0)
    g.update_sa_peer(gsa.spi_in, ip_address("198.51.100.7"), 41000, now=5)
    (out,) = sends(g.outbound(udp_packet("10.100.0.1", "10.200.0.1"), now=6))
    assert (out.addr, out.port) == ("198.51.100.7", 41000)
    assert [(p["peer"], p["port"]) for p in g.peers()] == [("198.51.100.7", 41000)]
    with pytest.raises(ValueError):
        g.update_sa_peer(gsa.spi_in, ip_address("2001:db8::1"), 4500, now=7)  # family change refused
    with pytest.raises(KeyError):
        g.update_sa_peer(0x4242, ip_address("192.0.2.9"), 4500, now=7)
    assert g.sa(gsa.spi_in).peer == ip_address("198.51.100.7")


def test_rekeyed_child_sa_coexists_with_predecessor_then_takes_over() -> None:
    """RFC 7296 §2.8: the new SA (same selectors, same peer) is added before the old one is deleted;
    outbound moves to the newest at once, the old still decrypts until deleted, routes stay."""
    _, gsa = gcm_pair()
    g = engine()
    g.add_sa(gsa, now=0)
    new = replace(gsa, spi_in=0x3003, spi_out=0x4004, key_in=KEY_B, key_out=KEY_A)
    g.add_sa(new, now=1)
    (out,) = sends(g.outbound(udp_packet("10.100.0.1", "10.200.0.1"), now=2))
    assert out.data[:4] == (0x4004).to_bytes(4, "big")
    acts = g.del_sa(gsa.spi_in, now=3)
    assert not any(isinstance(a, Program) for a in acts)  # the successor keeps the routes
    (out,) = sends(g.outbound(udp_packet("10.100.0.1", "10.200.0.1"), now=4))
    assert out.data[:4] == (0x4004).to_bytes(4, "big")
    # the same selectors from another NAT mapping are still refused (§5.2)
    with pytest.raises(ValueError, match="conflicting"):
        g.add_sa(replace(gsa, spi_in=0x5005, peer_port=40001), now=5)


def test_kernel_inbound_reservation_stays_ahead_of_what_the_kernel_accepted() -> None:
    """Kernel data plane: the kernel keeps the window, natt polls it. The persisted inbound reservation
    stays above the highest number accepted with a margin for what may arrive before the next poll, so a
    restore whose kernel state is gone starts its window above every packet accepted before."""
    _csa, gsa = gcm_pair(persistent=True)
    g = engine()
    g.add_sa(gsa, now=0)
    assert g.restored_in_seq(gsa.spi_in) == 0  # a new SA: the kernel starts with an empty window
    reserved = 0
    for seq_in in (0, 3, 3, 40, 41, 1000, 1000):
        for a in g.note_kernel_seq(gsa.spi_in, 0, seq_in):
            assert isinstance(a, Persist) and isinstance(a.record, SeqReserved)
            assert a.record.in_reserved > reserved
            reserved = a.record.in_reserved
        assert reserved > seq_in
    assert reserved >= 1000 + 4 * 959  # four times what came since the last poll
    # the restored SA's kernel window starts at the reservation
    g2 = engine()
    g2.add_sa(gsa, now=0, restored=Checkpoint(out_reserved=0, in_reserved=reserved))
    assert g2.restored_in_seq(gsa.spi_in) == reserved
    # restored with the kernel's exact window (a killed run's, or read at a graceful stop): the reservation
    # starts again just above its top, not above the old reservation
    (a,) = g2.restored_kernel_window(gsa.spi_in, 1003)
    assert isinstance(a, Persist) and 1003 < a.record.in_reserved <= 1003 + 8 < reserved
    assert g2.note_kernel_seq(gsa.spi_in, 0, 1003) == []
    # a non-persistent SA reserves nothing
    _c, plain = gcm_pair()
    g3 = engine()
    g3.add_sa(plain, now=0)
    assert g3.note_kernel_seq(plain.spi_in, 10, 10) == [] and g3.restored_in_seq(plain.spi_in) == 0


def test_kernel_outbound_reservation_follows_the_sending_rate() -> None:
    """The kernel may send more than OUT_RESERVE_CHUNK / 2 packets between two polls (a fast link): the
    reservation then keeps four times the last poll's packets ahead, so a restore after a reboot (the
    kernel's numbers gone with it) still starts above every number used."""
    csa, _gsa = gcm_pair(persistent=True)
    c = engine()
    c.add_sa(csa, now=0)
    reserved, seq = 1 << 16, 0
    for _ in range(5):
        seq += 200_000  # per poll: three times the chunk
        for a in c.note_kernel_seq(csa.spi_in, seq, 0):
            reserved = a.record.out_reserved
        assert reserved >= seq + 4 * 200_000
