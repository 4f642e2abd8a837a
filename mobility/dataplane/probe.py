"""Can this kernel do ESP (or ip6tnl) itself? `dataplane = "auto"` (ard: `forward_backend`) asks before
choosing a backend."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from ipaddress import ip_address

from mobility.dataplane.xfrm import XFRM_MODE_TUNNEL, XfrmSocket, algo_aead, encap_tmpl

SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP = 17, 100, 2  # include/uapi/linux/udp.h


def probe_kernel_esp() -> tuple[bool, str]:
    """Install (and remove) a throwaway ESP-in-UDP state; report whether it worked and why not."""
    spi = 0x100 + int.from_bytes(os.urandom(3), "big")
    addr = ip_address("127.0.0.1")
    try:
        with XfrmSocket() as x:
            x.add_state(
                src=addr,
                dst=addr,
                spi=spi,
                mode=XFRM_MODE_TUNNEL,
                reqid=spi,
                aead=algo_aead("rfc4106(gcm(aes))", bytes(20), 128),
                encap=encap_tmpl(4500, 4500),
            )
            x.del_state(addr, spi)
    except OSError as e:
        hint = {
            errno.ENOSYS: " (no esp4/esp6 in this kernel)",
            errno.ENOENT: " (rfc4106(gcm(aes)) unavailable)",
            errno.EPROTONOSUPPORT: " (no XFRM ESP support)",
        }.get(e.errno or 0, "")
        return False, f"kernel cannot install an ESP state: {e.strerror}{hint}"
    return True, "kernel installs ESP-in-UDP states (XFRM)"


def choose_backend(wanted: str, probe: Callable[[], tuple[bool, str]], setting: str) -> tuple[str, str]:
    """(backend, why) for `setting` = auto | kernel | userspace: auto takes the kernel when `probe` says
    it can, else userspace with the probe's reason (ARCHITECTURE.md); kernel without support is an error."""
    if wanted == "userspace":
        return "userspace", "configured"
    ok, why = probe()
    if ok:
        return "kernel", why
    if wanted == "kernel":
        raise RuntimeError(f"{setting} = kernel, but {why}")
    return "userspace", why


def probe_kernel_ip6tnl() -> tuple[bool, str]:
    """Create (and delete) a throwaway ip6ip6 ip6tnl link; report whether it worked and why not."""
    from pyroute2 import IPRoute

    tag = os.urandom(3).hex()
    name = f"m6probe{tag}"
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="ip6tnl", ip6tnl_remote=f"2001:db8:ffff::{tag[:4]}", ip6tnl_proto=41)
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
    except Exception as e:  # pyroute2's NetlinkError carries the errno as `code`
        code = getattr(e, "code", 0)
        hint = {errno.EOPNOTSUPP: " (no ip6_tunnel in this kernel)", errno.EPERM: " (needs CAP_NET_ADMIN)"}
        return False, f"kernel cannot create an ip6tnl link: {os.strerror(code) if code else e}{hint.get(code, '')}"
    return True, "kernel creates ip6tnl (ip6ip6) links"


def set_udp_encap(sock: socket.socket) -> None:
    """Let the kernel decapsulate ESP arriving on this UDP socket; IKE and keepalives still reach it."""
    sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
