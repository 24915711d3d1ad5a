"""The sans-IO IPFIX collector core: one per collector process (STYLE rule 1).

Theory of operation:

* The adapter feeds one whole message per :meth:`IpfixCollectorCore.receive_message` call (a
  datagram, or a message cut from a TCP stream by :func:`split_stream_untrusted`) with the
  :class:`ExporterKey` it came from and the time. Events come out of :meth:`next_event`.
* A message is processed in two phases. Phase one parses every set and decodes every data set
  against the cache plus the templates defined earlier in the same message (§8: templates take
  effect in message order). Any :class:`BadIpfix` discards the whole message (§9.1): nothing is
  learned, nothing is emitted but :class:`MessageRejected`, and ``malformed`` is counted. Phase
  two commits templates, withdrawals, sequence accounting, buffered sets and records.
* Withdrawals over UDP and DTLS are ignored (§8.4, also against spoofed cache wipes); over TCP
  they apply in order, including "withdraw all" (Template ID 2 / 3).
* Data sets whose template is unknown are buffered per exporter (bounded by count, bytes and
  age, §9.3) and decoded when the template arrives, in a separate :class:`RecordsDecoded`.
* Everything an exporter can make us hold (exporter entries, sequence domains, templates and
  their fields, buffered sets and bytes) is capped per exporter address and globally
  (:class:`~ocgate.nvm.ipfix._limits.Limits`, whose ``memory_bound`` is the documented bound);
  :meth:`IpfixCollectorCore.usage` reports the accounted state. Past a per-exporter cap the new
  template or set is refused. Past a global template cap an exporter is evicted whole, as when
  the exporter table is full, so a newcomer is not locked out: of the 64 least recently heard,
  the one holding the most templates (a sprayer at its caps goes before an agent with a dozen).
  Past a global buffer or domain cap the new set or domain is refused (buffered sets age out).
* Sequence numbers (§3.1) are tracked per (exporter, domain): expected = previous + data records
  of the previous message. A forward jump of up to ``2**24`` counts lost records
  (:class:`SequenceGap`); a backward jump of up to ``2**16`` is a late or duplicate message
  (tolerated; if it fills a recorded gap the loss count is credited back); anything else is an
  exporter restart, which resynchronises without counting loss. A message with buffered sets has
  an unknown record count, so the next message resynchronises.
* The exporter table is an LRU bounded by ``max_exporters``; evicting an exporter drops its
  templates, buffers and counters (RFC 7011 §9.3 lets a collector drop idle UDP state). Keys are
  what the adapter passes; the adapters key datagram exporters by address
  (:meth:`ExporterKey.for_peer`), and the per-exporter caps count by address in any case.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field, fields, replace
from itertools import islice

from ocgate.errors import BadIpfix
from ocgate.nvm.ipfix._cache import LearnResult, TemplateCache
from ocgate.nvm.ipfix._decode import TemplateDecoder, compile_template
from ocgate.nvm.ipfix._exporter import ExporterKey
from ocgate.nvm.ipfix._limits import Limits, Usage
from ocgate.nvm.ipfix._message import MessageHeader, RawSet, SetId, pull_message_untrusted
from ocgate.nvm.ipfix._templates import Template, TemplateWithdrawal, parse_template_set_untrusted
from ocgate.nvm.ipfix.events import (
    DataRecord,
    IpfixEvent,
    MessageRejected,
    RecordsDecoded,
    SequenceGap,
    TemplateLearned,
    TemplateWithdrawn,
)

__all__ = ["ExporterStats", "IpfixCollectorCore"]

_MOD = 1 << 32
MAX_FORWARD_GAP = 1 << 24
"""A forward sequence jump up to this many records is loss; beyond it, an exporter restart."""
MAX_LATE = 1 << 16
"""A backward sequence jump up to this many records is a late or duplicate message."""
_EVICTION_WINDOW = 64
"""Least recently heard exporters considered when a global template cap needs room."""
_MAX_GAPS = 4
"""Recorded gaps per sequence (late messages are credited against the most recent ones)."""


@dataclass(frozen=True, slots=True)
class ExporterStats:
    """Counters of one exporter (a snapshot).

    :param messages: messages received (malformed ones included).
    :param records: data records decoded (options records included).
    :param templates: template records accepted (refreshes included).
    :param malformed: messages discarded as malformed, plus buffered sets that failed to decode.
    :param unknown_template: data sets that arrived before their template.
    :param sequence_gaps: data records lost according to the sequence numbers.
    :param buffered: data sets put into the pre-template buffer.
    :param dropped_buffered: buffered data sets dropped (overflow, age, or undecodable).
    :param templates_refused: templates refused by the per-exporter cap.
    :param sequence_resets: sequence jumps taken as exporter restarts.
    :param late_messages: messages behind the expected sequence (reordered or duplicated).
    :param skipped_sets: sets with a reserved ID (0, 1, 4-255), skipped.
    :param withdrawals_ignored: withdrawals received over UDP/DTLS and ignored.
    :param domains_refused: messages whose observation domain got no sequence state (the
        global domain cap was reached).
    """

    messages: int = 0
    records: int = 0
    templates: int = 0
    malformed: int = 0
    unknown_template: int = 0
    sequence_gaps: int = 0
    buffered: int = 0
    dropped_buffered: int = 0
    templates_refused: int = 0
    sequence_resets: int = 0
    late_messages: int = 0
    skipped_sets: int = 0
    withdrawals_ignored: int = 0
    domains_refused: int = 0


_STAT_NAMES = tuple(f.name for f in fields(ExporterStats))


@dataclass(slots=True)
class _Pending:
    odid: int
    template_id: int
    export_time: int
    sequence: int
    body: bytes
    received_at: float


@dataclass(slots=True)
class _Sequence:
    expected: int | None = None
    gaps: list[list[int]] = field(default_factory=list)  # [first missing sequence, count]


@dataclass(slots=True)
class _Exporter:
    key: ExporterKey
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_STAT_NAMES, 0))
    sequences: dict[int, _Sequence] = field(default_factory=dict)
    buffer: deque[_Pending] = field(default_factory=deque)
    buffered_bytes: int = 0


@dataclass(slots=True)
class _Plan:
    """What phase one found in a message, to commit in phase two."""

    actions: list[TemplateDecoder | TemplateWithdrawal | _Pending] = field(default_factory=list)
    records: list[DataRecord] = field(default_factory=list)
    unknown_sets: int = 0
    skipped_sets: int = 0
    withdrawals_ignored: int = 0


class IpfixCollectorCore:
    """Decode IPFIX messages from many exporters into events.

    Every cap has its default and meaning in :class:`~ocgate.nvm.ipfix._limits.Limits`.

    :param buffer_age: seconds a buffered data set waits for its template.
    :param template_lifetime: expire templates not refreshed for this long; ``None`` = never
        (nvm-ipfix.md §3: off, or ≥ 3x the refresh interval).
    :param template_cache: a cache to share or pre-load (its own caps apply); a new one by
        default.
    :param limits: the caps (:class:`~ocgate.nvm.ipfix._limits.Limits` defaults when ``None``).
    :param caps: single :class:`~ocgate.nvm.ipfix._limits.Limits` fields that override
        ``limits`` (``max_exporters=2``).
    """

    def __init__(
        self,
        *,
        buffer_age: float = 30.0,
        template_lifetime: float | None = None,
        template_cache: TemplateCache | None = None,
        limits: Limits | None = None,
        **caps: int,
    ) -> None:
        limits = limits or Limits()
        if caps:
            limits = replace(limits, **caps)
        self.limits = limits
        self._cache = template_cache or TemplateCache(
            max_templates_per_exporter=limits.max_templates_per_exporter,
            max_fields_per_exporter=limits.max_fields_per_exporter,
            max_templates=limits.max_templates,
            max_distinct_templates=limits.max_distinct_templates,
            max_template_fields=limits.max_template_fields,
        )
        self.buffer_age = buffer_age
        self.template_lifetime = template_lifetime
        self._exporters: OrderedDict[ExporterKey, _Exporter] = OrderedDict()
        self._events: deque[IpfixEvent] = deque()
        self._buffering: dict[ExporterKey, _Exporter] = {}
        self._buffered_by_address: dict[str, list[int]] = {}  # [sets, bytes]
        self._buffered = 0
        self._buffered_bytes = 0
        self._domains = 0
        self._next_expiry_check: float | None = None
        self.evicted = 0
        """Exporters dropped to make room (table bound, or a global template cap)."""

    @property
    def max_exporters(self) -> int:
        """The exporter table bound."""
        return self.limits.max_exporters

    def usage(self) -> Usage:
        """What the core holds now, as counted against :attr:`limits`."""
        return Usage(
            exporters=len(self._exporters),
            domains=self._domains,
            templates=len(self._cache),
            distinct_templates=self._cache.distinct,
            template_fields=self._cache.distinct_fields,
            buffered=self._buffered,
            buffered_bytes=self._buffered_bytes,
        )

    @property
    def template_cache(self) -> TemplateCache:
        """The template cache (for :meth:`TemplateCache.snapshot` / ``restore``)."""
        return self._cache

    # --- Public verbs ---------------------------------------------------------------------------

    def receive_message(self, data: bytes, exporter: ExporterKey, now: float) -> None:
        """Process one IPFIX message; malformed ones are counted and reported, never raised.

        :param data: exactly one message.
        :param exporter: where it came from.
        :param now: the caller's clock (seconds).
        """
        state = self._exporter(exporter)
        state.counts["messages"] += 1
        self._expire_buffer(state, now)
        try:
            header, sets = pull_message_untrusted(data)
            plan = self._decode_untrusted(header, sets, exporter, now)
        except BadIpfix as exc:
            state.counts["malformed"] += 1
            self._events.append(MessageRejected(exporter, str(exc)))
            return
        self._commit(plan, header, exporter, state, now)

    def next_event(self) -> IpfixEvent | None:
        """Return the next event, or ``None`` when there is none."""
        return self._events.popleft() if self._events else None

    def stats(self) -> dict[ExporterKey, ExporterStats]:
        """Return a snapshot of the counters of every exporter in the table."""
        return {key: ExporterStats(**state.counts) for key, state in self._exporters.items()}

    def forget_exporter(self, key: ExporterKey) -> None:
        """Drop all state of ``key``: templates, buffers, sequence state and counters."""
        state = self._exporters.pop(key, None)
        if state is not None:
            self._drop_state(state)
        self._cache.forget_exporter(key)

    def get_timer(self) -> float | None:
        """Return when :meth:`handle_timer` should next run, or ``None``."""
        deadlines = [s.buffer[0].received_at + self.buffer_age for s in self._buffering.values()]
        if self._next_expiry_check is not None:
            deadlines.append(self._next_expiry_check)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Expire old buffered data sets and (if configured) stale templates."""
        for state in list(self._buffering.values()):
            self._expire_buffer(state, now)
        if self.template_lifetime is not None and (
            self._next_expiry_check is None or now >= self._next_expiry_check
        ):
            self._cache.expire(now, self.template_lifetime)
            self._next_expiry_check = now + min(self.template_lifetime / 4, 3600.0)

    # --- Phase one: parse and decode, no state change -------------------------------------------

    def _decode_untrusted(
        self, header: MessageHeader, sets: list[RawSet], exporter: ExporterKey, now: float
    ) -> _Plan:
        plan = _Plan()
        overlay: dict[int, TemplateDecoder | None] = {}
        wiped: set[bool] = set()
        odid = header.observation_domain_id

        def lookup(template_id: int) -> TemplateDecoder | None:
            if template_id in overlay:
                return overlay[template_id]
            decoder = self._cache.get(exporter, odid, template_id)
            if decoder is not None and decoder.template.options in wiped:
                return None
            return decoder

        for raw in sets:
            if raw.set_id >= SetId.MIN_DATA:
                decoder = lookup(raw.set_id)
                if decoder is None:
                    plan.unknown_sets += 1
                    plan.actions.append(
                        _Pending(
                            odid, raw.set_id, header.export_time, header.sequence, raw.body, now
                        )
                    )
                    continue
                plan.records += decoder.decode_set_untrusted(
                    raw.body, exporter, odid, header.export_time, header.sequence
                )
            elif raw.set_id in (SetId.TEMPLATE, SetId.OPTIONS_TEMPLATE):
                options = raw.set_id == SetId.OPTIONS_TEMPLATE
                for record in parse_template_set_untrusted(raw.body, options=options):
                    if isinstance(record, Template):
                        decoder = self._compiled(record, lookup(record.template_id))
                        overlay[record.template_id] = decoder
                        plan.actions.append(decoder)
                    elif exporter.datagram:
                        plan.withdrawals_ignored += 1
                    else:
                        _overlay_withdraw(overlay, wiped, record)
                        plan.actions.append(record)
            else:
                plan.skipped_sets += 1
        return plan

    def _compiled(self, template: Template, known: TemplateDecoder | None) -> TemplateDecoder:
        if known is not None and known.template == template:
            return known
        return self._cache.compiled(template) or compile_template(template)

    # --- Phase two: commit ----------------------------------------------------------------------

    def _commit(
        self,
        plan: _Plan,
        header: MessageHeader,
        exporter: ExporterKey,
        state: _Exporter,
        now: float,
    ) -> None:
        odid = header.observation_domain_id
        counts = state.counts
        counts["skipped_sets"] += plan.skipped_sets
        counts["withdrawals_ignored"] += plan.withdrawals_ignored
        counts["unknown_template"] += plan.unknown_sets
        # In message order: a data set that came before its template in this very message is
        # buffered, then released when the template is learned.
        for action in plan.actions:
            if isinstance(action, _Pending):
                self._buffer(state, action)
            elif isinstance(action, TemplateWithdrawal):
                self._withdraw(exporter, odid, action)
            else:
                self._learn(exporter, odid, action, state, now)
        self._track_sequence(header, len(plan.records), not plan.unknown_sets, exporter, state)
        if plan.records:
            counts["records"] += len(plan.records)
            self._events.append(RecordsDecoded(plan.records))

    def _withdraw(self, exporter: ExporterKey, odid: int, action: TemplateWithdrawal) -> None:
        if action.withdraw_all:
            ids = self._cache.withdraw_all(exporter, odid, options=action.options)
        elif self._cache.withdraw(exporter, odid, action.template_id):
            ids = [action.template_id]
        else:
            ids = []
        self._events.extend(TemplateWithdrawn(exporter, odid, tid) for tid in ids)

    def _learn(
        self,
        exporter: ExporterKey,
        odid: int,
        decoder: TemplateDecoder,
        state: _Exporter,
        now: float,
    ) -> None:
        cache = self._cache
        result = cache.learn(exporter, odid, decoder, now)
        while result is LearnResult.FULL and self._evict_least_recent(exporter):
            result = cache.learn(exporter, odid, decoder, now)
        if result in (LearnResult.REFUSED, LearnResult.FULL):
            state.counts["templates_refused"] += 1
            template_id = decoder.template.template_id
            if cache.withdraw(exporter, odid, template_id):
                # A refused redefinition: the old layout must not decode what follows.
                self._events.append(TemplateWithdrawn(exporter, odid, template_id))
            return
        state.counts["templates"] += 1
        if result is LearnResult.REFRESHED:
            return
        template = decoder.template
        self._events.append(
            TemplateLearned(
                exporter,
                odid,
                template.template_id,
                redefined=result is LearnResult.REDEFINED,
                options=template.options,
            )
        )
        self._release(exporter, odid, decoder, state)

    # --- Sequence numbers (RFC 7011 §3.1) -------------------------------------------------------

    def _track_sequence(
        self,
        header: MessageHeader,
        count: int,
        complete: bool,
        exporter: ExporterKey,
        state: _Exporter,
    ) -> None:
        odid = header.observation_domain_id
        seq = state.sequences.get(odid)
        if seq is None:
            seq = self._new_domain(state, odid)
            if seq is None:
                return
        number = header.sequence
        if seq.expected is not None:
            ahead = (number - seq.expected) % _MOD
            behind = (seq.expected - number) % _MOD
            if 0 < ahead <= MAX_FORWARD_GAP:
                state.counts["sequence_gaps"] += ahead
                seq.gaps = [*seq.gaps[-(_MAX_GAPS - 1) :], [seq.expected, ahead]]
                self._events.append(SequenceGap(exporter, odid, ahead))
            elif 0 < behind <= MAX_LATE:
                state.counts["late_messages"] += 1
                state.counts["sequence_gaps"] -= _credit(seq, number, count)
                return
            elif ahead:
                state.counts["sequence_resets"] += 1
                seq.gaps = []
        seq.expected = (number + count) % _MOD if complete else None

    def _new_domain(self, state: _Exporter, odid: int) -> _Sequence | None:
        """Sequence state for a new domain: the exporter's oldest goes when it has too many."""
        limits = self.limits
        if len(state.sequences) >= limits.max_domains_per_exporter and state.sequences:
            del state.sequences[next(iter(state.sequences))]
            self._domains -= 1
        if self._domains >= limits.max_domains or limits.max_domains_per_exporter < 1:
            state.counts["domains_refused"] += 1
            return None
        self._domains += 1
        seq = state.sequences[odid] = _Sequence()
        return seq

    # --- Pre-template buffer (RFC 7011 §9.3) ----------------------------------------------------

    def _buffer(self, state: _Exporter, pending: _Pending) -> None:
        """Buffer a data set; the exporter's oldest make room, else the new one is dropped."""
        size = len(pending.body)
        address = state.key.address
        limits = self.limits
        if (
            size > min(limits.max_buffered_bytes_per_exporter, limits.max_buffered_bytes)
            or min(limits.max_buffered_per_exporter, limits.max_buffered) < 1
        ):
            state.counts["dropped_buffered"] += 1
            return
        while state.buffer and self._over(address, size):
            self._drop_oldest(state)
        if self._over(address, size):
            state.counts["dropped_buffered"] += 1
            return
        state.buffer.append(pending)
        self._buffering[state.key] = state
        state.buffered_bytes += size
        state.counts["buffered"] += 1
        usage = self._buffered_by_address.setdefault(address, [0, 0])
        usage[0] += 1
        usage[1] += size
        self._buffered += 1
        self._buffered_bytes += size

    def _over(self, address: str, size: int) -> bool:
        """Whether one more set of ``size`` bytes would pass a per-address or global cap."""
        limits = self.limits
        sets, held = self._buffered_by_address.get(address, (0, 0))
        return (
            sets + 1 > limits.max_buffered_per_exporter
            or held + size > limits.max_buffered_bytes_per_exporter
            or self._buffered + 1 > limits.max_buffered
            or self._buffered_bytes + size > limits.max_buffered_bytes
        )

    def _unbuffer(self, state: _Exporter, pending: _Pending) -> None:
        """Account for ``pending`` leaving ``state``'s buffer (already taken out of it)."""
        size = len(pending.body)
        state.buffered_bytes -= size
        self._buffered -= 1
        self._buffered_bytes -= size
        usage = self._buffered_by_address[state.key.address]
        usage[0] -= 1
        usage[1] -= size
        if not usage[0]:
            del self._buffered_by_address[state.key.address]
        if not state.buffer:
            self._buffering.pop(state.key, None)

    def _drop_oldest(self, state: _Exporter) -> None:
        old = state.buffer.popleft()
        state.counts["dropped_buffered"] += 1
        self._unbuffer(state, old)

    def _expire_buffer(self, state: _Exporter, now: float) -> None:
        while state.buffer and now - state.buffer[0].received_at > self.buffer_age:
            self._drop_oldest(state)

    def _release(
        self, exporter: ExporterKey, odid: int, decoder: TemplateDecoder, state: _Exporter
    ) -> None:
        """Decode the buffered data sets that were waiting for ``decoder``'s template."""
        template_id = decoder.template.template_id
        waiting = [p for p in state.buffer if p.odid == odid and p.template_id == template_id]
        if not waiting:
            return
        taken = {id(p) for p in waiting}
        state.buffer = deque(p for p in state.buffer if id(p) not in taken)
        records: list[DataRecord] = []
        for pending in waiting:
            self._unbuffer(state, pending)
            try:
                records += decoder.decode_set_untrusted(
                    pending.body, exporter, odid, pending.export_time, pending.sequence
                )
            except BadIpfix:
                state.counts["malformed"] += 1
                state.counts["dropped_buffered"] += 1
        if records:
            state.counts["records"] += len(records)
            self._events.append(RecordsDecoded(records))

    # --- Exporter table -------------------------------------------------------------------------

    def _exporter(self, key: ExporterKey) -> _Exporter:
        state = self._exporters.get(key)
        if state is not None:
            self._exporters.move_to_end(key)
            return state
        while len(self._exporters) >= max(self.limits.max_exporters, 1):
            evicted, old = self._exporters.popitem(last=False)
            self._drop_state(old)
            self._cache.forget_exporter(evicted)
            self.evicted += 1
        state = self._exporters[key] = _Exporter(key)
        return state

    def _evict_least_recent(self, keep: ExporterKey) -> bool:
        """Make room under a global cap: drop one exporter other than ``keep``.

        Among the ``_EVICTION_WINDOW`` least recently heard, the one that holds the most templates
        goes (the oldest of those): a sprayer at its caps before an honest agent with a few. If
        none of them holds a template, nothing goes (the templates are with recent exporters).
        """
        count = self._cache.count
        victim: ExporterKey | None = None
        most = 0
        for key in islice(self._exporters, _EVICTION_WINDOW + 1):
            if key != keep and count(key) > most:
                victim, most = key, count(key)
        if victim is None:
            return False
        self._drop_state(self._exporters.pop(victim))
        self._cache.forget_exporter(victim)
        self.evicted += 1
        return True

    def _drop_state(self, state: _Exporter) -> None:
        """Release what an exporter that leaves the table held (buffers, domains)."""
        while state.buffer:
            self._unbuffer(state, state.buffer.popleft())
        self._domains -= len(state.sequences)
        state.sequences.clear()


def _overlay_withdraw(
    overlay: dict[int, TemplateDecoder | None], wiped: set[bool], record: TemplateWithdrawal
) -> None:
    """Apply a TCP withdrawal to the templates seen by the rest of the message."""
    if not record.withdraw_all:
        overlay[record.template_id] = None
        return
    wiped.add(record.options)
    for template_id, decoder in list(overlay.items()):
        if decoder is not None and decoder.template.options == record.options:
            overlay[template_id] = None


def _credit(seq: _Sequence, number: int, count: int) -> int:
    """Credit back the records of a late message that falls into a recorded gap."""
    for gap in seq.gaps:
        start, missing = gap
        if (number - start) % _MOD < missing:
            credit = min(count, missing)
            gap[1] -= credit
            return credit
    return 0
