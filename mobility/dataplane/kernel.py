"""Kernel ESP backend: XFRM states and policies with `encap espinudp` (the counterpart of strongSwan's
kernel-netlink plugin). natt keeps UDP 4500 (with UDP_ENCAP set) for IKE demux and keepalives."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

from mobility.dataplane.sa import Cipher, EspSaPair, Mode
from mobility.dataplane.xfrm import (
    XFRM_MODE_TRANSPORT,
    XFRM_MODE_TUNNEL,
    XFRM_POLICY_FWD,
    XFRM_POLICY_IN,
    XFRM_POLICY_OUT,
    Selector,
    XfrmSocket,
    algo,
    algo_aead,
    algo_auth,
    encap_tmpl,
    user_tmpl,
)  # fmt: skip


def _crypto(sa: EspSaPair, key: bytes, integ_key: bytes) -> dict[str, Any]:
    if sa.cipher is Cipher.AES_GCM_16:
        return {"aead": algo_aead("rfc4106(gcm(aes))", key, 128)}
    return {"crypt": algo("cbc(aes)", key), "auth": algo_auth("hmac(sha256)", integ_key, 128)}


def _host(a: Any) -> Any:
    return ip_network(f"{a}/{a.max_prefixlen}")


class KernelEspBackend:
    def __init__(self) -> None:
        self._x = XfrmSocket()

    def close(self) -> None:
        self._x.close()

    @staticmethod
    def reqid(sa: EspSaPair) -> int:
        return sa.reqid or (sa.spi_in & 0x7FFFFFFF) or 1

    def _selectors(self, sa: EspSaPair) -> list[tuple[Selector, Selector]]:
        """(outbound, inbound) selector pairs."""
        if sa.mode is Mode.TRANSPORT:
            local, remote = _host(sa.local), _host(sa.peer_alias or sa.peer)
            return [(Selector(local, remote), Selector(remote, local))]
        any_net = ip_network("0.0.0.0/0" if sa.remote_ts[0].version == 4 else "::/0")
        locals_ = [n for n in sa.local_ts if n.version == sa.remote_ts[0].version] or [any_net]
        return [(Selector(lo, re), Selector(re, lo)) for lo in locals_ for re in sa.remote_ts]

    def add_sa(self, sa: EspSaPair, *, oseq: int = 0) -> None:
        self._add_states(sa, oseq)
        self._policies(sa, update=False)

    def _add_states(self, sa: EspSaPair, oseq: int) -> None:
        """Inbound (peer → us, our SPI) and outbound (us → peer, the peer's SPI) ESP-in-UDP states."""
        mode = XFRM_MODE_TUNNEL if sa.mode is Mode.TUNNEL else XFRM_MODE_TRANSPORT
        common: dict[str, Any] = {
            "mode": mode,
            "reqid": self.reqid(sa),
            "replay_window": sa.replay_window,
            "esn": sa.esn,
        }
        self._x.add_state(
            src=sa.peer,
            dst=sa.local,
            spi=sa.spi_in,
            encap=encap_tmpl(sa.peer_port, sa.local_port),
            **common,
            **_crypto(sa, sa.key_in, sa.integ_key_in),
        )
        self._x.add_state(
            src=sa.local,
            dst=sa.peer,
            spi=sa.spi_out,
            encap=encap_tmpl(sa.local_port, sa.peer_port),
            oseq=oseq,
            **common,
            **_crypto(sa, sa.key_out, sa.integ_key_out),
        )

    def _policies(self, sa: EspSaPair, *, update: bool) -> None:
        mode = XFRM_MODE_TUNNEL if sa.mode is Mode.TUNNEL else XFRM_MODE_TRANSPORT
        rid = self.reqid(sa)
        out_t = user_tmpl(sa.local, sa.peer, 0, mode, rid)
        in_t = user_tmpl(sa.peer, sa.local, 0, mode, rid)
        for out_sel, in_sel in self._selectors(sa):
            self._x.add_policy(out_sel, XFRM_POLICY_OUT, out_t, update=update)
            self._x.add_policy(in_sel, XFRM_POLICY_IN, in_t, update=update)
            if sa.mode is Mode.TUNNEL:
                self._x.add_policy(in_sel, XFRM_POLICY_FWD, in_t, update=update)

    def update_peer(self, old: EspSaPair, new: EspSaPair) -> None:
        """MOBIKE: the states are keyed by address, so they are replaced; policies are updated in place."""
        counters = self._x.get_state(old.peer, old.spi_out)
        self._del_states(old)
        self._add_states(new, counters["packets"])  # keep numbering: no sequence number (GCM IV) reused
        if new.mode is Mode.TRANSPORT and (new.peer_alias is None) and old.peer != new.peer:
            for out_sel, in_sel in self._selectors(old):
                self._x.del_policy(out_sel, XFRM_POLICY_OUT)
                self._x.del_policy(in_sel, XFRM_POLICY_IN)
            self._policies(new, update=False)
        else:
            self._policies(new, update=True)

    def _del_states(self, sa: EspSaPair) -> None:
        for dst, spi in ((sa.local, sa.spi_in), (sa.peer, sa.spi_out)):
            try:
                self._x.del_state(dst, spi)
            except FileNotFoundError:
                pass

    def del_sa(self, sa: EspSaPair) -> None:
        self._del_states(sa)
        for out_sel, in_sel in self._selectors(sa):
            for sel, d in ((out_sel, XFRM_POLICY_OUT), (in_sel, XFRM_POLICY_IN), (in_sel, XFRM_POLICY_FWD)):
                if d == XFRM_POLICY_FWD and sa.mode is Mode.TRANSPORT:
                    continue
                try:
                    self._x.del_policy(sel, d)
                except FileNotFoundError:
                    pass

    def counters(self, sa: EspSaPair) -> dict[str, int]:
        i = self._x.get_state(sa.local, sa.spi_in)
        o = self._x.get_state(sa.peer, sa.spi_out)
        return {
            "in_packets": i["packets"],
            "in_bytes": i["bytes"],
            "out_packets": o["packets"],
            "out_bytes": o["bytes"],
            "drop_replay": i["replay"],
            "drop_icv": i["integrity_failed"],
        }
