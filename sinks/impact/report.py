"""The impact report's figures: who was celebrated and who was held out, what happened to each
afterwards, and the differences (sinks/impact/stats.py) overall, stratified and per stratum.

Why from the records and nothing else: the approval requests say who is in which arm, when and for
which milestone kinds (`held_out` and the holdout's policy note, agents/drafter/holdout.py); the CRM
changes say what each account's renewal, NPS responses and advocacy were, and its tier, industry
and contract start. Both are read whole from Kafka (sinks/impact/source.py), so any process can
rebuild the same report; this module only computes.

The unit is the account: its first request in the cohort (of the kind asked for) is its index
date, for both arms alike. Outcomes, counted from the day after the index date:
- renewal: the first renewal closed (won or lost) within 12 months; accounts without one are left
  out (no renewal came up, or it has not closed yet). The rate is won / closed.
- NPS: the first NPS response within 30 days (0-10 → +100 / 0 / -100); accounts without one are left out.
- advocacy: any review, referral or case study within 90 days; accounts whose 90 days have not
  passed and that have none yet are left out.
A CRM value the report cannot read (a score of 11, an unknown outcome) is skipped and counted in
the notes, so the figures are never silently built on fewer records than the topic holds.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from milestone_stream.agents.drafter.holdout import parse_note
from milestone_stream.schemas.records import ApprovalRequest, CrmChange
from milestone_stream.sinks.impact import stats

WINDOWS = {"renewal": timedelta(days=365), "nps": timedelta(days=30), "advocacy": timedelta(days=90)}
OUTCOMES = ("renewal", "nps", "advocacy")
LABELS = {"renewal": "12-month renewal rate", "nps": "NPS within 30 days", "advocacy": "Advocacy within 90 days"}
RATES = frozenset({"renewal", "advocacy"})  # proportions, shown in % and differences in percentage points
STRATA = ("tier", "industry", "tenure")
ADVOCACY = frozenset({"review", "referral", "case_study"})
UNKNOWN = "unknown"
LABEL_MAX = 60  # a stratum's name as shown (CRM text is bounded at the edge, not trusted to be short)


def tenure_bucket(start: date | None, at: datetime) -> str:
    if start is None:
        return UNKNOWN
    years = (at.date() - start).days / 365.25
    return "under 1 year" if years < 1 else "1-2 years" if years < 2 else "2-5 years" if years < 5 else "5+ years"


@dataclass
class Account:
    account_id: str
    held_out: bool
    at: datetime                      # index date: the first request in the cohort
    kinds: tuple[str, ...]
    tier: str = UNKNOWN
    industry: str = UNKNOWN
    tenure: str = UNKNOWN
    renewal: bool | None = None       # won (True) or lost within 12 months; None: none closed
    nps: float | None = None          # points of the first response within 30 days
    advocacy: bool | None = None      # None: 90 days not passed and none yet

    def value(self, outcome: str) -> float | None:
        v = getattr(self, outcome)
        return None if v is None else float(v)

    def stratum(self, by: str) -> str:
        return str(getattr(self, by))


@dataclass(frozen=True)
class Row:
    """One comparison: per arm its accounts and value (rate in %, NPS in points), and the difference in
    points (percentage points for rates); no interval when an arm is empty."""

    outcome: str
    scope: str           # overall, stratified, tier, industry, tenure
    stratum: str         # all, or the stratum's name
    n1: int
    v1: float | None
    n0: int
    v0: float | None
    interval: stats.Interval | None
    verdict: str
    dropped: int = 0     # stratified: accounts in strata with one arm empty (n1, n0: those in the others)


@dataclass
class Report:
    cohort: str | None
    kind: str | None
    as_of: datetime
    celebrated: int = 0
    held_out: int = 0
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cohorts: dict[str, int] = field(default_factory=dict)  # every cohort seen → accounts in it

    def row(self, outcome: str, scope: str = "overall", stratum: str = "all") -> Row:
        return next(r for r in self.rows if (r.outcome, r.scope, r.stratum) == (outcome, scope, stratum))


# reading the records -------------------------------------------------------------------------------------
def _instant(value: object, fallback: datetime) -> datetime:
    """An ISO date or datetime from a CRM value (dates at midnight UTC); else the change's own time."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def _date(value: object) -> date | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


def _label(value: object) -> str:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        return UNKNOWN
    text = " ".join(str(value).split())
    return text if len(text) <= LABEL_MAX else text[:LABEL_MAX - 1] + "…"


@dataclass
class _History:
    profile: list[tuple[datetime, str, object]] = field(default_factory=list)   # tier, industry, contract_start
    renewals: list[tuple[datetime, bool]] = field(default_factory=list)
    nps: list[tuple[datetime, float]] = field(default_factory=list)
    advocacy: list[datetime] = field(default_factory=list)

    def as_of(self, name: str, at: datetime) -> object:
        """The field's latest value at `at`; when the CRM set it only later, its first value."""
        values = sorted((t, v) for t, f, v in self.profile if f == name)
        before = [v for t, v in values if t <= at]
        return before[-1] if before else (values[0][1] if values else None)


# (value field, date field): an outcome event is a change of either; the other is the last value known
OUTCOME_FIELDS = {"renewal": ("renewal_outcome", "renewal_closed_at"),
                  "nps": ("nps_response_score", "nps_responded_at"),
                  "advocacy": ("advocacy_action", "advocacy_at")}


def _nps(score: object) -> float | None:
    if (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
            and float(score).is_integer() and 0 <= score <= 10):
        return stats.nps_points(int(score))
    return None


def histories(changes: Iterable[CrmChange], notes: list[str]) -> dict[str, _History]:
    """Per account: profile values with their times, and outcome events. Why the carried values: a CRM
    sends what changed (Salesforce CDC), so a second NPS response with the same score arrives as a new
    date alone; a source that sends every trait each time (a Segment group call) repeats the last
    response, which is the same event (same date) and counts once."""
    out: dict[str, _History] = defaultdict(_History)
    unique = {c.change_id: c for c in changes}  # a re-published change counts once
    bad = 0
    last: dict[tuple[str, str], object] = {}
    seen: set[tuple[str, str, datetime]] = set()
    for c in sorted(unique.values(), key=lambda c: (c.account_id, c.occurred_at, c.change_id)):
        h = out[c.account_id]
        fields = {f.field: f.value for f in c.changes}
        for name in ("tier", "plan", "industry", "contract_start"):
            if name in fields:
                h.profile.append((c.occurred_at, "tier" if name == "plan" else name, fields[name]))
        for outcome, (value_field, date_field) in OUTCOME_FIELDS.items():
            if value_field not in fields and date_field not in fields:
                continue
            value = fields[value_field] if value_field in fields else last.get((c.account_id, value_field))
            when = fields[date_field] if date_field in fields else last.get((c.account_id, date_field))
            last[(c.account_id, value_field)], last[(c.account_id, date_field)] = value, when
            if value is None:
                continue  # cleared, or a date without any value yet
            at = _instant(when, c.occurred_at)
            if (c.account_id, outcome, at) in seen:
                continue
            seen.add((c.account_id, outcome, at))
            if outcome == "renewal" and value in ("won", "lost"):
                h.renewals.append((at, value == "won"))
            elif outcome == "nps" and (points := _nps(value)) is not None:
                h.nps.append((at, points))
            elif outcome == "advocacy" and value in ADVOCACY:
                h.advocacy.append(at)
            else:
                bad += 1
    if bad:
        notes.append(f"{bad} CRM outcome value(s) not readable (renewal_outcome not won/lost, nps_response_score "
                     "not 0-10, advocacy_action not review/referral/case_study): skipped")
    return out


def cohort_accounts(requests: Iterable[ApprovalRequest], cohort: str | None, kind: str | None,
                    report: Report) -> list[Account]:
    """One account per account id: its first request in the cohort (default: the newest cohort). An account
    held out for one kind and celebrated for another (shares set per kind) is in neither arm: it was
    both treated and not; how many are left out is said in the report's notes."""
    firsts: dict[tuple[str, str], Account] = {}
    arms: dict[tuple[str, str], set[bool]] = {}
    newest: tuple[datetime, str] | None = None
    for r in requests:
        measured = parse_note(r.policy_notes)
        if measured is None:
            continue
        if newest is None or r.created_at > newest[0]:
            newest = (r.created_at, measured.cohort)
        if kind is not None and kind not in measured.kinds:
            continue
        key = (measured.cohort, r.account_id)
        arms.setdefault(key, set()).add(r.held_out)
        if key not in firsts or r.created_at < firsts[key].at:
            firsts[key] = Account(r.account_id, r.held_out, r.created_at, measured.kinds)
    for c, _ in firsts:
        report.cohorts[c] = report.cohorts.get(c, 0) + 1
    report.cohort = cohort or (newest[1] if newest else None)
    mixed = sum(1 for (c, _), seen in arms.items() if c == report.cohort and len(seen) > 1)
    if mixed:
        report.notes.append(f"{mixed} account(s) left out: held out for one milestone kind and celebrated for "
                            "another (the holdout's shares differ by kind), so in neither arm")
    return [a for key, a in firsts.items() if key[0] == report.cohort and len(arms[key]) == 1]


# the comparisons ---------------------------------------------------------------------------------------
def _arm(accounts: list[Account], outcome: str, held_out: bool) -> list[float]:
    return [v for a in accounts if a.held_out is held_out and (v := a.value(outcome)) is not None]


def _compare(outcome: str, scope: str, stratum: str, accounts: list[Account]) -> Row:
    one, zero = _arm(accounts, outcome, False), _arm(accounts, outcome, True)
    n1, n0 = len(one), len(zero)
    interval: stats.Interval | None = None
    if outcome in RATES:
        v1 = 100 * sum(one) / n1 if n1 else None
        v0 = 100 * sum(zero) / n0 if n0 else None
        if n1 and n0:
            interval = _points(stats.newcombe(int(sum(one)), n1, int(sum(zero)), n0))
    else:
        v1 = sum(one) / n1 if n1 else None
        v0 = sum(zero) / n0 if n0 else None
        if n1 >= 2 and n0 >= 2:
            interval = stats.welch(stats.Sample.of(one), stats.Sample.of(zero))
    return Row(outcome, scope, stratum, n1, v1, n0, v0, interval, stats.verdict(n1, n0, interval))


def _points(i: stats.Interval) -> stats.Interval:
    return stats.Interval(100 * i.estimate, 100 * i.low, 100 * i.high, i.method)


def _stratified(outcome: str, accounts: list[Account]) -> Row:
    groups: dict[tuple[str, ...], list[Account]] = defaultdict(list)
    for a in accounts:
        if a.value(outcome) is not None:
            groups[tuple(a.stratum(by) for by in STRATA)].append(a)
    interval: stats.Interval | None
    if outcome in RATES:
        tables = [stats.Table(int(sum(one)), len(one), int(sum(zero)), len(zero))
                  for one, zero in ((_arm(m, outcome, False), _arm(m, outcome, True)) for m in groups.values())]
        interval, dropped = stats.mantel_haenszel(tables)
        interval = None if interval is None else _points(interval)
        compared = [(t.n1, t.n0) for t in tables if t.n1 and t.n0]
    else:
        pairs = [(stats.Sample.of(_arm(m, outcome, False)), stats.Sample.of(_arm(m, outcome, True)))
                 for m in groups.values()]
        interval, dropped = stats.pooled_means(pairs)
        compared = [(a.n, b.n) for a, b in pairs if a.n >= 2 and b.n >= 2]
    # the accounts the pooled figure rests on (strata with both arms), not the naive arms: the 30-per-arm
    # rule applies to them, or a few accounts in the one shared stratum would carry a verdict
    n1, n0 = sum(a for a, _ in compared), sum(b for _, b in compared)
    return Row(outcome, "stratified", "tier x industry x tenure", n1, None, n0, None, interval,
               stats.verdict(n1, n0, interval), dropped)


def _within(index: datetime, at: datetime, outcome: str) -> bool:
    """After the index date and within the outcome's window."""
    return index < at <= index + WINDOWS[outcome]


def build(requests: Iterable[ApprovalRequest], changes: Iterable[CrmChange], as_of: datetime, *,
          cohort: str | None = None, kind: str | None = None) -> Report:
    report = Report(cohort=None, kind=kind, as_of=as_of)
    accounts = cohort_accounts(requests, cohort, kind, report)
    history = histories(changes, report.notes)
    for a in accounts:
        h = history.get(a.account_id) or _History()
        a.tier, a.industry = _label(h.as_of("tier", a.at)), _label(h.as_of("industry", a.at))
        a.tenure = tenure_bucket(_date(h.as_of("contract_start", a.at)), a.at)
        renewals = sorted((t, won) for t, won in h.renewals if _within(a.at, t, "renewal"))
        a.renewal = renewals[0][1] if renewals else None
        responses = sorted((t, p) for t, p in h.nps if _within(a.at, t, "nps"))
        a.nps = responses[0][1] if responses else None
        if any(_within(a.at, t, "advocacy") for t in h.advocacy):
            a.advocacy = True
        elif as_of >= a.at + WINDOWS["advocacy"]:
            a.advocacy = False
    report.celebrated = sum(not a.held_out for a in accounts)
    report.held_out = sum(a.held_out for a in accounts)
    for outcome in OUTCOMES:
        naive = _compare(outcome, "overall", "all", accounts)
        report.rows += [naive, _stratified(outcome, accounts)]
        for by in STRATA:
            for level in sorted({a.stratum(by) for a in accounts}):
                report.rows.append(_compare(outcome, by, level, [a for a in accounts if a.stratum(by) == level]))
    if kind is not None and report.cohort is not None and not accounts:
        report.notes.append(f"no account in cohort {report.cohort} has a {kind} milestone")
    if report.cohort is None:
        report.notes.append("no approval request carries a measurement note: is `holdout:` set in the rules file?")
    elif len(report.cohorts) > 1:
        others = ", ".join(f"{c} ({n} accounts)" for c, n in sorted(report.cohorts.items()) if c != report.cohort)
        report.notes.append(f"other cohorts on the topic, not in these figures: {others}")
    return report
