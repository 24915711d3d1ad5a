"""liboath (the library ocserv links) through ctypes: the independent checker of these tests."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import pytest


def _load() -> Any:
    for name in ("liboath.so.0", ctypes.util.find_library("oath")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if lib.oath_init() != 0:
            continue
        lib.oath_authenticate_usersfile.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_long),
        ]
        lib.oath_strerror_name.restype = ctypes.c_char_p
        lib.oath_hotp_generate.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint64,
            ctypes.c_uint,
            ctypes.c_bool,
            ctypes.c_size_t,
            ctypes.c_char_p,
        ]
        return lib
    return None


LIB = _load()
needs_liboath = pytest.mark.skipif(LIB is None, reason="liboath.so.0 is not installed")


def hotp(secret: bytes, counter: int, digits: int) -> str:
    out = ctypes.create_string_buffer(16)
    dynamic_truncation = ctypes.c_size_t(-1).value  # OATH_HOTP_DYNAMIC_TRUNCATION = SIZE_MAX
    rc = LIB.oath_hotp_generate(
        secret, len(secret), counter, digits, False, dynamic_truncation, out
    )
    assert rc == 0
    return out.value.decode()


def authenticate(path: str, user: str, otp: str, window: int) -> str:
    """Return liboath's result name, e.g. ``OATH_OK`` or ``OATH_REPLAYED_OTP`` (ocserv's call)."""
    last = ctypes.c_long(0)
    rc = LIB.oath_authenticate_usersfile(
        path.encode(), user.encode(), otp.encode(), window, None, ctypes.byref(last)
    )
    name: bytes = LIB.oath_strerror_name(rc)
    return name.decode()
