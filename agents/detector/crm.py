"""The CRM tracker: the account profile kept from CRM changes, and the milestones they mark.

The account's row (`ProfileRow`, stored in a Faust table as compact JSON); only this module knows
the stored form's one-letter keys, every other module reads the row through its names and methods:
  p: profile fields   c: key contacts   f: ids of fired milestones   a: anniversary years done
  o: {topic: offset of the last applied input, and source topic#partition: offset for adapted records}
  r: recent change ids
  s: {field: [source, record, ISO time]} where each profile field came from (the drafter cites it; also
     the as-of time that makes a late, older value lose); absent in rows written before it existed
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import NamedTuple, Protocol

from milestone_stream.agents.detector.anniversary import anniversary_date, due_now
from milestone_stream.dates import iso_date
from milestone_stream.ids import milestone_id
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import CrmChange, Evidence, Milestone

ANNIVERSARY_DUE = "anniversary_due"  # a clock tick for this account, sent by the anniversary timer
ONCE_EVER = {"implementation_signed_off_at": ("implementation_signed_off", "Implementation signed off")}
PER_DATE = {"qbr_completed_at": ("qbr_completed", "QBR completed"),
            "renewal_signed_at": ("renewal_signed", "Renewal signed")}


class Provenance(NamedTuple):
    """Where a profile field's value came from: source system, record, and as of when (as stored:
    an ISO time without a zone reads as a naive datetime)."""

    source: object
    record: object
    as_of: datetime


class ProfileRow:
    """One account's CRM profile: typed names over the stored compact form (see the module's docstring).

    `from_stored` reads a table value without copying it (for readers; tolerant of missing or
    ill-typed parts, which read as empty); `copy` makes the working copy the tracker changes. Why
    shallow copies of the containers suffice: a change replaces field values, contacts and
    provenance entries, it never edits one in place.
    """

    __slots__ = ("fields", "contacts", "fired", "years_done", "offsets", "recent", "sources")

    def __init__(self) -> None:
        self.fields: dict[str, object] = {}          # p
        self.contacts: list = []                     # c: [{"name", "email", "role"}] as the CRM sent them
        self.fired: list[str] = []                   # f
        self.years_done: list[int] = []              # a
        self.offsets: dict[str, int] = {}            # o
        self.recent: list[str] = []                  # r
        self.sources: dict[str, list] | None = None  # s: {field: [source, record, ISO time]}

    @classmethod
    def from_stored(cls, value: object) -> ProfileRow:
        """The row a table holds (None: a new row); rows without provenance (`s`) are read."""
        row = cls()
        if isinstance(value, dict):
            row.fields, row.offsets = _dict(value.get("p")), _dict(value.get("o"))
            row.contacts, row.fired = _list(value.get("c")), _list(value.get("f"))
            row.years_done, row.recent = _list(value.get("a")), _list(value.get("r"))
            sources = value.get("s")
            row.sources = sources if isinstance(sources, dict) else None
        return row

    def to_stored(self) -> dict:
        """The compact form, keys in the order this module always wrote them. Shares the row's
        containers: store, then let go."""
        out = {"p": self.fields, "c": self.contacts, "f": self.fired, "a": self.years_done, "o": self.offsets,
               "r": self.recent}
        if self.sources is not None:
            out["s"] = self.sources
        return out

    def copy(self) -> ProfileRow:
        out = ProfileRow.__new__(ProfileRow)
        out.fields, out.contacts, out.fired = dict(self.fields), list(self.contacts), list(self.fired)
        out.years_done, out.offsets, out.recent = list(self.years_done), dict(self.offsets), list(self.recent)
        out.sources = dict(self.sources) if self.sources is not None else None
        return out

    def __repr__(self) -> str:
        return f"ProfileRow({self.to_stored()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProfileRow) and self.to_stored() == other.to_stored()

    # -- for readers (the detector's timer, the drafter) -------------------------------------------

    def field(self, name: str, default: object = None) -> object:
        """A profile field's value as the CRM sent it (any JSON value: the reader checks it)."""
        return self.fields.get(name, default)

    def provenance(self, name: str) -> Provenance | None:
        """Where the field's value came from; None if not recorded or unreadable."""
        entry = (self.sources or {}).get(name)
        if entry is None:
            return None
        try:
            source, record, when = entry
            return Provenance(source, record, datetime.fromisoformat(when))
        except (TypeError, ValueError):
            return None

    def contract_start(self) -> date | None:
        raw = self.fields.get("contract_start")
        return iso_date(str(raw)) if raw else None


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


class ChangeLog(Protocol):
    """What a row keeps to know a CRM change it applied: the last input offset per topic, recent change ids."""

    offsets: dict[str, int]
    recent: list[str]


def first_application(row: ChangeLog, change: CrmChange, origin: tuple[str, int], keep: int) -> bool:
    """Whether `change`, read at `origin` (topic, offset), is applied now; records it in the row (in
    place). No for a replay (at or below the row's offset for that topic) and for a re-sent copy (a
    change id among the `keep` most recent)."""
    topic, offset = origin
    if offset <= row.offsets.get(topic, -1):
        return False
    row.offsets[topic] = offset
    if change.change_id in row.recent:
        return False
    row.recent = (row.recent + [change.change_id])[-keep:]
    return True


def apply_change(row: ProfileRow, change: CrmChange, origin: tuple[str, int], rules: Rules,
                 today: date) -> list[Milestone]:
    """Apply one change to the row (in place) and return the milestones it marks, each once ever.

    `origin` is the input's (topic, offset): at or below the row's offset for that topic it is a
    replay after a crash and changes nothing; a recent change id is a producer duplicate (skipped to
    save work: applying a change twice changes nothing, an adapter's re-published copy included). A
    field value older (by `occurred_at`) than the one the row holds arrived out of order and is
    ignored: the CRM's latest value wins.
    """
    if not first_application(row, change, origin, max(rules.dedupe.recent_event_ids, 1)):
        return []
    if change.contacts is not None:
        row.contacts = [c.model_dump() for c in change.contacts]
    fired: list[Milestone] = []
    for fc in change.changes:
        if fc.field == ANNIVERSARY_DUE:
            fired += _anniversaries(row, change, rules, today)
            continue
        if row.sources is None:
            row.sources = {}
        provenance = row.sources
        if fc.field in provenance and change.occurred_at < datetime.fromisoformat(provenance[fc.field][2]):
            continue  # older than the value the row holds (out of order): the newer value stands
        before = row.fields.get(fc.field)
        if fc.value is None:
            row.fields.pop(fc.field, None)
        else:
            row.fields[fc.field] = fc.value
        # kept for a cleared field too, so that an older value arriving late cannot bring it back
        provenance[fc.field] = [change.source, change.source_record or change.account_id,
                                change.occurred_at.isoformat()]
        fired += _marks(row, change, fc.field, before, fc.value, rules)
    return [m for m in fired if _first_time(row, m)]


def _first_time(row: ProfileRow, m: Milestone) -> bool:
    if m.milestone_id in row.fired:
        return False
    row.fired.append(m.milestone_id)
    return True


def _milestone(change: CrmChange, kind: str, metric: str | None, key: object, title: str,
               threshold: float | None = None, value: float | None = None) -> Milestone:
    source_record = change.source_record or change.account_id
    record = f"{source_record} field {metric}" if metric else source_record
    return Milestone(milestone_id=milestone_id(change.account_id, kind, metric, key), account_id=change.account_id,
                     kind=kind, metric=metric, threshold=threshold, value=value, title=title,
                     reached_at=change.occurred_at,
                     evidence=[Evidence(source=change.source, record=f"{record} (change {change.change_id})",
                                        occurred_at=change.occurred_at)])


def _marks(row: ProfileRow, change: CrmChange, field: str, before: object, value: bool | int | float | str | None,
           rules: Rules) -> list[Milestone]:
    if value is None:
        return []
    if field.startswith("adoption.") and value is True:
        feature = field.split(".", 1)[1]
        return [_milestone(change, "feature_adopted", feature, "first", f"First use of {feature.replace('_', ' ')}")]
    if field == "roi_percent" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return [_milestone(change, "roi_threshold", "roi_percent", level, f"{level:g}% ROI achieved",
                           threshold=level, value=float(value))
                for level in rules.roi_levels if value >= level]
    if field.startswith("certification.") and value not in (False, 0, ""):
        program = field.split(".", 1)[1].replace("_", " ")
        count = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if count is not None and (count < 1 or count != int(count)):
            return []  # a count of people certified is a whole number from 1
        title = f"{count:g} certified in {program}" if count is not None else f"{program} certification completed"
        return [_milestone(change, "certification", field, value, title, value=count)]
    if field in ONCE_EVER:
        kind, title = ONCE_EVER[field]
        return [_milestone(change, kind, field, "once", title)]
    if field in PER_DATE:
        kind, title = PER_DATE[field]
        day = iso_date(str(value))  # a value that is no date (markup, a number) marks no milestone
        return [_milestone(change, kind, field, day.isoformat(), f"{title} on {day.isoformat()}")] if day else []
    return []


def _anniversaries(row: ProfileRow, change: CrmChange, rules: Rules, today: date) -> list[Milestone]:
    start = row.contract_start()
    if start is None:
        return []
    done = set(row.years_done)
    celebrate, passed = due_now(start, rules.anniversary_years, done, today)
    row.years_done = sorted(done | set(celebrate) | set(passed))
    out = []
    for years in celebrate:
        when = anniversary_date(start, years)
        m = _milestone(change, "anniversary", "contract_start", when.isoformat(),
                       f"{years} year{'s' if years > 1 else ''} together", threshold=years, value=years)
        out.append(m.model_copy(update={"reached_at": datetime.combine(when, time(), tzinfo=UTC)}))
    return out
