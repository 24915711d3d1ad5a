from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ocgate.errors import AuthFailed
from ocgate.passwd import CRYPT_ALPHABET, hash_password, verify_password

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "passwd" / "crypt_vectors.json").read_text()
)
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")

OCPASSWD_FORM = re.compile(r"^\$5\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{43}$")


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["hash"][:24])
def test_known_answer_vectors_verify(vector: dict[str, str]) -> None:
    verify_password(vector["password"], vector["hash"])


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["hash"][:24])
def test_known_answer_vectors_reject_wrong_password(vector: dict[str, str]) -> None:
    with pytest.raises(AuthFailed, match="wrong password"):
        verify_password(vector["password"] + "x", vector["hash"])


def test_vectors_cover_every_supported_scheme() -> None:
    schemes = {v["hash"][: v["hash"].index("$", 1) + 1] for v in VECTORS}
    assert schemes == {"$1$", "$5$", "$6$", "$2a$", "$y$"}


def test_hash_has_ocpasswd_form() -> None:
    hashed = hash_password("secret")
    assert OCPASSWD_FORM.match(hashed), hashed
    assert "rounds=" not in hashed


def test_hash_round_trips() -> None:
    hashed = hash_password("pässwörd")
    verify_password("pässwörd", hashed)
    with pytest.raises(AuthFailed):
        verify_password("passwörd", hashed)


def test_salt_comes_from_random_bytes_without_bias() -> None:
    # Byte b maps to CRYPT_ALPHABET[b % 64]: 0..15 and 64..79 give the same salt.
    first = hash_password("x", random_bytes=lambda n: bytes(range(n)))
    second = hash_password("x", random_bytes=lambda n: bytes(range(64, 64 + n)))
    assert first == second
    assert first.split("$")[2] == CRYPT_ALPHABET[:16]


def test_salts_differ_between_calls() -> None:
    assert hash_password("x") != hash_password("x")


def test_short_random_bytes_rejected() -> None:
    with pytest.raises(ValueError, match="wrong number"):
        hash_password("x", random_bytes=lambda n: b"\x00")


def test_hash_rejects_nul() -> None:
    with pytest.raises(ValueError, match="NUL"):
        hash_password("a\x00b")


def test_alphabet_is_the_crypt_alphabet() -> None:
    assert len(CRYPT_ALPHABET) == 64
    assert len(set(CRYPT_ALPHABET)) == 64
    assert CRYPT_ALPHABET.startswith("./0123456789")


@pytest.mark.parametrize(
    ("hashed", "reason"),
    [
        ("", "empty hash"),
        ("!$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "locked"),
        ("!", "locked"),
        ("abJnggxhB/yWI", "unsupported"),  # Traditional DES: only 8 characters count.
        ("_J9..CCCCXBrJUJV154M", "unsupported"),  # BSDi extended DES.
        ("$9$whatever", "unsupported"),
        ("$5$sälz$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "malformed"),
        ("$2b$12$abcdefghij", "malformed"),
        ("$5$saltstring", "malformed"),
        ("$5$saltstring$short", "malformed"),
        ("$5$rounds=10$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC", "malformed"),
        ("$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5 ", "malformed"),
        ("$1$", "malformed"),
    ],
)
def test_unusable_hashes_fail(hashed: str, reason: str) -> None:
    with pytest.raises(AuthFailed, match=reason):
        verify_password("Hello world!", hashed)


@pytest.mark.parametrize("password", ["a\x00b", "\udcff"])
def test_unhashable_passwords_fail(password: str) -> None:
    with pytest.raises(AuthFailed, match="not hashable"):
        verify_password(password, "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5")


def test_bcrypt_and_yescrypt_wrong_password() -> None:
    # Debian 12's passwd and mkpasswd write yescrypt; ocserv's crypt(3) verifies it, so must we.
    for vector in VECTORS:
        if vector["hash"].startswith(("$2a$", "$y$")):
            with pytest.raises(AuthFailed, match="wrong password"):
                verify_password(vector["password"].upper() + "!", vector["hash"])


def test_stdlib_crypt_is_not_imported() -> None:
    # A fresh interpreter with warnings as errors: importing and using the package must neither
    # import the deprecated stdlib crypt module nor warn.
    code = (
        "import sys; import ocgate.passwd as p, ocgate.auth; "
        "p.verify_password('x', p.hash_password('x')); "
        "assert 'crypt' not in sys.modules and '_crypt' not in sys.modules"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


@needs_openssl
@pytest.mark.parametrize("scheme", ["1", "5", "6"])
def test_openssl_hash_verifies(scheme: str) -> None:
    password = "correct horse battery staple"
    result = subprocess.run(
        [OPENSSL, "passwd", f"-{scheme}", "-stdin"],  # type: ignore[list-item]
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    hashed = result.stdout.strip()
    assert hashed.startswith(f"${scheme}$")
    verify_password(password, hashed)
    with pytest.raises(AuthFailed):
        verify_password(password.upper(), hashed)


@needs_openssl
def test_openssl_reproduces_our_hash() -> None:
    password = "Tr0ub4dor&3"
    hashed = hash_password(password)
    salt = hashed.split("$")[2]
    result = subprocess.run(
        [OPENSSL, "passwd", "-5", "-salt", salt, "-stdin"],  # type: ignore[list-item]
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == hashed
