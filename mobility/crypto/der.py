"""The little strict DER the project parses itself (X.690): RFC 7427 AlgorithmIdentifiers and
TBSCertificate fields in ikeauth, RFC 3779 IPAddrBlocks in sendcert. Single-octet tags, minimal
definite lengths of at most 3 octets; callers choose the exception their own callers expect."""

from __future__ import annotations


class DerError(ValueError):
    """DER that does not parse."""


def tlv(buf: bytes, pos: int = 0, error: type[Exception] = DerError) -> tuple[int, bytes, int]:
    """(tag, contents, next position) of the DER element at pos."""
    if pos + 2 > len(buf):
        raise error("truncated DER element")
    tag, n, pos = buf[pos], buf[pos + 1], pos + 2
    if tag & 0x1F == 0x1F:
        raise error("multi-octet DER tag")
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 3 or pos + k > len(buf) or buf[pos] == 0:
            raise error("bad DER length")
        n, pos = int.from_bytes(buf[pos : pos + k], "big"), pos + k
        if n < 0x80:
            raise error("non-minimal DER length")
    if pos + n > len(buf):
        raise error("DER element overruns its container")
    return tag, buf[pos : pos + n], pos + n


def elements(buf: bytes, error: type[Exception] = DerError) -> list[tuple[int, bytes]]:
    """All DER elements of a constructed value's contents, which they must fill exactly."""
    out, pos = [], 0
    while pos < len(buf):
        tag, val, pos = tlv(buf, pos, error)
        out.append((tag, val))
    return out


def encode(tag: int, contents: bytes) -> bytes:
    """A DER element with a minimal definite length (X.690 §10.1)."""
    n = len(contents)
    if n < 0x80:
        return bytes([tag, n]) + contents
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + contents
