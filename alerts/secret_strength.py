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
* a whole secret that is a digest (MD5, SHA-1, SHA-2, SHA-3, BLAKE2; :data:`_HASH_NAMES`), or
  the start of one, of a common word, a common password, a number of up to 4 digits or
  nothing, with or without the newline ``echo`` adds, written in hex (also as ``sha256sum``
  prints it) or base64 (either alphabet, padded or not): that word's bits (people "make a key"
  with ``echo admin | sha256sum`` or ``openssl dgst -binary | base64``);
* a whole secret that is the hex or base64 of bytes with a pattern: the bytes' bits
  (:func:`_bytes_bits`: a repeated block, a constant step such as ``00 01 02 ...``, few
  distinct values), plus 2;
* a UUID (``8-4-4-4-12`` or 32 hex digits) by what its version leaves to guess: a random one
  (version 4) 122 bits, a time-based one (versions 1, 6) :data:`UUID_TIME_BITS` (its clock
  within a year, its clock sequence; the node is the machine's address), version 7 its 74
  random bits and a millisecond within a year; a later time-based one beside it
  :data:`UUID_AGAIN_BITS`; a name-based one (versions 3, 5) :data:`COMMON_WORD_BITS` plus a
  word;
* a run of the digits of a well-known constant (pi, e, the square root of two, the golden
  ratio), 6 digits or more: :data:`CONSTANT_BITS`;
* a Unix time in seconds or milliseconds (2000-2100): :data:`EPOCH_BITS` (a year of seconds),
  and :data:`UUID_AGAIN_BITS` for each later one;
* a whole secret that is the base64 or hex encoding of readable text (a trailing newline
  allowed): that text's bits, plus 2 (``MTIzNDU2Nzg5MA==`` is ``1234567890``);
* leetspeak (``H0m3C4r3``): the text with its letters back, plus a bit per swapped character;
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
import functools
import hashlib
import math
import re
from array import array
from bisect import bisect_left
from itertools import pairwise
from typing import Final

WORD_BITS: Final = 16.0
"""A word-like run of letters not in :data:`COMMON_WORDS` (a 65,000-word dictionary)."""
COMMON_WORD_BITS: Final = 8.0
"""A word of :data:`COMMON_WORDS` (about 2^8 words; capitalisation follows the words around)."""
DIGIT_BITS: Final = math.log2(10)
YEAR_BITS: Final = 7.0
"""A year 1900-2099: 200 choices, people's favourite number."""
UUID_TIME_BITS: Final = 62.0
"""A time-based UUID: a timestamp known to within a year (about 2^48 ticks of 100 ns) and a
14-bit clock sequence; its node is the host's address, not a secret."""
UUID_AGAIN_BITS: Final = 16.0
"""A later UUID or Unix time beside one already charged: only how much later it is."""
CONSTANT_BITS: Final = 8.0
"""Digits of a well-known constant: which constant, where its run starts and ends."""
EPOCH_BITS: Final = 25.0
"""A Unix time: a second within a year."""

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
_COMMON_PASSWORDS = """
    123456 1234567 12345678 123456789 1234567890 0123456789 987654321 654321 111111 000000
    666666 888888 123123 112233 121212 123321 159753 147258369 5201314 1314520 woaini
    password password1 password123 passw0rd p@ssw0rd p@ssword qwerty123 qwertyuiop 1qaz2wsx
    1q2w3e4r 1q2w3e4r5t zaq12wsx abc123 abcd1234 a123456 aa123456 admin123 admin@123 root123
    iloveyou letmein1 welcome1 monkey123 dragon123 sunshine1 princess1 football1 baseball1
    test123 test1234 changeme123 secret123 homecare123 gateway123 hello123 qwe123 asd123
    """
_LEET: Final = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                "$": "s", "!": "i"}
_LEET_TABLE: Final = str.maketrans(_LEET)
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_HASH_NAMES: Final = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256",
                      "sha3_512", "blake2b", "blake2s")
"""The digests people reach for (``*sum`` tools, ``openssl dgst``, ``hashlib``'s defaults)."""
_DIGEST_PREFIX_BYTES: Final = 8
"""How much of a digest is compared: a random key starts like one of the ~250,000 known
digests once in 2^46, and a key cut from a digest (``| head -c 32``) is found too."""
_DIGEST_LINE = re.compile(r"([0-9a-fA-F]{16,128})(?:[ \t]+\*?-)?\s*")
"""Hex digits, as typed or as ``sha256sum`` prints them (``<hex>  -``), a newline after."""
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-([1-8])[0-9a-fA-F]{3}-"
                   r"[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
                   r"|(?<![0-9a-fA-F])[0-9a-fA-F]{12}([1-8])[0-9a-fA-F]{3}"
                   r"[89abAB][0-9a-fA-F]{15}(?![0-9a-fA-F])")
"""A UUID, with its hyphens anywhere, or as 32 hex digits standing alone (inside a longer run of
hex digits one in eight places looks like a UUID)."""
_CONSTANTS: Final = (
    "3141592653589793238462643383279502884197169399375105820974944592307816406286208998628034",
    "2718281828459045235360287471352662497757247093699959574966967627724076630353547594571382",
    "1414213562373095048801688724209698078569671875376948073176679737990732478462107038850387",
    "1618033988749894848204586834365638117720309179805762862135448622705260462818902449707207")
_EPOCH = re.compile(r"(?:[1-3]\d{9}|40\d{8}|410\d{7})(?:\d{3}(?!\d))?")
"""A Unix time of 2001-2100 in seconds, or in milliseconds when nothing follows."""


@functools.cache
def _digest_prefixes() -> dict[int, array[int]]:
    """By digest size in bytes, the sorted first :data:`_DIGEST_PREFIX_BYTES` of the digests
    of what people hash to "make a key" (computed once, when first needed: about half a
    second; 2 MB, not a set of 250,000 objects)."""
    texts = {variant for word in COMMON_WORDS | set(_COMMON_PASSWORDS.split())
             for variant in (word, word.capitalize(), word.upper())}
    texts.update(str(n) for n in range(10_000))
    texts.update(f"{n:0{width}d}" for width in (2, 3, 4) for n in range(10 ** (width - 1)))
    texts.add("")
    hashes = [getattr(hashlib, name) for name in _HASH_NAMES]
    found: dict[int, list[int]] = {}
    for text in texts:
        for data in (text.encode(), text.encode() + b"\n"):  # `echo` adds a newline
            for hash_ in hashes:
                digest = hash_(data).digest()
                found.setdefault(len(digest), []).append(
                    int.from_bytes(digest[:_DIGEST_PREFIX_BYTES], "big"))
    return {size: array("Q", sorted(prefixes)) for size, prefixes in found.items()}


def _is_common_digest(secret: str) -> bool:
    """Whether ``secret`` is, in hex or base64, a known digest (:func:`_digest_prefixes`) or
    the start of one."""
    line = _DIGEST_LINE.fullmatch(secret)
    raw = (bytes.fromhex(line.group(1)[:len(line.group(1)) // 2 * 2]) if line is not None
           else _key_bytes(secret))
    if raw is None or len(raw) < _DIGEST_PREFIX_BYTES:
        return False
    prefix = int.from_bytes(raw[:_DIGEST_PREFIX_BYTES], "big")
    for size, prefixes in _digest_prefixes().items():
        if len(raw) <= size:
            at = bisect_left(prefixes, prefix)
            if at < len(prefixes) and prefixes[at] == prefix:
                return True
    return False


def _bytes_bits(raw: bytes, *, _depth: int = 0) -> float:
    """A conservative estimate of the bits of ``raw`` (a key's decoded bytes): the cheapest of
    8 a byte, its shortest repeated block (``ab ab ab``), its distinct values and which ones
    they are (few values: ``00 ff ff 00``), and its first byte with the steps between bytes
    (a counting or arithmetic run: ``00 01 02 ...``, ``00 02 04 ...``). Random bytes have no
    repeated block and few repeated values, so they keep their 8 bits a byte."""
    n = len(raw)
    bits = 8.0 * n
    if n < 2:
        return bits
    distinct = len(set(raw))
    bits = min(bits, n * math.log2(distinct) + math.log2(math.comb(256, distinct)))
    if _depth < 2:
        period = next((p for p in range(1, n // 2 + 1) if raw[p:] == raw[:-p]), None)
        if period is not None:
            bits = min(bits, _bytes_bits(raw[:period], _depth=_depth + 1) + math.log2(n))
        steps = bytes((b - a) % 256 for a, b in pairwise(raw))
        bits = min(bits, 8 + _bytes_bits(steps, _depth=_depth + 1))
    return bits


def weak_reading(secret: str, below: float) -> str | None:
    """What makes ``secret`` guessable, when one of its encoded readings (a digest, bytes with a
    pattern, readable text) is worth fewer than ``below`` bits; for the message that refuses
    it."""
    if _is_common_digest(secret.strip()):
        return ("it is a digest (MD5, SHA-1, SHA-2, SHA-3 or BLAKE2) of a common word, "
                "password or number, or of nothing, in hex or base64")
    raw = _key_bytes(secret.strip())
    if raw is not None and len(raw) >= 4 and _bytes_bits(raw) + 2 < below:
        return ("it is the hex or base64 of bytes with a pattern (repeated, counting or "
                "of few values), not random bytes")
    text = _decoded_text(secret.strip())
    if text is not None and estimated_entropy_bits(text, _depth=1) + 2 < below:
        return "it is the hex or base64 of readable text"
    return None


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
        stripped = secret.strip()  # a key file's newline
        if stripped != secret:
            bits = min(bits, _estimate(stripped))
        raw = _key_bytes(stripped)
        if raw is not None and len(raw) >= 4:
            bits = min(bits, _bytes_bits(raw) + 2)
        decoded = _decoded_text(stripped)
        if decoded is not None:
            bits = min(bits, estimated_entropy_bits(decoded, _depth=_depth + 1) + 2)
    if _depth < 2 and _leet_words(secret) >= 2:
        # leetspeak: a letter spelled as a digit or symbol costs a bit where it is used
        swapped = sum(secret.count(c) for c in _LEET)
        plain = secret.translate(_LEET_TABLE)
        bits = min(bits, estimated_entropy_bits(plain, _depth=_depth + 1) + swapped)
    for stride in (2, 3):
        if len(secret) >= 4 * stride:
            bits = min(bits, sum(_estimate(secret[k::stride], part=True)
                                 for k in range(stride)) + 2)
    return bits


def _leet_words(secret: str) -> int:
    """How many common words of 4 letters or more ``secret`` spells in leetspeak (a random key
    spells none, or one by chance)."""
    plain = secret.translate(_LEET_TABLE)
    return sum(1 for word in _WORD.finditer(plain)
               if len(word.group()) >= 4 and word.group().lower() in COMMON_WORDS
               and plain[word.start():word.end()] != secret[word.start():word.end()])


def _key_bytes(secret: str) -> bytes | None:
    """The bytes ``secret`` is the hex or base64 (either alphabet, padded or not) of."""
    if _HEX.fullmatch(secret) and len(secret) % 2 == 0:
        return bytes.fromhex(secret)
    if _BASE64.fullmatch(secret):
        padded = secret.replace("-", "+").replace("_", "/")
        padded += "=" * (-len(padded.rstrip("=")) % 4 if not padded.endswith("=") else 0)
        try:
            return base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _decoded_text(secret: str) -> str | None:
    """The readable text ``secret`` is the base64 (either alphabet) or hex encoding of (a
    trailing newline dropped: ``echo text | base64`` encodes one)."""
    raw = _key_bytes(secret)
    if raw is None or len(raw) < 4:
        return None
    try:
        text = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() and len(text) >= 4 else None


def _constant_run(secret: str, i: int) -> int:
    """Length of the run at ``i`` of the digits of a well-known constant (from its start or
    from its first decimal)."""
    if not secret[i].isdigit() or i + 6 > len(secret) or not secret[i:i + 6].isdigit():
        return 0
    best = 0
    for digits in _CONSTANTS:
        for start in (0, 1):
            n = 0
            while (i + n < len(secret) and start + n < len(digits)
                   and secret[i + n] == digits[start + n]):
                n += 1
            best = max(best, n)
    return best


def _estimate(secret: str, *, part: bool = False) -> float:
    """The bits of one reading of ``secret``; a ``part`` (every second or third character of a
    secret) is no UUID: one in eight 32-digit runs of random hex looks like one."""
    if len(secret) >= 2 * _DIGEST_PREFIX_BYTES and _is_common_digest(secret):
        return COMMON_WORD_BITS
    per_char = _alphabet_bits(secret)
    bits, i, words = 0.0, 0, set()
    times = 0
    while i < len(secret):
        if (constant := _constant_run(secret, i)) >= 6:
            bits, i = bits + CONSTANT_BITS, i + constant
            continue
        if (not part and secret[i] in _HEX_DIGITS
                and (uuid := _UUID.match(secret, i)) is not None):
            version = int(uuid.group(1) or uuid.group(2))
            if version in (1, 6):
                bits += UUID_TIME_BITS if times == 0 else UUID_AGAIN_BITS
                times += 1
            elif version == 7:
                bits += 74.0 + (EPOCH_BITS + 10 if times == 0 else UUID_AGAIN_BITS)
                times += 1
            elif version in (3, 5):
                bits += COMMON_WORD_BITS + WORD_BITS
            else:
                bits += 122.0
            i = uuid.end()
            continue
        if secret[i] in "1234" and (epoch := _EPOCH.match(secret, i)) is not None:
            bits += EPOCH_BITS if times == 0 else UUID_AGAIN_BITS
            times += 1
            i = epoch.end()
            continue
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
            end = next((j for j in range(i + 1, number.end()) if _EPOCH.match(secret, j)),
                       number.end())
            bits, i = bits + (end - i) * min(per_char, DIGIT_BITS), end
            continue
        char = secret[i]
        bits += 2 if not char.isalnum() and char in secret[:i] else per_char
        i += 1
    return bits


__all__ = ["COMMON_WORDS", "COMMON_WORD_BITS", "DIGIT_BITS", "WORD_BITS", "YEAR_BITS",
           "estimated_entropy_bits", "weak_reading"]
