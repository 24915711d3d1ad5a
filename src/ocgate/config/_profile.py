"""Profiles the gateway serves: ``user-profile``, ``service-profile-vpn-mgmt``, ``-nvm``.

Theory of operation: ocserv reads the ``user-profile`` file once, at configuration load, and
keeps its SHA-1 (``src/config.c``, ``calc_sha1_hash``); the login's ``complete`` reply lists it
in a ``<vpn-profile-manifest>`` and any ``GET /profiles/…`` with a valid session cookie returns
it. ocgate reads the file at the same moment, in the process that parses the line (the
supervisor for ocserv.conf, sec-mod for a per-user or per-group file), and keeps its bytes in the
parsed :class:`ProfileFile`: the process that answers the download (sec-mod, which runs the
login dialog) never opens a path named by a request, and a worker never opens a file at all.
A change of the file takes effect on reload (SIGHUP), as in ocserv.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass

from ocgate.config._values import ParseContext
from ocgate.errors import ConfigError

__all__ = ["MAX_PROFILE_BYTES", "ProfileFile", "parse_profile_file"]

MAX_PROFILE_BYTES = 1 << 20
"""A profile larger than this is refused (Cisco's are a few kilobytes)."""

_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True, slots=True)
class ProfileFile:
    """One profile file, read at configuration load.

    :param name: the file's base name: the last part of its download URL.
    :param path: where it was read from (messages only).
    :param data: its bytes, served as they are.
    :param sha1: SHA-1 of ``data``, upper-case hex (what the manifest carries).
    """

    name: str
    path: str
    data: bytes
    sha1: str

    def __repr__(self) -> str:
        return f"ProfileFile(name={self.name!r}, path={self.path!r}, sha1={self.sha1})"

    @classmethod
    def from_bytes(cls, name: str, data: bytes, *, path: str = "") -> ProfileFile:
        """A profile from its bytes; ``name`` must be one safe URL path component."""
        if _NAME.fullmatch(name) is None or name in (".", ".."):
            raise ConfigError(
                f"not a usable profile file name: {name!r}",
                expected="a file name of 1-128 characters from A-Z a-z 0-9 . _ -",
            )
        sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest().upper()
        return cls(name=name, path=path or name, data=data, sha1=sha1)


def parse_profile_file(value: str, ctx: ParseContext) -> ProfileFile:
    """A profile file: read now, at most :data:`MAX_PROFILE_BYTES`, its SHA-1 computed."""
    path = value if os.path.isabs(value) else os.path.join(ctx.base_dir, value)
    path = os.path.normpath(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PROFILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot read profile file {path!r}: {reason}",
            expected=f"a readable file (relative names are resolved against {ctx.base_dir})",
        ) from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ConfigError(
            f"profile file {path!r} is larger than {MAX_PROFILE_BYTES} bytes",
            expected="an XML client profile of a few kilobytes",
        )
    return ProfileFile.from_bytes(posixpath.basename(path), data, path=path)
