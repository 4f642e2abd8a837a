"""XFRM netlink messages (linux/xfrm.h) defined on pyroute2's netlink classes; pyroute2 0.9 has no
XFRM SA/policy API. Sizes are checked against the x86_64 kernel ABI: xfrm_selector 56,
xfrm_usersa_info 224, xfrm_usersa_id 24, xfrm_userpolicy_info 168, xfrm_userpolicy_id 64,
xfrm_user_tmpl 64, xfrm_encap_tmpl 24 (tests/unit/dataplane/test_xfrm_codec.py).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, nlmsg

log = logging.getLogger("mobility.dataplane.xfrm")
NETLINK_XFRM = 6
XFRM_MSG_NEWSA, XFRM_MSG_DELSA, XFRM_MSG_GETSA = 0x10, 0x11, 0x12
XFRM_MSG_NEWPOLICY, XFRM_MSG_DELPOLICY = 0x13, 0x14
XFRM_MSG_UPDPOLICY, XFRM_MSG_UPDSA = 0x19, 0x1A
XFRM_MSG_FLUSHSA, XFRM_MSG_FLUSHPOLICY = 0x1C, 0x1D
XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_POLICY_FWD = 0, 1, 2
XFRM_MODE_TRANSPORT, XFRM_MODE_TUNNEL = 0, 1
XFRM_STATE_ESN = 128
UDP_ENCAP_ESPINUDP = 2
IPPROTO_ESP = 50
INF = 0xFFFFFFFFFFFFFFFF

XFRMA_ALG_AUTH_TRUNC, XFRMA_ALG_CRYPT, XFRMA_ALG_AEAD = 20, 2, 18
XFRMA_ENCAP, XFRMA_TMPL, XFRMA_REPLAY_VAL, XFRMA_REPLAY_ESN_VAL = 4, 5, 10, 23

_SEL = (
    ("sel_daddr", "16s"), ("sel_saddr", "16s"), ("sel_dport", ">H"), ("sel_dport_mask", ">H"),
    ("sel_sport", ">H"), ("sel_sport_mask", ">H"), ("sel_family", "H"), ("sel_prefixlen_d", "B"),
    ("sel_prefixlen_s", "B"), ("sel_proto", "B"), ("sel_pad", "3x"), ("sel_ifindex", "i"), ("sel_user", "I"),
)  # fmt: skip
_LFT = tuple(
    (f"lft_{n}", "Q")
    for n in ("soft_byte", "hard_byte", "soft_packet", "hard_packet", "soft_add", "hard_add", "soft_use", "hard_use")
)
_CUR = tuple((f"cur_{n}", "Q") for n in ("bytes", "packets", "add_time", "use_time"))


class _Attrs(nlmsg):  # type: ignore[misc]
    nla_map = (
        (XFRMA_ALG_CRYPT, "XFRMA_ALG_CRYPT", "cdata"),
        (XFRMA_ENCAP, "XFRMA_ENCAP", "cdata"),
        (XFRMA_TMPL, "XFRMA_TMPL", "cdata"),
        (XFRMA_REPLAY_VAL, "XFRMA_REPLAY_VAL", "cdata"),
        (XFRMA_ALG_AEAD, "XFRMA_ALG_AEAD", "cdata"),
        (XFRMA_ALG_AUTH_TRUNC, "XFRMA_ALG_AUTH_TRUNC", "cdata"),
        (XFRMA_REPLAY_ESN_VAL, "XFRMA_REPLAY_ESN_VAL", "cdata"),
    )


class xfrm_usersa_info(_Attrs):
    fields = (
        *_SEL,
        ("id_daddr", "16s"), ("id_spi", ">I"), ("id_proto", "B"), ("id_pad", "3x"),
        ("saddr", "16s"), *_LFT, *_CUR,
        ("stats_replay_window", "I"), ("stats_replay", "I"), ("stats_integrity_failed", "I"),
        ("seq", "I"), ("reqid", "I"), ("family", "H"), ("mode", "B"), ("replay_window", "B"), ("flags", "B"),
        ("pad", "7x"),
    )  # fmt: skip


class xfrm_usersa_id(_Attrs):
    fields = (("daddr", "16s"), ("spi", ">I"), ("family", "H"), ("proto", "B"), ("pad", "x"))


class xfrm_userpolicy_info(_Attrs):
    fields = (
        *_SEL,
        *_LFT,
        *_CUR,
        ("priority", "I"),
        ("index", "I"),
        ("dir", "B"),
        ("action", "B"),
        ("flags", "B"),
        ("share", "B"),
        ("pad", "4x"),
    )


class xfrm_userpolicy_id(_Attrs):
    fields = (*_SEL, ("index", "I"), ("dir", "B"), ("pad", "3x"))


def _addr(a: IPv4Address | IPv6Address | None) -> bytes:
    return b"" if a is None else a.packed.ljust(16, b"\0")


def _family(a: IPv4Address | IPv6Address) -> int:
    return socket.AF_INET if a.version == 4 else socket.AF_INET6


def algo(name: str, key: bytes) -> bytes:
    """struct xfrm_algo: name[64], key length in bits, key."""
    return struct.pack("64sI", name.encode(), len(key) * 8) + key


def algo_aead(name: str, key: bytes, icv_bits: int) -> bytes:
    return struct.pack("64sII", name.encode(), len(key) * 8, icv_bits) + key


def algo_auth(name: str, key: bytes, trunc_bits: int) -> bytes:
    return struct.pack("64sII", name.encode(), len(key) * 8, trunc_bits) + key


def encap_tmpl(sport: int, dport: int) -> bytes:
    """struct xfrm_encap_tmpl: type, sport and dport in network order, original address."""
    return struct.pack("=H", UDP_ENCAP_ESPINUDP) + struct.pack(">HH", sport, dport) + b"\0\0" + bytes(16)


def user_tmpl(src: Any, dst: Any, spi: int, mode: int, reqid: int) -> bytes:
    """struct xfrm_user_tmpl (64 bytes); spi 0 = any, all algorithms allowed."""
    return (
        _addr(dst)
        + struct.pack(">I", spi)
        + struct.pack("=B3xH2x", IPPROTO_ESP, _family(dst))
        + _addr(src)
        + struct.pack("=IBBBxIII", reqid, mode, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    )


def replay_state(oseq: int, seq: int = 0, bitmap: int = 0) -> bytes:
    return struct.pack("=III", oseq & 0xFFFFFFFF, seq & 0xFFFFFFFF, bitmap)


@dataclass(frozen=True, slots=True)
class Replay:
    """An inbound anti-replay window: the highest sequence number accepted (64 bits with ESN) and the
    kernel's bitmap as it reports it (struct xfrm_replay_state's u32, or the ESN bmp[] words); None
    = every number in the window below `seq` taken."""

    seq: int
    bitmap: bytes | None = None


def replay_attr(esn: bool, window: int, oseq: int, replay: Replay | None) -> tuple[str, bytes]:
    """XFRMA_REPLAY_ESN_VAL (struct xfrm_replay_state_esn: bmp_len, oseq, seq, oseq_hi, seq_hi,
    replay_window, bmp[]) with ESN, else XFRMA_REPLAY_VAL (struct xfrm_replay_state: oseq, seq,
    bitmap), for a window of `window` packets."""
    seq = replay.seq if replay is not None else 0
    if esn:
        words = (window + 31) // 32
        bmp = bytes(4 * words) if replay is None else (replay.bitmap or b"\xff" * 4 * words)
        if len(bmp) != 4 * words:
            raise ValueError(f"replay bitmap of {len(bmp)} bytes for a window of {window}")
        head = struct.pack("=IIIIII", words, oseq & 0xFFFFFFFF, seq & 0xFFFFFFFF, oseq >> 32, seq >> 32, window)
        return "XFRMA_REPLAY_ESN_VAL", head + bmp
    if replay is None:
        bitmap = 0
    elif replay.bitmap is None:
        bitmap = 0xFFFFFFFF
    else:
        (bitmap,) = struct.unpack("=I", replay.bitmap)
    return "XFRMA_REPLAY_VAL", replay_state(oseq, seq, bitmap)


def parse_replay(attrs: Any) -> tuple[int, Replay] | None:
    """(oseq, inbound window) from a state's XFRMA_REPLAY_ESN_VAL or XFRMA_REPLAY_VAL; the kernel
    reports one of them with every state."""
    esn = attrs.get_attr("XFRMA_REPLAY_ESN_VAL")
    if esn is not None:
        words, oseq, seq, oseq_hi, seq_hi, _window = struct.unpack_from("=IIIIII", esn)
        return oseq | oseq_hi << 32, Replay(seq | seq_hi << 32, bytes(esn[24 : 24 + 4 * words]))
    legacy = attrs.get_attr("XFRMA_REPLAY_VAL")
    if legacy is not None:
        oseq, seq, bitmap = struct.unpack_from("=III", legacy)
        return oseq, Replay(seq, struct.pack("=I", bitmap))
    return None


@dataclass(frozen=True)
class Selector:
    src: Any  # IPv4Network / IPv6Network
    dst: Any
    proto: int = 0

    def fields(self) -> dict[str, Any]:
        return {
            "sel_daddr": _addr(self.dst.network_address), "sel_saddr": _addr(self.src.network_address),
            "sel_dport": 0, "sel_dport_mask": 0, "sel_sport": 0, "sel_sport_mask": 0,
            "sel_family": _family(self.dst.network_address), "sel_prefixlen_d": self.dst.prefixlen,
            "sel_prefixlen_s": self.src.prefixlen, "sel_proto": self.proto, "sel_ifindex": 0, "sel_user": 0,
        }  # fmt: skip


def _no_selector(family: int) -> dict[str, Any]:
    return {
        "sel_daddr": b"",
        "sel_saddr": b"",
        "sel_dport": 0,
        "sel_dport_mask": 0,
        "sel_sport": 0,
        "sel_sport_mask": 0,
        "sel_family": family,
        "sel_prefixlen_d": 0,
        "sel_prefixlen_s": 0,
        "sel_proto": 0,
        "sel_ifindex": 0,
        "sel_user": 0,
    }


def _lifetimes() -> dict[str, int]:
    """No byte/packet limit is XFRM_INF; no time limit is 0 (seconds)."""
    out = {name: (INF if name.endswith(("_byte", "_packet")) else 0) for name, _ in _LFT}
    out.update({name: 0 for name, _ in _CUR})
    return out


class XfrmSocket:
    """Requests over NETLINK_XFRM; every error comes back as OSError(errno)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_XFRM)
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> XfrmSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def request(self, msg: nlmsg, msg_type: int, flags: int = NLM_F_REQUEST | NLM_F_ACK) -> list[bytes]:
        self._seq += 1
        msg["header"] = {"type": msg_type, "flags": flags, "sequence_number": self._seq, "pid": 0}
        msg.encode()
        self._sock.send(msg.data)
        replies: list[bytes] = []
        while True:
            data = self._sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    raise OSError(errno.EPROTO, "bad netlink reply")
                body = data[off : off + length]
                off += (length + 3) & ~3
                if seq != self._seq:
                    continue
                if mtype == 2:  # NLMSG_ERROR
                    err = struct.unpack_from("=i", body, 16)[0]
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    return replies
                if mtype == 3:  # NLMSG_DONE
                    return replies
                replies.append(body)
                if not flags & NLM_F_ACK:
                    return replies

    # ---- states ----------------------------------------------------------------------------------
    def add_state(
        self,
        *,
        src: Any,
        dst: Any,
        spi: int,
        mode: int,
        reqid: int,
        aead: bytes | None = None,
        crypt: bytes | None = None,
        auth: bytes | None = None,
        encap: bytes | None = None,
        replay_window: int = 64,
        esn: bool = False,
        oseq: int = 0,
        replay: Replay | None = None,
        update: bool = False,
    ) -> None:
        """`oseq`: the last outbound sequence number used; `replay`: the inbound window to start from
        (a restored SA: what the kernel had, or the persisted reservation with every number below
        it taken), else an empty one."""
        m = xfrm_usersa_info()
        m.update(_no_selector(_family(dst)))
        m.update(_lifetimes())
        m.update(
            {
                "id_daddr": _addr(dst),
                "id_spi": spi,
                "id_proto": IPPROTO_ESP,
                "saddr": _addr(src),
                "stats_replay_window": 0,
                "stats_replay": 0,
                "stats_integrity_failed": 0,
                "seq": 0,
                "reqid": reqid,
                "family": _family(dst),
                "mode": mode,
                "replay_window": 0 if esn else min(replay_window, 255),
                "flags": XFRM_STATE_ESN if esn else 0,
            }
        )
        attrs: list[tuple[str, bytes]] = []
        if aead is not None:
            attrs.append(("XFRMA_ALG_AEAD", aead))
        if crypt is not None:
            attrs.append(("XFRMA_ALG_CRYPT", crypt))
        if auth is not None:
            attrs.append(("XFRMA_ALG_AUTH_TRUNC", auth))
        if encap is not None:
            attrs.append(("XFRMA_ENCAP", encap))
        if esn or oseq or replay is not None:
            attrs.append(replay_attr(esn, replay_window, oseq, replay))
        m["attrs"] = attrs
        flags = NLM_F_REQUEST | NLM_F_ACK | (0 if update else NLM_F_CREATE | NLM_F_EXCL)
        self.request(m, XFRM_MSG_UPDSA if update else XFRM_MSG_NEWSA, flags)

    def del_state(self, dst: Any, spi: int) -> None:
        self.request(self._sa_id(dst, spi), XFRM_MSG_DELSA)

    def get_state(self, dst: Any, spi: int) -> dict[str, Any]:
        (body,) = self.request(self._sa_id(dst, spi), XFRM_MSG_GETSA, NLM_F_REQUEST)
        m = xfrm_usersa_info(body)
        m.decode()
        out: dict[str, Any] = {
            "bytes": m["cur_bytes"],
            "packets": m["cur_packets"],
            "replay": m["stats_replay"],  # a number the window holds as seen
            "replay_window": m["stats_replay_window"],  # a number below the window
            "integrity_failed": m["stats_integrity_failed"],
            "reqid": m["reqid"],
            "mode": m["mode"],
        }
        seqs = parse_replay(m)
        if seqs is not None:
            out["oseq"], out["window"] = seqs
        return out

    @staticmethod
    def _sa_id(dst: Any, spi: int) -> xfrm_usersa_id:
        m = xfrm_usersa_id()
        m.update({"daddr": _addr(dst), "spi": spi, "family": _family(dst), "proto": IPPROTO_ESP, "attrs": []})
        return m

    # ---- policies --------------------------------------------------------------------------------
    def add_policy(
        self, sel: Selector, direction: int, tmpl: bytes, priority: int = 1000, update: bool = False
    ) -> None:
        m = xfrm_userpolicy_info()
        m.update(sel.fields())
        m.update(_lifetimes())
        m.update({"priority": priority, "index": 0, "dir": direction, "action": 0, "flags": 0, "share": 0})
        m["attrs"] = [("XFRMA_TMPL", tmpl)]
        flags = NLM_F_REQUEST | NLM_F_ACK | (0 if update else NLM_F_CREATE | NLM_F_EXCL)
        self.request(m, XFRM_MSG_UPDPOLICY if update else XFRM_MSG_NEWPOLICY, flags)

    def del_policy(self, sel: Selector, direction: int) -> None:
        m = xfrm_userpolicy_id()
        m.update(sel.fields())
        m.update({"index": 0, "dir": direction, "attrs": []})
        self.request(m, XFRM_MSG_DELPOLICY)


def parse_address(text: str) -> IPv4Address | IPv6Address:
    return ip_address(text)


IP_XFRM_POLICY, IPV6_XFRM_POLICY = 17, 35  # include/uapi/linux/in.h, in6.h
XFRM_POLICY_ALLOW = 0


def socket_bypass(sock: socket.socket, *, required: bool = True) -> bool:
    """Exempt one socket from every XFRM policy, both directions (what strongSwan does to its IKE
    sockets): natt's and the IKE owners' own datagrams between two hosts that share a transport-mode
    SA must not be wrapped in that SA. Where the kernel has no XFRM: OSError, or False when not `required`."""
    family = sock.family
    level, opt = (
        (socket.IPPROTO_IPV6, IPV6_XFRM_POLICY) if family == socket.AF_INET6 else (socket.IPPROTO_IP, IP_XFRM_POLICY)
    )
    for direction in (XFRM_POLICY_IN, XFRM_POLICY_OUT):
        sel = bytes(40) + struct.pack("=HBBB3xiI", family, 0, 0, 0, 0, 0)  # any address, any protocol
        info = sel + bytes(96) + struct.pack("=IIBBBB4x", 0, 0, direction, XFRM_POLICY_ALLOW, 0, 0)
        assert len(info) == 168  # sizeof(struct xfrm_userpolicy_info)
        try:
            sock.setsockopt(level, opt, info)
        except OSError as e:
            if required:
                raise
            log.debug("no XFRM socket policy: %s", e)
            return False
    return True
