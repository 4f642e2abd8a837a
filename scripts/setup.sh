#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine, run as root by `make demo` / `make test`:
# the Debian packages the suite and its real peers need, then a venv in .venv with the project.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # build systemd-python against the system library
  libsystemd-dev pkg-config gcc
  # lab: namespaces, NAT, captures, oracles
  iproute2 nftables tcpdump tshark iputils-ping procps iperf3 kmod
  # real peers: strongSwan (charon with kernel-libipsec), BIND9 (later issues)
  strongswan-charon charon-systemd strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
  bind9 bind9-utils
  # kernel guest: Debian's stock kernel under qemu over the host's root
  qemu-system-x86 linux-image-amd64 busybox-static cpio zstd xz-utils
  # systemd-analyze for unit checks
  systemd
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no without a prompt
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# charon must not run as a host service: the lab starts its own instances in namespaces
for unit in strongswan.service strongswan-starter.service named.service; do
  systemctl disable --now "$unit" >/dev/null 2>&1 || true
done

PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
