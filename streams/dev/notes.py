"""The sample's notes as the worker drafts them, for docs/notes.md (and its test, which keeps it current).

Why a module: the README shows what a new user gets from `milestones up`; written by hand, that text
would drift from the template. This runs the sample data set (dev/sample.py) through the worker's own
functions, in the order `milestones up` delivers it: the CRM changes and the telemetry through the
detector (crm.apply_change, usage.apply_event), the milestones through the drafter's policy (held for
the gathering window, merged), the context compiler, the drafter without a model key (the template,
checked by the grounding guard) and rendering. Then the anniversary: the worker's clock ticks after
the gathering window, so each account's anniversary is held by the cooldown and drafted as a second
note when the cooldown ends. No broker: the same functions the agents call, one account at a time.

`python -m milestone_stream.dev.notes` prints the page; `--write docs/notes.md` writes it.
"""
from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from milestone_stream.agents.detector import crm, usage
from milestone_stream.agents.drafter import policy
from milestone_stream.agents.drafter.context import compile_context
from milestone_stream.agents.drafter.model import Drafter
from milestone_stream.agents.drafter.template import render
from milestone_stream.dev.sample import sample
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import CrmChange, FieldChange, Milestone

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)   # the day `milestones up` was run for this page
GATHER = timedelta(seconds=3)                     # `milestones up` sets MILESTONES_GATHER_SECONDS=3


async def sample_notes(now: datetime = NOW, rules: Rules | None = None) -> list[tuple[str, str, str]]:
    """(account, when, note as sent: subject line, blank line, plain-text body) for each note the sample
    produces: the first note of each account, then each account's anniversary note."""
    rules = rules or Rules()
    changes, events = sample(now)
    profiles: dict[str, crm.ProfileRow] = {}
    rows: dict[str, usage.UsageRow] = {}
    fired: dict[str, list[Milestone]] = {}
    for offset, change in enumerate(changes):
        profile = profiles.setdefault(change.account_id, crm.ProfileRow())
        fired.setdefault(change.account_id, []).extend(
            crm.apply_change(profile, change, ("crm.changes", offset), rules, now.date()))
    seen = usage.MemorySeenIds()
    for offset, event in enumerate(events):
        urow = rows.setdefault(event.account_id, usage.UsageRow())
        _, milestones = usage.apply_event(urow, event, offset, rules, seen, now)
        fired.setdefault(event.account_id, []).extend(milestones)
    drafter = Drafter(rules)
    out: list[tuple[str, str, str]] = []
    celebrations = {account: policy.CelebrationRow() for account in fired}
    for n, (account, milestones) in enumerate(fired.items()):
        held = celebrations[account]
        for i, m in enumerate(milestones):
            policy.take_in(held, m, ("milestones", 0, n * 1000 + i), now)
        out.append((account, "first note", await _drafted(drafter, account, held, profiles, rows, rules, now + GATHER)))
    later = now + GATHER + timedelta(seconds=5)   # the worker's anniversary clock ticks every 5 s
    for n, account in enumerate(fired):
        tick = CrmChange(change_id=f"clock:{account}:{now.date().isoformat()}", account_id=account,
                         changes=[FieldChange(field=crm.ANNIVERSARY_DUE, value=now.date().isoformat())],
                         occurred_at=later, source="milestone-stream.clock")
        held = celebrations[account]
        for i, m in enumerate(crm.apply_change(profiles[account], tick, ("clock", n), rules, now.date())):
            policy.take_in(held, m, ("milestones", 1, n * 1000 + i), later)
        due = policy.due_at(held, GATHER, timedelta(days=rules.cooldown_days))
        if due is not None:
            out.append((account, "when the cooldown ends",
                        await _drafted(drafter, account, held, profiles, rows, rules, due)))
    return out


async def _drafted(drafter: Drafter, account: str, row: policy.CelebrationRow, profiles: dict[str, crm.ProfileRow],
                   rows: dict[str, usage.UsageRow], rules: Rules, now: datetime) -> str:
    """The agent's draft (agents/drafter/agent.py `draft`) of what the row releases at `now`."""
    batch, _ = policy.release(row, now, GATHER, timedelta(days=rules.cooldown_days))
    ctx = compile_context(account, policy.headline_milestones(batch), profiles.get(account), rows.get(account),
                          rules, now)
    drafted = await drafter.draft(ctx)
    if not drafted.verdict.startswith("passed"):
        raise AssertionError(f"the sample's note for {account} failed the guard: {drafted.verdict}")
    recipients = ctx.executives[:1]
    rendered = render(drafted.note, ctx, rules, recipients[0].name if recipients else None)
    policy.mark_celebrated(row, now)
    return f"Subject: {rendered.subject}\n\n{rendered.body_text}"


def page(notes: list[tuple[str, str, str]]) -> str:
    """docs/notes.md: the notes in fenced blocks, under what produces them."""
    parts = [
        "# The notes the sample produces\n",
        "What `milestones up` (`./dev up`) drafts from its sample data set (streams/dev/sample.py: Acme Corp,\n"
        "financial services; Hope Foundation, nonprofit; Globex, software), without a model key, so by the\n"
        "template (agents/drafter/template.py), every figure checked by the grounding guard. Generated by\n"
        "`python -m milestone_stream.dev.notes --write docs/notes.md` from the worker's own functions, for a run\n"
        f"on {NOW.date().isoformat()}; tests/unit/test_note_snapshot.py fails when this page and the code disagree.\n",
        "Each account's first note celebrates what the sample's CRM record and telemetry fire within the\n"
        "3-second gathering window: the usage tier (in the industry's words), the ROI level, the first use of\n"
        "automation sequences. The worker's clock finds each contract's first anniversary a few seconds later;\n"
        "the policy holds it for the 14-day cooldown and drafts it then, as a second note.\n",
        "How the template writes a note: the lead milestone gets one clear sentence; any others merged into\n"
        "the same note follow in one short \"And also\"; then a value summary: every configured usage metric's\n"
        "lifetime total in the customer's words (\"since you joined us in June 2024\" only when the telemetry goes\n"
        "back that far; the sample's telemetry is all from today, hence \"so far\"), for an anniversary also the\n"
        "past year's, the reported ROI with its period when the CRM gives one (`roi_period`: \"152% ROI in Q2\n"
        "2026\"), the modules in use. Dates are written as months and years; subjects are at most 70 characters.\n",
    ]
    for account, when, note in notes:
        parts.append(f"## {account} — {when}\n\n```text\n{note.rstrip()}\n```\n")
    parts.append(_READS)
    return "\n".join(parts)


_READS = """## What the notes read

| Where | What | How the note says it |
|---|---|---|
| rules `usage.<metric>.label` | each configured usage metric | "47,832 emails sent" |
| rules `drafting.framing.<metric>.<industry>` | the metric in the industry's words | \
"10,000 touchpoints with clients" |
| usage table: lifetime totals, first event | every configured metric with a total above 0 | \
"Since you joined us in June 2024, …" when the first event is within 45 days of `contract_start`; \
"Since March 2025, …" when counting began at least 60 days ago; else "So far, …" |
| usage table: monthly totals | for an anniversary, the twelve UTC months ending with the current one | \
"In the past year alone: 30,100 emails sent" (left out when it equals the lifetime total) |
| CRM `contract_start` | the anniversary's start | "two years since you started working with us, in June 2024" |
| CRM `roi_percent` | reported ROI | "152% ROI" |
| CRM `roi_period` | the ROI's period: `Q1 2026`…`Q4 2026`, `H1 2026`, `FY2026`, `2026` \
(also read: `2026-Q2`, `q2/2026`, `FY 2026`) | "152% ROI in Q2 2026"; anything else is left out and named \
to the CSM as unreadable |
| CRM `adoption.<module>` | modules in use | "You now use 3 of our modules: …" |

Each figure is a cited fact (source, record, as-of) on the approval request, and the grounding guard accepts a
figure only if a fact states it. With a model key the model is given the same facts, each with the words the
template would use, the lead milestone, the merged ones and the value summary; its draft passes the same guard or
the template's is used. Salesforce: map `ROI_Period__c` (text) to `roi_period` (adapters.example.yaml).
"""


def main(argv: list[str] | None = None) -> int:
    import asyncio

    parser = argparse.ArgumentParser(description="the sample's notes as the worker drafts them (docs/notes.md)")
    parser.add_argument("--write", metavar="PATH", help="write the page to PATH instead of printing it")
    args = parser.parse_args(argv)
    text = page(asyncio.run(sample_notes()))
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
