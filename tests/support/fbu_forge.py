"""Forged FBUs from the mobile node's link: `PCOA PAR NCOA` sends one with a random key for PCOA
(bad MAC) and one for an address the PAR holds no key for (unknown CGA), as raw IPv6 packets."""

from __future__ import annotations

import os
import socket
import sys
from ipaddress import IPv6Address

from mobility.crypto import hk
from mobility.wire import mh


def fbu(pcoa: IPv6Address, par: IPv6Address, ncoa: IPv6Address, key: bytes, seq: int) -> bytes:
    opts: tuple[mh.MhOption, ...] = (mh.AlternateCoa(ncoa),)
    draft = mh.message(mh.Fbu(seq, 10), (*opts, mh.Badf(0, bytes(12))))
    auth = hk.authenticator(0, key, ncoa, par, draft.badf_input())
    msg = mh.message(mh.Fbu(seq, 10), (*opts, mh.Badf(0, auth)))
    return mh.build_ipv6(pcoa, par, mh.hoa_dstopts(pcoa) + msg.encode(pcoa, par), mh.IPPROTO_DSTOPTS)


def main() -> None:
    pcoa, par, ncoa = (IPv6Address(a) for a in sys.argv[1:4])
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(fbu(pcoa, par, ncoa, os.urandom(32), 40000), (str(par), 0))
    s.sendto(fbu(IPv6Address(int(pcoa) ^ 0xFF), par, ncoa, os.urandom(32), 40001), (str(par), 0))


if __name__ == "__main__":
    main()
