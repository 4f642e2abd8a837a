"""A cleartext HI (or HAck) between access routers, around natt's ESP: `hi|hack SRC DST NCOA [bypass]`
sends one from SRC (an address of this host) with natt's mark, so policy routing leaves it outside the
tunnel (userspace natt), and with `bypass` exempt from this host's XFRM policies too (kernel natt);
with [ipsec] on, the receiving router must drop it (RFC 5568 §10)."""

from __future__ import annotations

import socket
import sys
from ipaddress import IPv6Address

from mobility.dataplane.xfrm import socket_bypass
from mobility.service import netif
from mobility.wire import mh

SO_MARK = 36


def main() -> None:
    kind, src, dst, ncoa = sys.argv[1], *(IPv6Address(a) for a in sys.argv[2:5])
    if kind == "hi":
        m = mh.message(
            mh.Hi(4242, 0),
            (mh.MhLinkLayerAddress(2, bytes(6)), mh.MhIpPrefix(1, 128, src), mh.MhIpPrefix(2, 128, ncoa)),
        )
    else:
        m = mh.message(mh.Hack(4242, mh.HackCode.ACCEPTED))
    s = netif.raw6_socket(mh.IPPROTO_MH)
    s.setsockopt(socket.SOL_SOCKET, SO_MARK, 0x4500)
    if sys.argv[5:] == ["bypass"]:
        socket_bypass(s)
    netif.send_from(s, m.encode(src, dst), src, dst)


if __name__ == "__main__":
    main()
