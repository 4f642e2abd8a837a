"""Service layer: config validation, secrets, control protocol, state store, runner, mobilityctl."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Literal

import pytest

from mobility.service.config import ConfigError, ServiceSection, config_from_dict, load_config, read_secret_file
from mobility.service.control import ControlClient, ControlError, ControlServer
from mobility.service.ctl import render
from mobility.service.state import StateStore

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True, slots=True)
class Inner:
    max_lifetime_s: int = field(default=60, metadata={"range": (4, 262140)})


@dataclass(frozen=True, slots=True)
class Schema:
    prefix: IPv6Network
    addr: IPv4Address | IPv6Address = IPv4Address("0.0.0.0")
    mode: Literal["a", "b"] = "a"
    names: tuple[str, ...] = ()
    flag: bool = False
    ratio: float = 1.0
    inner: Inner = field(default_factory=Inner)
    path: Path | None = None


def test_config_builds_every_type() -> None:
    cfg = config_from_dict(
        {
            "prefix": "2001:db8::/64",
            "addr": "::1",
            "mode": "b",
            "names": ["x"],
            "flag": True,
            "ratio": 2,
            "inner": {"max_lifetime_s": 100},
            "path": "/tmp/x",
        },
        Schema,
    )
    assert cfg == Schema(
        IPv6Network("2001:db8::/64"), IPv6Address("::1"), "b", ("x",), True, 2.0, Inner(100), Path("/tmp/x")
    )


def test_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    f = tmp_path / "had.toml"
    f.write_text('prefix = "2001:db8::/129"\naddr = "nope"\nflag = 1\nmode = "c"\n\n[inner]\nmax_lifetme_s = 5\n')
    with pytest.raises(ConfigError) as e:
        load_config(f, Schema)
    errs = e.value.errors
    assert f"{f}:1: prefix: not an IPv6 prefix" in errs[1] or any(x.startswith(f"{f}:1: prefix:") for x in errs)
    assert any(x.startswith(f"{f}:2: addr: not an IP address") for x in errs)
    assert any(x.startswith(f"{f}:3: flag: expected true or false") for x in errs)
    assert any(x.startswith(f"{f}:4: mode: expected one of") for x in errs)
    assert any(x == f"{f}:7: inner.max_lifetme_s: unknown key (did you mean max_lifetime_s?)" for x in errs)
    f.write_text('prefix = "2001:db8::/64"\n[inner]\nmax_lifetime_s = 1\n')
    with pytest.raises(ConfigError, match=r":3: inner.max_lifetime_s: expected 4..262140"):
        load_config(f, Schema)
    f.write_text("prefix = \n")
    with pytest.raises(ConfigError, match=r":1: syntax"):
        load_config(f, Schema)
    with pytest.raises(ConfigError, match="prefix: required key is missing"):
        config_from_dict({}, Schema)


def test_secret_files_readable_by_others_are_refused(tmp_path: Path) -> None:
    s = tmp_path / "psk"
    s.write_bytes(b"secret")
    s.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by group/others"):
        read_secret_file(s)
    s.chmod(0o600)
    assert read_secret_file(s) == b"secret"


@pytest.mark.parametrize("daemon", ["natt", "mobiled", "ard", "had"])
def test_example_configs_load(daemon: str) -> None:
    import importlib

    schema = getattr(importlib.import_module(f"{daemon}.config"), f"{daemon.capitalize()}Config")
    assert load_config(REPO / "etc" / "mobility" / f"{daemon}.toml", schema).service == ServiceSection()


def test_control_protocol(tmp_path: Path) -> None:
    async def main() -> None:
        pushed = []

        def boom(args: dict, conn: object) -> None:
            raise RuntimeError("bug")

        def sub(args: dict, conn: object) -> str:
            conn.send_event({"event": "tick", "n": 1})  # type: ignore[attr-defined]
            pushed.append(conn)
            return "ok"

        server = ControlServer(
            tmp_path / "d.sock", {"echo": lambda a, c: a, "boom": boom, "sub": sub, "bad": lambda a, c: int("x")}
        )
        await server.start()
        assert (tmp_path / "d.sock").stat().st_mode & 0o777 == 0o600

        def client() -> None:
            with ControlClient(tmp_path / "d.sock") as c:
                assert c.call("echo", x=1) == {"x": 1}
                with pytest.raises(ControlError, match="unknown command"):
                    c.call("nope")
                with pytest.raises(ControlError, match="internal error"):
                    c.call("boom")
                with pytest.raises(ControlError, match="invalid literal"):
                    c.call("bad")
                assert c.call("sub") == "ok"
                assert c.read_event(2) == {"event": "tick", "n": 1}
                c._sock.sendall(b"garbage\n[1]\n")
                got = b""
                while got.count(b"\n") < 2:
                    got += c._sock.recv(1000)
                assert got.count(b"bad request") == 2
                assert "echo" in c.call("help")

        await asyncio.get_running_loop().run_in_executor(None, client)
        await server.close()

    asyncio.run(main())


def test_state_store_survives_kill9(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    code = (
        f"from mobility.service.state import StateStore; s = StateStore(__import__('pathlib').Path({str(db)!r}));"
        "s.put('sa', 'k1', {'v': 1}); print('acked', flush=True); import time; time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout is not None and p.stdout.readline().strip() == "acked"
    p.kill()
    p.wait()
    s = StateStore(db)
    assert s.get("sa", "k1") == {"v": 1} and s.all("sa") == {"k1": {"v": 1}}
    s.delete("sa", "k1")
    assert s.get("sa", "k1") is None


def test_runner_notify_reload_and_stop(tmp_path: Path) -> None:
    notify = tmp_path / "notify.sock"
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(str(notify))
    ns.settimeout(10)
    cfg = tmp_path / "had.toml"
    ctl = tmp_path / "had.sock"
    cfg.write_text(f'[service]\ncontrol_socket = "{ctl}"\nstate_dir = "{tmp_path}/state"\n')
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="400000", WATCHDOG_PID="")
    env.pop("WATCHDOG_PID")
    p = subprocess.Popen([sys.executable, "-m", "had", "-c", str(cfg)], env=env, cwd=REPO, stderr=subprocess.PIPE)
    msgs = []

    def until(word: str) -> str:
        while True:
            m = ns.recv(4096).decode()
            msgs.append(m)
            if word in m:
                return m

    try:
        assert "STATUS=" in until("READY=1")
        until("WATCHDOG=1")
        out = subprocess.run(
            [sys.executable, "-m", "mobility.service.ctl", "--json", "--socket", str(ctl), "had", "status"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert json.loads(out.stdout)["ike"] == "disabled"
        out = subprocess.run(
            [sys.executable, "-m", "mobility.service.ctl", "--socket", str(ctl), "had", "status"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert out.stdout.startswith("role: home agent")
        cfg.write_text("bogus = 1\n")  # SIGHUP with a bad config: refused, keeps running
        p.send_signal(signal.SIGHUP)
        until("RELOADING=1")
        assert "reload refused" in until("READY=1")
        with ControlClient(ctl) as c:
            assert c.call("ping") == "pong"
        p.send_signal(signal.SIGTERM)
        until("STOPPING=1")
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_check_config_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "natt.toml"
    bad.write_text('port = 70000\ndataplane = "fast"\n')
    r = subprocess.run(
        [sys.executable, "-m", "natt", "--check-config", "-c", str(bad)], capture_output=True, text=True, cwd=REPO
    )
    assert r.returncode == 1
    assert f"{bad}:1: port: expected 1..65535" in r.stderr and f"{bad}:2: dataplane:" in r.stderr
    good = subprocess.run(
        [sys.executable, "-m", "natt", "--check-config", "-c", str(REPO / "etc/mobility/natt.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert good.returncode == 0


def test_mobilityctl_tables() -> None:
    text = render([{"spi_in": 1, "peer": "192.0.2.1"}, {"spi_in": 2, "peer": "192.0.2.9", "x": [1, 2]}])
    lines = text.splitlines()
    assert lines[0].split() == ["SPI_IN", "PEER", "X"] and lines[2].split() == ["0x00000002", "192.0.2.9", "1,2"]
    assert render({"a": 1, "drops": {"icv": 2}}) == "a: 1\ndrops:\n  icv: 2"
    r = subprocess.run(
        [sys.executable, "-m", "mobility.service.ctl", "--socket", "/nonexistent.sock", "natt", "status"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 1 and "not running" in r.stderr


def test_logging_goes_to_journald_under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from systemd.journal import JournalHandler

    from mobility.service.logging import setup_logging

    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    setup_logging("natt", verbose=True)
    root = logging.getLogger()
    assert isinstance(root.handlers[0], JournalHandler) and root.level == logging.DEBUG
    monkeypatch.delenv("JOURNAL_STREAM")
    setup_logging("natt", verbose=False)
    assert not isinstance(logging.getLogger().handlers[0], JournalHandler)


def test_async_client_fails_its_calls_when_the_daemon_goes(tmp_path: Path) -> None:
    """An IKE owner waiting on natt must learn that natt went away: the call in flight fails, the next
    call fails at once, and `closed` is set (its watcher then connects again)."""
    from mobility.service.control import AsyncControlClient

    async def run() -> None:
        path = tmp_path / "d.sock"
        got = asyncio.Event()
        conns: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conns.append(writer)
            await reader.readline()  # a request that is never answered: the daemon dies instead
            got.set()

        server = await asyncio.start_unix_server(serve, path=str(path))
        client = await AsyncControlClient.connect(path)
        call = asyncio.ensure_future(client.call("sa.add"))
        await got.wait()
        conns[0].close()
        server.close()
        with pytest.raises(ControlError, match="closed"):
            await asyncio.wait_for(call, 2)
        await asyncio.wait_for(client.closed.wait(), 2)
        with pytest.raises(ControlError, match="closed"):
            await client.call("sas")
        await client.close()

    asyncio.run(run())
