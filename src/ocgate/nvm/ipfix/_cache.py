"""The template cache: compiled templates per scope, with persistence (nvm-ipfix.md §1.6, §3).

Theory of operation:

* Scope is ``(ExporterKey, observation domain ID, template ID)``; the exporter key carries the
  transport kind, address and port (RFC 7011 §8.4; the port is 0 for datagram exporters, keyed
  by address, see :class:`ExporterKey`). The same template ID from two exporters or two
  domains never collides (vflow #94 is the counter-example).
* Learning an identical template is a silent refresh; a different one replaces it ("redefined",
  RFC 7011 §8.1 and §8.4 for UDP ID reuse). Templates, and their fields, are capped per exporter
  address and globally; beyond a cap new IDs are refused (template poisoning and memory bound,
  nvm-ipfix.md §6; the bound is in ``_limits``). Identical definitions share one compiled
  decoder, so a fleet of NVM agents sending the same templates costs one decoder per template.
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
    """A per-exporter cap would be passed; nothing changed."""
    FULL = "full"
    """A global cap would be passed; nothing changed (the caller may make room and retry)."""


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


@dataclass(slots=True)
class _Shared:
    """A compiled definition and how many held templates use it."""

    decoder: TemplateDecoder
    refs: int = 0


@dataclass(slots=True)
class _Held:
    """What one exporter address holds: templates and their fields."""

    templates: int = 0
    fields: int = 0


class TemplateCache:
    """Compiled templates keyed by scope, capped per exporter address and globally.

    Identical definitions (from any exporter) share one compiled :class:`TemplateDecoder`.
    A template that would pass a per-exporter cap is refused (:attr:`LearnResult.REFUSED`), one
    that would pass a global cap too (:attr:`LearnResult.FULL`); either leaves the cache as it was
    (the collector core then evicts the least recently heard exporter, or withdraws a refused
    redefinition's old layout so data is never decoded with it).

    :param max_templates_per_exporter: templates held per exporter address (all domains).
    :param max_fields_per_exporter: fields of those templates, summed.
    :param max_templates: templates held, all exporters.
    :param max_distinct_templates: distinct compiled definitions.
    :param max_template_fields: fields of the distinct definitions, summed.
    """

    def __init__(
        self,
        *,
        max_templates_per_exporter: int = 64,
        max_fields_per_exporter: int = 4096,
        max_templates: int = 131072,
        max_distinct_templates: int = 8192,
        max_template_fields: int = 65536,
    ) -> None:
        self.max_templates_per_exporter = max_templates_per_exporter
        self.max_fields_per_exporter = max_fields_per_exporter
        self.max_templates = max_templates
        self.max_distinct_templates = max_distinct_templates
        self.max_template_fields = max_template_fields
        self._entries: dict[_ScopeKey, _Entry] = {}
        self._by_exporter: dict[ExporterKey, set[_ScopeKey]] = {}
        self._by_address: dict[str, _Held] = {}
        self._shared: dict[Template, _Shared] = {}
        self._shared_fields = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def distinct(self) -> int:
        """Distinct compiled definitions held."""
        return len(self._shared)

    @property
    def distinct_fields(self) -> int:
        """Fields of the distinct compiled definitions, summed."""
        return self._shared_fields

    def get(self, exporter: ExporterKey, odid: int, template_id: int) -> TemplateDecoder | None:
        """Return the compiled template of this scope, or ``None``."""
        entry = self._entries.get((exporter, odid, template_id))
        return entry.decoder if entry is not None else None

    def compiled(self, template: Template) -> TemplateDecoder | None:
        """The shared decoder of an identical definition already held, if any."""
        shared = self._shared.get(template)
        return shared.decoder if shared is not None else None

    def count(self, exporter: ExporterKey) -> int:
        """Return how many templates ``exporter`` holds."""
        return len(self._by_exporter.get(exporter, ()))

    def held_by_address(self, address: str) -> tuple[int, int]:
        """``(templates, fields)`` held by every key of one exporter address."""
        held = self._by_address.get(address)
        return (0, 0) if held is None else (held.templates, held.fields)

    def learn(
        self, exporter: ExporterKey, odid: int, decoder: TemplateDecoder, now: float
    ) -> LearnResult:
        """Add or refresh a compiled template.

        :param decoder: from :func:`compile_template` (an identical shared one is used instead).
        :param now: the caller's clock, recorded as the learn / refresh time.
        """
        key = (exporter, odid, decoder.template.template_id)
        template = decoder.template
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_seen = now
            if entry.decoder.template == template:
                return LearnResult.REFRESHED
            old = len(entry.decoder.template.fields)
            held = self._by_address[exporter.address]
            if held.fields - old + len(template.fields) > self.max_fields_per_exporter:
                return LearnResult.REFUSED
            if not self._can_share(template):
                return LearnResult.FULL
            self._release(entry.decoder.template)
            entry.decoder = self._acquire(decoder)
            held.fields += len(template.fields) - old
            entry.learned_at = now
            return LearnResult.REDEFINED
        held = self._by_address.get(exporter.address) or _Held()
        if (
            held.templates >= self.max_templates_per_exporter
            or held.fields + len(template.fields) > self.max_fields_per_exporter
        ):
            return LearnResult.REFUSED
        if len(self._entries) >= self.max_templates or not self._can_share(template):
            return LearnResult.FULL
        self._by_address[exporter.address] = held
        held.templates += 1
        held.fields += len(template.fields)
        self._by_exporter.setdefault(exporter, set()).add(key)
        self._entries[key] = _Entry(self._acquire(decoder), now, now)
        return LearnResult.NEW

    def withdraw(self, exporter: ExporterKey, odid: int, template_id: int) -> bool:
        """Remove one template; return whether it existed."""
        return self._remove((exporter, odid, template_id))

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
        keys = list(self._by_exporter.get(exporter, ()))
        for key in keys:
            self._remove(key)
        return len(keys)

    def expire(self, now: float, lifetime: float) -> int:
        """Drop templates not seen for ``lifetime`` seconds; return how many."""
        old = [key for key, entry in self._entries.items() if now - entry.last_seen > lifetime]
        for key in old:
            self._remove(key)
        return len(old)

    # --- Accounting -----------------------------------------------------------------------------

    def _can_share(self, template: Template) -> bool:
        """Whether ``template`` is already compiled, or one more definition fits the caps."""
        return template in self._shared or (
            len(self._shared) < self.max_distinct_templates
            and self._shared_fields + len(template.fields) <= self.max_template_fields
        )

    def _acquire(self, decoder: TemplateDecoder) -> TemplateDecoder:
        shared = self._shared.get(decoder.template)
        if shared is None:
            shared = self._shared[decoder.template] = _Shared(decoder)
            self._shared_fields += len(decoder.template.fields)
        shared.refs += 1
        return shared.decoder

    def _release(self, template: Template) -> None:
        shared = self._shared[template]
        shared.refs -= 1
        if not shared.refs:
            del self._shared[template]
            self._shared_fields -= len(template.fields)

    def _remove(self, key: _ScopeKey) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        template = entry.decoder.template
        self._release(template)
        exporter = key[0]
        held = self._by_address[exporter.address]
        held.templates -= 1
        held.fields -= len(template.fields)
        if not held.templates:
            del self._by_address[exporter.address]
        keys = self._by_exporter[exporter]
        keys.discard(key)
        if not keys:
            del self._by_exporter[exporter]
        return True

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

        Entries whose record does not parse, or that would pass a cap, are skipped.

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
            decoder = self.compiled(template) or compile_template(template)
            if self.learn(item.exporter, item.observation_domain_id, decoder, item.learned_at) is (
                LearnResult.NEW
            ):
                self._entries[key].last_seen = item.last_seen
                restored += 1
        return restored
