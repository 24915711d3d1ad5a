from __future__ import annotations

import io
import re
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import png  # type: ignore[import-untyped]
import pyotp
import pytest

from ocgate.otp import DEFAULT_OTP_FILE, load_users_file, main


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def users(tmp_path: Path) -> Path:
    return tmp_path / "users.oath"


def uri_of(out: str) -> str:
    match = re.search(r"^otpauth://\S+$", out, re.MULTILINE)
    assert match is not None, out
    return match.group(0)


def test_default_file() -> None:
    assert DEFAULT_OTP_FILE == "/etc/ocserv/users.oath"


def test_enroll_totp_then_verify_once(users: Path, tmp_path: Path) -> None:
    image = tmp_path / "alice.png"
    code, out, err = run(["enroll", "alice", "-f", str(users), "--png", str(image)])
    assert (code, err) == (0, "")
    uri = uri_of(out)
    parsed = urlparse(uri)
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("otpauth", "totp", "/ocgate:alice")
    assert parse_qs(parsed.query)["issuer"] == ["ocgate"]
    otp = pyotp.parse_uri(uri)
    assert isinstance(otp, pyotp.TOTP)
    assert f"--token-mode=totp --token-secret=base32:{otp.secret}" in out
    assert f"Secret (base32): {otp.secret}" in out
    assert "█" in out  # the QR code, as text, although stdout is not a TTY

    entry = load_users_file(str(users)).entries[0]
    assert (entry.type, entry.username, entry.pin, entry.counter) == (
        "HOTP/T30",
        "alice",
        "-",
        None,
    )
    assert len(entry.secret) == 20
    assert pyotp.TOTP(otp.secret).byte_secret() == entry.secret
    assert stat.S_IMODE(users.stat().st_mode) == 0o600

    current = otp.now()
    assert run(["verify", "alice", current, "-f", str(users)]) == (0, "OK\n", "")
    code, out, err = run(["verify", "alice", current, "-f", str(users)])
    assert (code, out) == (1, "")
    assert "replayed" in err

    assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    width, height, _rows, info = png.Reader(bytes=image.read_bytes()).read()
    assert width == height > 21
    assert info["greyscale"]
    assert stat.S_IMODE(image.stat().st_mode) == 0o600


def test_enroll_hotp_8_digits(users: Path) -> None:
    code, out, err = run(["enroll", "bob", "--hotp", "--digits", "8", "-f", str(users)])
    assert code == 0
    assert "only makes 6-digit codes" in err
    uri = uri_of(out)
    query = parse_qs(urlparse(uri).query)
    assert (query["counter"], query["digits"]) == (["0"], ["8"])
    otp = pyotp.parse_uri(uri)
    assert isinstance(otp, pyotp.HOTP)
    assert f"--token-mode=hotp --token-secret=base32:{otp.secret},0" in out
    entry = load_users_file(str(users)).entries[0]
    assert (entry.type, entry.counter, entry.digits) == ("HOTP/E/8", 0, 8)
    assert run(["verify", "bob", otp.at(3), "-f", str(users)])[0] == 0
    assert run(["verify", "bob", otp.at(2), "-f", str(users)])[0] == 1
    assert run(["verify", "bob", otp.at(4), "-f", str(users)])[0] == 0


def test_enroll_totp_period_60(users: Path) -> None:
    code, out, _ = run(
        ["enroll", "carol", "--period", "60", "--issuer", "Example VPN", "-f", str(users)]
    )
    assert code == 0
    otp = pyotp.parse_uri(uri_of(out))
    assert isinstance(otp, pyotp.TOTP)
    assert otp.interval == 60
    assert otp.issuer == "Example VPN"
    assert load_users_file(str(users)).entries[0].type == "HOTP/T60"
    assert run(["verify", "carol", otp.now(), "-f", str(users)])[0] == 0


def test_enroll_refuses_existing_user_unless_forced(users: Path) -> None:
    users.write_text("# keep me\nHOTP alice - 00\nHOTP bob - 00\n")
    code, _, err = run(["enroll", "alice", "-f", str(users)])
    assert code == 1
    assert "already exists" in err
    assert run(["enroll", "alice", "--force", "-f", str(users)])[0] == 0
    text = users.read_text()
    assert text.startswith("# keep me\nHOTP/T30\talice\t-\t")
    assert text.endswith("HOTP bob - 00\n")


@pytest.mark.parametrize("name", ["", "a b", "#x", "tab\there", "nul\x00"])
def test_enroll_rejects_bad_names(users: Path, name: str) -> None:
    code, _, err = run(["enroll", name, "-f", str(users)])
    assert code == 1
    assert "invalid user name" in err
    assert not users.exists()


def test_remove_and_list(users: Path) -> None:
    users.write_text("HOTP alice - 00 5\nHOTP/T30/8 bob 1234 abcdef\nHOTP/E/8 carol - 0102\n")
    code, out, _ = run(["list", "-f", str(users)])
    assert code == 0
    assert out.splitlines() == [
        "alice\tHOTP\tHOTP, 6 digits, next counter 5",
        "bob\tHOTP/T30/8\tTOTP, 8 digits, 30 s",
        "carol\tHOTP/E/8\tHOTP, 8 digits, next counter 0",
    ]
    assert "abcdef" not in out
    assert "1234" not in out
    assert run(["remove", "bob", "-f", str(users)]) == (0, f"Removed bob from {users}\n", "")
    assert [e.username for e in load_users_file(str(users)).entries] == ["alice", "carol"]
    code, _, err = run(["remove", "bob", "-f", str(users)])
    assert code == 1
    assert "not found" in err


def test_missing_file_and_bad_usage(users: Path) -> None:
    code, _, err = run(["list", "-f", str(users)])
    assert code == 1
    assert "no such file" in err
    code, _, err = run(["verify", "alice", "123456", "-f", str(users)])
    assert code == 1
    assert "no such file" in err
    code, _, err = run(["frobnicate"])
    assert code == 2
    assert "usage:" in err
    assert run(["enroll", "x", "--digits", "5"])[0] == 2
    assert run([])[0] == 2


def test_help(users: Path) -> None:
    code, out, _ = run(["--help"])
    assert code == 0
    assert "enroll" in out
    code, out, _ = run(["enroll", "--help"])
    assert code == 0
    assert "--png" in out


def test_verify_wrong_code(users: Path) -> None:
    users.write_text("HOTP alice - 00\n")
    code, _, err = run(["verify", "alice", "000000", "-f", str(users)])
    assert code == 1
    assert "refused" in err
    assert run(["verify", "alice", "328482", "-f", str(users)])[0] == 0


def test_enroll_on_an_ascii_terminal(users: Path) -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii", errors="strict", write_through=True)
    assert main(["enroll", "dave", "-f", str(users)], stdout=out, stderr=io.StringIO()) == 0
    text = raw.getvalue().decode("ascii")
    assert "no QR code" in text
    assert uri_of(text).startswith("otpauth://totp/ocgate:dave?")
