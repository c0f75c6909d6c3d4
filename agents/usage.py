"""Usage accumulation: cumulative totals per account and metric, tier crossings, adoption spikes.

The account's row (a Faust table value, JSON) holds everything one event changes in the account's
figures, so state, the record of what fired and the input offset move together in one changelog write:
  t: {metric: cumulative total}          o: offset of the last applied input event
  w: {metric: spike window state}
  s: {metric: [first, last] event time, epoch seconds} (the drafter's pace and as-of figures)
  k: input offsets of this account's events that were parked (dead-lettered) instead of applied

Duplicates are exact within the dedupe horizon: every event id applied is remembered in a table of
its own (`SeenIds`: one small entry per event, key `id_key`, value the input offset that first
carried it), which scales to millions of ids per account where a list in the row could not. Why the
offset as the value: the id entry and the row are two changelog writes, and a crash can keep one
and lose the other (or, with RocksDB, keep both locally and lose both in the changelog). An id
entry whose offset is this event's own is this event read again, not a duplicate; and an event
read again at or below the row's offset re-writes its id entry (the agent re-writes the row too),
unless the row lists it in `k` as parked: a parked event was never counted, so its id must stay
free for the replay of its dead letter. An ingestion adapter's re-published copies carry the same
event id (Segment's messageId, or the source message's position), so they are duplicates here too.
"""
from __future__ import annotations

import bisect
import hashlib
import math
from datetime import datetime, timedelta, timezone
from typing import Protocol

from milestone_stream.ids import milestone_id
from milestone_stream.models import Evidence, Milestone, TelemetryEvent
from milestone_stream.rules import Rules

APPLIED, DUPLICATE, REPLAYED, BEYOND_HORIZON = "applied", "duplicate", "replayed", "beyond_dedupe_horizon"
PARKED_KEPT = 256             # parked offsets a row remembers ...
PARKED_SPAN = 1_000_000       # ... and only within this many offsets of its own (older ones are committed)


class SeenIds(Protocol):
    """The ids of events applied within the horizon: id key → input offset that first carried it."""

    def first_offset(self, key: bytes) -> int | None: ...

    def remember(self, key: bytes, offset: int) -> None: ...


def id_key(account_id: str, event_id: str) -> bytes:
    """16 bytes (128 bits: no collision in any realistic number of ids) for one account's event id."""
    return hashlib.blake2b(f"{account_id}\x00{event_id}".encode(), digest_size=16).digest()


def new_row() -> dict:
    return {"t": {}, "o": -1, "w": {}}


def copy_row(row: dict | None) -> dict:
    """A working copy of a stored row (or a new one): its containers copied, at a fraction of deepcopy's cost.

    Why a copy at all: Faust serializes changelog values late, so the stored row must not change
    until the milestones it records are acknowledged and its own write is issued. Rows written
    before the exact dedupe kept recent ids in `r`; the copy drops them.
    """
    if row is None:
        return new_row()
    out = {k: v for k, v in row.items() if k not in ("r", "x")}
    out["t"], out["w"] = dict(row["t"]), {m: dict(w) for m, w in row["w"].items()}
    if "s" in row:
        out["s"] = {m: list(v) for m, v in row["s"].items()}
    if "k" in row:
        out["k"] = list(row["k"])
    return out


def mark_parked(row: dict, offset: int) -> None:
    """Record (in place) that the event at `offset` was dead-lettered instead of applied."""
    row["o"] = max(row["o"], offset)
    kept = [k for k in row.get("k", []) if k > row["o"] - PARKED_SPAN] + [offset]
    row["k"] = kept[-PARKED_KEPT:]


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


def apply_event(row: dict, event: TelemetryEvent, offset: int, rules: Rules, seen: SeenIds,
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
    if offset <= row["o"]:
        if offset not in row.get("k", ()) and first in (None, offset):
            seen.remember(key, offset)  # written again: a crash may have lost it from the changelog
        return REPLAYED, []
    row["o"] = offset
    if first is not None and first != offset:
        return DUPLICATE, []
    if event.occurred_at < now - timedelta(days=rules.dedupe.horizon_days):
        mark_parked(row, offset)
        return BEYOND_HORIZON, []
    seen.remember(key, offset)
    fired: list[Milestone] = []
    if event.metric in rules.usage:
        before = row["t"].get(event.metric, 0.0)
        after = before + event.value
        row["t"][event.metric] = after
        seen_at = row.setdefault("s", {}).setdefault(event.metric, [event.occurred_at.timestamp()] * 2)
        seen_at[0] = min(seen_at[0], event.occurred_at.timestamp())
        seen_at[1] = max(seen_at[1], event.occurred_at.timestamp())
        fired += _tiers_crossed(event, before, after, rules)
    if rules.spike and event.metric == rules.spike.metric:
        fired += _spike(row, event, rules)
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


def _spike(row: dict, event: TelemetryEvent, rules: Rules) -> list[Milestone]:
    """Tumbling event-time windows: fire once when this window's measure reaches ratio x the last one's.

    The measure is the window's sum for a cumulative metric and its maximum for a gauge. Late events
    for the previous window still count toward it; older ones are ignored for spikes (not totals).
    """
    spike = rules.spike
    size = spike.window_days * 86400
    start = math.floor(event.occurred_at.timestamp() / size) * size
    w = row["w"].get(event.metric) or {"s": start, "m": 0.0, "p": 0.0, "f": None}
    if start > w["s"]:
        w = {"s": start, "m": 0.0, "p": w["m"] if start - w["s"] == size else 0.0, "f": w["f"]}
    gauge = event.metric in rules.gauges
    combine = max if gauge else (lambda a, b: a + b)
    if start == w["s"]:
        w["m"] = combine(w["m"], event.value)
    elif start == w["s"] - size:
        w["p"] = combine(w["p"], event.value)
    row["w"][event.metric] = w
    if w["f"] == w["s"] or w["p"] < spike.min_base or w["p"] <= 0 or w["m"] < spike.ratio * w["p"]:
        return []
    w["f"] = w["s"]
    window = datetime.fromtimestamp(w["s"], tz=timezone.utc)
    rise = (w["m"] / w["p"] - 1) * 100
    label = event.metric.replace("_", " ")
    return [Milestone(milestone_id=milestone_id(event.account_id, "adoption_spike", event.metric, window.date()),
                      account_id=event.account_id, kind="adoption_spike", metric=event.metric,
                      threshold=spike.ratio, value=w["m"],
                      title=f"{label} up {rise:.0f}% over the previous {spike.window_days:g}-day window",
                      reached_at=event.occurred_at, evidence=_evidence(event))]
