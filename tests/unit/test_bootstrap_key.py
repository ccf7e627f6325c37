"""The bootstrap API key must be a real secret: long and high-entropy, or the gateway refuses
to start (issue 17); keys are re-checked by id for long-lived streams."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import uuid
from pathlib import Path

import pytest

from alerts.keys import (
    MIN_BOOTSTRAP_BITS,
    MIN_BOOTSTRAP_LENGTH,
    KeyStore,
    Role,
    bootstrap_key_problem,
    estimated_entropy_bits,
)

WEAK = [
    "short",
    "sixteen-chars-ok",  # was enough before
    "a" * 40,
    "0123456789abcdef0123456789abcdef",
    "integration-admin-key-0123456789",
    "test-admin-key-for-handled-calls",
    "Password1234567890!Password1234567890!",
    "ab" * 20,
    "abc123" * 6,
    # Found by a fresh tester: long phrases of common words and a year, and digests of a
    # common word, looked random to the estimate.
    "homecare-gateway-bootstrap-admin-key-2026",
    "Homecare_Gateway_Admin_Password_2026!",
    "the-admin-password-for-the-gateway-is-secret",
    hashlib.md5(b"admin").hexdigest(),
    hashlib.sha1(b"password").hexdigest(),
    hashlib.sha256(b"homecare").hexdigest().upper(),
    "19491001-20261130-12345678-87654321",
    # Found by the next fresh tester: a sentence in capitalised words, interleaved sequences,
    # and the base64 of digits.
    "ThisIsTheAdminKeyForSiteNumberOneInBeijing2026",
    "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8",
    "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw",
    "aG9tZWNhcmUtZ2F0ZXdheS1hZG1pbi1rZXktMjAyNg",
    # Found by the fresh tester of issue 17: random-looking keys from guessable secrets: the
    # digest of a common password, digits of pi, time-based UUIDs, Unix times, leetspeak.
    hashlib.sha256(b"123456").hexdigest(),
    hashlib.md5(b"password1").hexdigest(),
    hashlib.sha1(b"2580").hexdigest(),
    "31415926535897932384626433832795028841971693993751",
    "3.14159265358979323846264338327950288419716939937510",
    "2.71828182845904523536028747135266249775724709369995",
    # (fixed values: every pytest-xdist worker must collect the same test ids)
    "4749c62e-edb2-11f1-a863-02fc00000001",  # uuid1()
    "4749fb6cedb211f1a86302fc00000001",  # uuid1().hex
    "4749fc5c-edb2-11f1-a863-02fc000000014749fcfc-edb2-11f1-a863-02fc00000001",
    str(uuid.uuid5(uuid.NAMESPACE_DNS, "homecare")),
    "1796148432" * 3,  # a Unix time in seconds, three times
    "179614853811717961485381241796148538131",  # three in milliseconds
    "1796148538117-1796148538124-1796148538131",
    "H0m3C4r3-G4t3w4y-B00tstr4p-K3y!-S3cr3t",
    "P@ssw0rd-F0r-Th3-G4t3w4y-4dm1n-2026!!",
]

_B64, _URL = base64.b64encode, base64.urlsafe_b64encode
DIGESTS = [
    # Found by the next fresh tester of issue 17: a digest in base64, of nothing, or of a word
    # with the newline `echo` adds; here every digest, encoding and such input of the class.
    hashlib.sha256(b"admin\n").hexdigest(),  # echo admin | sha256sum
    hashlib.sha256(b"admin\n").hexdigest() + "  -\n",  # as sha256sum prints it
    hashlib.sha256(b"").hexdigest(),
    hashlib.md5(b"").hexdigest().upper(),
    _B64(hashlib.sha256(b"admin").digest()).decode(),  # openssl dgst -sha256 -binary | base64
    _B64(hashlib.sha256(b"admin").digest()).decode() + "\n",
    _B64(hashlib.sha1(b"password\n").digest()).decode().rstrip("="),
    _URL(hashlib.sha512(b"123456").digest()).decode(),
    _URL(hashlib.sha384(b"homecare\n").digest()).decode().rstrip("="),
    hashlib.sha224(b"secret").hexdigest(),
    hashlib.sha3_256(b"gateway").hexdigest(),
    _B64(hashlib.sha3_256(b"changeme\n").digest()).decode(),
    hashlib.blake2b(b"root").hexdigest(),
    _URL(hashlib.blake2s(b"test\n").digest()).decode(),
    hashlib.blake2s(b"qwerty").hexdigest(),
    hashlib.sha256(b"2580\n").hexdigest()[:40],  # the start of one
]
PATTERNED_BYTES = [
    _B64(bytes(range(32))).decode(),  # found by the same tester
    _URL(bytes(range(32))).decode().rstrip("="),
    bytes(range(32)).hex(),
    _B64(bytes(range(0, 96, 3))).decode(),  # a constant step
    bytes(range(255, 223, -1)).hex(),  # counting down
    _B64(bytes(32)).decode(),
    _B64(b"\x13\x37\xc0\xde\x42" * 7).decode(),  # a repeated block
    bytes([0x00, 0xff, 0x0f, 0xf0] * 2 + [0xff, 0x00, 0xf0, 0x0f] * 6).hex(),  # few values
    _B64(b"homecare gateway admin key 2026\n").decode(),  # echo ... | base64
    _B64(hashlib.md5(b"admin").hexdigest().encode()).decode(),  # md5sum | base64 (its hex)
]


@pytest.mark.parametrize("token", WEAK)
def test_a_weak_bootstrap_key_is_refused_with_the_command_to_make_one(
        tmp_path: Path, token: str) -> None:
    problem = bootstrap_key_problem(token)
    assert problem is not None
    assert "secrets.token_urlsafe(32)" in problem
    with pytest.raises(ValueError, match=r"token_urlsafe\(32\)"):
        KeyStore(tmp_path / "keys.sqlite3", bootstrap_token=token)


@pytest.mark.parametrize("token", DIGESTS + PATTERNED_BYTES)
def test_an_encoded_digest_of_a_common_word_or_patterned_bytes_is_refused_saying_so(
        tmp_path: Path, token: str) -> None:
    problem = bootstrap_key_problem(token)
    assert problem is not None
    assert "secrets.token_urlsafe(32)" in problem
    assert "it is " in problem, "the message says what the key is"
    assert ("digest" in problem) == (token in DIGESTS)
    with pytest.raises(ValueError, match=r"token_urlsafe\(32\)"):
        KeyStore(tmp_path / "keys.sqlite3", bootstrap_token=token)


def test_random_keys_in_every_encoding_are_accepted() -> None:
    """The readings of a key's decoded bytes and of digests refuse no random key: 32 random
    bytes as ``openssl rand -base64 32`` (also with its newline), hex or base64url prints
    them."""
    for _ in range(500):
        raw = os.urandom(32)
        for token in (base64.b64encode(raw).decode(), base64.b64encode(raw).decode() + "\n",
                      raw.hex(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
                      secrets.token_urlsafe(32), secrets.token_hex(32)):
            assert bootstrap_key_problem(token) is None, token


def test_generated_keys_are_accepted(tmp_path: Path) -> None:
    for _ in range(500):  # 50,000 of each measured once: lowest 144 and 198 bits
        assert bootstrap_key_problem(secrets.token_urlsafe(32)) is None
        assert bootstrap_key_problem(secrets.token_hex(32)) is None
    token = secrets.token_urlsafe(32)
    store = KeyStore(tmp_path / "keys.sqlite3", bootstrap_token=token)
    key = store.authenticate(token)
    assert key is not None
    assert key.role is Role.ADMIN


def test_random_uuids_and_random_hex_keep_their_strength() -> None:
    """A random UUID (version 4) is 122 bits; a UUID-shaped run inside random hex (one in eight
    places) is not taken for a time-based one, nor hex digits for leetspeak."""
    assert estimated_entropy_bits(str(uuid.uuid4()) + str(uuid.uuid4())) >= 2 * 122
    assert bootstrap_key_problem(str(uuid.uuid4()) + str(uuid.uuid4())) is None
    for _ in range(500):
        assert estimated_entropy_bits(secrets.token_hex(32)) >= MIN_BOOTSTRAP_BITS + 40


def test_the_estimate_sees_repeats_sequences_and_words() -> None:
    assert estimated_entropy_bits("a" * 64) < 20
    assert estimated_entropy_bits("abcdefghijklmnopqrstuvwxyz") < 20
    random_bits = estimated_entropy_bits(secrets.token_urlsafe(32))
    assert random_bits >= MIN_BOOTSTRAP_BITS
    assert estimated_entropy_bits("correct-horse-battery-staple") < MIN_BOOTSTRAP_BITS
    assert len(secrets.token_urlsafe(32)) >= MIN_BOOTSTRAP_LENGTH


def test_a_key_is_active_until_revoked_by_id(tmp_path: Path) -> None:
    bootstrap = secrets.token_urlsafe(32)
    store = KeyStore(tmp_path / "keys.sqlite3", bootstrap_token=bootstrap)
    key, token = store.create("alice", Role.VIEWER, actor="admin")
    assert store.is_active(key.id)
    assert store.verify(token) == (key, "ok")
    store.revoke("alice", actor="admin")
    assert not store.is_active(key.id)
    assert store.verify(token) == (None, "revoked")
    assert store.verify("hck_" + "0" * 12 + "_" + "A" * 43) == (None, "unknown")
    assert store.verify("not-a-key") == (None, "unknown")
    assert store.is_active("bootstrap")
    assert not KeyStore(tmp_path / "keys.sqlite3").is_active("bootstrap")
    assert not store.is_active("no-such-id")
