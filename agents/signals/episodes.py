"""Risk-signal episodes: when each signal opens and clears, from CRM changes and the usage row's day totals.

Pure rules, no Kafka: the signals agent (agent.py) feeds a CRM change to `observe_change`, and a clock
tick to `evaluate` with the account's usage row; both change the account's `RiskRow` in place and
return the records to publish. An episode opens once (when its condition begins to hold) and clears
once (when it no longer holds); its opening and clearing share a deterministic signal_id, a hash of
the account, the episode's key and the event time it opened at, so a replay regenerates the same id.

The account's row (stored in a Faust table as compact JSON); only this module knows its keys:
  o: {topic: offset of the last applied input}     r: recent CRM change ids (a producer's re-send)
  p: [csm_email, account name] from the CRM        n: [nps, as-of ISO, source, record] the current score
  m: [mrr, as-of ISO, source, record]              v: [overdue (bool), as-of ISO]
  c: [as-of ISO, {role: {contact id: display name}}] the holders of the watched roles (absent: never sent)
  u: {metric: the latest UTC day number on which the metric counted more than 0} (no_new_users)
  e: {episode key: {"i": signal_id, "k": kind, "l": level, "a": opened_at ISO, "t": title, "b": baseline}}
Why the baseline in the episode: a clear compares with what held before the episode (the NPS or MRR
before the drop, the holders that remained), not with the last value, which moves during it.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from milestone_stream.agents.detector.crm import first_application
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.signals.rules import NoNewUsers, Signal, SignalRules, TicketSurge, UsageDrop
from milestone_stream.ids import stable_id
from milestone_stream.schemas.records import EMAIL_MAX, CrmChange, Evidence, RiskKind, RiskSignal

RECENT_IDS = 64        # CRM change ids a row remembers
TEXT_MAX = 200         # characters of a name or e-mail in a title or an evidence record
TELEMETRY = "telemetry"
READABLE = {"nps": (-100.0, 100.0), "mrr": (0.0, float("inf"))}  # numeric CRM fields the signals read: their range
EPOCH = date(1970, 1, 1)


class RiskRow:
    """One account's risk state: typed names over the stored compact form (see the module's docstring).

    `from_stored` reads a table value (tolerant: a missing or ill-typed part reads as empty); `copy`
    makes the working copy the rules change (the stored row must not change before its records are
    acknowledged)."""

    __slots__ = ("offsets", "recent", "profile", "nps", "mrr", "overdue", "contacts", "last_seen", "episodes")

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}             # o
        self.recent: list[str] = []                   # r
        self.profile: list = [None, None]             # p
        self.nps: list | None = None                  # n
        self.mrr: list | None = None                  # m
        self.overdue: list | None = None              # v
        self.contacts: list | None = None             # c
        self.last_seen: dict[str, int] = {}           # u
        self.episodes: dict[str, dict] = {}           # e

    @classmethod
    def from_stored(cls, value: object) -> RiskRow:
        row = cls()
        if isinstance(value, dict):
            row.offsets, row.last_seen = _dict(value.get("o")), _dict(value.get("u"))
            row.episodes = {k: e for k, e in _dict(value.get("e")).items() if _episode_ok(e)}
            row.recent = _list(value.get("r"))
            profile = _list(value.get("p"))
            row.profile = profile if len(profile) == 2 else [None, None]
            for name, key, size in (("nps", "n", 4), ("mrr", "m", 4), ("overdue", "v", 2), ("contacts", "c", 2)):
                part = value.get(key)
                setattr(row, name, part if isinstance(part, list) and len(part) == size else None)
        return row

    def to_stored(self) -> dict:
        out: dict = {"o": self.offsets, "r": self.recent, "p": self.profile, "u": self.last_seen, "e": self.episodes}
        for name, key in (("nps", "n"), ("mrr", "m"), ("overdue", "v"), ("contacts", "c")):
            if getattr(self, name) is not None:
                out[key] = getattr(self, name)
        return out

    def copy(self) -> RiskRow:
        out = RiskRow.__new__(RiskRow)
        out.offsets, out.recent, out.profile = dict(self.offsets), list(self.recent), list(self.profile)
        out.nps, out.mrr, out.overdue = self.nps, self.mrr, self.overdue  # replaced, never edited in place
        out.contacts, out.last_seen = self.contacts, dict(self.last_seen)
        out.episodes = {k: dict(e) for k, e in self.episodes.items()}
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RiskRow) and self.to_stored() == other.to_stored()

    def __repr__(self) -> str:
        return f"RiskRow({self.to_stored()!r})"


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _episode_ok(e: object) -> bool:
    """An episode the rules can clear: its id, kind, level, title and an ISO opening time."""
    if not (isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("i", "k", "l", "a", "t"))):
        return False
    try:
        return datetime.fromisoformat(e["a"]).tzinfo is not None
    except ValueError:
        return False


def _text(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX - 1] + "…"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


# -- opening and clearing -------------------------------------------------------------------------

def _open(row: RiskRow, account: str, key: str, kind: RiskKind, rule: Signal, at: datetime, title: str,
          evidence: list[Evidence], baseline: object = None) -> RiskSignal | None:
    """The episode's opening, recorded in the row; None if it is open already."""
    if key in row.episodes:
        return None
    signal_id = stable_id("risk", account, key, at.isoformat())
    row.episodes[key] = {"i": signal_id, "k": kind, "l": rule.level, "a": at.isoformat(), "t": title,
                         "b": baseline}
    return RiskSignal(signal_id=signal_id, account_id=account, kind=kind, level=rule.level, state="open",
                      title=title, opened_at=at, at=at, evidence=evidence, playbook=list(rule.playbook),
                      csm_email=_profile(row, 0), account_name=_profile(row, 1))


def _clear(row: RiskRow, account: str, key: str, at: datetime, evidence: list[Evidence]) -> RiskSignal | None:
    """The episode's clearing, removed from the row; None if it is not open."""
    e = row.episodes.pop(key, None)
    if e is None:
        return None
    opened = datetime.fromisoformat(e["a"])
    return RiskSignal(signal_id=e["i"], account_id=account, kind=e["k"], level=e["l"], state="cleared",
                      title=e["t"], opened_at=opened, at=max(at, opened), evidence=evidence, playbook=[],
                      csm_email=_profile(row, 0), account_name=_profile(row, 1))


def _profile(row: RiskRow, i: int) -> str | None:
    value = row.profile[i]
    return value if isinstance(value, str) and value else None


def _kept(records: Iterable[RiskSignal | None]) -> list[RiskSignal]:
    return [r for r in records if r is not None]


# -- CRM changes ---------------------------------------------------------------------------------

def observe_change(row: RiskRow, change: CrmChange, origin: tuple[str, int], rules: SignalRules) -> list[RiskSignal]:
    """Apply one CRM change (in place); return the openings and clearings it causes.

    `origin` is the input's (topic, offset): at or below the row's offset for that topic it is a
    replay and changes nothing; a recent change id is a re-sent copy. A value older (by occurred_at)
    than the one the row holds arrived out of order and is ignored, as the CRM profile does."""
    if not first_application(row, change, origin, RECENT_IDS):
        return []
    out: list[RiskSignal | None] = []
    ownerless = set(row.episodes) if _profile(row, 0) is None else set()  # open, and announced without a CSM
    for fc in change.changes:  # first the profile, so that this change's records carry it (bounded)
        if fc.field == "csm_email" and (fc.value is None or isinstance(fc.value, str)):
            email = fc.value.strip() if fc.value else None
            row.profile = [email if email and len(email) <= EMAIL_MAX and "@" in email else None, row.profile[1]]
        elif fc.field == "name" and (fc.value is None or isinstance(fc.value, str)):
            row.profile = [row.profile[0], _text(fc.value) if fc.value else None]
    for fc in change.changes:
        if fc.field in READABLE:
            number, (low, high) = _number(fc.value), READABLE[fc.field]
            if fc.value is not None and (number is None or not low <= number <= high):
                continue  # unreadable (text, out of range): ignored, the value before it kept; null clears it
            out += (_nps if fc.field == "nps" else _mrr)(row, change, number, rules)
        elif fc.field == "invoice_overdue":
            out += _overdue(row, change, fc.value, rules)
    if change.contacts is not None:
        out += _contacts(row, change, rules)
    if ownerless and _profile(row, 0) is not None:
        out += _with_owner(row, change, rules, ownerless)
    return _kept(out)


def _with_owner(row: RiskRow, change: CrmChange, rules: SignalRules, ownerless: set[str]) -> list[RiskSignal | None]:
    """The `ownerless` episodes still open, announced again now that the CRM names the account's CSM. Their
    openings went out without one, so the sender could alert nobody (it dead-lettered them `no_csm_owner`,
    and a replay of that dead letter carries no owner either). The same signal_id: the sender alerts once
    per episode, and the gates and Gainsight keep the first opening they saw."""
    out: list[RiskSignal | None] = []
    for key, e in row.episodes.items():
        if key not in ownerless:  # opened by this very change: its opening carries the CSM already
            continue
        rule = getattr(rules, e["k"], None)
        opened = datetime.fromisoformat(e["a"])
        out.append(RiskSignal(signal_id=e["i"], account_id=change.account_id, kind=e["k"], level=e["l"],
                              state="open", title=e["t"], opened_at=opened, at=max(change.occurred_at, opened),
                              evidence=[_change_evidence(change, f"CSM named while {key} was open")],
                              playbook=list(rule.playbook) if rule is not None else [],
                              csm_email=_profile(row, 0), account_name=_profile(row, 1)))
    return out


def _newer(part: list | None, change: CrmChange, at: int = 1) -> bool:
    """Is the change at least as recent as the value the row holds?"""
    if part is None:
        return True
    try:
        return change.occurred_at >= datetime.fromisoformat(part[at])
    except (TypeError, ValueError):
        return True


def _change_evidence(change: CrmChange, what: str) -> Evidence:
    record = change.source_record or change.account_id
    return Evidence(source=change.source, record=_text(f"{record} {what} (change {change.change_id})"),
                    occurred_at=change.occurred_at)


def _nps(row: RiskRow, change: CrmChange, score: float | None, rules: SignalRules) -> list[RiskSignal | None]:
    if not _newer(row.nps, change):
        return []
    before = row.nps
    row.nps = None if score is None else [score, change.occurred_at.isoformat(), change.source, change.change_id]
    rule, account = rules.nps_drop, change.account_id
    if rule is None or score is None:
        return []
    episode = row.episodes.get("nps_drop")
    if episode is not None:
        baseline = _number(episode.get("b"))
        if baseline is None or baseline - score <= rule.points:
            return [_clear(row, account, "nps_drop", change.occurred_at,
                           [_change_evidence(change, f"field nps {score:g}, back within {rule.points:g} points"
                                             + (f" of {baseline:g}" if baseline is not None else ""))])]
        return []
    previous = _number(before[0]) if before else None
    if previous is None or previous - score <= rule.points:
        return []
    earlier = Evidence(source=_text(before[2]), record=_text(f"field nps {previous:g} (change {before[3]})"),
                       occurred_at=datetime.fromisoformat(before[1])) if before else None
    return [_open(row, account, "nps_drop", "nps_drop", rule, change.occurred_at,
                  f"NPS down {previous - score:g} points ({previous:g} to {score:g})",
                  ([earlier] if earlier else []) + [_change_evidence(change, f"field nps {score:g}")],
                  baseline=previous)]


def _mrr(row: RiskRow, change: CrmChange, mrr: float | None, rules: SignalRules) -> list[RiskSignal | None]:
    if not _newer(row.mrr, change):
        return []
    before = row.mrr
    row.mrr = None if mrr is None else [mrr, change.occurred_at.isoformat(), change.source, change.change_id]
    rule, account = rules.mrr_contraction, change.account_id
    if rule is None or mrr is None:
        return []
    episode = row.episodes.get("mrr_contraction")
    if episode is not None:
        baseline = _number(episode.get("b"))
        if baseline is None or mrr >= baseline:
            return [_clear(row, account, "mrr_contraction", change.occurred_at,
                           [_change_evidence(change, f"field mrr {mrr:g}, back to {baseline:g} or more"
                                             if baseline is not None else f"field mrr {mrr:g}")])]
        return []
    previous = _number(before[0]) if before else None
    if previous is None or previous <= 0 or mrr >= previous * (1 - rule.min_drop_percent / 100) or mrr >= previous:
        return []
    down = (1 - mrr / previous) * 100
    earlier = Evidence(source=_text(before[2]), record=_text(f"field mrr {previous:g} (change {before[3]})"),
                       occurred_at=datetime.fromisoformat(before[1])) if before else None
    return [_open(row, account, "mrr_contraction", "mrr_contraction", rule, change.occurred_at,
                  f"MRR down {down:.0f}% ({previous:,.2f} to {mrr:,.2f})",
                  ([earlier] if earlier else []) + [_change_evidence(change, f"field mrr {mrr:g}")], baseline=previous)]


def _overdue(row: RiskRow, change: CrmChange, value: object, rules: SignalRules) -> list[RiskSignal | None]:
    if not _newer(row.overdue, change):
        return []
    overdue = value is True or (isinstance(value, str) and value.strip().lower() == "true")
    row.overdue = [overdue, change.occurred_at.isoformat()]
    rule, account = rules.invoice_overdue, change.account_id
    if rule is None:
        return []
    if overdue:
        return [_open(row, account, "invoice_overdue", "invoice_overdue", rule, change.occurred_at,
                      "Invoice overdue", [_change_evidence(change, "field invoice_overdue true")])]
    return [_clear(row, account, "invoice_overdue", change.occurred_at,
                   [_change_evidence(change, f"field invoice_overdue {value}")])]


def _role(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " ").split())


def _contacts(row: RiskRow, change: CrmChange, rules: SignalRules) -> list[RiskSignal | None]:
    """Holders of the watched roles, before and after: one episode per role, opened when a holder leaves
    the contacts or loses the role, cleared when someone who did not hold it then holds it."""
    if not _newer(row.contacts, change, at=0):
        return []
    rule = rules.champion_departure
    watched = {_role(r) for r in rule.roles} if rule else set()
    now: dict[str, dict[str, str]] = {}
    for c in change.contacts or []:
        role = _role(c.role)
        if role in watched:
            ident = (c.email.strip().lower() or c.name.strip().lower())[:TEXT_MAX]
            now.setdefault(role, {})[ident] = _text(f"{c.name} <{c.email}>" if c.email else c.name)
    before = row.contacts[1] if row.contacts is not None and isinstance(row.contacts[1], dict) else None
    row.contacts = [change.occurred_at.isoformat(), now]
    if rule is None or before is None:
        return []
    out: list[RiskSignal | None] = []
    account = change.account_id
    for role in sorted(watched):
        key = f"champion_departure:{role}"
        held, holders = _dict(before.get(role)), now.get(role, {})
        episode = row.episodes.get(key)
        label = role.replace("_", " ")
        if episode is not None:
            remained = set(_list(episode.get("b")))
            new = sorted(set(holders) - remained)
            if new:
                out.append(_clear(row, account, key, change.occurred_at,
                                  [_change_evidence(change, f"contact {holders[new[0]]} now {label}")]))
            continue
        left = sorted(set(held) - set(holders))
        if left:
            names = ", ".join(str(held[i]) for i in left)
            out.append(_open(row, account, key, "champion_departure", rule, change.occurred_at,
                             _text(f"{label.capitalize()} {names} left"),
                             [_change_evidence(change, f"contact {held[i]} no longer {label}") for i in left],
                             baseline=sorted(holders)))
    return out


# -- usage (at a clock tick) -----------------------------------------------------------------------

def evaluate(row: RiskRow, account: str, usage: UsageRow, now: datetime, rules: SignalRules) -> list[RiskSignal]:
    """The usage signals at `now` (a tick's time), from the usage row's day totals (UTC days by event time)."""
    today = now.astimezone(UTC).date()
    out: list[RiskSignal | None] = []
    if rules.usage_drop is not None:
        out.append(_usage_drop(row, account, usage, today, rules.usage_drop))
    if rules.ticket_surge is not None:
        out.append(_ticket_surge(row, account, usage, today, rules.ticket_surge))
    if rules.no_new_users is not None:
        out.append(_no_new_users(row, account, usage, today, rules.no_new_users))
    return _kept(out)


def _window(days: dict[date, float], first: date, last: date) -> float:
    return sum(v for d, v in days.items() if first <= d <= last)


def _window_evidence(metric: str, total: float, first: date, last: date) -> Evidence:
    return Evidence(source=TELEMETRY, record=_text(f"{metric} {total:g} on {first.isoformat()}..{last.isoformat()}"),
                    occurred_at=_day_start(last + timedelta(days=1)) - timedelta(milliseconds=1))


def _usage_drop(row: RiskRow, account: str, usage: UsageRow, today: date, rule: UsageDrop) -> RiskSignal | None:
    """Complete days only: the window ending yesterday against the one before it."""
    days, w = usage.daily(rule.metric), rule.window_days
    cur_first, cur_last = today - timedelta(days=w), today - timedelta(days=1)
    prev_first, prev_last = today - timedelta(days=2 * w), today - timedelta(days=w + 1)
    current, previous = _window(days, cur_first, cur_last), _window(days, prev_first, prev_last)
    evidence = [_window_evidence(rule.metric, previous, prev_first, prev_last),
                _window_evidence(rule.metric, current, cur_first, cur_last)]
    episode = row.episodes.get("usage_drop")
    baseline = _number(episode.get("b")) if episode is not None else None
    if baseline is not None:
        # open: cleared when the last window is back within drop_percent of the window before the drop, not
        # when two windows agree (usage that stopped, or stayed low, would compare equal and clear)
        if current * 100 < baseline * (100 - rule.drop_percent):
            return None
        return _clear(row, account, "usage_drop", _day_start(today), evidence)
    holds = previous > 0 and previous >= rule.min_base and current * 100 < previous * (100 - rule.drop_percent)
    if holds:
        label = rule.metric.replace("_", " ").capitalize()
        return _open(row, account, "usage_drop", "usage_drop", rule, _day_start(today),
                     f"{label} down {(1 - current / previous) * 100:.0f}% against the previous {w} days",
                     evidence, baseline=previous)
    return _clear(row, account, "usage_drop", _day_start(today), evidence)


def _ticket_surge(row: RiskRow, account: str, usage: UsageRow, today: date, rule: TicketSurge) -> RiskSignal | None:
    """The window ends today (tickets count as they arrive)."""
    first = today - timedelta(days=rule.window_days - 1)
    total = _window(usage.daily(rule.metric), first, today)
    evidence = [_window_evidence(rule.metric, total, first, today)]
    if total > rule.max_tickets:
        return _open(row, account, "ticket_surge", "ticket_surge", rule, _day_start(today),
                     f"{total:g} {rule.metric.replace('_', ' ')} in the last {rule.window_days} days",
                     evidence, baseline=total)
    return _clear(row, account, "ticket_surge", _day_start(today), evidence)


def _no_new_users(row: RiskRow, account: str, usage: UsageRow, today: date, rule: NoNewUsers) -> RiskSignal | None:
    """Opens on the first day of the period without any (after the account had some); clears on the day
    they come back. Why the row keeps the last day: the usage row keeps only the days the rules need."""
    counted = [(d - EPOCH).days for d, v in usage.daily(rule.metric).items() if v > 0 and d <= today]
    last_seen = row.last_seen.get(rule.metric)
    last = max(counted + ([last_seen] if isinstance(last_seen, int) else []), default=None)
    if last is None:
        return None
    row.last_seen[rule.metric] = last
    last_day = EPOCH + timedelta(days=last)
    evidence = [Evidence(source=TELEMETRY, record=f"{rule.metric} last counted on {last_day.isoformat()}",
                         occurred_at=_day_start(last_day))]
    if (today - last_day).days >= rule.period_days:
        return _open(row, account, "no_new_users", "no_new_users", rule,
                     _day_start(last_day + timedelta(days=rule.period_days)),
                     f"No {rule.metric.replace('_', ' ')} for {rule.period_days} days", evidence)
    return _clear(row, account, "no_new_users", _day_start(last_day), evidence)
