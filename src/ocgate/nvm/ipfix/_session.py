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
* Sequence numbers (§3.1) are tracked per (exporter, domain): expected = previous + data records
  of the previous message. A forward jump of up to ``2**24`` counts lost records
  (:class:`SequenceGap`); a backward jump of up to ``2**16`` is a late or duplicate message
  (tolerated; if it fills a recorded gap the loss count is credited back); anything else is an
  exporter restart, which resynchronises without counting loss. A message with buffered sets has
  an unknown record count, so the next message resynchronises.
* The exporter table is an LRU bounded by ``max_exporters``; evicting an exporter drops its
  templates, buffers and counters (RFC 7011 §9.3 lets a collector drop idle UDP state).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field, fields

from ocgate.errors import BadIpfix
from ocgate.nvm.ipfix._cache import LearnResult, TemplateCache
from ocgate.nvm.ipfix._decode import TemplateDecoder, compile_template
from ocgate.nvm.ipfix._exporter import ExporterKey
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
_MAX_GAPS = 16


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

    :param max_templates_per_exporter: template cap per exporter.
    :param max_buffered_per_exporter: pre-template buffer cap, in data sets.
    :param max_buffered_bytes_per_exporter: pre-template buffer cap, in bytes.
    :param buffer_age: seconds a buffered data set waits for its template.
    :param max_exporters: exporter table bound (least recently heard from is evicted).
    :param template_lifetime: expire templates not refreshed for this long; ``None`` = never
        (nvm-ipfix.md §3: off, or ≥ 3x the refresh interval).
    :param template_cache: a cache to share or pre-load; a new one by default.
    """

    def __init__(
        self,
        *,
        max_templates_per_exporter: int = 64,
        max_buffered_per_exporter: int = 1000,
        max_buffered_bytes_per_exporter: int = 1 << 20,
        buffer_age: float = 30.0,
        max_exporters: int = 65536,
        template_lifetime: float | None = None,
        template_cache: TemplateCache | None = None,
    ) -> None:
        self._cache = template_cache or TemplateCache(
            max_templates_per_exporter=max_templates_per_exporter
        )
        self.max_buffered_per_exporter = max_buffered_per_exporter
        self.max_buffered_bytes_per_exporter = max_buffered_bytes_per_exporter
        self.buffer_age = buffer_age
        self.max_exporters = max_exporters
        self.template_lifetime = template_lifetime
        self._exporters: OrderedDict[ExporterKey, _Exporter] = OrderedDict()
        self._events: deque[IpfixEvent] = deque()
        self._buffering: dict[ExporterKey, _Exporter] = {}
        self._next_expiry_check: float | None = None

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
        self._exporters.pop(key, None)
        self._buffering.pop(key, None)
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

    @staticmethod
    def _compiled(template: Template, known: TemplateDecoder | None) -> TemplateDecoder:
        if known is not None and known.template == template:
            return known
        return compile_template(template)

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
        result = self._cache.learn(exporter, odid, decoder, now)
        if result is LearnResult.REFUSED:
            state.counts["templates_refused"] += 1
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
        seq = state.sequences.setdefault(odid, _Sequence())
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

    # --- Pre-template buffer (RFC 7011 §9.3) ----------------------------------------------------

    def _buffer(self, state: _Exporter, pending: _Pending) -> None:
        size = len(pending.body)
        if size > self.max_buffered_bytes_per_exporter or self.max_buffered_per_exporter < 1:
            state.counts["dropped_buffered"] += 1
            return
        while state.buffer and (
            len(state.buffer) >= self.max_buffered_per_exporter
            or state.buffered_bytes + size > self.max_buffered_bytes_per_exporter
        ):
            self._drop_oldest(state)
        state.buffer.append(pending)
        self._buffering[state.key] = state
        state.buffered_bytes += size
        state.counts["buffered"] += 1

    def _drop_oldest(self, state: _Exporter) -> None:
        old = state.buffer.popleft()
        state.buffered_bytes -= len(old.body)
        state.counts["dropped_buffered"] += 1
        if not state.buffer:
            self._buffering.pop(state.key, None)

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
        if not state.buffer:
            self._buffering.pop(state.key, None)
        records: list[DataRecord] = []
        for pending in waiting:
            state.buffered_bytes -= len(pending.body)
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
        while len(self._exporters) >= max(self.max_exporters, 1):
            evicted, _ = self._exporters.popitem(last=False)
            self._buffering.pop(evicted, None)
            self._cache.forget_exporter(evicted)
        state = self._exporters[key] = _Exporter(key)
        return state


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
