"""How many bits an attacker must guess to find a secret a person chose (the bootstrap key).

A conservative estimate in the spirit of zxcvbn, small enough to keep here: a person's "random"
key is made of words, years, keyboard runs and repeats, each far cheaper to guess than its
characters suggest. :func:`estimated_entropy_bits` charges

* a character of no pattern: the bits of the alphabet classes the secret uses (lower, upper,
  digits, symbols, non-ASCII);
* a run of one character repeated or counting up or down (``aaaa``, ``6789``): one character;
* a word-like run of letters: at most :data:`WORD_BITS` (a word of a large dictionary), a word
  of :data:`COMMON_WORDS` (the words people put in keys: the product, its parts, ``admin``,
  ``password``, the commonest English words) :data:`COMMON_WORD_BITS`;
* a digit of a number (4 digits or more: dates, PINs): :data:`DIGIT_BITS`; a year 1900-2099
  :data:`YEAR_BITS` in all;
* a repeat of an earlier word, chunk or separator: 2 bits;
* a whole secret that is the hex digest (MD5, SHA-1, SHA-256, SHA-512) of a common word: that
  word's bits (people "make a key" by hashing ``admin``);
* a whole secret that is the base64 or hex encoding of readable text: that text's bits, plus 2
  (``MTIzNDU2Nzg5MA==`` is ``1234567890``);
* characters interleaved from two or three patterns (``a1b2c3d4...``): each pattern's bits,
  plus 2.

Capitalised words are words (``ThisIsTheAdminKey``), two-letter ones included.

Random keys score near their real strength; phrases and patterns far below it.

>>> round(estimated_entropy_bits("a" * 40))
7
>>> estimated_entropy_bits("homecare-gateway-bootstrap-admin-key-2026") < 80
True
>>> estimated_entropy_bits("u8Kq0-ZrT1xYw3Vn9LpA2sDf6GhJ4bMe_RcXo7iUyE5") > 200
True
>>> estimated_entropy_bits("a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8") < 40
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from typing import Final

WORD_BITS: Final = 16.0
"""A word-like run of letters not in :data:`COMMON_WORDS` (a 65,000-word dictionary)."""
COMMON_WORD_BITS: Final = 8.0
"""A word of :data:`COMMON_WORDS` (about 2^8 words; capitalisation follows the words around)."""
DIGIT_BITS: Final = math.log2(10)
YEAR_BITS: Final = 7.0
"""A year 1900-2099: 200 choices, people's favourite number."""

_COMMON_TEXT = """
    admin administrator root user users guest login logon password passwd pass secret secure
    security private token tokens api key keys bootstrap access auth master default system
    test testing demo example sample changeme change letmein welcome hello qwerty asdf zxcv
    homecare home care bed beds gateway hub station site sites alert alerts alarm alarms
    emergency call calls button fall falls nurse dispatcher dispatch console server service
    services device devices sensor sensors mqtt broker influx influxdb grafana docker compose
    prod production dev development staging local localhost internal network beijing shanghai
    china city community elderly senior seniors family
    the and for are but not you all any can had her was one our out day get has him his how
    man new now old see two way who boy did its let put say she too use that with have this
    will your from they know want been good much some time very when come here just like long
    make many more only over such take than them well were what year years month week today
    new first last next monday friday summer winter spring autumn love life world star dragon
    monkey shadow sunshine princess football baseball superman batman trustno
    one two three four five six seven eight nine ten number numbers code pin word words
    is in on at to of it be by my me we an or no so up us go do if as am
    """
COMMON_WORDS: Final = frozenset(_COMMON_TEXT.split())

_WORD = re.compile(r"[A-Z]?[a-z]{2,}|[A-Z][a-z]|[A-Z]{3,}")
_YEAR = re.compile(r"(?:19|20)\d\d(?!\d)")
_NUMBER = re.compile(r"\d{4,}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_DIGESTS: Final = frozenset(
    getattr(hashlib, name)(variant.encode()).hexdigest()
    for word in COMMON_WORDS for variant in (word, word.capitalize(), word.upper())
    for name in ("md5", "sha1", "sha256", "sha512"))


def _alphabet_bits(secret: str) -> float:
    size = (26 * any("a" <= c <= "z" for c in secret) + 26 * any("A" <= c <= "Z" for c in secret)
            + 10 * any("0" <= c <= "9" for c in secret)
            + 33 * any(c.isascii() and not c.isalnum() for c in secret)
            + 100 * any(not c.isascii() for c in secret))
    return math.log2(max(size, 2))


def _run_length(secret: str, i: int) -> int:
    """Length of the run at ``i`` of one character repeated or counting up or down by one."""
    if i + 1 >= len(secret):
        return 1
    step = ord(secret[i + 1]) - ord(secret[i])
    if step not in (-1, 0, 1):
        return 1
    run = 2
    while i + run < len(secret) and ord(secret[i + run]) - ord(secret[i + run - 1]) == step:
        run += 1
    return run


def estimated_entropy_bits(secret: str, *, _depth: int = 0) -> float:
    """A conservative estimate of the bits an attacker must guess to find ``secret`` (see the
    module docstring): the cheapest of its readings."""
    bits = _estimate(secret)
    if _depth < 2:
        decoded = _decoded_text(secret)
        if decoded is not None:
            bits = min(bits, estimated_entropy_bits(decoded, _depth=_depth + 1) + 2)
    for stride in (2, 3):
        if len(secret) >= 4 * stride:
            bits = min(bits, sum(_estimate(secret[k::stride]) for k in range(stride)) + 2)
    return bits


def _decoded_text(secret: str) -> str | None:
    """The readable text ``secret`` is the base64 (either alphabet) or hex encoding of."""
    raw: bytes | None = None
    if _HEX.fullmatch(secret) and len(secret) % 2 == 0:
        raw = bytes.fromhex(secret)
    elif _BASE64.fullmatch(secret):
        padded = secret.replace("-", "+").replace("_", "/")
        padded += "=" * (-len(padded.rstrip("=")) % 4 if not padded.endswith("=") else 0)
        try:
            raw = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) < 4:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _estimate(secret: str) -> float:
    if secret.lower() in _DIGESTS:
        return COMMON_WORD_BITS
    per_char = _alphabet_bits(secret)
    bits, i, words = 0.0, 0, set()
    while i < len(secret):
        run = _run_length(secret, i)
        if run >= 3:
            bits, i = bits + per_char + 2, i + run
            continue
        word = _WORD.match(secret, i)
        if word is not None:
            text = word.group().lower()
            if text in words:
                bits += 2
            elif text in COMMON_WORDS:
                bits += COMMON_WORD_BITS
            else:
                bits += min(WORD_BITS, len(text) * per_char)
            words.add(text)
            i = word.end()
            continue
        if (i == 0 or not secret[i - 1].isdigit()) and (year := _YEAR.match(secret, i)):
            bits, i = bits + YEAR_BITS, year.end()
            continue
        repeat = 0
        while (i >= 4 and i + repeat < len(secret)
               and secret[i:i + repeat + 1] in secret[:i]):
            repeat += 1
        if repeat >= 4:
            bits, i = bits + 2, i + repeat
            continue
        number = _NUMBER.match(secret, i)
        if number is not None and (i == 0 or not secret[i - 1].isdigit()):
            bits, i = bits + len(number.group()) * min(per_char, DIGIT_BITS), number.end()
            continue
        char = secret[i]
        bits += 2 if not char.isalnum() and char in secret[:i] else per_char
        i += 1
    return bits


__all__ = ["COMMON_WORDS", "COMMON_WORD_BITS", "DIGIT_BITS", "WORD_BITS", "YEAR_BITS",
           "estimated_entropy_bits"]
