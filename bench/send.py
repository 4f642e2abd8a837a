"""make bench-send: SEND costs on this machine, in one run.

1. CGA generation (RFC 3972 §4): median wall time of BENCH_SEND_CGA_RUNS runs of Sec 0 and Sec 1 with
   RSA-1024 and RSA-2048 keys; the modifier search rate (SHA-1/s) on 1..all cores; one Sec 2 search on
   all cores, stopped after BENCH_SEND_SEC2_CAP seconds (about 2^32 hashes are needed on average).
2. ard under attack: the real ard daemon in a namespace lab (router key RSA-2048, Sec 1 CGA, default
   RtSolPr limit of 3/s per source). A valid SEND mobile node sends RtSolPr with a Handover Key Request
   at BENCH_SEND_RATE per second, round robin over several Sec 1 CGAs of its key (<= 2/s per address,
   so the per-source limit never caps it); an attacker on the same link floods forged RtSolPr at 10x
   that rate. A request fails unless a PrRtAdv signed by the router, echoing its nonce and carrying a
   Handover Key Reply comes back within 1 s (the key is decrypted once per address).
   Phases: valid only; valid + flood of bad signatures from the attacker's own Sec 0 CGAs and from
   random sources; valid + flood of bad signatures spoofing the valid node's addresses; valid only
   closed-loop saturation (ard restarted with rtsolpr_rate = 1000, so the per-source limit is out of
   the way) to compare ard's PrRtAdv/s with `openssl speed rsa2048` (sign + verify, one core).

The load generators run on the same 2 cores as ard: the figures are for this VM, not for a router.
"""

from __future__ import annotations

import json
import math
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait
from ipaddress import IPv6Address, IPv6Network
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mobility.crypto import cga, hk, sendsig
from mobility.lab.netns import Lab
from mobility.lab.topology import End, Link, Topology
from mobility.service.control import ControlClient
from mobility.wire import nd
from mobility.wire.buffer import DecodeError

RUNS = int(os.environ.get("BENCH_SEND_CGA_RUNS", "9"))
SEC2_CAP = float(os.environ.get("BENCH_SEND_SEC2_CAP", "120"))
RATE = float(os.environ.get("BENCH_SEND_RATE", "50"))
SECONDS = float(os.environ.get("BENCH_SEND_SECONDS", "10"))
FLOOD = 10  # forged per valid
PREFIX = IPv6Network("2001:db8:10::/64")
TOPO = Topology(
    hosts=("par", "mn"),
    links=(Link(End("par", "eth0", ("2001:db8:10::1/64",)), End("mn", "eth0", ())),),
)
IPV6_PKTINFO, IPV6_TRANSPARENT, ICMP6_FILTER = 50, 75, 1
VALID_IDS, ATTACK_IDS = (1, 0x7FFF), 0x8000  # RtSolPr identifiers: valid node below, attacker above
REPLY_WITHIN = 1.0


def pem_private(key: rsa.RSAPrivateKey) -> str:
    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def rsa_private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


# ---- 1. CGA generation ---------------------------------------------------------------------------------


def cga_generation() -> None:
    keys = {bits: sendsig.public_der(rsa.generate_private_key(65537, bits).public_key()) for bits in (1024, 2048)}
    print(f"CGA generation (RFC 3972 §4), median of {RUNS} runs, prefix {PREFIX}", flush=True)
    print(f"{'key':<10}{'Sec':>4}{'median ms':>11}{'min ms':>9}{'max ms':>9}{'verified':>10}")
    for bits, der in keys.items():
        for sec in (0, 1):
            times, ok = [], 0
            for _ in range(RUNS):
                t0 = time.perf_counter()
                addr, params = cga.generate(PREFIX, der, sec, os.urandom)
                times.append(time.perf_counter() - t0)
                ok += cga.verify(addr, params) == sec
            med, lo, hi = (1e3 * f(times) for f in (statistics.median, min, max))
            print(f"RSA-{bits:<6}{sec:>4}{med:>11.2f}{lo:>9.2f}{hi:>9.2f}{f'{ok}/{RUNS}':>10}", flush=True)
    print("  (Sec 1 is a geometric search of about 2^16 SHA-1: the spread between runs is expected)")
    cores = os.cpu_count() or 1
    print(f"\nmodifier search rate (Hash2 SHA-1 per second), 1..{cores} processes", flush=True)
    print(f"{'key':<10}{'processes':>10}{'hashes/s':>14}{'speed-up':>10}")
    rates: dict[int, float] = {}
    for bits, der in keys.items():
        one = 0.0
        for n in range(1, cores + 1):
            r = search_rate(der, n)
            one = one or r
            rates[bits] = r
            print(f"RSA-{bits:<6}{n:>10}{r:>14,.0f}{r / one:>10.2f}", flush=True)
    sec2(keys[2048], cores, rates[2048])


def search_rate(der: bytes, n: int, seconds: float = 2.0) -> float:
    """SHA-1/s of scan_modifiers over modifiers with no 112-zero-bit hit, in n processes (spawned first)."""
    if n == 1:
        t0, done = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            cga.scan_modifiers(int.from_bytes(os.urandom(16), "big"), 1 << 16, der, 112)
            done += 1 << 16
        return done / (time.perf_counter() - t0)
    with ProcessPoolExecutor(n, mp_context=get_context("spawn")) as pool:
        wait([pool.submit(cga.scan_modifiers, 0, 1, der, 112) for _ in range(2 * n)])  # processes up
        per = 1 << 18
        tasks = max(2, round(seconds * 1e6 / per)) * n
        t0 = time.perf_counter()
        wait(
            [
                pool.submit(cga.scan_modifiers, int.from_bytes(os.urandom(16), "big"), per, der, 112)
                for _ in range(tasks)
            ]
        )
        return tasks * per / (time.perf_counter() - t0)


class _Capped(Exception):
    pass


def sec2(der: bytes, cores: int, rate: float) -> None:
    print(f"\nSec 2 (32 zero bits, ~2^32 SHA-1 on average, ~{2**32 / rate / 60:.0f} min expected at the rate above), "
          f"RSA-2048, {cores} processes, cap {SEC2_CAP:.0f} s (BENCH_SEND_SEC2_CAP)", flush=True)  # fmt: skip
    t0 = time.monotonic()
    last = [0.0, 0]

    def progress(hashes: int) -> None:
        last[:] = [time.monotonic() - t0, hashes]
        if last[0] > SEC2_CAP:
            raise _Capped

    try:
        addr, params = cga.generate(IPv6Network("fe80::/64"), der, 2, os.urandom, progress=progress)
    except _Capped:
        el, h = last
        print(f"  not reached within {SEC2_CAP:.0f} s: {h:,} hashes in {el:.1f} s = {h / el:,.0f} hashes/s "
              f"({h / 2**32:.1%} of the mean work)")  # fmt: skip
        return
    el, h = time.monotonic() - t0, last[1]
    print(f"  found in {el:.1f} s after {h:,} hashes ({h / el:,.0f} hashes/s): {addr}, verify -> Sec "
          f"{cga.verify(addr, params)}")  # fmt: skip


# ---- 2. load generators (run inside the mn namespace) ----------------------------------------------------


def raw_socket(ifname: str, transparent: bool = False) -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    words = [0xFFFFFFFF] * 8
    words[154 >> 5] &= ~(1 << (154 & 31))  # only FMIPv6 (PrRtAdv) comes in
    s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    if transparent:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)  # send from addresses not on the link
    s.setblocking(False)
    return s


def send_from(s: socket.socket, wire: bytes, src: IPv6Address, dst: IPv6Address, ifindex: int) -> None:
    info = src.packed + struct.pack("@I", ifindex)
    s.sendmsg([wire], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)], 0, (str(dst), 0, 0, ifindex))


def valid_node(cfg_path: str, rate: float, seconds: float, window: int) -> None:
    """Signed RtSolPr + HK Request at `rate`/s round robin over the CGAs (rate 0: `window` in flight)."""
    cfg = json.loads(Path(cfg_path).read_text())
    key, hkek = rsa_private(cfg["key"]), rsa_private(cfg["hkek"])
    router = IPv6Address(cfg["router"])
    router_key = serialization.load_pem_public_key(cfg["router_pub"].encode())
    assert isinstance(router_key, rsa.RSAPublicKey)
    ifindex = socket.if_nametoindex(cfg["ifname"])
    sources = [(IPv6Address(a), nd.CgaOption(bytes.fromhex(p))) for a, p in cfg["sources"]]
    hk_req = nd.HandoverKeyRequest(1, sendsig.public_der(hkek.public_key()))
    s = raw_socket(cfg["ifname"])
    pending: dict[int, tuple[float, IPv6Address, bytes]] = {}
    st = {"sent": 0, "ok": 0, "late": 0, "no_key": 0, "bad": 0, "lost": 0}
    lat: list[float] = []
    decrypted: set[IPv6Address] = set()
    ident, k = VALID_IDS[0], 0

    def send_one(now: float) -> None:
        nonlocal ident, k
        while ident in pending:
            ident = ident % VALID_IDS[1] + 1
        src, cga_opt = sources[k % len(sources)]
        nonce = os.urandom(6)
        opts = (nd.LinkLayerAddress(0, b""), hk_req, cga_opt, nd.Timestamp.at(time.time()), nd.Nonce(nonce))
        send_from(s, sendsig.sign(nd.rtsolpr(ident, opts), src, router, key).encode(src, router), src, router, ifindex)
        pending[ident] = (now, src, nonce)
        ident, k = ident % VALID_IDS[1] + 1, k + 1
        st["sent"] += 1

    def receive() -> None:
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                return
            now = time.monotonic()
            try:
                msg = nd.NdMessage.decode(data)
            except DecodeError:
                continue
            if msg.subtype != nd.Subtype.PRRTADV or (p := pending.pop(msg.identifier, None)) is None:
                continue  # answers to the attacker's forgeries, or already counted as lost
            sent_at, src, nonce = p
            try:
                sendsig.verify(msg, IPv6Address(addr[0].split("%")[0]), src, router_key)
            except sendsig.SendError:
                st["bad"] += 1
                continue
            n, reply = msg.first(nd.Nonce), msg.first(nd.HandoverKeyReply)
            if not isinstance(n, nd.Nonce) or n.nonce != nonce:
                st["bad"] += 1
            elif not isinstance(reply, nd.HandoverKeyReply):
                st["no_key"] += 1
            else:
                if src not in decrypted:
                    try:
                        assert len(hk.decrypt(hkek, reply.encrypted_key)) == hk.KEY_LEN
                        decrypted.add(src)
                    except (ValueError, AssertionError):
                        st["bad"] += 1
                        continue
                lat.append(now - sent_at)
                st["ok" if now - sent_at <= REPLY_WITHIN else "late"] += 1

    def expire(now: float, after: float) -> None:
        for i in [i for i, p in pending.items() if now - p[0] > after]:
            del pending[i]
            st["lost"] += 1

    t0 = time.monotonic()
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        if rate > 0:
            while t0 + st["sent"] / rate <= now:
                send_one(now)
            nxt = min(t0 + st["sent"] / rate, end)
        else:
            while len(pending) < window:
                send_one(now)
            nxt = min(now + 0.05, end)
        if select.select([s], [], [], max(0.0, nxt - time.monotonic()))[0]:
            receive()
        expire(time.monotonic(), 3 * REPLY_WITHIN)
    elapsed = time.monotonic() - t0
    drain = time.monotonic() + 2 * REPLY_WITHIN
    while pending and time.monotonic() < drain:
        if select.select([s], [], [], 0.05)[0]:
            receive()
    expire(math.inf, 0)
    lat.sort()
    out = dict(st, elapsed=elapsed, sources=len(sources), decrypted=len(decrypted))
    out["lat_med_ms"] = 1e3 * lat[len(lat) // 2] if lat else None
    out["lat_p99_ms"] = 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None
    print(json.dumps(out), flush=True)


def attacker(cfg_path: str, rate: float, seconds: float, mode: str) -> None:
    """Forged RtSolPr at `rate`/s. mix: bad signatures from the attacker's own Sec 0 CGAs (ard pays an
    RSA verify each) alternating with random source addresses (fail the CGA check); spoof: bad
    signatures from the valid node's own addresses with its CGA parameters."""
    cfg = json.loads(Path(cfg_path).read_text())
    router, ifindex = IPv6Address(cfg["router"]), socket.if_nametoindex(cfg["ifname"])
    key = rsa.generate_private_key(65537, 2048)
    der = sendsig.public_der(key.public_key())
    key_hash = cga.key_hash(der)
    hk_req = nd.HandoverKeyRequest(1, sendsig.public_der(rsa.generate_private_key(65537, 2048).public_key()))

    def forged(src: IPv6Address, cga_opt: nd.CgaOption, i: int) -> tuple[IPv6Address, bytes]:
        opts = (nd.LinkLayerAddress(0, b""), hk_req, cga_opt, nd.Timestamp.at(time.time()), nd.Nonce(os.urandom(6)))
        sig = nd.RsaSignature(key_hash, b"\x00" + os.urandom(255))  # below any 2048-bit modulus: a full verify
        return src, nd.rtsolpr(ATTACK_IDS + i % 0x7FFF, (*opts, sig)).encode(src, router)

    packets: list[tuple[IPv6Address, bytes]] = []
    if mode == "mix":
        for i in range(1024):
            addr, params = cga.generate(PREFIX, der, 0, os.urandom)
            if i % 2:  # a random address of the prefix, carrying someone else's CGA parameters
                addr = IPv6Address(PREFIX.network_address.packed[:8] + os.urandom(8))
            packets.append(forged(addr, nd.CgaOption(params.encode()), i))
    else:
        for i, (a, p) in enumerate(cfg["sources"] * 16):
            packets.append(forged(IPv6Address(a), nd.CgaOption(bytes.fromhex(p)), i))
    s = raw_socket(cfg["ifname"], transparent=True)
    print("ready", flush=True)
    sent = errors = 0
    t0 = time.monotonic()
    while (now := time.monotonic()) < t0 + seconds:
        while sent + errors < (now - t0) * rate:
            src, wire = packets[(sent + errors) % len(packets)]
            try:
                send_from(s, wire, src, router, ifindex)
                sent += 1
            except OSError:
                errors += 1
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    print(json.dumps({"sent": sent, "errors": errors, "elapsed": elapsed, "kinds": len(packets)}), flush=True)


# ---- the lab ----------------------------------------------------------------------------------------------


class Ard:
    def __init__(self, lab: Lab) -> None:
        self.lab, self.dir = lab, lab.daemon_dir("par", "ard")
        (self.dir / "state").mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(65537, 2048)
        kf = self.dir / "router.key"
        kf.write_text(pem_private(key))
        kf.chmod(0o600)
        self.key_file = kf
        self.pub_pem = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.conf = self.dir / "ard.toml"
        self.start(3.0)

    def start(self, rtsolpr_rate: float) -> None:
        self.conf.write_text(
            f'interfaces = ["eth0"]\nkey_file = "{self.key_file}"\nsec = 1\nrtsolpr_rate = {rtsolpr_rate}\n\n'
            f'[service]\ncontrol_socket = "{self.dir}/ard.sock"\nstate_dir = "{self.dir}/state"\n'
        )
        self.rate = rtsolpr_rate
        self.daemon = self.lab.start_daemon("par", "ard", [sys.executable, "-m", "ard", "-c", str(self.conf)])

    def restart(self, rtsolpr_rate: float) -> None:
        self.daemon.stop()
        self.start(rtsolpr_rate)

    def ctl(self, cmd: str) -> Any:
        with ControlClient(self.dir / "ard.sock") as c:
            return c.call(cmd)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.daemon.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(lab: Lab, ard: Ard, cfg: Path, label: str, rate: float, seconds: float, attack: str = "",
          window: int = 0) -> dict[str, Any]:  # fmt: skip
    before, cpu0 = ard.ctl("stats"), ard.cpu_s()
    atk = None
    if attack:
        argv = [sys.executable, "-m", "bench.send", "--attack", str(cfg), str(FLOOD * rate), str(seconds + 2), attack]
        atk = lab.popen("mn", argv, stdout=subprocess.PIPE, text=True)
        assert atk.stdout is not None
        if atk.stdout.readline().strip() != "ready":
            raise RuntimeError("attacker did not start")
        time.sleep(0.5)
    argv = [sys.executable, "-m", "bench.send", "--valid", str(cfg), str(rate), str(seconds), str(window)]
    t0 = time.monotonic()
    out = lab.run("mn", *argv, timeout=seconds + 60).stdout.strip().splitlines()[-1]
    wall = time.monotonic() - t0
    res: dict[str, Any] = {"label": label, "valid": json.loads(out), "attack": None}
    if atk is not None:
        assert atk.stdout is not None
        res["attack"] = json.loads(atk.stdout.read().strip().splitlines()[-1])
        atk.wait(10)
    after = ard.ctl("stats")
    res["counters"] = {
        k: after.get(k, 0) - before.get(k, 0) for k in sorted(after) if after.get(k, 0) != before.get(k, 0)
    }
    res["ard_cpu"] = (ard.cpu_s() - cpu0) / wall
    v = res["valid"]
    a = res["attack"]
    print(f"\n[{label}]  offered {v['sent'] / v['elapsed']:.1f} valid RtSolPr/s from {v['sources']} CGAs"
          + (f", forged sent {a['sent'] / a['elapsed']:.0f}/s ({a['sent']} in {a['elapsed']:.1f} s, "
             f"{a['errors']} send errors)" if a else ""), flush=True)  # fmt: skip
    print(f"  PrRtAdv with HK Reply within 1 s: {v['ok']} = {v['ok'] / v['elapsed']:.1f}/s; failures "
          f"{v['sent'] - v['ok']} (lost {v['lost']}, late {v['late']}, without key {v['no_key']}, bad {v['bad']}); "
          f"latency median {fmt_ms(v['lat_med_ms'])} p99 {fmt_ms(v['lat_p99_ms'])}")  # fmt: skip
    print(f"  ard CPU {100 * res['ard_cpu']:.0f} % of a core; ard counters (delta): {res['counters']}")
    return res


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def openssl_rsa2048() -> tuple[float, float] | None:
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", "2", "rsa2048"], capture_output=True, text=True,
                             timeout=120).stdout  # fmt: skip
    except FileNotFoundError:
        return None
    for line in out.splitlines():
        f = line.split()
        if f[:3] == ["rsa", "2048", "bits"] and len(f) >= 7:
            return float(f[5]), float(f[6])
    return None


def ard_bench() -> None:
    nsrc = max(1, math.ceil(RATE / 2))
    head = f"valid {RATE:.0f} RtSolPr/s from {nsrc} Sec 1 CGAs (<= 2/s each, ard limit 3/s per source)"
    print(f"\nard under attack: {head}, forged {FLOOD * RATE:.0f}/s, {SECONDS:.0f} s per phase; RSA-2048", flush=True)
    mn_key, hkek = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    der = sendsig.public_der(mn_key.public_key())
    cgas = [cga.generate(PREFIX, der, 1, os.urandom) for _ in range(nsrc)]
    with Lab(TOPO, "bench-send", capture=False) as lab:
        ard = Ard(lab)
        batch = "".join(f"addr add {a}/64 dev eth0 nodad\n" for a, _ in cgas)
        lab.run("mn", "ip", "-6", "-batch", "-", input=batch)
        cfg = lab.run_dir / "send-bench.json"
        cfg.write_text(json.dumps({
            "ifname": "eth0", "router": ard.ctl("status")["address"], "router_pub": ard.pub_pem,
            "key": pem_private(mn_key), "hkek": pem_private(hkek),
            "sources": [[str(a), p.encode().hex()] for a, p in cgas],
        }))  # fmt: skip
        base = phase(lab, ard, cfg, "valid only", RATE, SECONDS)
        flood = phase(lab, ard, cfg, "valid + forged flood (attacker CGAs, random sources)", RATE, SECONDS, "mix")
        spoof = phase(lab, ard, cfg, "valid + forged flood spoofing the valid node's addresses", RATE, SECONDS,
                      "spoof")  # fmt: skip
        ard.restart(1000.0)
        sat = phase(lab, ard, cfg, "valid only, saturation: 32 in flight, ard rtsolpr_rate = 1000", 0, 5, window=32)
    speed = openssl_rsa2048()
    b, f, s = (r["valid"]["ok"] / r["valid"]["elapsed"] for r in (base, flood, spoof))
    print("\nsummary")
    print(
        f"  valid PrRtAdv+HK/s without flood {b:.1f}, with flood {f:.1f} (ratio {f / b:.2f}), "
        f"failures {base['valid']['sent'] - base['valid']['ok']} / {flood['valid']['sent'] - flood['valid']['ok']}"
    )
    print(f"  with the flood spoofing its addresses {s:.1f}/s (ratio {s / b:.2f}), failures "
          f"{spoof['valid']['sent'] - spoof['valid']['ok']}")  # fmt: skip
    top = sat["valid"]["ok"] / sat["valid"]["elapsed"]
    print(f"  ard saturated: {top:.0f} PrRtAdv+HK/s (each: RSA-2048 verify + encrypt + sign; SQLite only for "
          f"a new key or a restarted lifetime) at {100 * sat['ard_cpu']:.0f} % of a core")  # fmt: skip
    print("  no real RFC 5269 peer exists to compare with; reference: openssl speed rsa2048, one core")
    if speed is None:
        print("  openssl not installed" if not_installed() else "  openssl speed output not understood")
    else:
        sign_s, verify_s = speed
        pair = 1 / (1 / sign_s + 1 / verify_s)
        print(f"  openssl: {sign_s:.0f} sign/s, {verify_s:.0f} verify/s -> {pair:.0f} sign+verify/s; "
              f"ard / openssl = {top / pair:.2f}")  # fmt: skip


def not_installed() -> bool:
    from shutil import which

    return which("openssl") is None


def main() -> int:
    if os.geteuid() != 0:
        print("bench-send needs root (network namespaces)", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    cga_generation()
    ard_bench()
    print(f"\nbench-send took {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--valid"]:
        valid_node(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1:2] == ["--attack"]:
        attacker(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(main())
