"""The CRM tracker: the account profile kept from CRM changes, and the milestones they mark.

Row (Faust table value, JSON):  p: profile fields   c: key contacts   f: ids of fired milestones
a: anniversary years done   r: recent change ids
o: {topic: offset of the last applied input}
s: {field: [source, record, ISO time]} where each profile field came from (the drafter cites it; also
   the as-of time that makes a late, older value lose)
"""
from __future__ import annotations

from datetime import date, datetime, time, timezone

from milestone_stream.agents.anniversary import anniversary_date, due_now
from milestone_stream.ids import milestone_id
from milestone_stream.models import CrmChange, Evidence, Milestone
from milestone_stream.rules import Rules

ANNIVERSARY_DUE = "anniversary_due"  # a clock tick for this account, sent by the anniversary timer
ONCE_EVER = {"implementation_signed_off_at": ("implementation_signed_off", "Implementation signed off")}
PER_DATE = {"qbr_completed_at": ("qbr_completed", "QBR completed"),
            "renewal_signed_at": ("renewal_signed", "Renewal signed")}


def new_row() -> dict:
    return {"p": {}, "c": [], "f": [], "a": [], "o": {}, "r": []}


def contract_start(row: dict) -> date | None:
    raw = row["p"].get("contract_start")
    try:
        return date.fromisoformat(str(raw)[:10]) if raw else None
    except ValueError:
        return None


def apply_change(row: dict, change: CrmChange, origin: tuple[str, int], rules: Rules,
                 today: date) -> list[Milestone]:
    """Apply one change to the row (in place) and return the milestones it marks, each once ever.

    `origin` is the input's (topic, offset): at or below the row's offset for that topic it is a
    replay after a crash and changes nothing; a recent change id is a producer duplicate (skipped to
    save work: applying a change twice changes nothing, an adapter's re-published copy included). A
    field value older (by `occurred_at`) than the one the row holds arrived out of order and is
    ignored: the CRM's latest value wins.
    """
    topic, offset = origin
    if offset <= row["o"].get(topic, -1):
        return []
    row["o"][topic] = offset
    if change.change_id in row["r"]:
        return []
    row["r"] = (row["r"] + [change.change_id])[-max(rules.dedupe.recent_event_ids, 1):]
    if change.contacts is not None:
        row["c"] = [c.model_dump() for c in change.contacts]
    fired: list[Milestone] = []
    for fc in change.changes:
        if fc.field == ANNIVERSARY_DUE:
            fired += _anniversaries(row, change, rules, today)
            continue
        provenance = row.setdefault("s", {})
        if fc.field in provenance and change.occurred_at < datetime.fromisoformat(provenance[fc.field][2]):
            continue  # older than the value the row holds (out of order): the newer value stands
        before = row["p"].get(fc.field)
        if fc.value is None:
            row["p"].pop(fc.field, None)
        else:
            row["p"][fc.field] = fc.value
        # kept for a cleared field too, so that an older value arriving late cannot bring it back
        provenance[fc.field] = [change.source, change.source_record or change.account_id, change.occurred_at.isoformat()]
        fired += _marks(row, change, fc.field, before, fc.value, rules)
    return [m for m in fired if _first_time(row, m)]


def _first_time(row: dict, m: Milestone) -> bool:
    if m.milestone_id in row["f"]:
        return False
    row["f"].append(m.milestone_id)
    return True


def _milestone(change: CrmChange, kind: str, metric: str | None, key, title: str,
               threshold: float | None = None, value: float | None = None) -> Milestone:
    record = f"{change.source_record or change.account_id} field {metric}" if metric else (change.source_record or change.account_id)
    return Milestone(milestone_id=milestone_id(change.account_id, kind, metric, key), account_id=change.account_id,
                     kind=kind, metric=metric, threshold=threshold, value=value, title=title,
                     reached_at=change.occurred_at,
                     evidence=[Evidence(source=change.source, record=f"{record} (change {change.change_id})",
                                        occurred_at=change.occurred_at)])


def _marks(row: dict, change: CrmChange, field: str, before, value, rules: Rules) -> list[Milestone]:
    if value is None:
        return []
    if field.startswith("adoption.") and value is True:
        feature = field.split(".", 1)[1]
        return [_milestone(change, "feature_adopted", feature, "first", f"First use of {feature.replace('_', ' ')}")]
    if field == "roi_percent" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return [_milestone(change, "roi_threshold", "roi_percent", level, f"{level:g}% ROI achieved",
                           threshold=level, value=float(value))
                for level in rules.roi_levels if value >= level]
    if field.startswith("certification.") and value not in (False, 0, ""):
        program = field.split(".", 1)[1].replace("_", " ")
        count = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if count is not None and (count < 1 or count != int(count)):
            return []  # a count of people certified is a whole number from 1
        title = f"{count:g} certified in {program}" if count is not None else f"{program} certification completed"
        return [_milestone(change, "certification", field, value, title, value=count)]
    if field in ONCE_EVER:
        kind, title = ONCE_EVER[field]
        return [_milestone(change, kind, field, "once", title)]
    if field in PER_DATE:
        kind, title = PER_DATE[field]
        day = _iso_day(value)
        return [_milestone(change, kind, field, day, f"{title} on {day}")] if day else []
    return []


def _iso_day(value) -> str | None:
    """The ISO date a dated event's field names (`2026-05-01`, or a timestamp text), else None: a
    value that is no date (markup, a number) marks no milestone."""
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        return None


def _anniversaries(row: dict, change: CrmChange, rules: Rules, today: date) -> list[Milestone]:
    start = contract_start(row)
    if start is None:
        return []
    done = set(row["a"])
    celebrate, passed = due_now(start, rules.anniversary_years, done, today)
    row["a"] = sorted(done | set(celebrate) | set(passed))
    out = []
    for years in celebrate:
        when = anniversary_date(start, years)
        m = _milestone(change, "anniversary", "contract_start", when.isoformat(),
                       f"{years} year{'s' if years > 1 else ''} together", threshold=years, value=years)
        out.append(m.model_copy(update={"reached_at": datetime.combine(when, time(), tzinfo=timezone.utc)}))
    return out
