"""Can this kernel do ESP itself? `dataplane = "auto"` asks before choosing a backend."""

from __future__ import annotations

import errno
import os
import socket
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


def set_udp_encap(sock: socket.socket) -> None:
    """Let the kernel decapsulate ESP arriving on this UDP socket; IKE and keepalives still reach it."""
    sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
