"""A SEND mobile node for ard scenarios (run with `python -m tests.support.send_client`):

    send_client STATE_DIR IFNAME PREFIX ROUTER_ADDR ROUTER_PUBKEY_PEM NONCE_HEX [forge]

Keeps its CGA key, care-of CGA parameters and handover-key encryption key in STATE_DIR (so a second
run is the same node), puts the CGA on IFNAME, sends one SEND-signed RtSolPr with a Handover Key
Request (hop limit 255), waits 3 s for the PrRtAdv, checks the router's signature and prints JSON:
{"cga", "prrtadv", "signature_ok", "key", "at", "lifetime"}. `forge` flips a signature bit.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mobility.crypto import cga, hk, sendsig
from mobility.wire import nd


def load_or_make(
    state: Path, prefix: IPv6Network
) -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey, IPv6Address, cga.CgaParams]:
    f = state / "mn.json"
    if f.exists():
        d = json.loads(f.read_text())
        key = serialization.load_pem_private_key(d["key"].encode(), None)
        hkek = serialization.load_pem_private_key(d["hkek"].encode(), None)
        assert isinstance(key, rsa.RSAPrivateKey) and isinstance(hkek, rsa.RSAPrivateKey)
        return key, hkek, IPv6Address(d["addr"]), cga.CgaParams.decode(bytes.fromhex(d["params"]))
    key, hkek = rsa.generate_private_key(65537, 1024), rsa.generate_private_key(65537, 1024)
    addr, params = cga.generate(prefix, sendsig.public_der(key.public_key()), 1, os.urandom)

    def pem(k: rsa.RSAPrivateKey) -> str:
        fmt = serialization.PrivateFormat.PKCS8
        return k.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()

    state.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"key": pem(key), "hkek": pem(hkek), "addr": str(addr), "params": params.encode().hex()}))
    return key, hkek, addr, params


def main() -> None:
    state, ifname, prefix, router, router_pem, nonce_hex = sys.argv[1:7]
    forge = len(sys.argv) > 7 and sys.argv[7] == "forge"
    key, hkek, addr, params = load_or_make(Path(state), IPv6Network(prefix))
    subprocess.run(["ip", "-6", "addr", "replace", f"{addr}/64", "dev", ifname, "nodad"], check=True)
    router_addr = IPv6Address(router)
    router_key = serialization.load_pem_public_key(Path(router_pem).read_bytes())
    assert isinstance(router_key, rsa.RSAPublicKey)
    opts = (
        nd.LinkLayerAddress(0, b""),
        nd.HandoverKeyRequest(1, sendsig.public_der(hkek.public_key())),
        nd.CgaOption(params.encode()),
        nd.Timestamp.at(time.time()),
        nd.Nonce(bytes.fromhex(nonce_hex)),
    )
    wire = bytearray(sendsig.sign(nd.rtsolpr(0x4242, opts), addr, router_addr, key).encode(addr, router_addr))
    if forge:
        wire[-3] ^= 1
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    s.bind((str(addr), 0, 0, socket.if_nametoindex(ifname)))
    s.sendto(bytes(wire), (router, 0, 0, socket.if_nametoindex(ifname)))
    out: dict[str, object] = {"cga": str(addr), "prrtadv": False}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not select.select([s], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        data, src = s.recvfrom(65535)
        if data[:1] != b"\x9a":
            continue
        msg = nd.NdMessage.decode(data)
        if msg.subtype != nd.Subtype.PRRTADV or msg.identifier != 0x4242:
            continue
        out["prrtadv"] = True
        try:
            sendsig.verify(msg, IPv6Address(src[0].split("%")[0]), addr, router_key)
            out["signature_ok"] = True
        except sendsig.SendError as e:
            out["signature_ok"] = str(e)
        nonce = msg.first(nd.Nonce)
        out["nonce_echoed"] = isinstance(nonce, nd.Nonce) and nonce.nonce == bytes.fromhex(nonce_hex)
        reply = msg.first(nd.HandoverKeyReply)
        if isinstance(reply, nd.HandoverKeyReply):
            out.update(key=hk.decrypt(hkek, reply.encrypted_key).hex(), at=reply.at, lifetime=reply.lifetime)
        break
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
