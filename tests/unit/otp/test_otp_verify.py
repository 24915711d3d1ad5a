from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _otp_liboath import authenticate, hotp, needs_liboath
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocgate.errors import AuthFailed, ConfigError
from ocgate.otp import OtpVerifier, generate_otp, load_users_file
from ocgate.otp._verify import match_hotp, match_totp

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "vectors" / "otp" / "otp_vectors.json").read_text()
)
RFC_SECRET = b"12345678901234567890"
RFC_HEX = RFC_SECRET.hex()
NOW = 1_700_000_000.0  # a step boundary is far away: 1700000000 % 30 == 20
STEP = int(NOW // 30)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "users.oath"
    path.write_text(text)
    return path


def totp(step: int, digits: int = 6, secret: bytes = RFC_SECRET) -> str:
    return generate_otp(secret, step, digits)


# -- vectors -----------------------------------------------------------------------------------


def test_rfc4226_vectors() -> None:
    vec = VECTORS["rfc4226_hotp_sha1"]
    secret = vec["secret_ascii"].encode()
    codes = [generate_otp(secret, c, vec["digits"]) for c in range(10)]
    assert codes == vec["codes_by_counter"]


def test_rfc6238_vectors() -> None:
    vec = VECTORS["rfc6238_totp_sha1"]
    secret = vec["secret_ascii"].encode()
    for t, code in vec["codes_by_time"]:
        assert generate_otp(secret, t // vec["period"], vec["digits"]) == code


@pytest.mark.parametrize(("t", "code"), VECTORS["rfc6238_totp_sha1"]["codes_by_time"])
def test_rfc6238_vectors_through_the_users_file(tmp_path: Path, t: int, code: str) -> None:
    path = write(tmp_path, f"HOTP/T30/8 rfc - {RFC_HEX}\n")
    OtpVerifier(path).verify("rfc", code, float(t))
    entry = load_users_file(str(path)).entries[0]
    assert (entry.counter, entry.last_otp) == (t // 30, code)


@needs_liboath
def test_vectors_match_liboath() -> None:
    for counter, code in enumerate(VECTORS["rfc4226_hotp_sha1"]["codes_by_counter"]):
        assert hotp(RFC_SECRET, counter, 6) == code
    for t, code in VECTORS["rfc6238_totp_sha1"]["codes_by_time"]:
        assert hotp(RFC_SECRET, t // 30, 8) == code
    for counter in (0, 1, 2**32 + 7):
        for digits in (6, 7, 8):
            assert hotp(b"\x00", counter, digits) == generate_otp(b"\x00", counter, digits)


def test_ocserv_regression_file(tmp_path: Path) -> None:
    vec = VECTORS["ocserv_test_otp"]
    path = write(tmp_path, vec["users_file"])
    verifier = OtpVerifier(path)
    with pytest.raises(AuthFailed):
        verifier.verify("falsetest", vec["first_code"], NOW)
    with pytest.raises(AuthFailed):
        verifier.verify(vec["user"], vec["wrong_code"], NOW)
    verifier.verify(vec["user"], vec["first_code"], NOW)
    verifier.verify("testuser", vec["first_code"], NOW)  # a separate line, its own counter
    with pytest.raises(AuthFailed, match="replayed"):
        verifier.verify(vec["user"], vec["first_code"], NOW)


# -- TOTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_totp_window_accepts_one_step_each_side(tmp_path: Path, offset: int) -> None:
    path = write(tmp_path, f"HOTP/T30 alice - {RFC_HEX}\n")
    OtpVerifier(path).verify("alice", totp(STEP + offset), NOW)


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_totp_window_refuses_two_steps_away(tmp_path: Path, offset: int) -> None:
    path = write(tmp_path, f"HOTP/T30 alice - {RFC_HEX}\n")
    with pytest.raises(AuthFailed, match="wrong code"):
        OtpVerifier(path).verify("alice", totp(STEP + offset), NOW)


def test_totp_wider_window(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP/T30 alice - {RFC_HEX}\n")
    OtpVerifier(path, window=20).verify("alice", totp(STEP - 20), NOW)


def test_totp_replay_and_older_steps_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP/T30 alice - {RFC_HEX}\n")
    verifier = OtpVerifier(path)
    verifier.verify("alice", totp(STEP), NOW)
    with pytest.raises(AuthFailed, match="replayed"):
        verifier.verify("alice", totp(STEP), NOW + 5)
    with pytest.raises(AuthFailed, match="wrong code"):
        verifier.verify("alice", totp(STEP - 1), NOW + 5)  # older than the last one used
    verifier.verify("alice", totp(STEP + 1), NOW + 5)  # the next step is fine
    with pytest.raises(AuthFailed):
        verifier.verify("alice", totp(STEP), NOW + 30)  # still older


def test_totp_60s_and_8_digits(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP/T60/8 alice - {RFC_HEX}\n")
    verifier = OtpVerifier(path)
    with pytest.raises(AuthFailed):
        verifier.verify("alice", totp(int(NOW // 60), 6), NOW)  # 6 digits: malformed
    verifier.verify("alice", totp(int(NOW // 60), 8), NOW)


def test_totp_liboath_lastotp_rule(tmp_path: Path) -> None:
    # A file written by liboath: COUNTER is a running sum, only LASTOTP tells the step used.
    path = write(tmp_path, f"HOTP/T30 alice - {RFC_HEX} 1 {totp(STEP)} 2023-11-14T22:13:20L\n")
    verifier = OtpVerifier(path)
    with pytest.raises(AuthFailed):
        verifier.verify("alice", totp(STEP - 1), NOW)
    verifier.verify("alice", totp(STEP + 1), NOW)


def test_totp_near_epoch(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP/T30 alice - {RFC_HEX}\n")
    OtpVerifier(path).verify("alice", totp(0), 10.0)


# -- HOTP ---------------------------------------------------------------------------------------


def test_hotp_lookahead_resync(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP alice - {RFC_HEX} 10\n")
    verifier = OtpVerifier(path)
    verifier.verify("alice", generate_otp(RFC_SECRET, 15, 6), NOW)
    assert load_users_file(str(path)).entries[0].counter == 16
    with pytest.raises(AuthFailed):
        verifier.verify("alice", generate_otp(RFC_SECRET, 13, 6), NOW)
    with pytest.raises(AuthFailed):
        verifier.verify("alice", generate_otp(RFC_SECRET, 16 + 21, 6), NOW)  # past look-ahead
    verifier.verify("alice", generate_otp(RFC_SECRET, 16 + 20, 6), NOW)


def test_hotp_lookahead_parameter(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP alice - {RFC_HEX}\n")
    with pytest.raises(AuthFailed):
        OtpVerifier(path, hotp_lookahead=0).verify("alice", generate_otp(RFC_SECRET, 1, 6), NOW)
    OtpVerifier(path, hotp_lookahead=0).verify("alice", generate_otp(RFC_SECRET, 0, 6), NOW)


def test_hotp_counter_at_the_top(tmp_path: Path) -> None:
    top = 2**64 - 1
    path = write(tmp_path, f"HOTP alice - {RFC_HEX} {top}\n")
    OtpVerifier(path).verify("alice", generate_otp(RFC_SECRET, top, 6), NOW)
    assert load_users_file(str(path)).entries[0].counter == top


def test_match_helpers() -> None:
    assert match_hotp(RFC_SECRET, 6, "969429", counter=0, lookahead=5) == 3
    assert match_hotp(RFC_SECRET, 6, "969429", counter=4, lookahead=5) is None
    assert match_totp(RFC_SECRET, 8, "94287082", step=1, window=1) == 1
    assert match_totp(RFC_SECRET, 8, "94287082", step=1, window=1, lowest=2) is None


# -- users, PINs and malformed codes ------------------------------------------------------------


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", " 755224", "\udc80"])
def test_malformed_codes_refused(tmp_path: Path, code: str) -> None:
    path = write(tmp_path, f"HOTP alice - {RFC_HEX}\n")
    with pytest.raises(AuthFailed):
        OtpVerifier(path).verify("alice", code, NOW)


def test_unknown_user(tmp_path: Path) -> None:
    path = write(tmp_path, f"# HOTP bob - {RFC_HEX}\nHOTP alice - {RFC_HEX}\n")
    verifier = OtpVerifier(path)
    with pytest.raises(AuthFailed, match="unknown user"):
        verifier.verify("bob", "755224", NOW)
    assert verifier.has_user("alice")
    assert not verifier.has_user("bob")
    entry = verifier.entry("alice")
    assert entry is not None
    assert entry.username == "alice"
    assert verifier.entry("bob") is None
    assert verifier.path == str(path)


def test_pin_ignored_like_ocserv_and_liboath_rule_on_request(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP alice 1234 {RFC_HEX}\nHOTP bob - {RFC_HEX}\nHOTP carol + 00\n")
    verifier = OtpVerifier(path)
    verifier.verify("alice", "755224", NOW)  # ocserv passes passwd=NULL: the PIN is not checked
    with pytest.raises(AuthFailed):
        verifier.verify("alice", "287082", NOW, pin="9999")
    verifier.verify("alice", "287082", NOW, pin="1234")
    with pytest.raises(AuthFailed):
        verifier.verify("bob", "755224", NOW, pin="x")  # "-" means no PIN
    verifier.verify("bob", "755224", NOW, pin="")
    verifier.verify("carol", "328482", NOW, pin="anything")  # "+" = verified elsewhere


def test_several_lines_for_one_user(tmp_path: Path) -> None:
    # liboath tries every line of the user in order and updates the one that matched.
    path = write(tmp_path, f"HOTP alice - 00\nHOTP alice - {RFC_HEX}\n")
    OtpVerifier(path).verify("alice", "755224", NOW)
    first, second = load_users_file(str(path)).entries
    assert (first.counter, second.counter) == (None, 1)


def test_bad_parameters(tmp_path: Path) -> None:
    path = write(tmp_path, "HOTP a - 00\n")
    with pytest.raises(ConfigError):
        OtpVerifier(path, window=-1)
    with pytest.raises(ConfigError, match="no such file"):
        OtpVerifier(tmp_path / "missing")


# -- persistence --------------------------------------------------------------------------------


def test_state_survives_a_reload(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP alice - {RFC_HEX}\nHOTP/T30 bob - {RFC_HEX}\n")
    OtpVerifier(path).verify("alice", "755224", NOW)
    OtpVerifier(path).verify("bob", totp(STEP), NOW)
    fresh = OtpVerifier(path)
    with pytest.raises(AuthFailed):
        fresh.verify("alice", "755224", NOW)
    with pytest.raises(AuthFailed):
        fresh.verify("bob", totp(STEP), NOW)
    with pytest.raises(AuthFailed):
        fresh.verify("bob", totp(STEP - 1), NOW)
    alice, bob = load_users_file(str(path)).entries
    assert (alice.counter, alice.last_otp) == (1, "755224")
    assert (bob.counter, bob.last_otp) == (STEP, totp(STEP))
    assert alice.last_time is not None


def test_file_changes_are_picked_up(tmp_path: Path) -> None:
    path = write(tmp_path, "HOTP alice - 00\n")
    verifier = OtpVerifier(path)
    assert not verifier.has_user("bob")
    path.write_text("HOTP alice - 00\nHOTP bob - 00 0 000000 2020-01-01T00:00:00L\n")
    assert verifier.has_user("bob")
    path.write_text("HOTP/T99 broken\n")
    with pytest.raises(ConfigError):
        verifier.has_user("bob")
    with pytest.raises(AuthFailed, match="unusable"):
        verifier.verify("alice", "328482", NOW)
    path.unlink()
    with pytest.raises(AuthFailed, match="no such file"):
        verifier.verify("alice", "328482", NOW)


def test_reset_of_the_file_never_rewinds_in_memory(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP alice - {RFC_HEX}\n")
    verifier = OtpVerifier(path)
    verifier.verify("alice", "755224", NOW)
    verifier.verify("alice", "287082", NOW)
    path.write_text(f"HOTP alice - {RFC_HEX}\n")  # e.g. a backup restored over the file
    with pytest.raises(AuthFailed):
        verifier.verify("alice", "755224", NOW)


def test_crash_between_write_and_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = f"HOTP alice - {RFC_HEX}\nHOTP/T30 bob - {RFC_HEX}\n"
    path = write(tmp_path, original)
    verifier = OtpVerifier(path)

    def crash(src: str, dst: str) -> None:
        raise OSError(5, "simulated crash before rename")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", crash)
        with pytest.raises(AuthFailed, match="could not record"):
            verifier.verify("alice", "755224", NOW)
        with pytest.raises(AuthFailed, match="could not record"):
            verifier.verify("bob", totp(STEP), NOW)
    assert path.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.oath", "users.oath.ocgate.lock"]
    # The codes were consumed in memory although the disk still has the old state.
    with pytest.raises(AuthFailed):
        verifier.verify("alice", "755224", NOW)
    with pytest.raises(AuthFailed):
        verifier.verify("bob", totp(STEP), NOW)
    verifier.verify("alice", "287082", NOW)
    verifier.verify("bob", totp(STEP + 1), NOW)
    alice, bob = load_users_file(str(path)).entries
    assert (alice.counter, bob.counter) == (2, STEP + 1)


# -- concurrency --------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
def test_concurrent_logins_with_one_code(tmp_path: Path, shared: bool) -> None:
    path = write(tmp_path, f"HOTP/T30 alice - {RFC_HEX}\nHOTP bob - {RFC_HEX}\n")
    verifiers = [OtpVerifier(path)] * 8 if shared else [OtpVerifier(path) for _ in range(8)]
    barrier = threading.Barrier(len(verifiers))
    results: list[str] = []
    lock = threading.Lock()

    def login(verifier: OtpVerifier, user: str, code: str) -> None:
        barrier.wait()
        try:
            verifier.verify(user, code, NOW)
            outcome = "ok"
        except AuthFailed:
            outcome = "refused"
        with lock:
            results.append(outcome)

    for user, code in (("alice", totp(STEP)), ("bob", "755224")):
        results.clear()
        threads = [threading.Thread(target=login, args=(v, user, code)) for v in verifiers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["ok"] + ["refused"] * (len(verifiers) - 1)
    # No lost update: both users' lines carry their new state.
    alice, bob = load_users_file(str(path)).entries
    assert (alice.counter, bob.counter) == (STEP, 1)


# -- fuzz ---------------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(user=st.sampled_from(["alice", "bob", ""]) | st.text(max_size=5), code=st.text(max_size=10))
def test_verify_fuzz_raises_only_auth_failed(tmp_path: Path, user: str, code: str) -> None:
    path = tmp_path / "fuzz.oath"
    if not path.exists():
        path.write_text(f"HOTP alice - {RFC_HEX}\nHOTP/T30/8 bob - {RFC_HEX}\n")
    with contextlib.suppress(AuthFailed):
        OtpVerifier(path).verify(user, code, NOW)


# -- interoperability with liboath (what ocserv runs) -------------------------------------------


@needs_liboath
def test_hotp_files_are_shared_with_liboath(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP alice - {RFC_HEX}\n")
    verifier = OtpVerifier(path)
    verifier.verify("alice", "755224", NOW)  # ocgate: counter 0
    assert authenticate(str(path), "alice", "755224", 20) == "OATH_REPLAYED_OTP"
    assert authenticate(str(path), "alice", "287082", 20) == "OATH_OK"  # liboath: counter 1
    with pytest.raises(AuthFailed, match="replayed"):
        verifier.verify("alice", "287082", NOW)  # liboath stored the used counter + LASTOTP
    verifier.verify("alice", "359152", NOW)  # counter 2
    assert authenticate(str(path), "alice", "359152", 20) == "OATH_REPLAYED_OTP"
    assert authenticate(str(path), "alice", "287082", 20) == "OATH_INVALID_OTP"


@needs_liboath
def test_totp_files_are_shared_with_liboath(tmp_path: Path) -> None:
    path = write(tmp_path, f"HOTP/T30 alice - {RFC_HEX}\n")
    now = time.time()
    step = int(now // 30)
    verifier = OtpVerifier(path, window=2)
    verifier.verify("alice", totp(step), now)
    assert authenticate(str(path), "alice", totp(step), 1) == "OATH_REPLAYED_OTP"
    assert authenticate(str(path), "alice", totp(step + 1), 2) == "OATH_OK"
    with pytest.raises(AuthFailed):
        verifier.verify("alice", totp(step + 1), now)
    with pytest.raises(AuthFailed):
        verifier.verify("alice", totp(step), now)
    verifier.verify("alice", totp(step + 2), now)
    assert load_users_file(str(path)).entries[0].counter == step + 2
