"""Policy before drafting: when an account's milestones are celebrated, and what the CSM is told.

Why: a customer congratulated three times in a week stops reading; an account in trouble may not
want a cheerful note. Nothing is dropped and nothing is silent: held milestones are merged into the
next note, and every decision becomes a policy note on the approval request.

The drafter's row per account (`CelebrationRow`, stored in a Faust table as compact JSON); only
this module knows the stored form's one-letter keys:
  d: ids of milestones taken in (a re-delivered milestone is recognised here)
  q: held milestones, oldest first: {"m": milestone as JSON, "o": [topic, partition, offset]}
  h: when the first of them was held (ISO)                l: when the account was last celebrated (ISO)
  g: the risk signals that held them (agents/drafter/gates.py): [{"s": signal_id, "n": note, "f": held from ISO}]
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from milestone_stream.agents.drafter.context import Context
from milestone_stream.schemas.records import Milestone


class CelebrationRow:
    """One account's held milestones and last note: typed names over the stored compact form.

    Times stay the ISO text they were written as, so a row read and written again is the same bytes.
    `from_stored` reads a table value without copying it; `copy` makes the working copy the agent
    changes (shallow: held entries are appended or dropped, never edited).
    """

    __slots__ = ("taken", "queue", "held_since", "last_celebrated", "gated")

    def __init__(self) -> None:
        self.taken: list[str] = []                 # d
        self.queue: list[dict] = []                 # q: {"m": milestone as JSON, "o": [topic, partition, offset]}
        self.held_since: str | None = None         # h
        self.last_celebrated: str | None = None    # l
        self.gated: list[dict] = []                 # g: {"s": signal_id, "n": note, "f": held from (ISO)}

    @classmethod
    def from_stored(cls, value: object) -> CelebrationRow:
        row = cls()
        if isinstance(value, dict):
            row.taken, row.queue = value.get("d") or [], value.get("q") or []
            row.held_since, row.last_celebrated = value.get("h"), value.get("l")
            row.gated = value.get("g") or []
        return row

    def to_stored(self) -> dict:
        """The compact form (shares the row's lists: store, then let go)."""
        stored = {"d": self.taken, "q": self.queue, "h": self.held_since, "l": self.last_celebrated}
        return {**stored, "g": self.gated} if self.gated else stored  # rows never gated keep their bytes

    def copy(self) -> CelebrationRow:
        out = CelebrationRow.__new__(CelebrationRow)
        out.taken, out.queue = list(self.taken), list(self.queue)
        out.held_since, out.last_celebrated = self.held_since, self.last_celebrated
        out.gated = list(self.gated)
        return out

    def __repr__(self) -> str:
        return f"CelebrationRow({self.to_stored()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelebrationRow) and self.to_stored() == other.to_stored()


def take_in(row: CelebrationRow, m: Milestone, origin: tuple[str, int, int], now: datetime) -> bool:
    """Hold a new milestone (in place); False for a re-delivered copy, which changes nothing."""
    if m.milestone_id in row.taken:
        return False
    row.taken.append(m.milestone_id)
    row.queue.append({"m": m.model_dump(mode="json"), "o": list(origin)})
    row.held_since = row.held_since or now.isoformat()
    return True


def due_at(row: CelebrationRow, gather: timedelta, cooldown: timedelta) -> datetime | None:
    """When the held milestones may be drafted: after a short gathering window (milestones fired by
    the same input arrive together), and not before the account's cooldown ends."""
    if not row.queue:
        return None
    when = _held_since(row) + gather
    if row.last_celebrated:
        when = max(when, datetime.fromisoformat(row.last_celebrated) + cooldown)
    return when


def _held_since(row: CelebrationRow) -> datetime:
    """When the first held milestone was taken in; a row with a queue always has it (this module writes both)."""
    if row.held_since is None:  # the TypeError datetime.fromisoformat(None) raised before
        raise TypeError("a celebration row with held milestones but no held_since")
    return datetime.fromisoformat(row.held_since)


def held(row: CelebrationRow) -> list[tuple[Milestone, tuple[str, int, int]]]:
    return [(Milestone.model_validate(h["m"]), tuple(h["o"])) for h in row.queue]


def release(row: CelebrationRow, now: datetime, gather: timedelta,
            cooldown: timedelta) -> tuple[list[Milestone], list[str]]:
    """The held milestones to celebrate now (all of them, merged), with the cooldown's note; or nothing."""
    when = due_at(row, gather, cooldown)
    if when is None or now < when:
        return [], []
    batch = [m for m, _ in held(row)]
    notes = []
    last = row.last_celebrated
    if last and _held_since(row) < datetime.fromisoformat(last) + cooldown:
        notes.append(f"cooldown: the last note was drafted {last[:10]}; {len(batch)} milestone(s) reached "
                     f"since were held and are merged into this note")
    return batch, notes


def gate(row: CelebrationRow, holding: list[tuple[str, str]], now: datetime) -> bool:
    """Record (in place) the signals (signal_id, note) that hold the row's milestones now; False when
    each was recorded already (nothing to write)."""
    known = {g.get("s") for g in row.gated if isinstance(g, dict)}
    new = [{"s": sid, "n": note, "f": now.isoformat()} for sid, note in holding if sid not in known]
    row.gated = [*row.gated, *new]
    return bool(new)


def gated_ids(row: CelebrationRow) -> set[str]:
    return {str(g.get("s")) for g in row.gated if isinstance(g, dict)}


def gate_notes(row: CelebrationRow, cleared_at: Callable[[str], str | None]) -> list[str]:
    """The policy notes of a release after a risk gate: each signal that held the milestones, from when,
    and when it cleared (`cleared_at(signal_id)`; None: not recorded as cleared, e.g. the gate level was
    raised while it was open)."""
    notes = []
    for g in row.gated:
        if not isinstance(g, dict):
            continue
        when = cleared_at(str(g.get("s")))
        ended = f"cleared {when[:16]}" if when else "no longer at or above the gate level"
        notes.append(f"risk gate: held from {str(g.get('f'))[:16]} while risk signal {g.get('n')} was open; "
                     f"{ended}; the milestones held are merged into this note")
    return notes


def mark_celebrated(row: CelebrationRow, now: datetime) -> None:
    row.queue, row.held_since, row.last_celebrated = [], None, now.isoformat()
    row.gated = []


def forget_held(row: CelebrationRow) -> None:
    """Drop the held milestones after dead-lettering them, so that a replay of them is taken in again."""
    ids = {h["m"]["milestone_id"] for h in row.queue}
    row.taken = [i for i in row.taken if i not in ids]
    row.queue, row.held_since = [], None
    row.gated = []


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
