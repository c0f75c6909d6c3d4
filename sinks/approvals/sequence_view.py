"""The anniversary sequence as a timeline on the request page: step 1 (the anniversary note), step 2
(a forward-looking note) and step 3 (renewal preparation or an advocacy invitation), each with its
date and where it stands.

Why from the requests the UI already follows, not the worker's `sequences` table: the UI is its own
process reading the approval topics. Each step's request carries a policy note
"anniversary sequence: step N of 3 …" (agents/drafter/sequence.py), and the later steps name the
anniversary milestone in `milestone_ids`, as step 1 does among the milestones it celebrates. A step
not drafted yet shows the date step 1's note planned for it; a step that was skipped or cancelled
before it was drafted is not on any topic the UI reads, so past its date it shows as not drafted
(the step 3 request says when step 2 was suppressed).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from milestone_stream.agents.drafter import sequence
from milestone_stream.schemas.records import ApprovalRequest
from milestone_stream.sinks.approvals.view import ApprovalView

PLANNED = re.compile(r"step ([23]), [^;]*?(?:is planned )?for (\d{4}-\d{2}-\d{2})")
TITLES = {"1": "The year in review", "2": "A forward-looking note",
          "3": "Renewal preparation or an advocacy invitation"}


@dataclass(frozen=True)
class Entry:
    step: str
    title: str
    when: str            # YYYY-MM-DD: drafted on, or planned for
    state: str           # the request's status, "planned" or "not drafted"
    approval_id: str | None
    current: bool


def step_of(request: ApprovalRequest) -> str | None:
    return sequence.step_of(request.policy_notes)


def timeline(view: ApprovalView, a: ApprovalRequest, now: datetime) -> list[Entry]:
    """The sequence `a` belongs to, steps 1 to 3 (empty when `a` is no step of one)."""
    if step_of(a) is None:
        return []
    mine = set(a.milestone_ids)
    steps: dict[str, ApprovalRequest] = {}
    for r in list(view.requests.values()):
        n = step_of(r)
        if n and r.account_id == a.account_id and mine & set(r.milestone_ids) and n not in steps:
            steps[n] = r
    planned: dict[str, str] = {}
    if "1" in steps:
        for note in steps["1"].policy_notes:
            if sequence.STEP_NOTE.match(note):
                planned.update(PLANNED.findall(note))
    entries = []
    for n in ("1", "2", "3"):
        got = steps.get(n)
        if got is not None:
            said = got.milestone_titles[0].split(": ", 1)[-1] if n != "1" and got.milestone_titles else ""
            title = said[:1].upper() + said[1:] if said else TITLES[n]
            entries.append(Entry(n, title, f"{got.created_at:%Y-%m-%d}", view.status(got.approval_id, now),
                                 got.approval_id, got.approval_id == a.approval_id))
        else:
            when = planned.get(n, "")
            state = "not drafted" if when and when < f"{now:%Y-%m-%d}" else "planned"
            entries.append(Entry(n, TITLES[n], when, state, None, False))
    return entries
