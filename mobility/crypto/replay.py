"""Sliding anti-replay window with 64-bit (ESN-capable) sequence numbers.

RFC 4303 §3.4.3: check the window first (cheap), verify the ICV, and only then update the window;
the right edge is the highest *authenticated* sequence number. Window size 64 by default (SHOULD),
at least 32 (MUST). Appendix A2.2 gives the ESN high-order-bits inference used by `infer_esn`.
"""

from __future__ import annotations

MASK32 = 0xFFFFFFFF


class ReplayWindow:
    """Bitmap window: bit i set means sequence number (top - i) was accepted."""

    __slots__ = ("_bits", "_full", "size", "top")

    def __init__(self, size: int = 64, top: int = 0, *, fill: bool = False) -> None:
        if not 32 <= size <= 4096:
            raise ValueError("replay window must be 32..4096 (RFC 4303 §3.4.3)")
        self.size, self.top = size, top
        self._full = (1 << size) - 1
        # fill=True: after a restart every number up to `top` counts as already seen.
        self._bits = self._full if fill else (1 if top else 0)

    def check(self, seq: int) -> bool:
        """True when `seq` may be new: right of the window, or inside it and not yet seen."""
        if seq == 0:
            return False  # the first packet of an SA carries 1 (RFC 4303 §2.2)
        if seq > self.top:
            return True
        offset = self.top - seq
        return offset < self.size and not (self._bits >> offset) & 1

    def accept(self, seq: int) -> None:
        """Mark `seq` seen; call only after the ICV verified (RFC 4303 §3.4.3)."""
        if seq > self.top:
            shift = seq - self.top
            self._bits = ((self._bits << shift) | 1) & self._full if shift < self.size else 1
            self.top = seq
        else:
            self._bits |= 1 << (self.top - seq)

    def infer_esn(self, seq_low: int) -> int:
        """RFC 4303 Appendix A2.2: the full 64-bit number for a received low-order 32 bits."""
        tl, th, w = self.top & MASK32, self.top >> 32, self.size
        bl = (tl - w + 1) & MASK32
        if tl >= w - 1:
            seqh = th if seq_low >= bl else th + 1
        else:
            seqh = th - 1 if seq_low >= bl else th
        if seqh < 0:
            seqh = 0
        return (seqh << 32) | seq_low
