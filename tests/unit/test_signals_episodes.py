"""Risk-signal rules without Kafka: each signal's arithmetic, its window edges, and episodes that open
once and clear once with one deterministic id (agents/signals/episodes.py).

Why: the agent only feeds inputs to these functions and publishes what they return, so "fires once per
episode" and "clears once" are decided here; each test would fail if a rule fired twice, fired at the
threshold itself (the rules say "more than"), or forgot what it fired.
"""
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from milestone_stream.agents.detector.usage import DAY, UsageRow
from milestone_stream.agents.signals.episodes import RiskRow, evaluate, observe_change
from milestone_stream.agents.signals.rules import SignalRules
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Contact, CrmChange, FieldChange
from milestone_stream.settings import ConfigError

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
TODAY = NOW.date()
RULES = SignalRules(counters=["logins", "support_tickets", "new_users"],
                    usage_drop={"metric": "logins", "window_days": 7, "drop_percent": 30, "min_base": 10,
                                "playbook": ["Call the admin"]},
                    champion_departure={"playbook": ["Schedule an executive check-in within 48 hours"]})


def usage_with(metric: str, per_day: dict[date, float]) -> UsageRow:
    row = UsageRow()
    row.days = {metric: {str(int(datetime.combine(d, datetime.min.time(), UTC).timestamp() // DAY)): v
                         for d, v in per_day.items()}}
    return row


def days_back(first: int, last: int, value: float) -> dict[date, float]:
    """`value` on each day from `first` to `last` days before today (inclusive)."""
    return {TODAY - timedelta(days=n): value for n in range(last, first - 1, -1)}


class Crm:
    """CRM changes at rising offsets and times."""

    def __init__(self) -> None:
        self.offset, self.at = 0, NOW

    def change(self, *fields: tuple[str, object], contacts=None, account="a", change_id=None) -> tuple:
        self.offset += 1
        self.at += timedelta(hours=1)
        change = CrmChange(change_id=change_id or f"c{self.offset}", account_id=account, occurred_at=self.at,
                           source="salesforce", source_record="001A", contacts=contacts,
                           changes=[FieldChange(field=f, value=v) for f, v in fields])
        return change, ("crm", self.offset)


# -- usage drop -----------------------------------------------------------------------------------

def test_usage_drop_fires_only_when_more_than_the_percentage_below_the_previous_window():
    for per_day, fires in ((14.0, False), (13.9, True)):   # previous window 7 x 20 = 140; 30% below is 98
        row = RiskRow()
        usage = usage_with("logins", {**days_back(8, 14, 20), **days_back(1, 7, per_day)})
        got = evaluate(row, "a", usage, NOW, RULES)
        assert [s.kind for s in got] == (["usage_drop"] if fires else []), per_day


def test_usage_drop_windows_are_complete_utc_days_and_today_is_not_counted():
    # previous: days -14..-8 (100 each), current: days -7..-1 (60 each) → down 40%: fires
    per_day = {**days_back(8, 14, 100), **days_back(1, 7, 60)}
    [opened] = evaluate(RiskRow(), "a", usage_with("logins", per_day), NOW, RULES)
    assert (opened.state, opened.level, opened.opened_at) == ("open", "yellow", datetime(2026, 6, 15, tzinfo=UTC))
    assert opened.title == "Logins down 40% against the previous 7 days" and opened.playbook == ["Call the admin"]
    assert [e.record for e in opened.evidence] == ["logins 700 on 2026-06-01..2026-06-07",
                                                   "logins 420 on 2026-06-08..2026-06-14"]
    # today's logins do not count (an incomplete day), nor does day -15 (outside both windows)
    per_day[TODAY] = 10_000
    per_day[TODAY - timedelta(days=15)] = 10_000
    assert [s.kind for s in evaluate(RiskRow(), "a", usage_with("logins", per_day), NOW, RULES)] == ["usage_drop"]
    # day -8 belongs to the previous window: moving its logins to day -7 ends the drop
    per_day[TODAY - timedelta(days=7)] += 100
    per_day[TODAY - timedelta(days=8)] = 0
    assert evaluate(RiskRow(), "a", usage_with("logins", per_day), NOW, RULES) == []


def test_usage_drop_needs_a_base_and_opens_once_then_clears_once_with_the_same_id():
    assert evaluate(RiskRow(), "a", usage_with("logins", days_back(8, 14, 1)), NOW, RULES) == []  # 7 < min_base 10
    row = RiskRow()
    usage = usage_with("logins", days_back(8, 14, 100))   # then nothing: the events stopped
    [opened] = evaluate(row, "a", usage, NOW, RULES)
    assert evaluate(row, "a", usage, NOW + timedelta(minutes=5), RULES) == []      # still open: nothing new
    assert evaluate(row, "a", usage, NOW + timedelta(days=1), RULES) == []
    # two weeks on, both windows are empty and compare equal: the usage is still gone, the episode stays open
    assert evaluate(row, "a", usage, NOW + timedelta(days=14), RULES) == []
    # usage back, but not within 30% of the 700 before the drop (7 x 69 = 483 < 490): still open
    low = usage_with("logins", {**days_back(8, 14, 100), **days_back(-13, -7, 69)})
    assert evaluate(row, "a", low, NOW + timedelta(days=14), RULES) == []
    # 7 x 70 = 490: back within 30% of the window before the drop
    back = usage_with("logins", {**days_back(8, 14, 100), **days_back(-13, -7, 70)})
    [cleared] = evaluate(row, "a", back, NOW + timedelta(days=14), RULES)
    assert (cleared.state, cleared.signal_id, cleared.opened_at) == ("cleared", opened.signal_id, opened.opened_at)
    assert cleared.at == datetime(2026, 6, 29, tzinfo=UTC) and cleared.playbook == []
    assert evaluate(row, "a", back, NOW + timedelta(days=15), RULES) == []
    # a replay of the first tick on a new row regenerates the same id
    assert evaluate(RiskRow(), "a", usage, NOW + timedelta(hours=3), RULES)[0].signal_id == opened.signal_id


# -- tickets and new users --------------------------------------------------------------------------

def test_ticket_surge_counts_more_than_the_maximum_in_the_window_ending_today():
    ten = {TODAY: 4.0, TODAY - timedelta(days=29): 6.0}                # 10 in the last 30 days: not more than 10
    assert evaluate(RiskRow(), "a", usage_with("support_tickets", ten), NOW, RULES) == []
    row = RiskRow()
    eleven = {**ten, TODAY - timedelta(days=30): 50.0, TODAY - timedelta(days=3): 1.0}   # day -30 is outside
    [opened] = evaluate(row, "a", usage_with("support_tickets", eleven), NOW, RULES)
    assert (opened.kind, opened.level) == ("ticket_surge", "red")
    assert opened.title == "11 support tickets in the last 30 days"
    # the next day, day -29's six tickets leave the window: 5 left
    [cleared] = evaluate(row, "a", usage_with("support_tickets", eleven), NOW + timedelta(days=1), RULES)
    assert cleared.state == "cleared" and cleared.signal_id == opened.signal_id


def test_no_new_users_opens_on_the_first_day_of_the_period_and_clears_when_they_come_back():
    assert evaluate(RiskRow(), "a", UsageRow(), NOW, RULES) == []        # never had any: nothing to miss
    row = RiskRow()
    usage = usage_with("new_users", {TODAY - timedelta(days=13): 2.0})
    assert evaluate(row, "a", usage, NOW, RULES) == []                   # 13 days: within the 14-day period
    later = NOW + timedelta(days=3)          # evaluated late: opened_at is still the first day it held
    [opened] = evaluate(row, "a", UsageRow(), later, RULES)            # the usage row no longer has the day
    assert opened.kind == "no_new_users" and opened.opened_at == datetime(2026, 6, 16, tzinfo=UTC)
    assert opened.evidence[0].record == "new_users last counted on 2026-06-02"
    back = usage_with("new_users", {later.date(): 1.0})
    [cleared] = evaluate(row, "a", back, later, RULES)
    assert cleared.state == "cleared" and cleared.signal_id == opened.signal_id
    assert evaluate(row, "a", back, later + timedelta(hours=1), RULES) == []


# -- CRM signals ------------------------------------------------------------------------------------

def test_nps_drop_more_than_ten_points_from_the_previous_score_opens_once_and_clears_on_recovery():
    crm, row = Crm(), RiskRow()
    assert observe_change(row, *crm.change(("nps", 50)), RULES) == []
    assert observe_change(row, *crm.change(("nps", 40)), RULES) == []          # exactly 10: not more
    assert observe_change(row, *crm.change(("nps", 50)), RULES) == []
    change, origin = crm.change(("nps", 39), ("name", "Acme"), ("csm_email", "sam@vendor.example"))
    [opened] = observe_change(row, change, origin, RULES)
    assert (opened.kind, opened.level, opened.title) == ("nps_drop", "orange", "NPS down 11 points (50 to 39)")
    assert (opened.account_name, opened.csm_email) == ("Acme", "sam@vendor.example")
    assert [e.record for e in opened.evidence] == ["field nps 50 (change c3)", "001A field nps 39 (change c4)"]
    assert observe_change(row, change, origin, RULES) == []                    # the same input read again
    crm.offset += 1
    assert observe_change(row, change, ("crm", crm.offset), RULES) == []       # a re-sent copy, later in the log
    assert observe_change(row, *crm.change(("nps", 30)), RULES) == []          # lower still: the same episode
    assert observe_change(row, *crm.change(("nps", 39)), RULES) == []          # 11 below 50: still open
    [cleared] = observe_change(row, *crm.change(("nps", 41)), RULES)
    assert cleared.state == "cleared" and cleared.signal_id == opened.signal_id
    assert cleared.evidence[0].record == "001A field nps 41, back within 10 points of 50 (change c8)"
    assert observe_change(row, *crm.change(("nps", 45)), RULES) == []


def test_an_older_crm_value_arriving_late_neither_opens_nor_clears():
    crm, row = Crm(), RiskRow()
    observe_change(row, *crm.change(("nps", 60)), RULES)
    [opened] = observe_change(row, *crm.change(("nps", 20)), RULES)
    late, origin = crm.change(("nps", 60))
    late = late.model_copy(update={"occurred_at": NOW})        # before both
    assert observe_change(row, late, origin, RULES) == [] and "nps_drop" in row.episodes
    assert opened.state == "open"


def test_champion_departure_per_role_opens_when_a_holder_leaves_or_loses_the_role_and_clears_when_filled():
    jane = Contact(name="Jane Doe", email="Jane@acme.example", role="Champion")
    bob = Contact(name="Bob", email="bob@acme.example", role="executive_sponsor")
    crm, row = Crm(), RiskRow()
    assert observe_change(row, *crm.change(contacts=[jane, bob]), RULES) == []   # the first list: no departure
    [opened] = observe_change(row, *crm.change(contacts=[bob, jane.model_copy(update={"role": "user"})]), RULES)
    assert (opened.kind, opened.level, opened.title) == ("champion_departure", "executive",
                                                         "Champion Jane Doe <Jane@acme.example> left")
    assert opened.playbook == ["Schedule an executive check-in within 48 hours"]
    assert observe_change(row, *crm.change(contacts=[bob]), RULES) == []       # still gone: the same episode
    [left] = observe_change(row, *crm.change(contacts=[]), RULES)
    assert left.title == "Executive sponsor Bob <bob@acme.example> left" and left.signal_id != opened.signal_id
    carol = Contact(name="Carol", email="carol@acme.example", role="champion")
    [cleared] = observe_change(row, *crm.change(contacts=[carol]), RULES)
    assert (cleared.state, cleared.signal_id) == ("cleared", opened.signal_id)
    assert "champion_departure:executive_sponsor" in row.episodes
    assert observe_change(row, *crm.change(("nps", 1)), RULES) == []           # no contacts sent: no change


def test_the_profile_a_record_carries_is_bounded():
    crm, row = Crm(), RiskRow()
    observe_change(row, *crm.change(("name", "<b>Acme</b>  " + "x" * 1900), ("csm_email", "not an address")), RULES)
    [opened] = observe_change(row, *crm.change(("invoice_overdue", True)), RULES)
    assert opened.account_name is not None and len(opened.account_name) == 200
    assert opened.account_name.startswith("<b>Acme</b> x") and opened.csm_email is None
    observe_change(row, *crm.change(("csm_email", " sam@vendor.example "), ("name", None)), RULES)
    [cleared] = observe_change(row, *crm.change(("invoice_overdue", None)), RULES)
    assert (cleared.csm_email, cleared.account_name) == ("sam@vendor.example", None)


def test_episodes_opened_without_a_csm_are_announced_again_once_the_crm_names_one():
    """Their openings went out without an owner (the sender dead-letters those: nobody to alert); the CSM
    named later gets the alert through a second opening with the same id, once, and only for those."""
    crm, row = Crm(), RiskRow()
    [overdue] = observe_change(row, *crm.change(("invoice_overdue", True)), RULES)
    assert overdue.csm_email is None
    assert observe_change(row, *crm.change(("name", "Acme")), RULES) == []  # no owner yet: nothing again
    named, origin = crm.change(("csm_email", "sam@vendor.example"), ("mrr", 1000))
    [again] = observe_change(row, named, origin, RULES)
    assert (again.signal_id, again.state, again.kind, again.opened_at) == (overdue.signal_id, "open",
                                                                           "invoice_overdue", overdue.opened_at)
    assert (again.csm_email, again.account_name, again.at) == ("sam@vendor.example", "Acme", named.occurred_at)
    assert "CSM named" in again.evidence[0].record and again.playbook == list(RULES.invoice_overdue.playbook)
    assert observe_change(row, *crm.change(("csm_email", "kim@vendor.example")), RULES) == []  # had an owner
    assert observe_change(row, named, origin, RULES) == []  # a replay of the change: nothing twice


def test_an_episode_opened_by_the_change_that_names_the_csm_is_announced_once():
    crm, row = Crm(), RiskRow()
    [opened] = observe_change(row, *crm.change(("invoice_overdue", True), ("csm_email", "sam@vendor.example")),
                              RULES)
    assert opened.csm_email == "sam@vendor.example"


def test_invoice_overdue_and_mrr_contraction():
    crm, row = Crm(), RiskRow()
    [overdue] = observe_change(row, *crm.change(("invoice_overdue", True)), RULES)
    assert (overdue.kind, overdue.state, overdue.title) == ("invoice_overdue", "open", "Invoice overdue")
    assert observe_change(row, *crm.change(("invoice_overdue", True)), RULES) == []
    [paid] = observe_change(row, *crm.change(("invoice_overdue", False)), RULES)
    assert (paid.state, paid.signal_id) == ("cleared", overdue.signal_id)
    assert observe_change(row, *crm.change(("mrr", 1000)), RULES) == []
    assert observe_change(row, *crm.change(("mrr", 1200)), RULES) == []
    [down] = observe_change(row, *crm.change(("mrr", 900)), RULES)
    assert (down.kind, down.title) == ("mrr_contraction", "MRR down 25% (1,200.00 to 900.00)")
    assert observe_change(row, *crm.change(("mrr", 1100)), RULES) == []        # not back to 1,200 yet
    [up] = observe_change(row, *crm.change(("mrr", 1200)), RULES)
    assert (up.state, up.signal_id) == ("cleared", down.signal_id)


def test_an_unreadable_or_impossible_nps_or_mrr_is_ignored_and_the_score_before_it_kept():
    # the docs: "a CRM value of the wrong type is ignored by the signals"; an NPS outside -100..100 (a typo,
    # a 0-10 response mapped wrong) or a negative MRR is as unreadable. Before: text erased the score (the
    # next drop was compared with nothing), and a typo of 500 then 50 opened "NPS down 450 points"
    crm, row = Crm(), RiskRow()
    observe_change(row, *crm.change(("nps", 50), ("mrr", 1000)), RULES)
    assert observe_change(row, *crm.change(("nps", "n/a"), ("mrr", "unknown")), RULES) == []
    assert observe_change(row, *crm.change(("nps", 500), ("mrr", -5)), RULES) == []
    opened = observe_change(row, *crm.change(("nps", 30), ("mrr", 800)), RULES)
    assert [(s.kind, s.title) for s in opened] == [("nps_drop", "NPS down 20 points (50 to 30)"),
                                                    ("mrr_contraction", "MRR down 20% (1,000.00 to 800.00)")]
    # a cleared field (null) still forgets the score: the next value starts afresh
    observe_change(row, *crm.change(("nps", None)), RULES)
    assert observe_change(row, *crm.change(("nps", -50)), RULES) == []


# -- rows and rules -------------------------------------------------------------------------------

def test_the_row_round_trips_and_unreadable_parts_read_as_empty():
    crm, row = Crm(), RiskRow()
    observe_change(row, *crm.change(("nps", 60), ("name", "Acme")), RULES)
    observe_change(row, *crm.change(("nps", 20)), RULES)
    stored = json.loads(json.dumps(row.to_stored()))
    assert RiskRow.from_stored(stored) == row and RiskRow.from_stored(stored).copy() == row
    assert RiskRow.from_stored(None) == RiskRow() and RiskRow.from_stored("junk") == RiskRow()
    bad_time = {**stored["e"]["nps_drop"], "a": "yesterday"}
    odd = RiskRow.from_stored({"o": [], "e": {"x": {"i": 1}, "y": bad_time, "nps_drop": stored["e"]["nps_drop"]},
                               "n": "x", "p": 3})
    assert list(odd.episodes) == ["nps_drop"] and odd.nps is None and odd.profile == [None, None]
    work = row.copy()
    observe_change(work, *crm.change(("nps", 60)), RULES)
    assert "nps_drop" in row.episodes and "nps_drop" not in work.episodes


def test_rules_refuse_unknown_metrics_and_negative_thresholds_with_one_line(tmp_path):
    with pytest.raises(ValueError, match="'logins' is not a usage metric"):
        Rules(signals={})
    with pytest.raises(ValueError, match="already usage metrics"):
        Rules(signals={"counters": ["emails_sent", "logins", "support_tickets", "new_users"]})
    for bad, where in (("drop_percent: -5", "signals.usage_drop.drop_percent"),
                       ("window_days: 0", "signals.usage_drop.window_days")):
        path = tmp_path / "rules.yaml"
        path.write_text(f"signals:\n  counters: [logins, support_tickets, new_users]\n  usage_drop: {{{bad}}}\n")
        with pytest.raises(ConfigError) as caught:
            Rules.load(path)
        assert where in str(caught.value) and "\n" not in str(caught.value)
    path.write_text("signals:\n  counters: [logins]\n  ticket_surge: {max_tickets: -1}\n")
    with pytest.raises(ConfigError, match="max_tickets"):
        Rules.load(path)
    path.write_text("signals:\n  counters: [logins]\n  ticket_surge: null\n  no_new_users: null\n"
                    "  nps_drop: {points: 5, level: red}\n")
    rules = Rules.load(path)
    assert rules.signals is not None and rules.signals.nps_drop is not None and rules.signals.nps_drop.level == "red"
    assert rules.known_metric("logins") and not Rules().known_metric("logins")


def test_rules_refuse_a_blank_role_and_a_playbook_action_of_several_lines():
    # a blank role matched every contact without a role: removing one opened an executive "… left" signal
    for roles in (["  "], ["champion", ""], [" - "]):
        with pytest.raises(ValueError, match="roles"):
            SignalRules(champion_departure={"roles": roles})
    for action in ("Call the admin\r\nBcc: x@example.com", "Call\u2028the admin", "Call\tthe admin"):
        with pytest.raises(ValueError, match="one line"):
            SignalRules(usage_drop={"playbook": [action]})
    assert SignalRules(champion_departure={"roles": ["Executive Sponsor"]}).champion_departure is not None


def test_the_example_rules_file_has_a_valid_signals_section():
    from pathlib import Path

    rules = Rules.load(Path(__file__).resolve().parents[2] / "rules.example.yaml")
    assert rules.signals is not None and rules.signals.champion_departure is not None
    assert rules.signals.champion_departure.level == "executive" and rules.known_metric("support_tickets")


def test_a_tick_is_an_account_key_an_iso_instant_and_the_day_totals_it_saw():
    from milestone_stream.agents.signals.agent import _tick
    from milestone_stream.deadletter import Unprocessable

    account, at, usage = _tick(b"acme", b'{"at": "2026-06-15T12:00:00Z", "d": {"logins": {"20000": 3}}}')
    assert (account, at, usage.daily("logins")) == ("acme", NOW, {date(2024, 10, 4): 3.0})
    good = b'{"at": "2026-06-15T12:00:00Z", "d": {}}'
    for key, value in ((b"acme", b'{"at": "not an instant", "d": {}}'), (b"", good), (None, None),
                       (b"\xff", good), (b"acme", b"\xff"), (b"acme", b"2026-06-15T12:00:00Z")):
        with pytest.raises(Unprocessable) as caught:
            _tick(key, value)
        assert caught.value.reason == "invalid_tick"


def test_evaluating_a_working_copy_leaves_the_stored_row_as_it_was():
    """The agent writes nothing for a tick whose copy equals the stored row, so the copy must share nothing
    `evaluate` changes (the last day with new users, the episodes)."""
    stored = RiskRow.from_stored(json.loads(json.dumps(RiskRow().to_stored())))
    work = stored.copy()
    assert evaluate(work, "a", usage_with("new_users", {TODAY - timedelta(days=3): 1.0}), NOW, RULES) == []
    assert work.last_seen == {"new_users": (TODAY - timedelta(days=3) - date(1970, 1, 1)).days}
    assert stored == RiskRow() and work != stored
    again = work.copy()
    evaluate(again, "a", UsageRow(), NOW + timedelta(days=20), RULES)
    assert "no_new_users" in again.episodes and "no_new_users" not in work.episodes
