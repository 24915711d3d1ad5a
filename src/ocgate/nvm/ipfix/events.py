"""Events of the IPFIX collector core and the decoded data record (STYLE rule 3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ocgate.nvm.ipfix._exporter import ExporterKey

__all__ = [
    "DataRecord",
    "IpfixEvent",
    "MessageRejected",
    "RecordsDecoded",
    "SequenceGap",
    "TemplateLearned",
    "TemplateWithdrawn",
]


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One decoded data record (or options data record).

    Value conventions (by abstract data type, RFC 7012 §3.1):

    * ``unsignedN`` / ``signedN`` (also reduced-size) → ``int``; ``float32/64`` → ``float``;
      ``boolean`` → ``True`` / ``False`` (an out-of-range octet stays an ``int``);
    * ``macAddress`` → ``"aa:bb:cc:dd:ee:ff"``; ``octetArray`` → ``bytes``;
    * ``string`` → ``str``; ill-formed UTF-8 keeps the raw ``bytes`` and the name goes into
      ``invalid_strings`` (RFC 7011 §6.1.6);
    * ``dateTimeSeconds/Milliseconds/Microseconds/Nanoseconds`` → ``float`` seconds since the
      Unix epoch, UTC (the NTP-format micro/nano values are rebased from 1900);
    * ``ipv4Address`` / ``ipv6Address`` → :mod:`ipaddress` objects;
    * ``basicList`` → ``list`` of the element values (semantic dropped; nesting bounded);
    * ``subTemplateList`` / ``subTemplateMultiList`` → raw ``bytes``.

    A value of an unexpected length for its type is kept as raw ``bytes``. When a template
    repeats an element, the last occurrence wins.

    :param values: decoded values keyed by IE name (IANA name, or nvzFlow name such as
        ``nvzFlowUDID``).
    :param raw_unknown: elements missing from the dictionaries, raw, keyed ``(PEN, IE ID)``.
    :param scope_fields: for options data records, the names of the scope fields; else empty.
    :param invalid_strings: names of string values that were not valid UTF-8.
    """

    exporter: ExporterKey
    observation_domain_id: int
    template_id: int
    export_time: int
    sequence: int
    values: dict[str, object]
    raw_unknown: dict[tuple[int, int], bytes]
    scope_fields: tuple[str, ...] = ()
    invalid_strings: frozenset[str] = field(default_factory=frozenset)

    @property
    def options(self) -> bool:
        """Whether this is an options data record (its template had scope fields)."""
        return bool(self.scope_fields)


@dataclass(frozen=True, slots=True)
class RecordsDecoded:
    """The data records decoded from one message (or released from the pre-template buffer).

    :param records: in wire order.
    """

    records: list[DataRecord]


@dataclass(frozen=True, slots=True)
class TemplateLearned:
    """A new template, or a changed definition for a known ID (``redefined``).

    Identical refreshes produce no event.
    """

    exporter: ExporterKey
    observation_domain_id: int
    template_id: int
    redefined: bool
    options: bool = False


@dataclass(frozen=True, slots=True)
class TemplateWithdrawn:
    """A template withdrawn by the exporter (TCP only; UDP withdrawals are ignored, §8.4)."""

    exporter: ExporterKey
    observation_domain_id: int
    template_id: int


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A malformed message was discarded as a whole (RFC 7011 §9.1); also counted."""

    exporter: ExporterKey
    reason: str


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """Data records were lost between two messages (RFC 7011 §3.1 sequence numbers).

    :param missing: how many data records the sequence numbers say were lost.
    """

    exporter: ExporterKey
    observation_domain_id: int
    missing: int


IpfixEvent = RecordsDecoded | TemplateLearned | TemplateWithdrawn | MessageRejected | SequenceGap
