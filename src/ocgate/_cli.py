"""The ``ocgate`` command: one entry point, one subcommand per ocserv tool it replaces."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from ocgate._version import __version__

__all__ = ["main"]

_USAGE = f"""\
usage: ocgate [-h] [-v] COMMAND [ARGS...]

ocgate {__version__}: an AnyConnect-protocol VPN gateway, drop-in for ocserv.

commands:
  serve        run the gateway (ocserv's flags: -c CONFIG -f -p PIDFILE -d LEVEL -t)
  passwd       manage the password file (ocpasswd's flags: -c FILE -g GROUPS -d -l -u USER)
  otp          manage the OTP users file (enroll USER, remove USER, verify USER CODE, list)
  ctl          control a running gateway (occtl's commands: show users, disconnect user NAME, ...)
  quickstart   write a demo configuration, certificate and user, and print how to connect
  nvm          NVM telemetry collector: `nvm serve -c CONFIG`, `nvm query [filters]`
  profile      write AnyConnect profiles: `profile client|mgmt|nvm -o FILE ...`, `profile check`

Run `ocgate COMMAND --help` for the options of each command.
"""


def _serve(argv: Sequence[str]) -> int:
    from ocgate.daemon import serve

    return serve(argv)


def _passwd(argv: Sequence[str]) -> int:
    from ocgate.passwd import main as passwd_main

    return passwd_main(list(argv))


def _otp(argv: Sequence[str]) -> int:
    from ocgate.otp import main as otp_main

    return otp_main(list(argv))


def _ctl(argv: Sequence[str]) -> int:
    from ocgate.control import main as ctl_main

    return ctl_main(list(argv))


def _quickstart(argv: Sequence[str]) -> int:
    from ocgate._quickstart import quickstart

    return quickstart(argv)


def _nvm(argv: Sequence[str]) -> int:
    from ocgate.nvm._cli import main as nvm_main

    return nvm_main(argv)


def _profile(argv: Sequence[str]) -> int:
    from ocgate.profiles._cli import main as profile_main

    return profile_main(argv)


_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "serve": _serve,
    "passwd": _passwd,
    "otp": _otp,
    "ctl": _ctl,
    "quickstart": _quickstart,
    "nvm": _nvm,
    "profile": _profile,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_USAGE, end="")
        return 0 if args else 2
    if args[0] in {"-v", "--version"}:
        print(f"ocgate {__version__}")
        return 0
    command = _COMMANDS.get(args[0])
    if command is None:
        print(f"ocgate: unknown command {args[0]!r}\n\n{_USAGE}", end="", file=sys.stderr)
        return 2
    return command(args[1:])
