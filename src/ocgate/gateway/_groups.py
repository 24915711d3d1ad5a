"""The group list of the login form (ocserv-compatibility §4.5; anyconnect-protocol §3.3).

Theory of operation: the list is ``default-select-group`` (an entry meaning "my default group"),
then the ``select-group`` entries (``name`` or ``name[Friendly label]``), then, with
``auto-select-group``, the groups of the password file that are not listed yet. openconnect's
``--authgroup`` matches the *labels* and sends back the option *value*; some clients send the label
(ocserv #267), so :meth:`GroupMenu.resolve` accepts either, labels case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ocgate.aggauth import GroupOption
from ocgate.config import Config

__all__ = ["GroupEntry", "GroupMenu", "parse_group_entry"]

_ENTRY_RE = re.compile(r"\s*([^\[\]]+?)\s*(?:\[\s*([^\]]*?)\s*\])?\s*")


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """One option: the group name (``value``) and what the user sees (``label``)."""

    value: str
    label: str


def parse_group_entry(text: str) -> GroupEntry:
    """``name`` or ``name[Friendly label]`` → :class:`GroupEntry` (malformed text is kept whole)."""
    match = _ENTRY_RE.fullmatch(text)
    if match is None:
        return GroupEntry(text, text)
    value = match.group(1)
    return GroupEntry(value, match.group(2) or value)


class GroupMenu:
    """The configured group list.

    :param config: ``select-group``, ``default-select-group``, ``auto-select-group``.
    :param auto_groups: the backend's groups, used with ``auto-select-group``.
    """

    def __init__(self, config: Config, auto_groups: Sequence[str] = ()) -> None:
        entries: list[GroupEntry] = []
        self.default = config.default_select_group
        if self.default:
            entries.append(GroupEntry(self.default, self.default))
        entries.extend(parse_group_entry(text) for text in config.select_group)
        if config.auto_select_group:
            known = {e.value for e in entries}
            entries.extend(GroupEntry(g, g) for g in auto_groups if g not in known)
        self.entries = tuple(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def options(self, selected: str | None) -> tuple[GroupOption, ...]:
        """The ``group_list`` options with ``selected`` (a value) marked."""
        chosen = self.resolve(selected) if selected else None
        if chosen is None and selected:
            chosen = selected
        return tuple(
            GroupOption(
                value=e.value,
                label=e.label,
                selected=e.value == chosen or (chosen is None and e.value == self.default),
            )
            for e in self.entries
        )

    def resolve(self, requested: str | None) -> str | None:
        """The group a request names: ``None`` for no request or the default entry; an option
        value or label (case-insensitive) gives its value; anything else is returned unchanged
        (the backend's group check then decides)."""
        if not requested:
            return None
        for entry in self.entries:
            if requested == entry.value:
                return None if entry.value == self.default else entry.value
        for entry in self.entries:
            if requested.lower() == entry.label.lower():
                return None if entry.value == self.default else entry.value
        return requested
