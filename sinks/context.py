"""The context compiler: everything a congratulations note may say about an account, with a source.

Why: the note is only as trustworthy as its figures. Each figure the drafter may use is a `Fact`
carrying where it came from (source system, record, as-of time); the grounding guard then accepts
only numbers found in these facts, and the approval request carries them as citations.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone

from pydantic import BaseModel, ConfigDict

from milestone_stream.models import Citation, Contact, Milestone
from milestone_stream.rules import Rules

EXECUTIVE_ROLES = ("executive_sponsor", "economic_buyer", "executive", "ceo", "cfo", "coo", "cto", "vp")
DETECTOR = "milestone-stream"
MILESTONE = "milestone"


class Fact(BaseModel):
    """One figure the note may state, exactly as it may be written, and where it came from."""

    model_config = ConfigDict(frozen=True)
    label: str
    figure: str
    source: str
    record: str
    as_of: datetime

    def citation(self) -> Citation:
        return Citation(figure=f"{self.label}: {self.figure}", source=self.source, record=self.record,
                        as_of=self.as_of)


class Context(BaseModel):
    """The compiled context of one note (one milestone, or several merged after a cooldown)."""

    model_config = ConfigDict(frozen=True)
    account_id: str
    account_name: str
    industry: str | None = None
    top_use_case: str | None = None
    csm_name: str | None = None
    csm_email: str | None = None
    contacts: list[Contact] = []          # executive sponsor first
    milestones: list[Milestone]
    facts: list[Fact]
    modules_adopted: list[str] = []
    customer_since: date | None = None
    pace: Fact | None = None              # "at your current pace you will reach 50,000 … in about 8 months"
    health: str | None = None
    open_escalations: int = 0

    @property
    def executives(self) -> list[Contact]:
        return [c for c in self.contacts if is_executive(c.role)]

    def citations(self) -> list[Citation]:
        return [f.citation() for f in self.facts]

    def allowed_numbers(self) -> set[float]:
        """Every number the note may state: those written in the facts (and in the account's name)."""
        texts = [f.figure for f in self.facts] + [f.label for f in self.facts] + [self.account_name]
        return {n for t in texts for n in numbers_in(t)}


NUMBER = re.compile(r"(?<![\d.])\d[\d,]*(?:\.\d+)?")


def numbers_in(text: str) -> list[float]:
    """The numbers written in a text: "10,000" → 10000, "152%" → 152, "2025-06-01" → 2025, 6, 1."""
    out = []
    for raw in NUMBER.findall(text or ""):
        raw = raw.rstrip(",")
        try:
            out.append(float(raw.replace(",", "")))
        except ValueError:
            continue
    return out


def is_executive(role: str) -> bool:
    role = role.lower().replace(" ", "_").replace("-", "_")
    return any(r == role or role.startswith(r + "_") or role.endswith("_" + r) for r in EXECUTIVE_ROLES)


def compile_context(account_id: str, milestones: list[Milestone], profile_row: dict | None,
                    usage_row: dict | None, rules: Rules, now: datetime) -> Context:
    """Build the context from the detector's table rows (see agents/crm.py and agents/usage.py)."""
    profile_row = profile_row or {"p": {}, "c": [], "s": {}}
    usage_row = usage_row or {"t": {}, "s": {}, "w": {}}
    p, provenance = profile_row["p"], profile_row.get("s", {})

    def crm_fact(label: str, field: str, figure: str) -> Fact:
        source, record, when = provenance.get(field) or ("crm", account_id, now.isoformat())
        return Fact(label=label, figure=figure, source=source, record=f"{record} field {field}",
                    as_of=datetime.fromisoformat(when))

    facts = [f for m in milestones for f in _milestone_facts(m)]
    contacts = sorted((Contact(**c) for c in profile_row.get("c", [])), key=lambda c: not is_executive(c.role))
    for metric, total in sorted(usage_row["t"].items()):
        label = rules.usage[metric].label if metric in rules.usage and rules.usage[metric].label else metric.replace("_", " ")
        facts.append(Fact(label=f"lifetime {label}", figure=f"{total:,.0f}", source=f"{DETECTOR} usage table",
                          record=f"sum of telemetry.events for account {account_id}, metric {metric}",
                          as_of=_epoch(usage_row["s"].get(metric, [now.timestamp()] * 2)[1])))
    for metric, window in sorted(usage_row.get("w", {}).items()):
        facts.append(Fact(label=f"{metric.replace('_', ' ')} this window", figure=f"{window['m']:,.0f}",
                          source=f"{DETECTOR} usage table",
                          record=f"telemetry.events for account {account_id}, metric {metric}, "
                                 f"window from {_epoch(window['s']).date().isoformat()}",
                          as_of=now))
    modules = sorted(f.split(".", 1)[1].replace("_", " ") for f, v in p.items() if f.startswith("adoption.") and v is True)
    if modules:
        facts.append(crm_fact("modules adopted", f"adoption.{_first_flag(p)}", f"{len(modules)} ({', '.join(modules)})"))
    if isinstance(p.get("roi_percent"), (int, float)) and not isinstance(p.get("roi_percent"), bool):
        facts.append(crm_fact("reported ROI", "roi_percent", f"{p['roi_percent']:g}%"))
    since = _date(p.get("contract_start"))
    if since:
        facts.append(crm_fact("customer since", "contract_start", since.isoformat()))
    pace = _pace(account_id, milestones, usage_row, rules, now)
    if pace:
        facts.append(pace)
    return Context(account_id=account_id, account_name=str(p.get("name") or account_id),
                   industry=_text(p.get("industry")), top_use_case=_text(p.get("top_use_case")),
                   csm_name=_text(p.get("csm_name")), csm_email=_text(p.get("csm_email")), contacts=contacts,
                   milestones=milestones, facts=facts, modules_adopted=modules, customer_since=since, pace=pace,
                   health=_text(p.get("health")), open_escalations=int(p.get("open_escalations") or 0))


def _milestone_facts(m: Milestone) -> list[Fact]:
    """The milestone as fired (its title), and the value reached when it differs from the tier."""
    evidence = m.evidence[0] if m.evidence else None
    cite = dict(source=evidence.source if evidence else DETECTOR,
                record=f"{evidence.record if evidence else m.account_id} (milestone {m.milestone_id[:12]})",
                as_of=evidence.occurred_at if evidence else m.reached_at)
    facts = [Fact(label=MILESTONE, figure=m.title, **cite)]
    if m.value is not None and m.value != m.threshold:
        facts.append(Fact(label=f"value reached for: {m.title}", figure=f"{m.value:,.6g}", **cite))
    return facts


def _pace(account_id: str, milestones: list[Milestone], usage_row: dict, rules: Rules, now: datetime) -> Fact | None:
    """Months to the next tier at the average rate since the metric's first event (≥ 1 day of history)."""
    for m in milestones:
        if m.kind != "usage_threshold" or m.metric not in rules.usage:
            continue
        total = usage_row["t"].get(m.metric)
        first, last = usage_row["s"].get(m.metric, [None, None])
        nxt = next((t for t in rules.usage[m.metric].tiers if total is not None and t > total), None)
        if nxt is None or first is None or last - first < 86400:
            continue
        per_day = total / ((last - first) / 86400)
        months = max(1, round((nxt - total) / per_day / 30.44))
        return Fact(label=f"pace to the next {m.metric.replace('_', ' ')} tier",
                    figure=f"{nxt:,.0f} in about {months} month{'s' if months > 1 else ''}",
                    source=f"{DETECTOR} (computed)",
                    record=f"average daily {m.metric} of account {account_id} since {_epoch(first).date().isoformat()}",
                    as_of=_epoch(last))
    return None


def _first_flag(p: dict) -> str:
    return next(f.split(".", 1)[1] for f, v in sorted(p.items()) if f.startswith("adoption.") and v is True)


def _epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _date(raw) -> date | None:
    try:
        return date.fromisoformat(str(raw)[:10]) if raw else None
    except ValueError:
        return None


def _text(value) -> str | None:
    return str(value) if value not in (None, "") else None
