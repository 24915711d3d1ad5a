"""Read an ocserv.conf: tokens → option table → draft → :class:`Config`.

Theory of operation: the file is processed line by line as ocserv does, stopping at the first error.
Each ``key = value`` is looked up in :data:`~ocgate.config._options.OPTIONS`; a key ocserv does not
know is an error (ocserv only warns, but a typo in a VPN gateway's configuration should not pass
silently). The value is parsed and recorded, then the key's status decides
(:class:`~ocgate.config._options.Status`): an ignored key (no-op) produces one warning; a refused
key whose deciding line (the last, as ocserv reads it) holds anything but its harmless value is a
``ConfigError`` naming file:line and the reason, once the whole file is read. ``[vhost:NAME]``
sections are skipped with one warning per section. Finally
:func:`~ocgate.config._finish.build_config` applies the cross-key rules.

:func:`load_collector_config` reads the same file for ``ocgate nvm serve``: only the collector keys
are parsed, the other keys ocserv knows are skipped unread, and
:func:`~ocgate.config._collector.build_collector_config` applies the collector's rules.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection

from ocgate.config._collector import CollectorConfig, build_collector_config
from ocgate.config._draft import Draft
from ocgate.config._finish import build_config
from ocgate.config._lexer import Assignment, SectionHeader, tokenize
from ocgate.config._model import Config
from ocgate.config._options import (
    COLLECTOR_KEYS,
    KNOWN_OCSERV_KEYS,
    OPTIONS,
    OptionSpec,
    Scope,
    Status,
)
from ocgate.config._values import ParseContext
from ocgate.errors import ConfigError

__all__ = ["load_collector_config", "load_config", "parse_collector_config", "parse_config"]

ONLY_PER_USER = "only valid in per-user and per-group config files; ignored"


def _status_warning(spec: OptionSpec) -> str | None:
    """The once-per-key warning an accepted key deserves, if any."""
    if spec.scope is Scope.USER:
        return ONLY_PER_USER
    notes: list[str] = []
    if spec.replaced_by is not None:
        notes.append(f"old name: ocserv replaced it with '{spec.replaced_by}'")
    if spec.status is Status.NO_OP:
        notes.append(f"ignored by ocgate: {spec.reason}")
    return "; ".join(notes) or None


def refusal(spec: OptionSpec, *, per_user: bool = False) -> tuple[str, str]:
    """The message and expected form of a :class:`ConfigError` for a refused key."""
    reason = spec.user_reason if per_user else spec.reason
    expected = "no such line"
    if spec.harmless is not None:
        value = str(spec.harmless).lower() if isinstance(spec.harmless, bool) else spec.harmless
        expected += f", or {spec.name} = {value}"
    return f"refused, ocgate cannot honour it: {reason}", expected


def _unknown(draft: Draft, token: Assignment) -> ConfigError:
    close = difflib.get_close_matches(token.key, KNOWN_OCSERV_KEYS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return draft.error(
        token.key, token.line, f"unknown option{hint}", "a configuration key ocserv 1.5 knows"
    )


def _assign(
    draft: Draft, ctx: ParseContext, token: Assignment, only: Collection[str] | None
) -> None:
    spec = OPTIONS.get(token.key)
    if spec is None:
        raise _unknown(draft, token)
    if only is not None and spec.name not in only:
        return  # Another program's key (the VPN's, for the collector): not ours to check.
    value = token.raw if spec.raw else token.value
    if not value:
        draft.warn(spec.name, token.line, "empty value; ignored")
        return
    try:
        parsed = spec.parse(value, ctx)
    except ConfigError as exc:
        raise draft.error(spec.name, token.line, exc.message, exc.expected) from None
    draft.record(spec.name, token.line, parsed)
    if spec.is_harmless(parsed):
        return  # Asks for nothing ocgate lacks (``camouflage = false``).
    message = _status_warning(spec)
    if message is not None and spec.status is not Status.REFUSED:
        draft.warn(spec.name, token.line, message, once=True)


def _check_refused(draft: Draft) -> None:
    """Refuse the keys ocgate cannot honour, at the line that decides (the last one, as ocserv).

    :raises ConfigError: a refused key holds anything but its harmless value.
    """
    for name, entries in draft.entries.items():
        spec = OPTIONS[name]
        if spec.status is not Status.REFUSED:
            continue
        for line, value in entries if spec.multi else entries[-1:]:
            if not spec.is_harmless(value):
                raise draft.error(name, line, *refusal(spec))


def _enter_section(draft: Draft, header: SectionHeader) -> bool:
    """Handle ``[NAME]``; returns whether the lines that follow are skipped."""
    if not header.name:  # "[]" is inih's way back to the top level.
        return False
    label = f"[{header.name}]"
    if header.name.startswith("vhost:"):
        if not header.name[len("vhost:") :].strip():
            raise draft.error(label, header.line, "empty virtual host name", "[vhost:NAME]")
        draft.warn(label, header.line, "virtual hosts are not implemented; section ignored")
    else:
        draft.warn(label, header.line, "unknown section; skipped")
    return True


def _read(
    text: str, *, source: str, base_dir: str | None, only: Collection[str] | None = None
) -> Draft:
    """Record the lines of ``text`` (those of the keys in ``only``, when given)."""
    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(source))
    ctx = ParseContext(base_dir=os.path.abspath(base_dir))
    draft = Draft(source=source)
    skipping = False
    for token in tokenize(text, source=source):
        if isinstance(token, SectionHeader):
            skipping = _enter_section(draft, token)
        elif not skipping:
            _assign(draft, ctx, token, only)
    return draft


def _read_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The file name and its text.

    :raises ConfigError: the file cannot be read or is not UTF-8.
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        message = f"cannot read the configuration file: {exc.strerror or exc}"
        raise ConfigError(message, file=source, expected="a readable file") from None
    try:
        return source, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8 text", file=source, line=line, expected="UTF-8") from None


def parse_config(text: str, *, source: str, base_dir: str | None = None) -> Config:
    """Parse the text of an ocserv.conf.

    :param text: the file's contents.
    :param source: the file name, used in messages and stored as ``Config.source``.
    :param base_dir: directory for relative file names; defaults to the directory of ``source``.
    :raises ConfigError: the first problem found, with file, line, key and the expected form.
    """
    draft = _read(text, source=source, base_dir=base_dir)
    _check_refused(draft)
    return build_config(draft)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and parse an ocserv.conf; relative names in it are resolved against its directory.

    :param path: the configuration file.
    :raises ConfigError: the file cannot be read, is not UTF-8, or is invalid.
    """
    source, text = _read_file(path)
    return parse_config(text, source=source)


def parse_collector_config(
    text: str, *, source: str, base_dir: str | None = None
) -> CollectorConfig:
    """Parse the collector keys of a file (``nvm-*``, ``metrics-listen``); skip the VPN's keys.

    :param text: the file's contents: collector keys only, or a whole ocserv.conf.
    :param source: the file name, used in messages.
    :param base_dir: directory for relative file names; defaults to the directory of ``source``.
    :raises ConfigError: an unknown key, a bad collector value, or a cross-key or file problem
        (:mod:`ocgate.config._collector`), with file, line, key and the expected form.
    """
    draft = _read(text, source=source, base_dir=base_dir, only=COLLECTOR_KEYS)
    return build_collector_config(draft)


def load_collector_config(path: str | os.PathLike[str]) -> CollectorConfig:
    """Read the collector keys of a file (what ``ocgate nvm serve -c FILE`` runs on).

    :param path: the configuration file; relative names in it are resolved against its directory.
    :raises ConfigError: as :func:`parse_collector_config`, or the file cannot be read.
    """
    source, text = _read_file(path)
    return parse_collector_config(text, source=source)
