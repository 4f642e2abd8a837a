"""Small interface helpers the ND-speaking daemons (ard, mobiled) share: the ICMPv6 type filter, the
link-layer address, bringing a link up, adding an address (pyroute2, from a worker thread)."""

from __future__ import annotations

import logging
import struct
from ipaddress import IPv6Address

log = logging.getLogger("mobility.netif")


def icmp6_filter(allowed: tuple[int, ...]) -> bytes:
    """struct icmp6_filter: a set bit blocks the type (linux/icmpv6.h)."""
    words = [0xFFFFFFFF] * 8
    for t in allowed:
        words[t >> 5] &= ~(1 << (t & 31))
    return struct.pack("=8I", *words)


def link_layer_address(ifname: str) -> bytes:
    try:
        with open(f"/sys/class/net/{ifname}/address") as f:
            return bytes.fromhex(f.read().strip().replace(":", ""))
    except OSError:
        return b""


def link_up(ifname: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")


def add_address_nodad(ifname: str, address: IPv6Address, prefixlen: int = 64) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        try:
            ipr.addr("replace", index=idx, address=str(address), prefixlen=prefixlen, flags=0x02)  # IFA_F_NODAD
        except Exception as e:  # pyroute2 raises NetlinkError
            log.warning("cannot add %s to %s: %s", address, ifname, e)
