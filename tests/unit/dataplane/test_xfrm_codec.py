"""XFRM message layouts against the x86_64 kernel ABI, and a policy round trip read back by `ip xfrm`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from ipaddress import ip_address

import pytest

from mobility.dataplane import xfrm


def _size(cls: type) -> int:
    m = cls()
    m["header"] = {"type": 0, "flags": 0}
    for name, fmt in cls.fields:
        m[name] = b"" if fmt.endswith("s") else 0
    m["attrs"] = []
    m.encode()
    return len(m.data) - 16  # minus the netlink header


def test_struct_sizes_match_the_kernel_abi() -> None:
    assert _size(xfrm.xfrm_usersa_info) == 224
    assert _size(xfrm.xfrm_usersa_id) == 24
    assert _size(xfrm.xfrm_userpolicy_info) == 168
    assert _size(xfrm.xfrm_userpolicy_id) == 64
    assert len(xfrm.user_tmpl(ip_address("192.0.2.1"), ip_address("192.0.2.2"), 0, 1, 7)) == 64
    assert len(xfrm.encap_tmpl(4500, 4500)) == 24
    # encap ports travel in network order, the type in host order
    assert xfrm.encap_tmpl(4500, 40000)[:6] == (2).to_bytes(2, sys.byteorder) + bytes.fromhex("11949c40")
    assert len(xfrm.algo_aead("rfc4106(gcm(aes))", bytes(20), 128)) == 64 + 8 + 20


@pytest.mark.netns
def test_policy_round_trip_read_back_by_ip_xfrm() -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root")
    ns = "mx" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        code = (
            "from ipaddress import ip_address as a, ip_network as n\n"
            "from mobility.dataplane.xfrm import *\n"
            "with XfrmSocket() as x:\n"
            "    x.add_policy(Selector(n('10.1.0.0/24'), n('10.2.0.0/24')), XFRM_POLICY_OUT,"
            " user_tmpl(a('192.0.2.1'), a('192.0.2.2'), 0, XFRM_MODE_TUNNEL, 7), priority=1234)\n"
        )
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True)
        out = subprocess.run(["ip", "-n", ns, "xfrm", "policy"], capture_output=True, text=True, check=True).stdout
        assert "src 10.1.0.0/24 dst 10.2.0.0/24" in out and "dir out priority 1234" in out
        assert "tmpl src 192.0.2.1 dst 192.0.2.2" in out and "proto esp reqid 7 mode tunnel" in out
        code = (
            "from ipaddress import ip_network as n\nfrom mobility.dataplane.xfrm import *\n"
            "with XfrmSocket() as x:\n    x.del_policy(Selector(n('10.1.0.0/24'), n('10.2.0.0/24')), XFRM_POLICY_OUT)\n"
        )
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True)
        assert subprocess.run(["ip", "-n", ns, "xfrm", "policy"], capture_output=True, text=True).stdout.strip() == ""
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.mark.netns
def test_auto_falls_back_to_userspace_on_this_kernel_and_says_why() -> None:
    ns = "mp" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        code = "from mobility.dataplane.probe import probe_kernel_esp; print(probe_kernel_esp())"
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        assert out.startswith("(False, 'kernel cannot install an ESP state")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.mark.parametrize("esn", [False, True])
def test_replay_state_round_trip(esn: bool) -> None:
    """What we give the kernel for a restored inbound window reads back as the kernel reports it."""
    seq = (5 << 32) + 77 if esn else 77
    for replay in (xfrm.Replay(seq), xfrm.Replay(seq, bytes.fromhex("0f000000f0000000" if esn else "0f0000f0"))):
        name, value = xfrm.replay_attr(esn, 64, 1000, replay)
        m = xfrm.xfrm_usersa_info()
        m["header"] = {"type": xfrm.XFRM_MSG_NEWSA, "flags": 0}
        for field, fmt in m.fields:
            m[field] = b"" if fmt.endswith("s") else 0
        m["attrs"] = [(name, value)]
        m.encode()
        back = xfrm.xfrm_usersa_info(m.data)
        back.decode()
        oseq, got = xfrm.parse_replay(back)
        full = b"\xff" * (8 if esn else 4)
        assert oseq == 1000 and got == xfrm.Replay(seq, replay.bitmap or full)
    assert xfrm.replay_attr(False, 64, 7, None) == ("XFRMA_REPLAY_VAL", xfrm.replay_state(7))
    with pytest.raises(ValueError):
        xfrm.replay_attr(True, 64, 0, xfrm.Replay(1, bytes(4)))  # a 32-bit bitmap for a 64-packet window
