"""Byte corruption of valid payloads, as a flaky radio, a firmware bug or an attacker makes it.

Random bytes alone rarely get past the first byte of a JSON parser; the faults that killed the
gateway were a few bad bytes *inside* an otherwise valid payload (field case F1: invalid UTF-8
in a known string field). :func:`corrupt` damages string values, keys, numbers or anything in
between of a valid payload, so every path of the decoder is reached. Shared by the codec and
pipeline property tests (driven by hypothesis through ``st.randoms()``) and the live fuzz test
(a seeded ``random.Random``).
"""

from __future__ import annotations

import random
import re
from typing import Final

INVALID_UTF8: Final = (
    b"\xff", b"\xfe", b"\x80", b"\xbf",  # never valid / a lone continuation byte
    b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98",  # sequences cut short
    b"\xc0\xaf", b"\xe0\x80\xaf",  # overlong forms
    b"\xed\xa0\x80", b"\xed\xbf\xbf",  # UTF-16 surrogates encoded in UTF-8
    b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",  # beyond U+10FFFF, five-byte form
)
"""Byte sequences that are not UTF-8, one of each way of being wrong."""

ODD_NUMBERS: Final = (
    b"1" * 400, b"-" + b"9" * 40, b"1e999", b"-1e999", b"1e-999", b"NaN", b"-NaN",
    b"Infinity", b"-Infinity", b"nan", b"inf", b"0x1F", b"1.", b".5", b"01", b"-0", b"+1",
    b"1e", b"1e+", b"18446744073709551616", b"9007199254740993", b"1_000", b"\xd9\xa3",
)
"""Text where a number belongs: huge, NaN-ish, not JSON, or digits of another script."""

ODD_TEXT: Final = (
    b"\\u0000", b"\\ud800", b"\\udc00", b"\\ud83d\\ude00", b"\\", b'\\"', b"\x00", b"\x1f",
    b"\xef\xbb\xbf", b"\xc3\xa9", b"\xe2\x80\xae", b'"', b"\n", b"\\x",
)
"""Escapes, control characters and valid multi-byte UTF-8 (which must keep working)."""

BOM: Final = b"\xef\xbb\xbf"

_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*')


def _spans(payload: bytes) -> dict[str, list[tuple[int, int]]]:
    """``(start, end)`` of the inside of every key, string value and number."""
    spans: dict[str, list[tuple[int, int]]] = {"key": [], "string": [], "number": []}
    for match in _TOKENS.finditer(payload):
        start, end = match.span()
        if payload[start:start + 1] == b'"':
            rest = payload[end:].lstrip()
            kind = "key" if rest.startswith(b":") else "string"
            spans[kind].append((start + 1, end - 1))
        else:
            spans["number"].append((start, end))
    return spans


def _junk(rng: random.Random, where: str) -> bytes:
    roll = rng.random()
    if where == "number" and roll < 0.6:
        return rng.choice(ODD_NUMBERS)
    if roll < 0.55:
        return rng.choice(INVALID_UTF8)
    if roll < 0.85:
        return rng.choice(ODD_TEXT)
    return rng.randbytes(rng.randint(1, 4))


def corrupt(payload: bytes, rng: random.Random) -> bytes:
    """``payload`` with one to three faults: bytes replaced, inserted, deleted or bit-flipped
    inside a key, a string value, a number or anywhere; sometimes a byte-order mark first."""
    data = bytearray(payload)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        spans = _spans(bytes(data))
        where = rng.choice([w for w in ("key", "string", "number", "anywhere")
                            if w == "anywhere" or spans[w]])
        if where == "anywhere":
            start, end = 0, len(data)
        else:
            start, end = rng.choice(spans[where])
        at = rng.randint(start, end)
        action = rng.choice(("replace", "insert", "insert", "delete", "flip"))
        if action == "delete" and at < end:
            del data[at:rng.randint(at + 1, end)]
        elif action == "flip" and at < len(data):
            data[at] ^= 1 << rng.randrange(8)
        elif action == "replace" and where == "number":
            data[start:end] = _junk(rng, where)
        elif action == "replace" and at < end:
            data[at:at + 1] = _junk(rng, where)
        else:
            data[at:at] = _junk(rng, where)
    if rng.random() < 0.05:
        data[:0] = BOM
    return bytes(data)
