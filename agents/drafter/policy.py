"""Policy before drafting: when an account's milestones are celebrated, and what the CSM is told.

Why: a customer congratulated three times in a week stops reading; an account in trouble may not
want a cheerful note. Nothing is dropped and nothing is silent: held milestones are merged into the
next note, and every decision becomes a policy note on the approval request.

The drafter's row per account (a Faust table value, JSON):
  d: ids of milestones taken in (a re-delivered milestone is recognised here)
  q: held milestones, oldest first: {"m": milestone as JSON, "o": [topic, partition, offset]}
  h: when the first of them was held (ISO)                l: when the account was last celebrated (ISO)
"""
from __future__ import annotations

from datetime import datetime, timedelta

from milestone_stream.schemas.records import Milestone
from milestone_stream.agents.drafter.context import Context


def new_row() -> dict:
    return {"d": [], "q": [], "h": None, "l": None}


def take_in(row: dict, m: Milestone, origin: tuple[str, int, int], now: datetime) -> bool:
    """Hold a new milestone (in place); False for a re-delivered copy, which changes nothing."""
    if m.milestone_id in row["d"]:
        return False
    row["d"].append(m.milestone_id)
    row["q"].append({"m": m.model_dump(mode="json"), "o": list(origin)})
    row["h"] = row["h"] or now.isoformat()
    return True


def due_at(row: dict, gather: timedelta, cooldown: timedelta) -> datetime | None:
    """When the held milestones may be drafted: after a short gathering window (milestones fired by
    the same input arrive together), and not before the account's cooldown ends."""
    if not row["q"]:
        return None
    when = datetime.fromisoformat(row["h"]) + gather
    if row["l"]:
        when = max(when, datetime.fromisoformat(row["l"]) + cooldown)
    return when


def held(row: dict) -> list[tuple[Milestone, tuple[str, int, int]]]:
    return [(Milestone.model_validate(h["m"]), tuple(h["o"])) for h in row["q"]]


def release(row: dict, now: datetime, gather: timedelta, cooldown: timedelta) -> tuple[list[Milestone], list[str]]:
    """The held milestones to celebrate now (all of them, merged), with the cooldown's note; or nothing."""
    when = due_at(row, gather, cooldown)
    if when is None or now < when:
        return [], []
    batch = [m for m, _ in held(row)]
    notes = []
    if row["l"] and datetime.fromisoformat(row["h"]) < datetime.fromisoformat(row["l"]) + cooldown:
        notes.append(f"cooldown: the last note was drafted {row['l'][:10]}; {len(batch)} milestone(s) reached "
                     f"since were held and are merged into this note")
    return batch, notes


def mark_celebrated(row: dict, now: datetime) -> None:
    row["q"], row["h"], row["l"] = [], None, now.isoformat()


def forget_held(row: dict) -> None:
    """Drop the held milestones after dead-lettering them, so that a replay of them is taken in again."""
    ids = {h["m"]["milestone_id"] for h in row["q"]}
    row["d"] = [i for i in row["d"] if i not in ids]
    row["q"], row["h"] = [], None


def headline_milestones(batch: list[Milestone]) -> list[Milestone]:
    """One milestone per kind and metric — the highest tier or level — so a merged note stays short."""
    best: dict[tuple, Milestone] = {}
    for m in batch:
        key = (m.kind, m.metric) if m.kind in ("usage_threshold", "roi_threshold", "anniversary") else (m.milestone_id,)
        if key not in best or (m.threshold or 0) > (best[key].threshold or 0):
            best[key] = m
    return sorted(best.values(), key=lambda m: m.reached_at)


def review_notes(ctx: Context) -> list[str]:
    """What the CSM should know before sending, including CRM values the context could not read."""
    notes = []
    at_risk = [why for why in (f"health is {ctx.health}" if (ctx.health or "").lower() == "red" else None,
                               f"{ctx.open_escalations} open escalation(s)" if ctx.open_escalations else None) if why]
    if at_risk:
        notes.append(f"at risk — consider not sending ({'; '.join(at_risk)})")
    if not ctx.executives:
        notes.append("no executive contact on record — choose a recipient before sending")
    return notes + ctx.data_notes
