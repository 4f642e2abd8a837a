"""Run one command inside a throw-away qemu guest booting Debian's stock kernel (which has ESP, MIP6
and tunnels) over the host's root filesystem, shared read-only with 9p: no disk image.

    python -m mobility.lab.guest [--share DIR]... [--timeout S] [--mem MiB] [-v] -- CMD ARGS...

The command runs as root, chrooted into the host's "/", in the caller's directory; its exit status
becomes ours (124 timeout, 125 the guest died without reporting). tmpfs covers /tmp, /var/tmp and
/run in the guest, so anything there on the host is invisible unless shared with --share (which
mounts the host directory read-write at the same path). The repo's build/ is always shared.
Boot once per test session: Python runs 10-15x slower under TCG (the nested kvm_pvm here cannot
run a stock kernel, so KVM is used only with kvm_intel/kvm_amd).
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import io
import lzma
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path("/var/tmp/mobility-guest")
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
NINEP = "trans=virtio,version=9p2000.L,msize=512000"

INIT = f"""#!/bin/busybox sh
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m || echo "guest: insmod $m failed"; done
R=/newroot
mount -t 9p -o {NINEP},ro,cache=loose hostroot $R || {{ echo "guest: no host root"; poweroff -f; }}
for d in tmp var/tmp; do mount -t tmpfs -o mode=1777 tmpfs $R/$d; done
mount -t tmpfs -o mode=755 tmpfs $R/run
mount -t proc proc $R/proc; mount -t sysfs sysfs $R/sys; mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm $R/run/guest
mount -t devpts devpts $R/dev/pts; mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t 9p -o {NINEP} xchg $R/run/guest
while read -r tag path; do
  mkdir -p "$R$path"; mount -t 9p -o {NINEP} "$tag" "$R$path" || echo "guest: share $path failed"
done < $R/run/guest/shares
hostname guest
echo /sbin/modprobe > /proc/sys/kernel/modprobe
echo "guest: command starts at uptime $(cut -d' ' -f1 /proc/uptime)"
chroot $R /bin/sh /run/guest/cmd.sh </dev/null >$R/run/guest/stdout 2>$R/run/guest/stderr
echo $? > $R/run/guest/rc
sync
poweroff -f
"""
# The kernel's module auto-loader runs /sbin/modprobe in the initramfs root: forward it to the host's.
MODPROBE = '#!/bin/busybox sh\nexec /bin/chroot /newroot /sbin/modprobe "$@"\n'


def find_kernel() -> str:
    for v in sorted((p.name.removeprefix("vmlinuz-") for p in Path("/boot").glob("vmlinuz-*")), reverse=True):
        if (Path("/lib/modules") / v / "kernel").is_dir():
            return v
    raise SystemExit("guest: no /boot/vmlinuz-* with modules (apt install linux-image-amd64)")


def _module_files(kver: str) -> list[Path]:
    out = subprocess.run(
        ["modprobe", "-S", kver, "--show-depends", "-a", *BOOT_MODULES], capture_output=True, text=True, check=True
    ).stdout
    seen: list[Path] = []
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "insmod" and Path(parts[1]) not in seen:
            seen.append(Path(parts[1]))
    return seen


def _ko_bytes(path: Path) -> bytes:
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-qdc", str(path)], capture_output=True, check=True).stdout
    return path.read_bytes()


def _cpio(files: dict[str, tuple[int, bytes]]) -> bytes:
    """newc archive: name -> (mode, data); directories have mode 0o040755 and no data."""
    buf = io.BytesIO()
    ino = 1
    for name, (mode, data) in [*files.items(), ("TRAILER!!!", (0, b""))]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        buf.write(hdr.encode() + nb + b"\0" * (-(110 + len(nb)) % 4) + data + b"\0" * (-len(data) % 4))
        ino += 1
    return buf.getvalue()


def _pvh_vmlinux(bzimage: Path) -> bytes | None:
    """The uncompressed ELF with a PVH entry note: qemu starts it directly, skipping the slow
    in-guest decompression under TCG."""
    data = bzimage.read_bytes()
    note = struct.pack("<III", 4, 8, 18) + b"Xen\x00"  # XEN_ELFNOTE_PHYS32_ENTRY
    for magic in (b"\xfd7zXZ\x00",):
        i = data.find(magic)
        while i >= 0:
            try:
                out = lzma.LZMADecompressor().decompress(data[i:])
                if out[:4] == b"\x7fELF" and note in out:
                    return out
            except lzma.LZMAError:
                pass
            i = data.find(magic, i + 1)
    return None


def prepare(kver: str) -> tuple[Path, Path]:
    """Build (once, under a lock) the initramfs and the PVH kernel for `kver`."""
    busybox = Path("/bin/busybox")
    stamp = hashlib.sha1((INIT + MODPROBE + kver + str(busybox.stat().st_mtime)).encode()).hexdigest()[:12]
    d = CACHE / f"{kver}-{stamp}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (d / "initrd.gz").exists():
            tmp = Path(tempfile.mkdtemp(dir=CACHE))
            files: dict[str, tuple[int, bytes]] = {}
            for name in ("bin", "sbin", "etc", "proc", "sys", "dev", "newroot", "tmp", "lib", "lib/modules"):
                files[name] = (0o040755, b"")
            files["bin/busybox"] = (0o100755, busybox.read_bytes())
            applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout
            for a in applets.split():
                if a != "busybox":
                    files[f"bin/{a}"] = (0o120777, b"busybox")
            files["init"] = (0o100755, INIT.encode())
            files["sbin/modprobe"] = (0o100755, MODPROBE.encode())
            order = []
            for ko in _module_files(kver):
                name = re.sub(r"\.(xz|zst)$", "", ko.name)
                files[f"lib/modules/{name}"] = (0o100644, _ko_bytes(ko))
                order.append(name)
            files["etc/modules.order"] = (0o100644, "\n".join(order).encode() + b"\n")
            (tmp / "initrd.gz").write_bytes(gzip.compress(_cpio(files), 1))
            vmlinux = _pvh_vmlinux(Path(f"/boot/vmlinuz-{kver}"))
            if vmlinux:
                (tmp / "vmlinux").write_bytes(vmlinux)
            tmp.chmod(0o755)
            shutil.rmtree(d, ignore_errors=True)
            tmp.rename(d)
    kernel = d / "vmlinux" if (d / "vmlinux").exists() else Path(f"/boot/vmlinuz-{kver}")
    return kernel, d / "initrd.gz"


def _accel() -> list[str]:
    if Path("/dev/kvm").exists() and (Path("/sys/module/kvm_intel").exists() or Path("/sys/module/kvm_amd").exists()):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi,tb-size=64", "-cpu", "max"]


def run_in_guest(
    argv: list[str],
    *,
    shares: Sequence[Path] = (),
    timeout: float = 1200,
    mem: int = 1024,
    cpus: int = 2,
    env: dict[str, str] | None = None,
    console_log: Path | None = None,
    verbose: bool = False,
) -> int:
    t0 = time.monotonic()
    kver = find_kernel()
    kernel, initrd = prepare(kver)
    x = Path(tempfile.mkdtemp(prefix="guest."))
    try:
        all_shares = [Path(s).resolve() for s in [REPO / "build", *shares]]
        for s in all_shares:
            s.mkdir(parents=True, exist_ok=True)
        (x / "shares").write_text("".join(f"rw{i} {s}\n" for i, s in enumerate(all_shares)))
        exports = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MOBILITY_IN_GUEST": "1",
            **(env or {}),
        }
        script = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items())
        script += (
            f"cd {shlex.quote(os.getcwd())} || cd /\nip link set lo up\nmodprobe -q tun\nexec {shlex.join(argv)}\n"
        )
        (x / "cmd.sh").write_text(script)
        qemu = [
            "qemu-system-x86_64",
            *_accel(),
            "-m",
            str(mem),
            "-smp",
            str(cpus),
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-append",
            "console=ttyS0 quiet panic=-1 oops=panic",
            "-serial",
            f"file:{console_log or x / 'console'}",
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs",
            f"local,path={x},mount_tag=xchg,security_model=none,multidevs=remap",
        ]
        for i, s in enumerate(all_shares):
            qemu += ["-virtfs", f"local,path={s},mount_tag=rw{i},security_model=none,multidevs=remap"]
        if verbose:
            print(f"guest: kernel {kver}, prepared in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        try:
            subprocess.run(qemu, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            print(f"guest: timed out after {timeout} s", file=sys.stderr)
            return 124
        for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            p = x / name
            if p.exists():
                stream.write(p.read_text(errors="replace"))
                stream.flush()
        if verbose:
            print(f"guest: finished in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        rc = x / "rc"
        if not rc.exists():
            console = (console_log or x / "console").read_text(errors="replace")
            print("guest: no exit status; console tail:\n" + "\n".join(console.splitlines()[-30:]), file=sys.stderr)
            return 125
        return int(rc.read_text().strip() or 125)
    finally:
        shutil.rmtree(x, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m mobility.lab.guest", description=__doc__.split("\n\n")[0])
    p.add_argument("--share", action="append", default=[], type=Path, help="host directory shared read-write")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--mem", type=int, default=1024)
    p.add_argument("--console-log", type=Path)
    p.add_argument("-e", "--env", action="append", default=[], help="NAME=VALUE for the command")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("argv", nargs=argparse.REMAINDER)
    a = p.parse_args()
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    if not argv:
        p.error("no command")
    env = dict(e.split("=", 1) for e in a.env)
    return run_in_guest(
        argv, shares=a.share, timeout=a.timeout, mem=a.mem, env=env, console_log=a.console_log, verbose=a.verbose
    )


if __name__ == "__main__":
    sys.exit(main())
