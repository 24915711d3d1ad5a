"""Read an ocserv.conf: tokens → option table → draft → :class:`Config`.

Theory of operation: the file is processed line by line as ocserv does, stopping at the first error.
Each ``key = value`` is looked up in :data:`~ocgate.config._options.OPTIONS`; a key ocserv does not
know is an error (ocserv only warns, but a typo in a VPN gateway's configuration should not pass
silently). The value is parsed and recorded, then the key's status decides
(:class:`~ocgate.config._options.Status`): an ignored key (no-op) produces one warning; a refused
key whose deciding line (the last, as ocserv reads it) holds anything but its harmless value is a
``ConfigError`` naming file:line and the reason, once the whole file is read. Finally
:func:`~ocgate.config._finish.build_config` applies the cross-key rules.

Virtual hosts (``[vhost:NAME]``, selected by the client's TLS server name): the lines of each
section are recorded in a draft of their own (sections of one name are one vhost, as in ocserv). A
global-only key (:attr:`~ocgate.config._options.Scope.GLOBAL`) there is a ``ConfigError`` at its
line (ocserv ≥ 1.4.2 refuses it too). Each vhost then inherits, as ocserv 1.5 does, every key it
does not set from the top level: the vhost's draft is the top level's with the vhost's keys in
place of the inherited ones (a key the vhost sets replaces the top level's lines of that key and
of the keys that fill the same field, and ``server-cert`` and ``server-key`` as a pair; repeated
keys such as ``route`` are not merged), and is finished like the top level into a whole
``Config`` with ``vhost_name``. The default host's ``Config`` lists them in ``vhosts``.

:func:`load_collector_config` reads the same file for ``ocgate nvm serve``: only the collector keys
are parsed, the other keys ocserv knows are skipped unread, and
:func:`~ocgate.config._collector.build_collector_config` applies the collector's rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Collection

from ocgate.config._collector import CollectorConfig, build_collector_config
from ocgate.config._draft import Draft
from ocgate.config._finish import build_config
from ocgate.config._lexer import Assignment, SectionHeader, tokenize
from ocgate.config._model import AuthMethod, Config
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


_VHOST_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9._-]{0,252})")
"""A vhost name: a DNS name as a client sends it in SNI (compared without case)."""

_SKIP = ""
"""What :func:`_enter_section` returns for a section whose lines are skipped."""


def _enter_section(draft: Draft, header: SectionHeader) -> str | None:
    """Handle ``[NAME]``: ``None`` for the top level, the canonical vhost name for
    ``[vhost:NAME]``, or :data:`_SKIP` for an unknown section (skipped with a warning).

    :raises ConfigError: an empty or malformed virtual host name.
    """
    if not header.name:  # "[]" is inih's way back to the top level.
        return None
    label = f"[{header.name}]"
    if header.name.startswith("vhost:"):
        given = header.name[len("vhost:") :].strip()
        if not given:
            raise draft.error(label, header.line, "empty virtual host name", "[vhost:NAME]")
        name = given.rstrip(".").lower()
        if _VHOST_NAME.fullmatch(name) is None:
            raise draft.error(
                label,
                header.line,
                "illegal virtual host name",
                "[vhost:NAME] with NAME a host name (letters, digits, '.', '-', '_')",
            )
        return name
    draft.warn(label, header.line, "unknown section; skipped")
    return _SKIP


def _assign_vhost(
    draft: Draft, vhost: Draft, name: str, ctx: ParseContext, token: Assignment
) -> None:
    """A line of a ``[vhost:NAME]`` section, recorded in ``vhost``.

    :raises ConfigError: an unknown key, a bad value, or a key only the top level may hold.
    """
    spec = OPTIONS.get(token.key)
    if spec is not None and spec.scope is Scope.GLOBAL:
        raise draft.error(
            spec.name,
            token.line,
            f"global option not allowed in [vhost:{name}]",
            f"{spec.name} at the top level, before the first [vhost:...] section",
        )
    _assign(vhost, ctx, token, None)


def _read(
    text: str, *, source: str, base_dir: str | None, only: Collection[str] | None = None
) -> tuple[Draft, dict[str, tuple[int, Draft]]]:
    """Record the lines of ``text`` (those of the keys in ``only``, when given): the top level's
    draft, and each vhost's (with the line of its first header). With ``only``, vhost sections
    are skipped (the collector's keys are global)."""
    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(source))
    ctx = ParseContext(base_dir=os.path.abspath(base_dir))
    draft = Draft(source=source)
    vhosts: dict[str, tuple[int, Draft]] = {}
    section: str | None = None
    for token in tokenize(text, source=source):
        if isinstance(token, SectionHeader):
            section = _enter_section(draft, token)
            if section and section not in vhosts:
                # Warnings go to the top level's list; each key is warned about once per file.
                vhost = Draft(source=source, warnings=draft.warnings, _warned=draft._warned)
                vhosts[section] = (token.line, vhost)
        elif section is None:
            _assign(draft, ctx, token, only)
        elif section and only is None:
            _assign_vhost(draft, vhosts[section][1], section, ctx, token)
    return draft, vhosts


def _groups() -> dict[str, frozenset[str]]:
    """For each key, the keys a vhost replaces as a whole when it sets that key: the keys that
    fill the same ``Config`` field (``dns``, ``ipv4-dns``, ``ipv6-dns``) and the certificate with
    its key (they pair by position). A network and its mask are not paired: a vhost's
    ``ipv4-network = 10.20.0.0`` takes the top level's ``ipv4-netmask``, and a contradiction
    between them is an error at the later line."""
    by_field: dict[str, set[str]] = {}
    for spec in OPTIONS.values():
        if spec.field is not None:
            by_field.setdefault(spec.field, set()).add(spec.name)
    pairs = [{"server-cert", "server-key"}]
    groups: dict[str, frozenset[str]] = {}
    for spec in OPTIONS.values():
        group = {spec.name}
        if spec.field is not None:
            group |= by_field[spec.field]
        for pair in pairs:
            if spec.name in pair:
                group |= pair
        groups[spec.name] = frozenset(group)
    return groups


_INHERIT_GROUPS = _groups()


def _inherit(top: Draft, own: Draft) -> Draft:
    """The draft of a vhost: the top level's lines, with the vhost's keys in their place."""
    replaced: set[str] = set()
    for key in own.entries:
        replaced |= _INHERIT_GROUPS.get(key, frozenset({key}))
    merged = Draft(source=top.source)
    for key, entries in top.entries.items():
        if key not in replaced:
            merged.entries[key] = list(entries)
    for key, entries in own.entries.items():
        merged.entries[key] = list(entries)
    return merged


def _build_vhost(top: Draft, name: str, header_line: int, own: Draft) -> Config:
    """Finish one vhost's draft; its new warnings join the top level's.

    :raises ConfigError: the vhost's refused keys or cross-key checks; a finding without a line
        of its own points at the section header.
    """
    merged = _inherit(top, own)
    merged.warnings.extend(top.warnings)
    _check_refused(own)
    try:
        config = build_config(merged)
    except ConfigError as exc:
        if exc.line is not None:
            raise
        raise ConfigError(
            f"[vhost:{name}]: {exc.message}",
            file=top.source,
            line=header_line,
            key=exc.key,
            expected=exc.expected,
        ) from None
    for warning in merged.warnings:
        if warning not in top.warnings:
            top.warnings.append(warning)
    return dataclasses.replace(config, vhost_name=name, warnings=())


MAX_VHOSTS = 64
"""Virtual hosts one file may hold: each worker gets every vhost's certificate, key and CA as
descriptors in one message (``ipc.MAX_FDS``)."""


def _finish(draft: Draft, vhosts: dict[str, tuple[int, Draft]]) -> Config:
    """The default host's ``Config`` with its vhosts; the warnings of all in one list.

    :raises ConfigError: more than :data:`MAX_VHOSTS` vhosts, or as :func:`build_config`.
    """
    config = build_config(draft)
    if not vhosts:
        return config
    if len(vhosts) > MAX_VHOSTS:
        name, (line, _) = list(vhosts.items())[MAX_VHOSTS]
        raise draft.error(
            f"[vhost:{name}]", line, "too many virtual hosts", f"at most {MAX_VHOSTS} sections"
        )
    built = tuple(_build_vhost(draft, name, line, own) for name, (line, own) in vhosts.items())
    for vhost, (_line, own) in zip(built, vhosts.values(), strict=True):
        acct = own.last("acct", AuthMethod)
        if acct is not None and vhost.acct != config.acct:
            raise draft.error(
                "acct",
                acct[0],
                f"accounting per virtual host is not implemented ([vhost:{vhost.vhost_name}])",
                "acct at the top level only, or the same acct line as the top level's",
            )
    warnings = tuple(sorted(draft.warnings, key=lambda warning: warning.line))
    return dataclasses.replace(config, vhosts=built, warnings=warnings)


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
    draft, vhosts = _read(text, source=source, base_dir=base_dir)
    _check_refused(draft)
    return _finish(draft, vhosts)


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
    draft, _vhosts = _read(text, source=source, base_dir=base_dir, only=COLLECTOR_KEYS)
    return build_collector_config(draft)


def load_collector_config(path: str | os.PathLike[str]) -> CollectorConfig:
    """Read the collector keys of a file (what ``ocgate nvm serve -c FILE`` runs on).

    :param path: the configuration file; relative names in it are resolved against its directory.
    :raises ConfigError: as :func:`parse_collector_config`, or the file cannot be read.
    """
    source, text = _read_file(path)
    return parse_collector_config(text, source=source)
