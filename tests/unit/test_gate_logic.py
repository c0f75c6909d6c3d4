"""Risk gates (pure logic): which open signals hold an account's celebrations at a gate level, what
opening and clearing (repeated, late, out of order) do to the gate row, and the policy notes of a
release after a gate."""
from datetime import UTC, datetime, timedelta

import pytest

from milestone_stream.agents.drafter import gates, policy
from milestone_stream.agents.drafter.riskrules import RiskRules
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Evidence, Milestone, RiskSignal

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def signal(sid="s-1", level="orange", state="open", title="Logins down 42% against the previous 14 days",
           at=NOW, **kw) -> RiskSignal:
    return RiskSignal(signal_id=sid, account_id="acme", kind="usage_drop", level=level, state=state, title=title,
                      opened_at=NOW, at=at,
                      evidence=[Evidence(source="platform.logins", record="daily logins 2026-05-31",
                                         occurred_at=NOW)], **kw)


@pytest.mark.parametrize(("level", "gate", "holds"), [
    ("yellow", "orange", False), ("orange", "orange", True), ("red", "orange", True), ("executive", "orange", True),
    ("orange", "red", False), ("yellow", "yellow", True), ("executive", None, False), ("unknown", "executive", True),
])
def test_a_signal_holds_at_or_above_the_gate_level(level, gate, holds):
    assert gates.at_or_above(level, gate) is holds


def test_open_then_clear_holds_then_releases_and_repeats_change_nothing():
    row = gates.GateRow()
    assert gates.apply(row, signal())
    assert not gates.apply(row, signal())  # delivered twice
    [held] = row.holding("orange")
    assert held.signal_id == "s-1" and held.title.startswith("Logins down 42%")
    assert held.evidence == ("platform.logins: daily logins 2026-05-31 (2026-06-01)",)
    assert gates.apply(row, signal(state="cleared", at=NOW + timedelta(days=2)))
    assert row.holding("orange") == [] and row.signals() == []
    assert row.cleared_at("s-1") == (NOW + timedelta(days=2)).isoformat()
    assert not gates.apply(row, signal(state="cleared"))  # a repeated clearing
    assert not gates.apply(row, signal())  # a late re-delivery of the opening does not reopen the episode


def test_a_clearing_before_its_opening_leaves_the_episode_closed():
    row = gates.GateRow()
    assert gates.apply(row, signal(state="cleared"))
    assert not gates.apply(row, signal())
    assert row.signals() == []


def test_below_the_gate_a_signal_is_listed_but_holds_nothing():
    row = gates.GateRow()
    gates.apply(row, signal(sid="y", level="yellow", title="No new users in 30 days"))
    assert row.holding("orange") == [] and [s.title for s in row.signals()] == ["No new users in 30 days"]


def test_hostile_titles_are_one_bounded_line_in_the_row():
    row = gates.GateRow()
    gates.apply(row, signal(title="Drop\r\nBcc: evil@example.com <script>" + "x" * 5000))
    [s] = row.signals()
    assert "\n" not in s.title and "\r" not in s.title and len(s.title) <= gates.TITLE_LIMIT


def test_too_many_open_signals_refuses_the_next_one():
    row = gates.GateRow()
    for n in range(gates.OPEN_MAX):
        gates.apply(row, signal(sid=f"s-{n}"))
    with pytest.raises(gates.TooManyOpen):
        gates.apply(row, signal(sid="one-more"))


def test_stored_form_round_trips_and_unreadable_rows_are_empty():
    row = gates.GateRow()
    gates.apply(row, signal())
    again = gates.GateRow.from_stored(row.to_stored())
    assert again.signals() == row.signals()
    assert gates.GateRow.from_stored("garbage").signals() == []
    assert gates.GateRow.from_stored({"o": {"x": "not a dict"}, "c": 5}).signals() == []


def milestone(n: int) -> Milestone:
    return Milestone(milestone_id=f"m-{n}", account_id="acme", kind="usage_threshold", metric="emails_sent",
                     threshold=1000 * n, value=1000.0 * n, title=f"{n},000 emails sent", reached_at=NOW)


def test_the_drafter_row_records_the_gate_once_and_names_it_in_the_release():
    row = policy.CelebrationRow()
    policy.take_in(row, milestone(1), ("milestones", 0, 1), NOW)
    gate_row = gates.GateRow()
    gates.apply(gate_row, signal())
    [s] = gate_row.holding("orange")
    assert policy.gate(row, [(s.signal_id, gates.held_note(s))], NOW)
    assert not policy.gate(row, [(s.signal_id, gates.held_note(s))], NOW + timedelta(minutes=1))  # recorded once
    assert policy.gated_ids(row) == {"s-1"}
    again = policy.CelebrationRow.from_stored(row.to_stored())
    assert again == row and len(policy.held(again)) == 1  # held, not dropped
    gates.apply(gate_row, signal(state="cleared", at=NOW + timedelta(days=3)))
    [note] = policy.gate_notes(row, gate_row.cleared_at)
    assert note.startswith("risk gate: held from 2026-06-01T12:00 while risk signal 'Logins down 42%")
    assert "evidence: platform.logins: daily logins 2026-05-31" in note and "cleared 2026-06-04T12:00" in note
    policy.mark_celebrated(row, NOW + timedelta(days=3))
    assert row.gated == [] and "g" not in row.to_stored()


def test_a_row_never_gated_keeps_its_stored_form():
    row = policy.CelebrationRow()
    policy.take_in(row, milestone(1), ("milestones", 0, 1), NOW)
    assert set(row.to_stored()) == {"d", "q", "h", "l"}


def test_the_gate_level_comes_from_the_rules_and_can_be_turned_off():
    assert Rules().risk.gate_level == "orange"
    assert Rules.model_validate({"risk": {"gate_level": "red"}}).risk.gate_level == "red"
    assert Rules.model_validate({"risk": {"gate_level": None}}).risk == RiskRules(gate_level=None)
    with pytest.raises(ValueError, match="gate_level"):
        Rules.model_validate({"risk": {"gate_level": "purple"}})
