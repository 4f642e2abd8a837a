"""Configuration: one TOML file per daemon, validated into frozen dataclasses (STYLE.md §2.5).

Errors are collected and reported together, each as `file:line: dotted.key: message`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ServiceSection:
    control_socket: Path | None = field(
        default=None,
        metadata={"doc": "control socket (default $RUNTIME_DIRECTORY/<daemon>.sock or /run/mobility)"},
    )
    state_dir: Path | None = field(
        default=None, metadata={"doc": "state directory (default $STATE_DIRECTORY or /var/lib/mobility)"}
    )
    watchdog: bool = field(default=True, metadata={"doc": "answer the systemd watchdog when WatchdogSec is set"})


def control_socket_path(svc: ServiceSection, daemon: str) -> Path:
    if svc.control_socket is not None:
        return svc.control_socket
    runtime = os.environ.get("RUNTIME_DIRECTORY", "/run/mobility").split(":")[0]
    return Path(runtime) / f"{daemon}.sock"


def state_dir_path(svc: ServiceSection) -> Path:
    if svc.state_dir is not None:
        return svc.state_dir
    return Path(os.environ.get("STATE_DIRECTORY", "/var/lib/mobility").split(":")[0])


class _Builder:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.errors: list[str] = []
        self._lines = text.splitlines()

    def line_of(self, key: str) -> int:
        """The line where `key` is set, else its table's header line, else 0."""
        parts = [re.sub(r"\[\d+\]$", "", p) for p in key.split(".")]
        leaf, section = parts[-1], ".".join(parts[:-1])
        current, section_line = "", 0
        for n, line in enumerate(self._lines, 1):
            s = line.strip()
            if s.startswith("["):
                current = s.strip("[] ")
                section_line = n if current == section else section_line
            elif current == section and re.match(rf"{re.escape(leaf)}\s*=", s):
                return n
        return section_line

    def error(self, key: str, msg: str) -> None:
        self.errors.append(f"{self.source}:{self.line_of(key)}: {key}: {msg}")

    def build(self, schema: type[Any], data: dict[str, Any], prefix: str) -> Any:
        hints = typing.get_type_hints(schema)
        fields = {f.name: f for f in dataclasses.fields(schema)}
        kwargs: dict[str, Any] = {}
        for key in data:
            if key not in fields:
                near = difflib.get_close_matches(key, list(fields), n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                self.error(f"{prefix}{key}", f"unknown key{hint}")
        for name, f in fields.items():
            dotted = f"{prefix}{name}"
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.error(dotted, "required key is missing")
                continue
            ok, value = self.convert(hints[name], data[name], dotted)
            if not ok:
                continue
            rng = f.metadata.get("range")
            if rng is not None and isinstance(value, int | float) and not rng[0] <= value <= rng[1]:
                self.error(dotted, f"expected {rng[0]}..{rng[1]}, got {value!r}")
                continue
            kwargs[name] = value
        try:
            return schema(**kwargs)
        except TypeError:
            return None

    def convert(self, tp: Any, value: Any, key: str) -> tuple[bool, Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            if type(None) in args and value is None:
                return True, None
            options = [a for a in args if a is not type(None)]
            if set(options) == {IPv4Address, IPv6Address}:
                return self._parse(key, value, ip_address, "an IP address")
            if set(options) == {IPv4Network, IPv6Network}:
                return self._parse(key, value, lambda v: ip_network(v, strict=False), "an IP prefix")
            if len(options) == 1:
                return self.convert(options[0], value, key)
            self.error(key, "unsupported union")
            return False, None
        if origin is Literal:
            if value in args:
                return True, value
            self.error(key, f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
            return False, None
        if origin is tuple:
            if not isinstance(value, list):
                self.error(key, f"expected an array, got {type(value).__name__}")
                return False, None
            out, good = [], True
            for i, item in enumerate(value):
                ok, v = self.convert(args[0], item, f"{key}[{i}]")
                good &= ok
                out.append(v)
            return good, tuple(out)
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                self.error(key, f"expected a table, got {type(value).__name__}")
                return False, None
            before = len(self.errors)
            built = self.build(tp, value, key + ".")  # type: ignore[arg-type]
            return len(self.errors) == before, built
        return self._scalar(tp, value, key)

    def _scalar(self, tp: Any, value: Any, key: str) -> tuple[bool, Any]:
        if tp is bool:
            if isinstance(value, bool):
                return True, value
            self.error(key, f"expected true or false, got {value!r}")
        elif tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True, value
            self.error(key, f"expected an integer, got {value!r}")
        elif tp is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return True, float(value)
            self.error(key, f"expected a number, got {value!r}")
        elif tp is str:
            if isinstance(value, str):
                return True, value
            self.error(key, f"expected a string, got {value!r}")
        elif tp is Path:
            if isinstance(value, str) and value:
                return True, Path(value)
            self.error(key, f"expected a path, got {value!r}")
        elif tp in (IPv4Address, IPv6Address, IPv4Network, IPv6Network):
            kind = "address" if tp in (IPv4Address, IPv6Address) else "prefix"
            return self._parse(key, value, tp, f"an IPv{4 if '4' in tp.__name__ else 6} {kind}")
        else:
            self.error(key, f"unsupported type {tp!r}")
        return False, None

    def _parse(self, key: str, value: Any, parse: Any, what: str) -> tuple[bool, Any]:
        if isinstance(value, str):
            try:
                return True, parse(value)
            except ValueError:
                pass
        self.error(key, f"not {what}: {value!r}")
        return False, None


def config_from_dict(data: dict[str, Any], schema: type[T], source: str = "<dict>", text: str = "") -> T:
    b = _Builder(source, text)
    cfg = b.build(schema, data, "")
    if b.errors:
        raise ConfigError(b.errors)
    return typing.cast(T, cfg)


def load_config(path: Path, schema: type[T]) -> T:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError([f"{path}:0: cannot read: {e.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError([f"{path}:{m.group(1) if m else 0}: syntax: {e}"]) from None
    return config_from_dict(data, schema, str(path), text)


def read_secret_file(path: Path) -> bytes:
    """Secrets live in their own files; one that group or others may read is refused."""
    try:
        st = path.stat()
    except OSError as e:
        raise ConfigError([f"{path}:0: secret file: {e.strerror}"]) from None
    if st.st_mode & 0o077:
        raise ConfigError(
            [f"{path}:0: secret file is readable by group/others (mode {st.st_mode & 0o777:o}): chmod 600"]
        )
    return path.read_bytes()


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def example_toml(schema: type[Any], daemon: str) -> str:
    """A commented example config generated from the schema (docs from field metadata)."""
    lines = [
        f"# /etc/mobility/{daemon}.toml, generated from {schema.__module__}.{schema.__name__}.",
        "# Every key is shown with its default; commented keys have no default value to show.",
    ]

    def section(tp: type[Any], name: str) -> None:
        hints = typing.get_type_hints(tp)
        nested = []
        if name:
            lines.extend(["", f"[{name}]"])
        tables = []
        for f in dataclasses.fields(tp):
            if dataclasses.is_dataclass(hints[f.name]):
                nested.append(f)
                continue
            args = typing.get_args(hints[f.name])
            if typing.get_origin(hints[f.name]) is tuple and args and dataclasses.is_dataclass(args[0]):
                tables.append((f, args[0]))
                continue
            if doc := f.metadata.get("doc"):
                lines.append(f"# {doc}")
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if default is None:
                lines.append(f"# {f.name} =")
            else:
                lines.append(f"{f.name} = {_toml_value(default)}")
        for f, elem in tables:  # arrays of tables: one commented example entry
            full = f"{name}.{f.name}" if name else f.name
            lines.extend(["", f"# {f.metadata.get('doc', '')} (repeat the table for more)", f"# [[{full}]]"])
            for ef in dataclasses.fields(elem):
                value = ef.default if ef.default is not dataclasses.MISSING else None
                if ef.default_factory is not dataclasses.MISSING:
                    value = ef.default_factory()
                doc = ef.metadata.get("doc", "")
                shown = "" if value is None or dataclasses.is_dataclass(value) else _toml_value(value)
                lines.append(f"# {ef.name} = {shown}" + (f"  # {doc}" if doc else ""))
        for f in nested:
            section(hints[f.name], f"{name}.{f.name}" if name else f.name)

    section(schema, "")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import importlib
    import sys

    mod, _, cls = sys.argv[1].partition(":")
    print(example_toml(getattr(importlib.import_module(mod), cls), sys.argv[2]), end="")
