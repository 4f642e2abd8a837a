#!/usr/bin/env bash
# make install: the daemons and mobilityctl in /opt/mobility (a venv), console scripts linked into
# /usr/local/bin, units into /etc/systemd/system, example configs into /etc/mobility without
# overwriting the operator's. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/opt/mobility}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x "$PREFIX/bin/python" ] || "$PY" -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --upgrade pip
"$PREFIX/bin/pip" install -q --force-reinstall --no-deps . && "$PREFIX/bin/pip" install -q .
for s in natt mobiled ard had mobilityctl; do ln -sfn "$PREFIX/bin/$s" "/usr/local/bin/$s"; done
install -d -m 0755 /etc/mobility /usr/share/doc/mobility
for f in etc/mobility/*.toml; do
  [ -e "/etc/mobility/$(basename "$f")" ] || install -m 0644 "$f" /etc/mobility/
done
install -m 0644 README.md /usr/share/doc/mobility/README.md
install -m 0644 systemd/*.service /etc/systemd/system/
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
echo "installed: $PREFIX, /usr/local/bin/{natt,mobiled,ard,had,mobilityctl}, /etc/systemd/system/mobility-*.service"
