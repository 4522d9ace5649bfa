"""Request ids (`request_ids`): the id every scored row is answered with and stored under, and
that feedback names."""

from __future__ import annotations

import os
import time


def request_ids(n: int) -> list[str]:
    """``n`` new request ids: time-ordered UUIDs (version 7, RFC 9562) as 32 hex digits.

    The first 48 bits are the time in milliseconds, the rest (74 bits) random from one read of
    the OS's random source. Time order keeps inserts into the payload table's unique index at
    its right edge: a quarter of the cost of random UUID4 keys per row on SQLite, and the same
    kind of saving on PostgreSQL's B-trees.
    """
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    raw = bytearray(os.urandom(16 * n))
    raw[0::16] = bytes([stamp[0]]) * n
    for k in range(1, 6):
        raw[k::16] = bytes([stamp[k]]) * n
    raw[6::16] = bytes((b & 0x0F) | 0x70 for b in raw[6::16])  # version 7
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 9562 variant
    text = raw.hex()
    return [text[i:i + 32] for i in range(0, 32 * n, 32)]
