"""Split ocserv.conf text into key/value assignments and section headers.

Theory of operation: ocserv reads its configuration with inih (``src/inih/ini.c``) and then cleans
each value with ``sanitize_config_value`` (``src/config.c``). This lexer reproduces both:

* lines are split on ``\\n`` (a trailing ``\\r`` is dropped); a UTF-8 BOM on line 1 is skipped;
* blank lines and lines whose first non-blank character is ``#`` or ``;`` are comments;
* ``[NAME]`` starts a section; ``[]`` returns to the top level;
* otherwise the line is ``NAME = VALUE`` (inih also accepts ``:`` as the separator);
* ``#`` preceded by whitespace starts an inline comment — even inside quotes, as in ocserv;
* the value is stripped of whitespace and then of double quotes *and* whitespace at both ends.

One departure: inih treats an indented line as a continuation of the previous value; ocgate reads
an indented line as an ordinary line (continuations are not used in ocserv configurations).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ocgate.errors import ConfigError

__all__ = ["MAX_LINE", "Assignment", "SectionHeader", "tokenize"]

MAX_LINE = 2048
"""ocserv's inih line limit (``INI_MAX_LINE``)."""

_BOM = "\ufeff"
_VALUE_STRIP = ' \t\r\n\v\f"'


@dataclass(frozen=True, slots=True)
class Assignment:
    """``key = value`` on line ``line``; ``raw`` is the value before quote stripping."""

    line: int
    key: str
    value: str
    raw: str


@dataclass(frozen=True, slots=True)
class SectionHeader:
    """``[name]`` on line ``line`` (``name`` stripped of surrounding whitespace)."""

    line: int
    name: str


def _find(text: str, chars: str) -> int:
    """Index of the first of ``chars`` or of an inline ``#`` comment; ``len(text)`` if neither.

    Mirrors inih ``find_chars_or_comment``: a comment character counts only after whitespace.
    """
    was_space = False
    for index, ch in enumerate(text):
        if ch in chars or (was_space and ch == "#"):
            return index
        was_space = ch.isspace()
    return len(text)


def _section(line: int, text: str, source: str) -> SectionHeader:
    end = _find(text[1:], "]") + 1
    if end >= len(text) or text[end] != "]":
        raise ConfigError(
            f"section header without ']': {text!r}", file=source, line=line, expected="[vhost:NAME]"
        )
    return SectionHeader(line, text[1:end].strip())


def _assignment(line: int, text: str, source: str) -> Assignment:
    sep = _find(text, "=:")
    if sep >= len(text) or text[sep] not in "=:":
        raise ConfigError(
            f"not a 'key = value' line: {text!r}", file=source, line=line, expected="key = value"
        )
    key = text[:sep].rstrip()
    if not key:
        raise ConfigError(
            f"no key before '{text[sep]}': {text!r}", file=source, line=line, expected="key = value"
        )
    rest = text[sep + 1 :]
    raw = rest[: _find(rest, "")].strip()
    return Assignment(line, key, raw.strip(_VALUE_STRIP), raw)


def tokenize(text: str, *, source: str) -> Iterator[Assignment | SectionHeader]:
    """Yield the assignments and section headers of ``text`` in order.

    :param source: the file name, for error messages.
    :raises ConfigError: on a line that is too long, a malformed section header or a line that is
        neither a comment nor ``key = value``.
    """
    if text.startswith(_BOM):
        text = text[1:]
    for number, line in enumerate(text.split("\n"), start=1):
        if len(line) > MAX_LINE:
            raise ConfigError(
                f"line is longer than {MAX_LINE} characters",
                file=source,
                line=number,
                expected=f"lines of at most {MAX_LINE} characters",
            )
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped[0] == "[":
            yield _section(number, stripped, source)
        else:
            yield _assignment(number, stripped, source)
