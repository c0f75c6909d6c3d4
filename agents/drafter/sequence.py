"""The anniversary sequence's rules: three notes over about two weeks, which step is due when, and
what suppresses, branches or cancels one. Pure: no Kafka, no clock of its own (docs/anniversary-sequence.md).

Why a sequence: an anniversary is the one moment a year when looking back (step 1, the year in
review, drafted by the drafter as any milestone's note), looking ahead (step 2, the capabilities
that fit the account's top use case and adoption stage) and asking (step 3: renewal preparation when
the renewal is near, else an invitation to share a review) each land well; sent together they read
as a campaign, sent a week apart they read as a CSM paying attention.

When: step 2 is due `follow_up_days` after step 1 was drafted, step 3 `last_step_days` after; each
is drafted `notice_hours` before it is due, so the CSM sees it before it goes. Step 2 is skipped
when the CRM says a QBR was completed within `qbr_window_days` (the CSM did this in person). Step 3
is renewal preparation when the CRM's `renewal_date` is within `renewal_window_days`, else an
advocacy invitation. A step not yet sent is cancelled, with its reason, when the CSM declined step
1, the CRM's `status` is one of `churned_statuses`, or the account has an open risk signal at or
above the drafter's gate level. With "this and the follow-ups" approved, a drafted step is sent at
its due time unless the CSM stopped it before (the first decision per approval id wins). The
cooldown applies to every step: a note the drafter drafted after step 1 (another milestone) postpones
a step due within the cooldown, and the later step with it; the drafter in turn counts a drafted later
step as a note (`last_drafted`).

The row (`SequenceRow`, one per account in the `sequences` table, written only by the sequence
agent); only this module knows the stored form's keys:
  q: {anniversary milestone id: sequence}, at most SEQUENCES_KEPT, oldest dropped first
  sequence: {"a": step 1 approval id, "t": step 1 drafted at ISO, "c": CSM email, "h": held out,
             "d": the CSM's decision on step 1 (send|dont_send|None),
             "f": standing approval {"by": CSM, "at": ISO} or None,
             "p": {"2": step, "3": step}}
  step: {"id": approval id, "due": ISO, "s": state, "k": kind once drafted, "w": why (a skip, a cancellation,
         a postponement), "at": drafted at ISO, "m": the email as drafted (a standing approval sends it)}
States: planned → drafted → sent_by_standing | approved | declined; planned|drafted → cancelled; planned → skipped.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from milestone_stream.agents.drafter.context import clean_text
from milestone_stream.agents.drafter.sequence_rules import AnniversarySequence, Capability, Stage
from milestone_stream.dates import iso_date
from milestone_stream.ids import stable_id

SEQUENCES_KEPT = 3          # anniversaries remembered per account (one a year)
STEPS = ("2", "3")          # step 1 is the drafter's own request
FINAL = frozenset({"sent_by_standing", "approved", "declined", "cancelled", "skipped"})
Kind = Literal["forward", "renewal", "advocacy"]
KIND_TITLES = {"forward": "a forward-looking note", "renewal": "renewal preparation",
               "advocacy": "an advocacy invitation"}


def step_id(anniversary_id: str, step: str) -> str:
    """The approval id of a later step: the same for every replay, never one of the drafter's."""
    return stable_id("anniversary-sequence", anniversary_id, step)


# --- what the CRM and the gates say now ----------------------------------------------------------

@dataclass(frozen=True)
class Account:
    """The account as the sequence reads it when a step is due."""

    status: str | None = None          # CRM `status`, lower case
    at_risk: tuple[str, ...] = ()      # open signals at or above the gate level: "'title' (orange)"
    qbr_at: date | None = None         # CRM `qbr_completed_at`
    renewal: date | None = None        # CRM `renewal_date`
    top_use_case: str | None = None
    stage: Stage = "early"
    modules: tuple[str, ...] = ()


def read_account(fields: Mapping[str, object], at_risk: Iterable[str], modules: Iterable[str],
                 config: AnniversarySequence) -> Account:
    """The Account from the CRM profile's fields (any value: unreadable ones read as absent)."""
    status = fields.get("status")
    modules = tuple(modules)
    stage_field = clean_text(fields.get("adoption_stage"), 20).lower()
    stage: Stage = (stage_field if stage_field in ("early", "growing", "mature") else  # type: ignore[assignment]
                    "mature" if len(modules) >= config.mature_from_modules else
                    "growing" if len(modules) >= config.growing_from_modules else "early")
    return Account(status=clean_text(status, 60).lower() or None, at_risk=tuple(at_risk),
                   qbr_at=_day(fields.get("qbr_completed_at")), renewal=_day(fields.get("renewal_date")),
                   top_use_case=clean_text(fields.get("top_use_case"), 300) or None, stage=stage, modules=modules)


def _day(value: object) -> date | None:
    return iso_date(value) if isinstance(value, str) and value else None


def capabilities_for(account: Account, config: AnniversarySequence) -> list[Capability]:
    """The catalogue's entries for the account's year ahead: those whose use cases include its top use
    case (or name none) and whose stages include its stage (or name none), not a module it uses
    already; the ones matching its use case by name first, then the catalogue's order."""
    use_case = (account.top_use_case or "").lower()
    adopted = {m.lower() for m in account.modules}
    fits = [c for c in config.capabilities
            if (not c.use_cases or any(u.lower() == use_case for u in c.use_cases))
            and (not c.stages or account.stage in c.stages) and c.name.lower() not in adopted]
    fits.sort(key=lambda c: not c.use_cases)   # stable: named use case first
    return fits[:config.capabilities_per_note]


# --- the row ------------------------------------------------------------------------------------

class SequenceRow:
    """One account's anniversary sequences: typed access over the stored form (module docstring)."""

    __slots__ = ("sequences",)

    def __init__(self) -> None:
        self.sequences: dict[str, dict] = {}

    @classmethod
    def from_stored(cls, value: object) -> SequenceRow:
        row = cls()
        if isinstance(value, dict) and isinstance(value.get("q"), dict):
            row.sequences = {str(k): v for k, v in value["q"].items() if isinstance(v, dict)}
        return row

    def to_stored(self) -> dict:
        return {"q": self.sequences}

    def copy(self) -> SequenceRow:
        """A working copy deep enough for every change this module makes (sequences, their steps)."""
        out = SequenceRow()
        out.sequences = {k: {**s, "p": {n: dict(p) for n, p in (s.get("p") or {}).items()}}
                         for k, s in self.sequences.items()}
        return out


def start(row: SequenceRow, anniversary_id: str, step1_id: str, drafted_at: datetime, csm_email: str,
          held_out: bool, config: AnniversarySequence) -> bool:
    """Begin the sequence of an anniversary whose step 1 was just drafted (in place); False when it has
    begun already (a re-delivered start)."""
    if anniversary_id in row.sequences:
        return False
    row.sequences[anniversary_id] = {
        "a": step1_id, "t": drafted_at.isoformat(), "c": csm_email, "h": held_out, "d": None, "f": None,
        "p": {n: {"id": step_id(anniversary_id, n), "due": (drafted_at + config.due_after(n)).isoformat(),
                  "s": "planned"} for n in STEPS}}
    while len(row.sequences) > SEQUENCES_KEPT:
        del row.sequences[min(row.sequences, key=lambda k: str(row.sequences[k].get("t")))]
    return True


def on_decision(row: SequenceRow, approval_id: str, decision: str, csm: str, at: datetime,
                follow_ups: bool) -> bool:
    """Record the CSM's decision on a step (in place; the first per approval id counts, as for the
    sender); False when the decision is for none of the row's steps or repeats one already recorded."""
    for seq in row.sequences.values():
        if approval_id == seq.get("a"):
            if seq.get("d") is not None:
                return False
            seq["d"] = decision
        else:
            step = next((p for p in seq["p"].values() if p.get("id") == approval_id), None)
            if step is None:
                continue
            if step.get("s") != "drafted":
                return False  # decided before, sent on the standing approval, cancelled, or never drafted
            step["s"] = "approved" if decision == "send" else "declined"
        if decision == "send" and follow_ups and not seq.get("f"):
            seq["f"] = {"by": csm, "at": at.isoformat()}
        return True
    return False


# --- what is due --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Draft:
    anniversary_id: str
    step: str
    approval_id: str
    kind: Kind
    due: datetime
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Skip:
    anniversary_id: str
    step: str
    reason: str


@dataclass(frozen=True)
class Cancel:
    anniversary_id: str
    step: str
    approval_id: str
    reason: str
    withdraw: bool      # drafted and undecided: a `dont_send` decision closes its request


@dataclass(frozen=True)
class Postpone:
    """The cooldown holds a step due now: it and the later step move by `shift`."""

    anniversary_id: str
    step: str
    shift: timedelta    # how much later it (and the later step) is drafted and due
    reason: str


@dataclass(frozen=True)
class Send:
    """Send a drafted step on the standing approval (a `send` decision on the CSM's behalf)."""

    anniversary_id: str
    step: str
    approval_id: str
    reason: str


Action = Draft | Skip | Cancel | Postpone | Send


def draft_at(step: Mapping[str, object], config: AnniversarySequence) -> datetime:
    return datetime.fromisoformat(str(step["due"])) - timedelta(hours=config.notice_hours)


def cancel_reason(seq: Mapping[str, object], account: Account, config: AnniversarySequence) -> str | None:
    """Why the rest of a sequence is cancelled, or None: the CSM declined step 1, the account churned,
    or it is at risk."""
    if seq.get("d") == "dont_send":
        return "the CSM declined step 1 (the anniversary note)"
    if account.status is not None and account.status in config.churned_statuses:
        return f"the account churned (CRM status {account.status!r})"
    if account.at_risk:
        return f"the account is at risk (open risk signal {', '.join(account.at_risk)})"
    return None


def due(row: SequenceRow, account: Account, now: datetime, config: AnniversarySequence,
        other_note_at: datetime | None = None, cooldown: timedelta = timedelta(0)) -> list[Action]:
    """What to do now: cancellations, postponements, skips, drafts, sends. Each action is applied with
    `mark` once done; until then `due` returns it again (a crash redoes it with the same ids).
    `other_note_at`: when the drafter last drafted a note for the account (its row's last celebration);
    a note other than step 1 within `cooldown` postpones a step due now (the cooldown applies to every step)."""
    actions: list[Action] = []
    for aid, seq in row.sequences.items():
        skipped: list[str] = []
        for n in STEPS:
            step = seq["p"].get(n) or {}
            state = step.get("s")
            if state == "skipped":
                skipped.append(f"step {n} ({KIND_TITLES['forward']}) was not drafted: {step.get('w')}")
            if state in FINAL or state is None:
                continue
            reason = cancel_reason(seq, account, config)
            if reason:
                actions.append(Cancel(aid, n, str(step["id"]), reason, withdraw=state == "drafted"))
            elif state == "planned" and now >= draft_at(step, config):
                hold = cooldown_hold(seq, other_note_at, cooldown, now)
                if hold is not None and other_note_at is not None:
                    why = (f"cooldown: another note was drafted on {other_note_at:%Y-%m-%d %H:%M} UTC; this step "
                           f"was postponed to {hold:%Y-%m-%d %H:%M} UTC")
                    actions.append(Postpone(aid, n, hold - draft_at(step, config), why))
                    break  # the later step moves with it
                due_time = datetime.fromisoformat(str(step["due"]))
                skip = skip_reason(account, now, config) if n == "2" else None
                if skip:
                    actions.append(Skip(aid, n, skip))
                    skipped.append(f"step {n} ({KIND_TITLES['forward']}) was not drafted: {skip}")
                else:
                    kind: Kind = "forward" if n == "2" else "renewal" if renewal_near(account, now, config) \
                        else "advocacy"
                    postponed = [str(step["w"])] if step.get("w") else []
                    actions.append(Draft(aid, n, str(step["id"]), kind, due_time, tuple(
                        step_notes(seq, n, kind, due_time, account, config) + postponed + skipped)))
                    skipped = []
            elif sendable(seq, step) and now >= datetime.fromisoformat(str(step["due"])):
                f = seq["f"]
                actions.append(Send(aid, n, str(step["id"]),
                                    f"approved with the follow-ups on {str(f['at'])[:10]} by {f['by']}"))
    return actions


def cooldown_hold(seq: Mapping[str, object], other_note_at: datetime | None, cooldown: timedelta,
                  now: datetime) -> datetime | None:
    """Until when a step due now waits: the end of the cooldown after a note the drafter drafted after
    step 1 (step 1 and the sequence's own steps are one celebration); None when it need not wait."""
    if other_note_at is None or cooldown <= timedelta(0):
        return None
    if other_note_at <= datetime.fromisoformat(str(seq.get("t"))):
        return None
    until = other_note_at + cooldown
    return until if now < until else None


def last_drafted(row: SequenceRow) -> datetime | None:
    """When the account's latest later step was drafted (the drafter's cooldown counts it as a note)."""
    times = [datetime.fromisoformat(str(p["at"])) for seq in row.sequences.values()
             for p in (seq.get("p") or {}).values() if isinstance(p, dict) and p.get("at")]
    return max(times, default=None)


def skip_reason(account: Account, now: datetime, config: AnniversarySequence) -> str | None:
    """Why step 2 is not drafted: a recent QBR (suppressed), or nothing in the catalogue fits."""
    qbr = recent_qbr(account, now, config)
    if qbr is not None:
        return (f"suppressed: the CRM says a QBR was completed on {qbr.isoformat()}, within "
                f"{config.qbr_window_days:g} days (the CSM covered the year ahead in person)")
    if not capabilities_for(account, config):
        return ("no capability in the rules' catalogue fits the account's top use case "
                f"({account.top_use_case or 'not in the CRM'}) and adoption stage ({account.stage})")
    return None


def sendable(seq: Mapping[str, object], step: Mapping[str, object]) -> bool:
    """A drafted, undecided step goes at its time on a standing approval given before it was drafted (so
    its request, and the CSM's notification, said when it would go): never for a held-out account, nor
    without a recipient (the CSM chooses one on the request page, then sends it themselves)."""
    drafted, standing = step.get("m"), seq.get("f")
    if step.get("s") != "drafted" or seq.get("h") or not isinstance(standing, dict) or not step.get("at"):
        return False
    told = datetime.fromisoformat(str(standing.get("at"))) <= datetime.fromisoformat(str(step["at"]))
    return told and isinstance(drafted, dict) and bool(drafted.get("r"))


def recent_qbr(account: Account, now: datetime, config: AnniversarySequence) -> date | None:
    """The CRM's QBR date when it lies within the window before `now` (a future date is a typo: ignored)."""
    qbr = account.qbr_at
    if qbr is None or qbr > now.date() or (now.date() - qbr).days > config.qbr_window_days:
        return None
    return qbr


def renewal_near(account: Account, now: datetime, config: AnniversarySequence) -> bool:
    """Whether the renewal is ahead of `now` and within the window (a past date is not a renewal ahead)."""
    r = account.renewal
    return r is not None and 0 <= (r - now.date()).days <= config.renewal_window_days


def step_notes(seq: Mapping[str, object], n: str, kind: Kind, due_time: datetime, account: Account,
               config: AnniversarySequence) -> list[str]:
    """The policy notes of a later step's request: where it stands in the sequence and when it goes."""
    f = seq.get("f")
    why = {"forward": f"top use case {account.top_use_case or 'not in the CRM'}, adoption stage {account.stage}",
           "renewal": f"the CRM's renewal_date {account.renewal} is within {config.renewal_window_days:g} days",
           "advocacy": "no renewal within "
                       f"{config.renewal_window_days:g} days in the CRM (renewal_date {account.renewal or 'not set'})"}
    notes = [f"anniversary sequence: step {n} of 3, {KIND_TITLES[kind]} ({why[kind]}); "
             f"planned for {due_time:%Y-%m-%d %H:%M} UTC"]
    if seq.get("h"):
        notes.append("anniversary sequence: the account is held out for measurement: this step is never sent")
    elif isinstance(f, dict):
        notes.append(f"anniversary sequence: approved with the follow-ups on {str(f.get('at'))[:10]} by "
                     f"{f.get('by')}: this note will be sent on {due_time:%Y-%m-%d %H:%M} UTC unless you choose "
                     "Don't send before then")
    return notes


STEP_NOTE = re.compile(r"^anniversary sequence: step ([123]) of 3")  # how step_notes and step1_notes begin


def step_of(policy_notes: list[str]) -> str | None:
    """Which step of a sequence a request is ("1", "2", "3"), from its policy notes; None for no step."""
    return next((m.group(1) for note in policy_notes if (m := STEP_NOTE.match(note))), None)


def is_later_step(policy_notes: list[str]) -> bool:
    """A request of step 2 or 3: it names the anniversary milestone in `milestone_ids` to link the
    sequence, but celebrates nothing again (the sender's once-per-milestone check leaves it out)."""
    return step_of(policy_notes) in ("2", "3")


def step1_notes(drafted_at: datetime, config: AnniversarySequence) -> list[str]:
    """The policy note of step 1 (the drafter's anniversary request): what follows and how to approve it."""
    two, three = drafted_at + config.due_after("2"), drafted_at + config.due_after("3")
    return [f"anniversary sequence: step 1 of 3 (the year in review); step 2, a forward-looking note, is planned "
            f"for {two:%Y-%m-%d}; step 3, renewal preparation or an advocacy invitation, for {three:%Y-%m-%d}. "
            "Send 'this and the follow-ups' to have them sent at their times unless you stop them; "
            "Don't send cancels them"]


def mark(row: SequenceRow, action: Action) -> None:
    """Record (in place) that an action was carried out (its records acknowledged by the broker)."""
    step = row.sequences[action.anniversary_id]["p"][action.step]
    if isinstance(action, Draft):
        step.update(s="drafted", k=action.kind)
    elif isinstance(action, Skip):
        step.update(s="skipped", w=action.reason)
    elif isinstance(action, Cancel):
        step.update(s="cancelled", w=action.reason)
    elif isinstance(action, Postpone):
        seq = row.sequences[action.anniversary_id]
        for n in STEPS[STEPS.index(action.step):]:
            later = seq["p"][n]
            if later.get("s") == "planned":
                later["due"] = (datetime.fromisoformat(str(later["due"])) + action.shift).isoformat()
        step["w"] = action.reason
    else:
        step.update(s="sent_by_standing", w=action.reason)


def next_due(row: SequenceRow, config: AnniversarySequence) -> datetime | None:
    """When the row next needs a look: a planned step's drafting time, or a drafted step's send time
    under a standing approval."""
    times = []
    for seq in row.sequences.values():
        for n in STEPS:
            step = seq["p"].get(n) or {}
            if step.get("s") == "planned":
                times.append(draft_at(step, config))
            elif sendable(seq, step):
                times.append(datetime.fromisoformat(str(step["due"])))
    return min(times, default=None)
