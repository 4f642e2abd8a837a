"""The namespace lab: builds a Topology with a unique per-run prefix, runs real processes in it,
captures every link to pcap under build/captures/<scenario>/, injects faults, tears down.

Crashed runs never collide with later ones: names carry a random prefix, and a registry file per
run (/run/mobility-lab/<prefix>.json, with the owner's pid) lets the next run remove namespaces
whose owner is dead (`python -m mobility.lab.netns --cleanup-stale`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from mobility.lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
CAPTURES = BUILD / "captures"
REGISTRY = Path("/run/mobility-lab")
# a daemon imports and starts 10-15x slower in the kernel guest (TCG): give it longer to say READY=1
READY_TIMEOUT = 60.0 if os.environ.get("MOBILITY_IN_GUEST") == "1" else 15.0


def sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:120] or "scenario"


def sh(
    *argv: str, check: bool = True, timeout: float = 30, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, cwd=REPO)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return res


def wire_segmentation(ifname: str) -> None:
    """Make a veth segment UDP GSO super-packets before its capture tap, as a wire would.

    A veth advertises tx-udp-segmentation, so a sender's UDP_SEGMENT batch would otherwise cross
    every veth (and a forwarding NAT) as one large packet and pcaps would show merged datagrams.
    With the feature off the kernel segments at transmit, before the packet tap.
    """
    from pyroute2.ethtool import Ethtool

    eth = Ethtool()
    try:
        feats = eth.get_features(ifname)
        feats.features["tx-udp-segmentation"].enable = False
        eth.set_features(ifname, feats)
    finally:
        eth.close()


def cleanup_stale() -> list[str]:
    """Remove namespaces of lab runs whose owner process is gone."""
    removed: list[str] = []
    if not REGISTRY.is_dir():
        return removed
    for f in REGISTRY.glob("*.json"):
        try:
            rec = json.loads(f.read_text())
            os.kill(int(rec["pid"]), 0)
            continue  # owner alive
        except ProcessLookupError:
            pass
        except (ValueError, KeyError, OSError):
            pass
        for ns in rec.get("namespaces", []) if isinstance(rec, dict) else []:
            if sh("ip", "netns", "del", ns, check=False).returncode == 0:
                removed.append(ns)
        f.unlink(missing_ok=True)
    return removed


@dataclass
class Daemon:
    name: str
    host: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    notify_path: Path
    notifications: list[str] = field(default_factory=list)
    _sock: socket.socket | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def _listen(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            with self._cond:
                self.notifications.extend(data.decode(errors="replace").splitlines())
                self._cond.notify_all()

    def wait_for_notify(self, substr: str, timeout: float = 15.0, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.notifications[start:]:
                    if substr in line:
                        return line
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.host}/{self.name} exited ({self.proc.returncode}) before {substr!r}:\n"
                        + self.log_tail()
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.host}/{self.name}: no {substr!r} in {timeout} s:\n" + self.log_tail())
                self._cond.wait(min(left, 0.1))

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return int(self.proc.returncode or 0)


class Lab:
    def __init__(self, topology: Topology, scenario: str, *, bad: bool = False, capture: bool = True) -> None:
        self.topology, self.scenario, self.bad, self.capture = topology, sanitize(scenario), bad, capture
        self.prefix = "m" + secrets.token_hex(3)
        self.run_dir = REGISTRY / self.prefix  # tmpfs: unix sockets cannot live on the guest's 9p shares
        self.capture_dir = CAPTURES / self.scenario
        self._daemons: list[Daemon] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._captures: dict[tuple[str, str], tuple[subprocess.Popen[bytes], Path]] = {}
        self._built = False

    # ---- build / teardown ---------------------------------------------------------------------
    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def __enter__(self) -> Lab:
        cleanup_stale()
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def build(self) -> None:
        if self._built:
            return
        REGISTRY.mkdir(parents=True, exist_ok=True)
        names = [self.ns(h) for h in self.topology.hosts]
        (REGISTRY / f"{self.prefix}.json").write_text(json.dumps({"pid": os.getpid(), "namespaces": names}))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.capture_dir.mkdir(parents=True, exist_ok=True)
        t = self.topology
        for host in t.hosts:
            if sh("ip", "netns", "add", self.ns(host), check=False).returncode != 0:
                raise RuntimeError(f"cannot create namespace {self.ns(host)}")
            self.run(host, "ip", "link", "set", "lo", "up")
            self.run(
                host,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_ra=0",
                "net.ipv6.conf.default.accept_ra=0",
            )
            fwd = "1" if host in t.forwarding else "0"
            self.run(host, "sysctl", "-qw", f"net.ipv4.ip_forward={fwd}", f"net.ipv6.conf.all.forwarding={fwd}")
        for n, link in enumerate(t.links):
            ta, tb = f"{self.prefix}a{n}", f"{self.prefix}b{n}"
            sh("ip", "link", "add", ta, "type", "veth", "peer", "name", tb)
            for tmp in (ta, tb):
                wire_segmentation(tmp)
            sh("ip", "link", "set", ta, "netns", self.ns(link.a.host))
            sh("ip", "link", "set", tb, "netns", self.ns(link.b.host))
            for tmp, end in ((ta, link.a), (tb, link.b)):
                self.run(end.host, "ip", "link", "set", tmp, "name", end.ifname)
                for addr in end.addrs:
                    extra = ["nodad"] if ":" in addr else []
                    self.run(end.host, "ip", "addr", "add", addr, "dev", end.ifname, *extra)
                self.run(end.host, "ip", "link", "set", end.ifname, "up")
        for host, addrs in t.loopback.items():
            for addr in addrs:
                self.run(host, "ip", "addr", "add", addr, "dev", "lo")
        for r in t.routes:
            fam = ["-6"] if r.dst == "default6" or ":" in r.via else []
            self.run(
                r.host,
                "ip",
                *fam,
                "route",
                "add",
                "default" if r.dst.startswith("default") else r.dst,
                "via",
                r.via,
            )
        for host, oif in t.nat:
            rules = (
                f"table inet {self.prefix}_nat {{\n chain postrouting {{\n"
                "  type nat hook postrouting priority srcnat; policy accept;\n"
                f'  oifname "{oif}" masquerade\n }}\n}}\n'
            )
            self.run(host, "nft", "-f", "-", input=rules)
        self._built = True
        if self.capture:
            for link in t.links:
                self.start_capture(link.b.host, link.b.ifname)

    def teardown(self) -> None:
        for d in reversed(self._daemons):
            with contextlib.suppress(Exception):
                d.stop(5)
        for p in self._procs:
            if p.poll() is None:
                with contextlib.suppress(Exception):
                    p.terminate()
                    p.wait(5)
        self.stop_captures()
        for host in self.topology.hosts:
            sh("ip", "netns", "del", self.ns(host), check=False)
        (REGISTRY / f"{self.prefix}.json").unlink(missing_ok=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self._built = False

    # ---- commands and processes ------------------------------------------------------------------
    def _argv(self, host: str, argv: list[str] | tuple[str, ...]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def run(
        self, host: str, *argv: str, check: bool = True, timeout: float = 30, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return sh(*self._argv(host, argv), check=check, timeout=timeout, input=input)

    def popen(self, host: str, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        kw.setdefault("cwd", REPO)
        p = subprocess.Popen(self._argv(host, argv), **kw)
        self._procs.append(p)
        return p

    def addr(self, host: str, ifname: str, family: int = 4) -> str:
        for link in self.topology.links:
            for end in (link.a, link.b):
                if end.host == host and end.ifname == ifname:
                    for a in end.addrs:
                        iface = ip_interface(a)
                        if iface.version == family:
                            return str(iface.ip)
        raise KeyError(f"{host}/{ifname} has no IPv{family} address")

    def daemon_dir(self, host: str, name: str) -> Path:
        d = self.run_dir / host / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def start_daemon(
        self,
        host: str,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> Daemon:
        d = self.daemon_dir(host, name)
        notify = d / f"notify-{secrets.token_hex(3)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        log_path = self.capture_dir / f"{host}-{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        full_env = dict(os.environ, NOTIFY_SOCKET=str(notify), PYTHONUNBUFFERED="1", **(env or {}))
        full_env.pop("JOURNAL_STREAM", None)
        proc = subprocess.Popen(self._argv(host, argv), stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
        log.close()
        daemon = Daemon(name, host, proc, log_path, notify, _sock=sock)
        threading.Thread(target=daemon._listen, daemon=True).start()
        self._daemons.append(daemon)
        daemon.wait_for_notify("READY=1", ready_timeout)
        return daemon

    # ---- captures ------------------------------------------------------------------------------
    def pcap(self, host: str, ifname: str) -> Path:
        suffix = "-bad" if self.bad else ""
        return self.capture_dir / f"{host}-{ifname}{suffix}.pcap"

    def start_capture(self, host: str, ifname: str) -> Path:
        path = self.pcap(host, ifname)
        path.unlink(missing_ok=True)
        p = subprocess.Popen(
            self._argv(
                host,
                [
                    "tcpdump",
                    "-i",
                    ifname,
                    "-U",
                    "--immediate-mode",
                    "-n",
                    "-s",
                    "0",
                    "-Z",
                    "root",
                    "-w",
                    str(path),
                ],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 5  # tcpdump says "listening on" once the capture runs
        assert p.stderr is not None
        os.set_blocking(p.stderr.fileno(), False)
        buf = b""
        while b"listening on" not in buf and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.02)
            with contextlib.suppress(BlockingIOError, TypeError):
                buf += p.stderr.read() or b""
        self._captures[(host, ifname)] = (p, path)
        return path

    def stop_captures(self) -> list[Path]:
        paths = []
        for (_host, _if), (p, path) in list(self._captures.items()):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
            paths.append(path)
        self._captures.clear()
        return paths

    # ---- faults without netem (nftables) ------------------------------------------------------
    def _fault_table(self, host: str) -> None:
        t = f"{self.prefix}_faults"
        self.run(
            host,
            "nft",
            "-f",
            "-",
            input=(
                f"table inet {t} {{\n chain out {{ type filter hook postrouting priority 0; }}\n"
                f" chain inp {{ type filter hook prerouting priority -300; }}\n}}\n"
            ),
        )

    def loss(self, host: str, ifname: str, percent: int, direction: str = "both") -> None:
        """Random loss: nftables `numgen random mod 100 < percent drop` (this kernel has no netem)."""
        self._fault_table(host)
        t = f"{self.prefix}_faults"
        match = [] if percent >= 100 else ["numgen", "random", "mod", "100", "<", str(percent)]
        if direction in ("egress", "both"):
            self.run(host, "nft", "add", "rule", "inet", t, "out", "oifname", ifname, *match, "drop")
        if direction in ("ingress", "both"):
            self.run(host, "nft", "add", "rule", "inet", t, "inp", "iifname", ifname, *match, "drop")

    def blackhole(self, host: str, ifname: str) -> None:
        self.loss(host, ifname, 100)

    def clear_faults(self, host: str) -> None:
        self.run(host, "nft", "delete", "table", "inet", f"{self.prefix}_faults", check=False)


if __name__ == "__main__":
    if sys.argv[1:] == ["--cleanup-stale"]:
        print("\n".join(cleanup_stale()) or "nothing stale")
