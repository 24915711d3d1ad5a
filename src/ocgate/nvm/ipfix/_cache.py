"""The template cache: compiled templates per scope, with persistence (nvm-ipfix.md §1.6, §3).

Theory of operation:

* Scope is ``(ExporterKey, observation domain ID, template ID)``; the exporter key carries the
  transport kind, address and port (RFC 7011 §8.4). The same template ID from two exporters or two
  domains never collides (vflow #94 is the counter-example).
* Learning an identical template is a silent refresh; a different one replaces it ("redefined",
  RFC 7011 §8.1 and §8.4 for UDP ID reuse). Each exporter holds at most
  ``max_templates_per_exporter`` templates; beyond that new IDs are refused (template poisoning
  and memory bound, nvm-ipfix.md §6).
* :meth:`TemplateCache.snapshot` exports every template as a :class:`StoredTemplate` (the raw
  template record plus its scope and times) that the store persists; :meth:`TemplateCache.restore`
  brings them back after a restart, so a collector does not lose day-old NVM templates.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import Enum

from ocgate.errors import BadIpfix
from ocgate.nvm.ipfix._decode import TemplateDecoder, compile_template
from ocgate.nvm.ipfix._exporter import ExporterKey
from ocgate.nvm.ipfix._templates import Template, parse_template_record_untrusted

__all__ = ["LearnResult", "StoredTemplate", "TemplateCache"]

_ScopeKey = tuple[ExporterKey, int, int]


class LearnResult(Enum):
    """What :meth:`TemplateCache.learn` did."""

    NEW = "new"
    REFRESHED = "refreshed"
    REDEFINED = "redefined"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    """A template as persisted by the store.

    :param exporter: the exporter (transport, address, port) that defined it.
    :param observation_domain_id: its observation domain.
    :param template_id: its ID.
    :param options: whether it is an options template.
    :param record: the raw template record bytes (as in the set, header included).
    :param learned_at: when this definition was first learned (caller's clock).
    :param last_seen: when it was last received (refreshes update it).
    """

    exporter: ExporterKey
    observation_domain_id: int
    template_id: int
    options: bool
    record: bytes
    learned_at: float
    last_seen: float

    def to_json(self) -> str:
        """Return the template as one JSON object (the record as base64)."""
        return json.dumps(
            {
                "transport": self.exporter.transport,
                "address": self.exporter.address,
                "port": self.exporter.port,
                "observation_domain_id": self.observation_domain_id,
                "template_id": self.template_id,
                "options": self.options,
                "record": base64.b64encode(self.record).decode("ascii"),
                "learned_at": self.learned_at,
                "last_seen": self.last_seen,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> StoredTemplate:
        """Parse :meth:`to_json` output.

        :raises BadIpfix: malformed JSON, missing keys or a bad record.
        """
        try:
            obj = json.loads(text)
            stored = cls(
                ExporterKey(str(obj["transport"]), str(obj["address"]), int(obj["port"])),
                int(obj["observation_domain_id"]),
                int(obj["template_id"]),
                bool(obj["options"]),
                base64.b64decode(str(obj["record"]), validate=True),
                float(obj["learned_at"]),
                float(obj["last_seen"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise BadIpfix(f"stored template is malformed: {exc}") from exc
        if stored.to_template().template_id != stored.template_id:
            raise BadIpfix("stored template ID differs from its record")
        return stored

    def to_template(self) -> Template:
        """Parse the stored record back into a :class:`Template`.

        :raises BadIpfix: the record is not one whole template record.
        """
        template, end = parse_template_record_untrusted(self.record, 0, options=self.options)
        if not isinstance(template, Template) or end != len(self.record):
            raise BadIpfix("stored record is not exactly one template record")
        return template


@dataclass(slots=True)
class _Entry:
    decoder: TemplateDecoder
    learned_at: float
    last_seen: float


class TemplateCache:
    """Compiled templates keyed by scope.

    :param max_templates_per_exporter: cap on templates held per exporter (all domains).
    """

    def __init__(self, *, max_templates_per_exporter: int = 64) -> None:
        self.max_templates_per_exporter = max_templates_per_exporter
        self._entries: dict[_ScopeKey, _Entry] = {}
        self._by_exporter: dict[ExporterKey, set[_ScopeKey]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, exporter: ExporterKey, odid: int, template_id: int) -> TemplateDecoder | None:
        """Return the compiled template of this scope, or ``None``."""
        entry = self._entries.get((exporter, odid, template_id))
        return entry.decoder if entry is not None else None

    def count(self, exporter: ExporterKey) -> int:
        """Return how many templates ``exporter`` holds."""
        return len(self._by_exporter.get(exporter, ()))

    def learn(
        self, exporter: ExporterKey, odid: int, decoder: TemplateDecoder, now: float
    ) -> LearnResult:
        """Add or refresh a compiled template.

        :param decoder: from :func:`compile_template`.
        :param now: the caller's clock, recorded as the learn / refresh time.
        """
        key = (exporter, odid, decoder.template.template_id)
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_seen = now
            if entry.decoder.template == decoder.template:
                return LearnResult.REFRESHED
            entry.decoder = decoder
            entry.learned_at = now
            return LearnResult.REDEFINED
        keys = self._by_exporter.setdefault(exporter, set())
        if len(keys) >= self.max_templates_per_exporter:
            if not keys:
                del self._by_exporter[exporter]
            return LearnResult.REFUSED
        keys.add(key)
        self._entries[key] = _Entry(decoder, now, now)
        return LearnResult.NEW

    def withdraw(self, exporter: ExporterKey, odid: int, template_id: int) -> bool:
        """Remove one template; return whether it existed."""
        key = (exporter, odid, template_id)
        if self._entries.pop(key, None) is None:
            return False
        self._discard_key(key)
        return True

    def withdraw_all(self, exporter: ExporterKey, odid: int, *, options: bool) -> list[int]:
        """Remove every (options) template of one domain; return the withdrawn IDs."""
        gone = sorted(
            key[2]
            for key in self._by_exporter.get(exporter, ())
            if key[1] == odid and self._entries[key].decoder.template.options == options
        )
        for template_id in gone:
            self.withdraw(exporter, odid, template_id)
        return gone

    def forget_exporter(self, exporter: ExporterKey) -> int:
        """Drop every template of ``exporter`` (e.g. its TCP session closed); return how many."""
        keys = self._by_exporter.pop(exporter, set())
        for key in keys:
            del self._entries[key]
        return len(keys)

    def expire(self, now: float, lifetime: float) -> int:
        """Drop templates not seen for ``lifetime`` seconds; return how many."""
        old = [key for key, entry in self._entries.items() if now - entry.last_seen > lifetime]
        for key in old:
            del self._entries[key]
            self._discard_key(key)
        return len(old)

    def _discard_key(self, key: _ScopeKey) -> None:
        keys = self._by_exporter.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_exporter[key[0]]

    def snapshot(self) -> list[StoredTemplate]:
        """Export every template for persistence."""
        return [
            StoredTemplate(
                exporter,
                odid,
                template_id,
                entry.decoder.template.options,
                entry.decoder.template.to_bytes(),
                entry.learned_at,
                entry.last_seen,
            )
            for (exporter, odid, template_id), entry in self._entries.items()
        ]

    def restore(self, stored: list[StoredTemplate]) -> int:
        """Load persisted templates (newer definitions already in the cache win).

        Entries whose record does not parse, or that exceed the per-exporter cap, are skipped.

        :returns: how many templates were restored.
        """
        restored = 0
        for item in stored:
            key = (item.exporter, item.observation_domain_id, item.template_id)
            if key in self._entries:
                continue
            try:
                template = item.to_template()
            except BadIpfix:
                continue
            if template.template_id != item.template_id:
                continue
            decoder = compile_template(template)
            if self.learn(item.exporter, item.observation_domain_id, decoder, item.learned_at) is (
                LearnResult.NEW
            ):
                self._entries[key].last_seen = item.last_seen
                restored += 1
        return restored
