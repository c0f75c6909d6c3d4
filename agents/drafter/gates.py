"""Risk gates: an account's open risk signals, and whether they hold its celebrations.

Why: a cheerful note to a customer whose usage just fell 40% or whose champion left reads as tone-deaf.
While an account has an open signal at or above the rules' `risk.gate_level` (default orange), its
milestones stay held; when the last such signal clears they are released, merged into one note that
says which signal held them and when it cleared. Nothing is dropped.

The row (`GateRow`, one per account in the `gates` table, written only by the gates agent from the
`risks` topic; the drafter only reads it). Only this module knows the stored form's keys:
  o: open signals by signal_id: {"k": kind, "l": level, "t": title, "a": opened_at ISO, "e": [evidence]}
  c: recently cleared episodes, oldest first: [signal_id, cleared at ISO] (at most CLEARED_KEPT): a
     re-delivered or late `open` of an episode already cleared is recognised and ignored, and the
     released note can say when the signal that held it cleared.
The drafter's own row (agents/drafter/policy.py) records which signals held its milestones.
"""
from __future__ import annotations

from dataclasses import dataclass

from milestone_stream.agents.drafter.context import clean_text
from milestone_stream.schemas.records import RISK_LEVELS, RiskLevel, RiskSignal

OPEN_MAX = 50        # open signals kept per account (seven kinds, one episode each, leave room)
CLEARED_KEPT = 32    # cleared episodes remembered per account
TITLE_LIMIT = 200    # characters of a signal's title kept (cleaned: one line)
EVIDENCE_KEPT = 5    # evidence items kept per signal, each "source: record (date)"
EVIDENCE_LIMIT = 160


class TooManyOpen(ValueError):
    """An account with OPEN_MAX signals open already: the new one is dead-lettered, never dropped."""


@dataclass(frozen=True)
class OpenSignal:
    signal_id: str
    kind: str
    level: str
    title: str
    opened_at: str
    evidence: tuple[str, ...]


def at_or_above(level: str, gate: RiskLevel | None) -> bool:
    """Whether `level` holds celebrations under a gate at `gate` (None: no gate; an unknown level holds)."""
    if gate is None:
        return False
    rank = RISK_LEVELS.index(level) if level in RISK_LEVELS else len(RISK_LEVELS)
    return rank >= RISK_LEVELS.index(gate)


def evidence_text(signal: RiskSignal) -> list[str]:
    return [clean_text(f"{e.source}: {e.record} ({e.occurred_at:%Y-%m-%d})", EVIDENCE_LIMIT)
            for e in signal.evidence[:EVIDENCE_KEPT]]


class GateRow:
    """One account's open signals and recently cleared episodes."""

    __slots__ = ("open", "cleared")

    def __init__(self) -> None:
        self.open: dict[str, dict] = {}      # o
        self.cleared: list[list[str]] = []    # c: [signal_id, cleared at]

    @classmethod
    def from_stored(cls, value: object) -> GateRow:
        row = cls()
        if isinstance(value, dict):
            o, c = value.get("o"), value.get("c")
            row.open = o if isinstance(o, dict) else {}
            row.cleared = c if isinstance(c, list) else []
        return row

    def to_stored(self) -> dict:
        return {"o": self.open, "c": self.cleared}

    def copy(self) -> GateRow:
        out = GateRow()
        out.open, out.cleared = dict(self.open), list(self.cleared)
        return out

    def signals(self) -> list[OpenSignal]:
        """The open signals, oldest first (an unreadable entry is skipped)."""
        out = []
        for sid, s in self.open.items():
            if isinstance(s, dict):
                out.append(OpenSignal(signal_id=str(sid), kind=str(s.get("k", "")), level=str(s.get("l", "")),
                                      title=str(s.get("t", "")), opened_at=str(s.get("a", "")),
                                      evidence=tuple(str(e) for e in s.get("e") or [] if isinstance(e, str))))
        return sorted(out, key=lambda s: (s.opened_at, s.signal_id))

    def holding(self, gate: RiskLevel | None) -> list[OpenSignal]:
        """The open signals that hold celebrations under `gate`."""
        return [s for s in self.signals() if at_or_above(s.level, gate)]

    def cleared_at(self, signal_id: str) -> str | None:
        return next((at for sid, at in reversed(self.cleared) if sid == signal_id), None)


def apply(row: GateRow, signal: RiskSignal) -> bool:
    """Apply one signal record in place; False when it changes nothing (a repeat, or an `open` of an
    episode already cleared). An `open` past OPEN_MAX raises TooManyOpen."""
    sid = signal.signal_id
    if signal.state == "cleared":
        if row.cleared_at(sid) is not None:
            return False
        row.open.pop(sid, None)
        row.cleared = [*row.cleared, [sid, signal.at.isoformat()]][-CLEARED_KEPT:]
        return True
    if sid in row.open or row.cleared_at(sid) is not None:
        return False
    if len(row.open) >= OPEN_MAX:
        raise TooManyOpen(f"the account has {len(row.open)} risk signals open already; {sid!r} was not recorded")
    row.open[sid] = {"k": signal.kind, "l": signal.level, "a": signal.opened_at.isoformat(),
                     "t": clean_text(signal.title, TITLE_LIMIT) or signal.kind.replace("_", " "),
                     "e": evidence_text(signal)}
    return True


def held_note(s: OpenSignal) -> str:
    """What the CSM is told about a signal that holds the account's milestones."""
    evidence = "; ".join(s.evidence) or "none recorded"
    return f"'{s.title}' ({s.level} {s.kind.replace('_', ' ')}, open since {s.opened_at[:16]}; evidence: {evidence})"
