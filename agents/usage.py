"""Usage accumulation: cumulative totals per account and metric, tier crossings, adoption spikes.

The account's row (a Faust table value, JSON) holds everything one event needs, so state, the
record of what fired and the input offset move together in one changelog write:
  t: {metric: cumulative total}          o: offset of the last applied input event
  r: recent event ids, hashed to 8 characters each, in one string (cheap to copy and to encode)
  w: {metric: spike window state}
  s: {metric: [first, last] event time, epoch seconds} (the drafter's pace and as-of figures)
  x: {source topic#partition: offset} of records mapped by an ingestion adapter (agents/origins.py)
"""
from __future__ import annotations

import base64
import bisect
import hashlib
import math
from datetime import datetime, timezone

from milestone_stream.agents.origins import republished
from milestone_stream.ids import milestone_id
from milestone_stream.models import Evidence, Milestone, TelemetryEvent
from milestone_stream.rules import Rules

APPLIED, DUPLICATE, REPLAYED = "applied", "duplicate", "replayed"
ID_WIDTH = 8  # characters per hashed event id in `r` (48 bits)


def new_row() -> dict:
    return {"t": {}, "o": -1, "r": "", "w": {}}


def id_hash(event_id: str) -> str:
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=6).digest()).decode()


def _recent(row: dict) -> str:
    """The row's recent ids; rows written before 2026-11-25 kept a list of hex digests."""
    r = row["r"]
    return r if isinstance(r, str) else "".join(base64.urlsafe_b64encode(bytes.fromhex(h)).decode() for h in r)


def _seen(recent: str, digest: str) -> bool:
    at = recent.find(digest)
    while at != -1 and at % ID_WIDTH:
        at = recent.find(digest, at + 1)
    return at != -1


def copy_row(row: dict | None) -> dict:
    """A working copy of a stored row (or a new one): its containers copied, at a fraction of deepcopy's cost.

    Why a copy at all: Faust serializes changelog values late, so the stored row must not change
    until the milestones it records are acknowledged and its own write is issued.
    """
    if row is None:
        return new_row()
    out = dict(row, t=dict(row["t"]), r=_recent(row), w={m: dict(w) for m, w in row["w"].items()})
    if "s" in row:
        out["s"] = {m: list(v) for m, v in row["s"].items()}
    if "x" in row:
        out["x"] = dict(row["x"])
    return out


def rejection(event: TelemetryEvent, rules: Rules, now: datetime) -> tuple[str, str] | None:
    """(reason, detail) when a decoded event must be dead-lettered instead of counted."""
    if not rules.known_metric(event.metric):
        return "unknown_metric", f"metric {event.metric!r} is not configured in the rules"
    skew = (event.occurred_at - now).total_seconds()
    if skew > rules.max_future_skew_seconds:
        return "future_timestamp", f"occurred_at {event.occurred_at.isoformat()} is {skew:.0f}s in the future"
    return None


def apply_event(row: dict, event: TelemetryEvent, offset: int, rules: Rules) -> tuple[str, list[Milestone]]:
    """Apply one valid event to the account's row (in place); return its status and milestones.

    An offset at or below the row's is a replay after a crash (already applied: skipped); an id seen
    recently is a producer duplicate, and one at or below its source offset an adapter's copy
    (both skipped). Either way the total counts each event once.
    """
    if offset <= row["o"]:
        return REPLAYED, []
    row["o"] = offset
    if event.origin is not None and republished(row.setdefault("x", {}), event.origin):
        return DUPLICATE, []
    digest, recent = id_hash(event.event_id), _recent(row)
    if _seen(recent, digest):
        return DUPLICATE, []
    keep = rules.dedupe.recent_event_ids * ID_WIDTH
    row["r"] = (recent + digest)[-keep:] if keep else ""
    fired: list[Milestone] = []
    if event.metric in rules.usage:
        before = row["t"].get(event.metric, 0.0)
        after = before + event.value
        row["t"][event.metric] = after
        seen = row.setdefault("s", {}).setdefault(event.metric, [event.occurred_at.timestamp()] * 2)
        seen[0], seen[1] = min(seen[0], event.occurred_at.timestamp()), max(seen[1], event.occurred_at.timestamp())
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
