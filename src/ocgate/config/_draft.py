"""The parsed-but-not-yet-validated state of one config file.

Theory of operation: the loader records every accepted line as ``(line, parsed value)`` under its
key name, in file order. The finishers then read it back with the typed accessors below, which check
the parser's output type, so the finishers need no casts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ocgate.config._model import ConfigWarning
from ocgate.errors import ConfigError

if TYPE_CHECKING:
    from ocgate.config._options import OptionSpec

__all__ = ["Draft", "Entry"]

T = TypeVar("T")

Entry = tuple[int, object]
"""A recorded line: its number and the parsed value."""


@dataclass(slots=True)
class Draft:
    """Recorded values and warnings of one file, plus its name for messages."""

    source: str
    entries: dict[str, list[Entry]] = field(default_factory=dict)
    warnings: list[ConfigWarning] = field(default_factory=list)
    _warned: set[str] = field(default_factory=set)

    def record(self, key: str, line: int, value: object) -> None:
        """Store one line's parsed value under ``key``."""
        self.entries.setdefault(key, []).append((line, value))

    def warn(self, key: str, line: int, message: str, *, once: bool = False) -> None:
        """Add a warning; with ``once``, only the first warning for ``key`` is kept."""
        if once:
            if key in self._warned:
                return
            self._warned.add(key)
        self.warnings.append(ConfigWarning(file=self.source, line=line, key=key, message=message))

    def error(
        self, key: str, line: int | None, message: str, expected: str | None = None
    ) -> ConfigError:
        """Build (not raise) a located :class:`ConfigError`."""
        return ConfigError(message, file=self.source, line=line, key=key, expected=expected)

    def fields(self, specs: Iterable[OptionSpec]) -> dict[str, Any]:
        """The field values of the ``specs`` rows that name a ``field``, for ``Config(**…)``.

        Repeated lines of a ``multi`` key are collected in file order (several keys may share one
        field); otherwise the last line wins, as in ocserv. Keys without lines are left out.
        """
        collected: dict[str, list[Entry]] = {}
        multi: set[str] = set()
        for spec in specs:
            entries = self.entries.get(spec.name)
            if spec.field is None or not entries:
                continue
            collected.setdefault(spec.field, []).extend(entries)
            if spec.multi:
                multi.add(spec.field)
        values: dict[str, Any] = {}
        for name, entries in collected.items():
            entries.sort(key=lambda entry: entry[0])
            values[name] = tuple(v for _, v in entries) if name in multi else entries[-1][1]
        return values

    def lines(self) -> dict[str, int]:
        """The last line of every recorded key (where a message about the key points)."""
        return {key: entries[-1][0] for key, entries in self.entries.items() if entries}

    def all(self, key: str, kind: type[T]) -> list[tuple[int, T]]:
        """Every recorded ``(line, value)`` of ``key``, in file order."""
        result: list[tuple[int, T]] = []
        for line, value in self.entries.get(key, ()):
            if not isinstance(value, kind):  # pragma: no cover - parser/table mismatch.
                raise TypeError(f"{key}: parser produced {type(value).__name__}")
            result.append((line, value))
        return result

    def last(self, key: str, kind: type[T]) -> tuple[int, T] | None:
        """The last recorded ``(line, value)`` of ``key`` (ocserv: the last line wins)."""
        values = self.all(key, kind)
        return values[-1] if values else None
