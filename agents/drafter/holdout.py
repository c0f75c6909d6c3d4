"""The measurement holdout: which accounts' celebrations are drafted but never sent.

Why: without a comparison group nobody can say whether celebrating changes renewals, NPS or
advocacy (docs/impact.md). A share of accounts (per milestone kind) is held out: their milestones
are detected and drafted as usual, the CSM can see the draft, and nothing is sent.

Why a salted hash of the account id, not a coin flip: the same account lands in the same arm on
every worker, after every restart and for every milestone, with no state to store or replicate.
Each account gets one number u in [0, 1) from SHA-256(salt, account id); it is held out for a kind
when u < that kind's share. The buckets nest: raising a share only moves celebrated accounts into
the holdout, never the reverse. A batch of milestones of several kinds is held out when the account
is held out for any of them (an account held out for anniversaries is never congratulated on one).

A cohort is one (shares, salt) setting: its id is a hash of both, so changing either starts a new
cohort, and the report compares accounts within one cohort only. Every request drafted while the
holdout is on carries a policy note naming its arm, its cohort and its milestone kinds; the report
reads the cohort and kinds back from that note (`parse_note`), the arm from `held_out`.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import Field, field_validator

from milestone_stream.schemas.records import MilestoneKind
from milestone_stream.settings import Strict

SHARE_MAX = 0.5  # a holdout larger than the celebrated arm is a mistake, not a measurement


class Holdout(Strict):
    """The rules file's `holdout:` section (absent: nobody is held out)."""

    share: float = Field(0.10, ge=0, le=SHARE_MAX)       # of accounts, for every kind not in by_kind
    by_kind: dict[MilestoneKind, float] = {}             # a kind's own share (anniversary: 0.2)
    salt: str = Field("holdout-1", min_length=1, max_length=200)  # change it to draw new arms (a new cohort)

    @field_validator("by_kind")
    @classmethod
    def _shares(cls, by_kind: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in by_kind.items() if not 0 <= v <= SHARE_MAX}
        if bad:
            raise ValueError(f"holdout shares must be between 0 and {SHARE_MAX}: {bad}")
        return by_kind

    def share_for(self, kind: str) -> float:
        return self.by_kind.get(kind, self.share)  # type: ignore[call-overload]  # a kind is a MilestoneKind

    @property
    def cohort(self) -> str:
        """c- and 12 hex digits of SHA-256 over the salt and every share: any change is a new cohort."""
        shares = ",".join(f"{k}={v!r}" for k, v in sorted(self.by_kind.items()))
        digest = hashlib.sha256(f"{self.salt}\0{self.share!r}\0{shares}".encode()).hexdigest()
        return f"c-{digest[:12]}"


def bucket(salt: str, account_id: str) -> float:
    """The account's number in [0, 1): the first 64 bits of SHA-256(salt NUL account id)."""
    digest = hashlib.sha256(f"{salt}\0{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


@dataclass(frozen=True)
class Arm:
    held_out: bool
    notes: list[str] = field(default_factory=list)


def assign(config: Holdout | None, account_id: str, kinds: Iterable[str]) -> Arm:
    """The arm of one account's batch of milestones, with the policy note the CSM (and the report) reads."""
    if config is None:
        return Arm(False)
    kinds = sorted(set(kinds))
    share = max((config.share_for(k) for k in kinds), default=config.share)
    held = bucket(config.salt, account_id) < share
    arm = "held out" if held else "celebrated"
    why = ("drafted so you can see it; it is never sent (this account is in the comparison group that "
           "tells whether celebrating changes renewals, NPS and advocacy)") if held else \
        f"{share:.0%} of accounts are held out"
    return Arm(held, [f"measurement: {arm} (cohort {config.cohort}; {', '.join(kinds)}): {why}"])


_NOTE = re.compile(r"^measurement: (held out|celebrated) \(cohort (c-[0-9a-f]{12}); ([a-z_, ]*)\)")


@dataclass(frozen=True)
class Measured:
    held_out: bool
    cohort: str
    kinds: tuple[str, ...]


def parse_note(notes: Iterable[str]) -> Measured | None:
    """The arm, cohort and kinds from a request's policy notes; None for a request drafted without a holdout."""
    for note in notes:
        m = _NOTE.match(note)
        if m:
            return Measured(m.group(1) == "held out", m.group(2), tuple(k for k in m.group(3).split(", ") if k))
    return None
