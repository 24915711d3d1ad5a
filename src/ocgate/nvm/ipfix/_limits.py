"""How much state the collector core may hold: the caps, what is held, and the memory bound.

Theory of operation
-------------------
Everything an exporter can make the core keep is counted and capped twice: **per exporter**
(per source address: datagram exporters are keyed by address, see ``ExporterKey``, and the caps
also add up an address's TCP connections) and **globally**, so neither one address spraying
templates from thousands of source ports nor many addresses together can grow memory past
:meth:`Limits.memory_bound`. When a cap is reached, the new thing is refused and counted (a
template in ``templates_refused``, a buffered data set in ``dropped_buffered``, a sequence
domain in ``domains_refused``); what is already held stays, so honest exporters that hold
their templates keep decoding during a spray.

Templates are compiled once per distinct definition and shared: the thousands of NVM agents of
a site all send the same dozen templates, so each exporter holds only references
(``templates``), while the compiled decoders (``distinct_templates``, ``template_fields``) are
paid for once.

The bound multiplies each cap by the measured worst-case size of one item (the ``*_COST``
constants below, CPython 3.11 on x86-64, rounded up; ``test_ipfix_limits.py`` in
``tests/unit/nvm/ipfix`` measures each one again with :mod:`tracemalloc` and fails if the code
outgrows it). With the default limits it is :data:`DEFAULT_MEMORY_BOUND` (239,075,328 bytes,
228 MiB): the worst case, reached only when 32,768 exporters together fill every global cap. One
exporter alone can hold at most :meth:`Limits.exporter_bound` (3,534,848 bytes, 3.4 MiB, 1 MiB of
it buffered data). The defaults leave room for about 10,000 NVM agents (a dozen templates each,
shared definitions). Transient state (the events of the message being processed) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

__all__ = [
    "BUFFERED_SET_COST",
    "DEFAULT_MEMORY_BOUND",
    "DISTINCT_TEMPLATE_COST",
    "DOMAIN_COST",
    "EXPORTER_COST",
    "TEMPLATE_FIELD_COST",
    "TEMPLATE_REFERENCE_COST",
    "Limits",
    "Usage",
]

EXPORTER_COST: Final = 2048
"""Bytes of one exporter table entry with its counters (no domains, nothing buffered)."""
DOMAIN_COST: Final = 1024
"""Bytes of the sequence state of one (exporter, observation domain), gaps included."""
TEMPLATE_REFERENCE_COST: Final = 384
"""Bytes of one held template (scope key, entry, index slots), its compiled decoder excluded."""
DISTINCT_TEMPLATE_COST: Final = 1536
"""Bytes of one compiled template definition, its fields excluded."""
TEMPLATE_FIELD_COST: Final = 512
"""Bytes per field of a compiled template definition (field spec, decode step, names)."""
BUFFERED_SET_COST: Final = 256
"""Bytes of one buffered data set besides its body (the body is counted in bytes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The caps of one :class:`~ocgate.nvm.ipfix.IpfixCollectorCore` (defaults documented).

    Per exporter (source address):

    :param max_templates_per_exporter: templates held, all domains and transports.
    :param max_fields_per_exporter: fields of the templates held, summed.
    :param max_buffered_per_exporter: data sets waiting for their template.
    :param max_buffered_bytes_per_exporter: bytes of those data sets.
    :param max_domains_per_exporter: observation domains with sequence state, per exporter key
        (the oldest is forgotten for a new one).

    Globally:

    :param max_exporters: exporter table entries (least recently heard from is evicted).
    :param max_domains: observation domains with sequence state, all exporters.
    :param max_templates: templates held, all exporters.
    :param max_distinct_templates: distinct compiled template definitions.
    :param max_template_fields: fields of the distinct compiled definitions, summed.
    :param max_buffered: data sets waiting for their template, all exporters.
    :param max_buffered_bytes: bytes of those data sets.
    """

    max_templates_per_exporter: int = 64
    max_fields_per_exporter: int = 4096
    max_buffered_per_exporter: int = 1000
    max_buffered_bytes_per_exporter: int = 1 << 20
    max_domains_per_exporter: int = 8
    max_exporters: int = 32768
    max_domains: int = 32768
    max_templates: int = 131072
    max_distinct_templates: int = 8192
    max_template_fields: int = 65536
    max_buffered: int = 32768
    max_buffered_bytes: int = 32 << 20

    def memory_bound(self) -> int:
        """Bytes the core's state can reach at these limits (module docstring)."""
        return (
            self.max_exporters * EXPORTER_COST
            + min(self.max_domains, self.max_exporters * self.max_domains_per_exporter)
            * DOMAIN_COST
            + self.max_templates * TEMPLATE_REFERENCE_COST
            + self.max_distinct_templates * DISTINCT_TEMPLATE_COST
            + self.max_template_fields * TEMPLATE_FIELD_COST
            + self.max_buffered * BUFFERED_SET_COST
            + self.max_buffered_bytes
        )

    def exporter_bound(self) -> int:
        """Bytes one exporter key can make the core hold, at most."""
        templates = self.max_templates_per_exporter
        fields_ = self.max_fields_per_exporter
        return (
            EXPORTER_COST
            + self.max_domains_per_exporter * DOMAIN_COST
            + templates * (TEMPLATE_REFERENCE_COST + DISTINCT_TEMPLATE_COST)
            + fields_ * TEMPLATE_FIELD_COST
            + self.max_buffered_per_exporter * BUFFERED_SET_COST
            + self.max_buffered_bytes_per_exporter
        )


DEFAULT_MEMORY_BOUND: Final = Limits().memory_bound()
"""The bound at the default limits: 239,075,328 bytes (228 MiB)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """What the core holds now (a snapshot); each field has the cap of the same stem.

    :param exporters: exporter table entries.
    :param domains: observation domains with sequence state.
    :param templates: templates held.
    :param distinct_templates: distinct compiled definitions.
    :param template_fields: their fields, summed.
    :param buffered: data sets waiting for a template.
    :param buffered_bytes: their bytes.
    """

    exporters: int = 0
    domains: int = 0
    templates: int = 0
    distinct_templates: int = 0
    template_fields: int = 0
    buffered: int = 0
    buffered_bytes: int = 0

    def memory(self) -> int:
        """The bytes this usage accounts for, with the same costs as :meth:`Limits.memory_bound`."""
        return (
            self.exporters * EXPORTER_COST
            + self.domains * DOMAIN_COST
            + self.templates * TEMPLATE_REFERENCE_COST
            + self.distinct_templates * DISTINCT_TEMPLATE_COST
            + self.template_fields * TEMPLATE_FIELD_COST
            + self.buffered * BUFFERED_SET_COST
            + self.buffered_bytes
        )

    def within(self, limits: Limits) -> bool:
        """Whether every global count is at or under its cap."""
        caps = {
            "exporters": limits.max_exporters,
            "domains": limits.max_domains,
            "templates": limits.max_templates,
            "distinct_templates": limits.max_distinct_templates,
            "template_fields": limits.max_template_fields,
            "buffered": limits.max_buffered,
            "buffered_bytes": limits.max_buffered_bytes,
        }
        return all(getattr(self, f.name) <= caps[f.name] for f in fields(self))
