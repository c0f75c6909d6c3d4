"""Usage accumulation: cumulative totals per account and metric, tier crossings, adoption spikes.

The account's row (`UsageRow`, stored in a Faust table as compact JSON) holds everything one event
changes in the account's figures, so state, the record of what fired and the input offset move
together in one changelog write. Only this module knows the stored form's one-letter keys:
  t: {metric: cumulative total}          o: offset of the last applied input event
  w: {metric: spike window state}        s: {metric: [first, last] event time, epoch seconds}
  k: input offsets of this account's events that were parked (dead-lettered) instead of applied
  m: {metric: {"YYYY-MM": month's total}}: the last MONTHS_KEPT UTC months by event time, every metric
  d: {metric: {UTC day number since 1970: day's total}}: the metrics risk signals read, as many days as
     their rules need (`SignalRules.daily_days`); a gauge's month and day keep its maximum, not a sum
Why one-letter keys: the row is rewritten once per account per batch, so its bytes are changelog
bytes; every other module reads it through `UsageRow`'s names and methods.

Duplicates are exact within the dedupe horizon: every event id applied is remembered in a table of
its own (`SeenIds`: one small entry per event, key `id_key`, value the input offset that first
carried it), which scales to millions of ids per account where a list in the row could not. Why the
offset as the value: the id entry and the row are two changelog writes, and a crash can keep one
and lose the other (or, with RocksDB, keep both locally and lose both in the changelog). An id
entry whose offset is this event's own is this event read again, not a duplicate; and an event
read again at or below the row's offset re-writes its id entry (the agent re-writes the row too),
unless the row lists it as parked: a parked event was never counted, so its id must stay free for
the replay of its dead letter. An ingestion adapter's re-published copies carry the same event id
(Segment's messageId, or the source message's position), so they are duplicates here too.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import math
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from milestone_stream.ids import milestone_id
from milestone_stream.rules import Rules, Spike
from milestone_stream.schemas.records import Evidence, Milestone, TelemetryEvent

APPLIED, DUPLICATE, REPLAYED, BEYOND_HORIZON = "applied", "duplicate", "replayed", "beyond_dedupe_horizon"
PARKED_KEPT = 256             # parked offsets a row remembers ...
PARKED_SPAN = 1_000_000       # ... and only within this many offsets of its own (older ones are committed)
MONTHS_KEPT = 13              # monthly totals: this month and the twelve before (the notes' "past year")
DAY = 86400


class SeenIds(Protocol):
    """The ids of events applied within the horizon: id key → input offset that first carried it."""

    def first_offset(self, key: bytes) -> int | None: ...

    def remember(self, key: bytes, offset: int) -> None: ...


class MemorySeenIds:
    """`SeenIds` in memory, for the rules run without Kafka (the sample notes, bench/step_costs.py)."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}

    def first_offset(self, key: bytes) -> int | None:
        return self.ids.get(key)

    def remember(self, key: bytes, offset: int) -> None:
        self.ids.setdefault(key, offset)


def id_key(account_id: str, event_id: str) -> bytes:
    """16 bytes (128 bits: no collision in any realistic number of ids) for one account's event id."""
    return hashlib.blake2b(f"{account_id}\x00{event_id}".encode(), digest_size=16).digest()


class UsageRow:
    """One account's usage figures: typed names over the stored compact form (see the module's docstring).

    `from_stored` reads a table value without copying it (cheap, for readers; tolerant of missing or
    ill-typed parts, which read as empty); `copy` makes the working copy a writer changes. Why a copy
    at all: Faust serializes changelog values late, so the stored row must not change until the
    milestones it records are acknowledged and its own write is issued. Why not deepcopy: it costs
    several times more, and only the containers change (windows are replaced or changed per metric).
    """

    __slots__ = ("totals", "offset", "windows", "spans", "parked", "months", "days")

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}            # t
        self.offset: int = -1                         # o
        self.windows: dict[str, dict] = {}            # w: {"s": start, "m": measure, "p": previous, "f": fired}
        self.spans: dict[str, list[float]] | None = None   # s: absent until a metric is counted
        self.parked: list[int] | None = None          # k: absent until an event is parked
        self.months: dict[str, dict] | None = None    # m: absent until a metric is counted
        self.days: dict[str, dict] | None = None      # d: absent until a metric a signal reads is counted

    @classmethod
    def from_stored(cls, value: object) -> UsageRow:
        """The row a table holds (None: a new row). Rows written before the exact dedupe kept recent
        ids in `r` (a string, or earlier a list), and adapters' source offsets in `x`; both are
        dropped (the event-id table recognises those copies now)."""
        row = cls()
        if isinstance(value, dict):
            row.totals, row.windows = _dict(value.get("t")), _dict(value.get("w"))
            row.offset = value.get("o", -1)
            spans, parked = value.get("s"), value.get("k")
            row.spans = spans if isinstance(spans, dict) else None
            row.parked = parked if isinstance(parked, list) else None
            months, days = value.get("m"), value.get("d")
            row.months = months if isinstance(months, dict) else None
            row.days = days if isinstance(days, dict) else None
        return row

    def to_stored(self) -> dict:
        """The compact form, keys in the order this module always wrote them. Shares the row's
        containers: store, then let go."""
        out: dict = {"t": self.totals, "o": self.offset, "w": self.windows}
        if self.spans is not None:
            out["s"] = self.spans
        if self.parked is not None:
            out["k"] = self.parked
        if self.months is not None:
            out["m"] = self.months
        if self.days is not None:
            out["d"] = self.days
        return out

    def copy(self) -> UsageRow:
        """A working copy: its containers copied, at a fraction of deepcopy's cost."""
        out = UsageRow.__new__(UsageRow)
        out.totals, out.offset = dict(self.totals), self.offset
        out.windows = {m: dict(w) for m, w in self.windows.items()}
        out.spans = {m: list(v) for m, v in self.spans.items()} if self.spans is not None else None
        out.parked = list(self.parked) if self.parked is not None else None
        out.months = _copy_nested(self.months)
        out.days = _copy_nested(self.days)
        return out

    def mark_parked(self, offset: int) -> None:
        """Record that the event at `offset` was dead-lettered instead of applied."""
        self.offset = max(self.offset, offset)
        kept = [k for k in self.parked or [] if k > self.offset - PARKED_SPAN] + [offset]
        self.parked = kept[-PARKED_KEPT:]

    def __repr__(self) -> str:
        return f"UsageRow({self.to_stored()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UsageRow) and self.to_stored() == other.to_stored()

    # -- for readers (the drafter's context) ---------------------------------------------------

    def total(self, metric: str, default: float | None = None) -> float | None:
        """The metric's cumulative total as stored (`default` if never counted)."""
        return self.totals.get(metric, default)

    def first_last(self, metric: str) -> tuple[float, float] | None:
        """(first, last) event time of the metric, epoch seconds; None if absent or not two numbers."""
        span = (self.spans or {}).get(metric)
        if span is None:
            return None
        try:
            first, last = (float(v) for v in span)
        except (TypeError, ValueError):
            return None
        return first, last

    def window_measures(self) -> list[tuple[str, object, object]]:
        """(metric, window start, measure) of each spike window, as stored (None where unreadable)."""
        return [(metric, w.get("s"), w.get("m")) if isinstance(w, dict) else (metric, None, None)
                for metric, w in self.windows.items()]


    def monthly(self, metric: str) -> dict[str, float]:
        """{"YYYY-MM": total} of the metric by UTC month of event time, oldest first: the last 13 months
        the row saw (a gauge's monthly maximum); unreadable entries are left out, a month without
        events is absent."""
        return dict(sorted(_numbers(_dict((self.months or {}).get(metric))).items()))

    def daily(self, metric: str) -> dict[date, float]:
        """{UTC day: total} of the metric by event time (a gauge's daily maximum), oldest first; only the
        metrics risk signals read, only the days their rules need. A day without events is absent."""
        out: dict[date, float] = {}
        for key, value in _numbers(_dict((self.days or {}).get(metric))).items():
            try:
                out[EPOCH + timedelta(days=int(key))] = value
            except (ValueError, OverflowError):
                continue
        return dict(sorted(out.items()))


EPOCH = date(1970, 1, 1)


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _numbers(value: dict) -> dict[str, float]:
    return {k: float(v) for k, v in value.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _copy_nested(value: dict[str, dict] | None) -> dict[str, dict] | None:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()} if value is not None else None


def _count_by_period(row: UsageRow, event: TelemetryEvent, gauge: bool, keep_days: int | None) -> None:
    """Add the event to its metric's month (and, for a metric a signal reads, its day). Bounded: a new
    month or day drops the oldest beyond what is kept, and an event older than them is not counted
    per period (its cumulative total counts)."""
    metric, value, at = event.metric, event.value, event.occurred_at
    if row.months is None:
        row.months = {}
    months = row.months.get(metric)
    if not isinstance(months, dict):
        months = row.months[metric] = {}
    _add(months, _month_key(at.year, at.month), value, gauge, MONTHS_KEPT)
    if keep_days:
        if row.days is None:
            row.days = {}
        days = row.days.get(metric)
        if not isinstance(days, dict):
            days = row.days[metric] = {}
        _add(days, str(int(at.timestamp() // DAY)), value, gauge, keep_days)


@functools.lru_cache(maxsize=256)
def _month_key(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"  # cached: formatting it for every event cost more than the rest of the count


def _add(periods: dict, key: str, value: float, gauge: bool, kept: int) -> None:
    before = periods.get(key)
    if isinstance(before, (int, float)):
        periods[key] = max(before, value) if gauge else before + value
        return
    periods[key] = value
    if len(periods) > kept:  # a new period: keep the `kept` latest (day numbers compare as numbers)
        order = sorted(periods, key=_period_order)
        for old in order[:len(order) - kept]:
            del periods[old]


def _period_order(key: str) -> tuple[int, str]:
    return (int(key), "") if key.isdigit() else (0, key)


def rejection(event: TelemetryEvent, rules: Rules, now: datetime) -> tuple[str, str] | None:
    """(reason, detail) when a decoded event must be dead-lettered instead of counted."""
    if not rules.known_metric(event.metric):
        return "unknown_metric", f"metric {event.metric!r} is not configured in the rules"
    if event.value > rules.max_event_value:
        return "value_out_of_range", f"value {event.value:g} is above max_event_value {rules.max_event_value:g}"
    skew = (event.occurred_at - now).total_seconds()
    if skew > rules.max_future_skew_seconds:
        return "future_timestamp", f"occurred_at {event.occurred_at.isoformat()} is {skew:.0f}s in the future"
    return None


def apply_event(row: UsageRow, event: TelemetryEvent, offset: int, rules: Rules, seen: SeenIds,
                now: datetime) -> tuple[str, list[Milestone]]:
    """Apply one valid event to the account's row (in place); return its status and milestones.

    An offset at or below the row's is a replay after a crash (already applied or parked: skipped);
    an id seen within the horizon is a duplicate (a producer's re-send, an adapter's re-published
    copy: skipped); an event older than the horizon is refused (`BEYOND_HORIZON`, to be
    dead-lettered and recorded as parked), since its id may no longer be remembered. Either way
    each event counts once.
    """
    key = id_key(event.account_id, event.event_id)
    first = seen.first_offset(key)
    if offset <= row.offset:
        if offset not in (row.parked or ()) and first in (None, offset):
            seen.remember(key, offset)  # written again: a crash may have lost it from the changelog
        return REPLAYED, []
    row.offset = offset
    if first is not None and first != offset:
        return DUPLICATE, []
    if event.occurred_at < now - timedelta(days=rules.dedupe.horizon_days):
        row.mark_parked(offset)
        return BEYOND_HORIZON, []
    seen.remember(key, offset)
    fired: list[Milestone] = []
    if event.metric in rules.usage:
        before = row.totals.get(event.metric, 0.0)
        after = before + event.value
        row.totals[event.metric] = after
        if row.spans is None:
            row.spans = {}
        seen_at = row.spans.setdefault(event.metric, [event.occurred_at.timestamp()] * 2)
        seen_at[0] = min(seen_at[0], event.occurred_at.timestamp())
        seen_at[1] = max(seen_at[1], event.occurred_at.timestamp())
        fired += _tiers_crossed(event, before, after, rules)
    if rules.spike and event.metric == rules.spike.metric:
        fired += _spike(row, event, rules.spike, rules.gauges)
    _count_by_period(row, event, event.metric in rules.gauges,
                     rules.signals.daily_days.get(event.metric) if rules.signals else None)
    return APPLIED, fired


def _evidence(event: TelemetryEvent) -> list[Evidence]:
    return [Evidence(source=event.source, record=f"event {event.event_id}", occurred_at=event.occurred_at)]


def _tiers_crossed(event: TelemetryEvent, before: float, after: float, rules: Rules) -> list[Milestone]:
    """The tiers in (before, after]; tiers are ascending, so two bisections find them (rules may list thousands)."""
    metric = rules.usage[event.metric]
    crossed = metric.tiers[bisect.bisect_right(metric.tiers, before):bisect.bisect_right(metric.tiers, after)]
    label = metric.label or event.metric.replace("_", " ")
    return [
        Milestone(milestone_id=milestone_id(event.account_id, "usage_threshold", event.metric, tier),
                  account_id=event.account_id, kind="usage_threshold", metric=event.metric, threshold=tier,
                  value=after, title=f"{tier:,.0f} {label}", reached_at=event.occurred_at,
                  evidence=_evidence(event))
        for tier in crossed
    ]


def _spike(row: UsageRow, event: TelemetryEvent, spike: Spike, gauges: Collection[str]) -> list[Milestone]:
    """Tumbling event-time windows: fire once when this window's measure reaches ratio x the last one's.

    The measure is the window's sum for a cumulative metric and its maximum for a gauge. Late events
    for the previous window still count toward it; older ones are ignored for spikes (not totals).
    """
    size = spike.window_days * 86400
    start = math.floor(event.occurred_at.timestamp() / size) * size
    w = row.windows.get(event.metric) or {"s": start, "m": 0.0, "p": 0.0, "f": None}
    if start > w["s"]:
        w = {"s": start, "m": 0.0, "p": w["m"] if start - w["s"] == size else 0.0, "f": w["f"]}
    gauge = event.metric in gauges
    combine = max if gauge else (lambda a, b: a + b)
    if start == w["s"]:
        w["m"] = combine(w["m"], event.value)
    elif start == w["s"] - size:
        w["p"] = combine(w["p"], event.value)
    row.windows[event.metric] = w
    if w["f"] == w["s"] or w["p"] < spike.min_base or w["p"] <= 0 or w["m"] < spike.ratio * w["p"]:
        return []
    w["f"] = w["s"]
    window = datetime.fromtimestamp(w["s"], tz=UTC)
    rise = (w["m"] / w["p"] - 1) * 100
    label = event.metric.replace("_", " ")
    return [Milestone(milestone_id=milestone_id(event.account_id, "adoption_spike", event.metric, window.date()),
                      account_id=event.account_id, kind="adoption_spike", metric=event.metric,
                      threshold=spike.ratio, value=w["m"],
                      title=f"{label} up {rise:.0f}% over the previous {spike.window_days:g}-day window",
                      reached_at=event.occurred_at, evidence=_evidence(event))]
