"""The anniversary sequence's pure rules (agents/drafter/sequence.py): the steps and their times, QBR
suppression, the renewal/advocacy branch, each cancellation, the standing approval, and the emails."""
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from milestone_stream.agents.drafter import sequence as sq
from milestone_stream.agents.drafter.context import Context
from milestone_stream.agents.drafter.sequence_notes import render_step
from milestone_stream.agents.drafter.sequence_rules import AnniversarySequence
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Contact

T1 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)   # step 1 drafted
CONFIG = AnniversarySequence(capabilities=[
    {"name": "Journeys", "summary": "Automate onboarding journeys.", "use_cases": ["onboarding"]},
    {"name": "Forecasts", "summary": "See next quarter's demand.", "stages": ["mature"]},
    {"name": "Reports", "summary": "Share results with your board."},
])
ACCOUNT = sq.Account(top_use_case="onboarding", stage="growing")


def started(held_out=False) -> sq.SequenceRow:
    row = sq.SequenceRow()
    assert sq.start(row, "ann-1", "step1-approval", T1, "sam@vendor.example", held_out, CONFIG)
    return row


def step(row, n):
    return row.sequences["ann-1"]["p"][n]


def drafted(row, n, recipients=True):
    """Mark step n drafted as the agent does after publishing its request."""
    [action] = [a for a in sq.due(row, ACCOUNT, datetime.fromisoformat(step(row, n)["due"]), CONFIG)
                if a.step == n]
    assert isinstance(action, sq.Draft)
    step(row, n)["at"] = step(row, n)["due"]
    step(row, n)["m"] = {"sub": "s", "txt": "t", "htm": "h", "n": None,
                         "r": [{"name": "Jane", "email": "jane@acme.example", "role": "executive_sponsor"}]
                         if recipients else []}
    sq.mark(row, action)


def test_start_plans_steps_two_and_three_with_deterministic_ids_once():
    row = started()
    assert step(row, "2")["due"] == (T1 + timedelta(days=7)).isoformat()
    assert step(row, "3")["due"] == (T1 + timedelta(days=14)).isoformat()
    assert step(row, "2")["id"] == sq.step_id("ann-1", "2") != sq.step_id("ann-1", "3")
    assert not sq.start(row, "ann-1", "step1-approval", T1 + timedelta(hours=1), "x", False, CONFIG)
    assert sq.next_due(row, CONFIG) == T1 + timedelta(days=6)  # 24 h notice before step 2 is due


def test_each_step_is_drafted_at_its_time_not_before():
    row = started()
    assert sq.due(row, ACCOUNT, T1 + timedelta(days=6) - timedelta(seconds=1), CONFIG) == []
    [two] = sq.due(row, ACCOUNT, T1 + timedelta(days=6), CONFIG)
    assert isinstance(two, sq.Draft) and two.kind == "forward" and two.due == T1 + timedelta(days=7)
    assert any("step 2 of 3, a forward-looking note" in n for n in two.notes)
    drafted(row, "2")
    assert sq.due(row, ACCOUNT, T1 + timedelta(days=13) - timedelta(seconds=1), CONFIG) == []
    [three] = sq.due(row, ACCOUNT, T1 + timedelta(days=13), CONFIG)
    assert isinstance(three, sq.Draft) and three.step == "3" and three.kind == "advocacy"
    drafted(row, "3")
    assert sq.next_due(row, CONFIG) is None  # no standing approval: nothing more to do on the clock


def test_qbr_within_twelve_months_suppresses_step_two_and_step_three_says_so():
    row = started()
    at = T1 + timedelta(days=6)
    qbr = sq.Account(top_use_case="onboarding", qbr_at=date(2026, 2, 1))
    [skip] = sq.due(row, qbr, at, CONFIG)
    assert isinstance(skip, sq.Skip) and "QBR was completed on 2026-02-01" in skip.reason
    sq.mark(row, skip)
    [three] = sq.due(row, qbr, T1 + timedelta(days=13), CONFIG)
    assert isinstance(three, sq.Draft)
    assert any("step 2 (a forward-looking note) was not drafted: suppressed: the CRM says a QBR" in n
               for n in three.notes)
    # a QBR 13 months ago, or one dated in the future (a typo), does not suppress
    for old in (date(2025, 5, 1), date(2027, 1, 1)):
        [two] = sq.due(started(), sq.Account(top_use_case="onboarding", qbr_at=old), at, CONFIG)
        assert isinstance(two, sq.Draft)


def test_step_three_prepares_the_renewal_within_90_days_else_invites_advocacy():
    at = T1 + timedelta(days=13)

    def kind(renewal):
        row = started()
        sq.mark(row, sq.Skip("ann-1", "2", "test"))
        [three] = sq.due(row, sq.Account(renewal=renewal), at, CONFIG)
        return three.kind

    assert kind(at.date() + timedelta(days=90)) == "renewal"
    assert kind(at.date() + timedelta(days=91)) == "advocacy"
    assert kind(at.date() - timedelta(days=1)) == "advocacy"   # a renewal date past is not one ahead
    assert kind(None) == "advocacy"


@pytest.mark.parametrize("account,reason", [
    (sq.Account(status="churned"), "the account churned (CRM status 'churned')"),
    (sq.Account(at_risk=("'Logins down 40%' (orange)",)), "the account is at risk (open risk signal 'Logins down"),
])
def test_churn_or_risk_cancels_every_step_not_sent_and_withdraws_a_drafted_one(account, reason):
    row = started()
    drafted(row, "2")
    actions = sq.due(row, account, T1 + timedelta(days=6, hours=1), CONFIG)
    assert [(type(a), a.step, a.withdraw) for a in actions] == [(sq.Cancel, "2", True), (sq.Cancel, "3", False)]
    assert all(a.reason.startswith(reason) for a in actions)
    for a in actions:
        sq.mark(row, a)
    assert step(row, "3")["s"] == "cancelled" and step(row, "3")["w"].startswith(reason)
    assert sq.due(row, account, T1 + timedelta(days=30), CONFIG) == [] and sq.next_due(row, CONFIG) is None


def test_declining_step_one_cancels_the_rest_at_once_and_a_second_decision_changes_nothing():
    row = started()
    assert sq.on_decision(row, "step1-approval", "dont_send", "sam@vendor.example", T1, False)
    assert not sq.on_decision(row, "step1-approval", "send", "sam@vendor.example", T1, True)  # the first counts
    actions = sq.due(row, ACCOUNT, T1 + timedelta(minutes=5), CONFIG)
    assert {(a.step, a.reason) for a in actions} == {(n, "the CSM declined step 1 (the anniversary note)")
                                                     for n in ("2", "3")}
    assert not any(a.withdraw for a in actions if isinstance(a, sq.Cancel))
    assert sq.on_decision(sq.SequenceRow(), "other", "send", "x", T1, False) is False


def test_this_and_the_follow_ups_sends_each_drafted_step_at_its_time_unless_stopped():
    row = started()
    assert sq.on_decision(row, "step1-approval", "send", "sam@vendor.example", T1 + timedelta(hours=2), True)
    drafted(row, "2")
    two_due = T1 + timedelta(days=7)
    assert sq.next_due(row, CONFIG) == two_due
    assert sq.due(row, ACCOUNT, two_due - timedelta(seconds=1), CONFIG) == []
    [send] = sq.due(row, ACCOUNT, two_due, CONFIG)
    assert isinstance(send, sq.Send) and send.approval_id == sq.step_id("ann-1", "2")
    assert send.reason == "approved with the follow-ups on 2026-06-01 by sam@vendor.example"
    sq.mark(row, send)
    assert not sq.on_decision(row, send.approval_id, "send", "sam@vendor.example", two_due, False)  # its echo
    drafted(row, "3")
    notes = sq.step_notes(row.sequences["ann-1"], "3", "advocacy", T1 + timedelta(days=14), ACCOUNT, CONFIG)
    assert "will be sent on 2026-06-15 09:00 UTC unless you choose Don't send" in notes[1]
    # the CSM stops step 3 before its time: nothing is sent on their behalf
    assert sq.on_decision(row, sq.step_id("ann-1", "3"), "dont_send", "sam@vendor.example", two_due, False)
    assert step(row, "3")["s"] == "declined"
    assert sq.due(row, ACCOUNT, T1 + timedelta(days=20), CONFIG) == []


def test_a_standing_approval_given_after_a_step_was_drafted_does_not_send_that_step():
    row = started()
    drafted(row, "2")   # its request (and the CSM's notification) said nothing about when it would go
    assert sq.on_decision(row, "step1-approval", "send", "sam@vendor.example", T1 + timedelta(days=7, hours=1), True)
    assert not any(isinstance(a, sq.Send) for a in sq.due(row, ACCOUNT, T1 + timedelta(days=8), CONFIG))
    drafted(row, "3")   # drafted after it: sent at its time
    [send] = [a for a in sq.due(row, ACCOUNT, T1 + timedelta(days=14), CONFIG) if isinstance(a, sq.Send)]
    assert send.step == "3"


def test_a_standing_approval_never_sends_a_held_out_account_nor_a_step_without_a_recipient():
    for row, recipients in ((started(held_out=True), True), (started(), False)):
        sq.on_decision(row, "step1-approval", "send", "sam@vendor.example", T1, True)
        drafted(row, "2", recipients)
        assert not any(isinstance(a, sq.Send) for a in sq.due(row, ACCOUNT, T1 + timedelta(days=8), CONFIG))
        assert sq.next_due(row, CONFIG) == T1 + timedelta(days=13)  # only step 3's drafting


def test_the_row_keeps_three_sequences_and_reads_anything():
    row = sq.SequenceRow()
    for year in range(5):
        sq.start(row, f"ann-{year}", f"a-{year}", T1 + timedelta(days=365 * year), "c", False, CONFIG)
    assert sorted(row.sequences) == ["ann-2", "ann-3", "ann-4"]
    assert sq.SequenceRow.from_stored(row.to_stored()).to_stored() == row.to_stored()
    for junk in (None, 3, [], {"q": []}, {"q": {"x": 1}}):
        assert sq.SequenceRow.from_stored(junk).sequences == {}
    copy = row.copy()
    copy.sequences["ann-4"]["p"]["2"]["s"] = "skipped"
    assert row.sequences["ann-4"]["p"]["2"]["s"] == "planned"


def test_account_facts_from_hostile_crm_values_and_the_catalogue_choice():
    fields = {"status": " Churned\u202e ", "qbr_completed_at": 20260101, "renewal_date": "2026-13-01",
              "top_use_case": "Onboarding\n<script>", "adoption_stage": ["mature"]}
    a = sq.read_account(fields, [], ["Reports", "Chat", "Flows", "Forms"], CONFIG)
    assert a.status == "churned" and a.qbr_at is None and a.renewal is None and a.stage == "mature"
    assert sq.read_account({"adoption_stage": "Early"}, [], ["a", "b", "c", "d"], CONFIG).stage == "early"
    assert sq.read_account({}, [], ["a", "b"], CONFIG).stage == "growing"
    assert [c.name for c in sq.capabilities_for(sq.Account(top_use_case="Onboarding", stage="mature"), CONFIG)] \
        == ["Journeys", "Forecasts", "Reports"]
    assert [c.name for c in sq.capabilities_for(sq.Account(top_use_case="billing", modules=("reports",)),
                                                CONFIG)] == []
    [skip] = sq.due(started(), sq.Account(top_use_case="billing", modules=("reports",)), T1 + timedelta(days=6),
                    CONFIG)
    assert isinstance(skip, sq.Skip) and "no capability in the rules' catalogue fits" in skip.reason


def test_rules_section_is_validated_at_start_up():
    rules = Rules.model_validate({"anniversary_sequence": {"follow_up_days": 5, "capabilities": [
        {"name": "Journeys", "summary": "x", "stages": ["growing"]}]}})
    assert rules.anniversary_sequence is not None and rules.anniversary_sequence.follow_up_days == 5
    assert Rules().anniversary_sequence is None
    for bad in ({"last_step_days": 7}, {"notice_hours": 24 * 7}, {"capabilities": [{"name": "x", "summary": "y",
                                                                                     "stages": ["expert"]}]},
                {"churned_statuses": []}, {"surprise": 1}):
        with pytest.raises(ValidationError):
            Rules.model_validate({"anniversary_sequence": bad})


def test_the_emails_escape_crm_text_and_carry_the_review_link():
    ctx = Context(account_id="acme", account_name="<b>Acme</b> & Co", csm_name="Sam\r\nBcc: x", milestones=[],
                  facts=[], contacts=[Contact(name="Jane Doe", email="j@a.example", role="executive_sponsor")])
    account = sq.Account(top_use_case="onboarding", renewal=date(2026, 8, 1))
    forward = render_step("forward", ctx, account, CONFIG, None, "Jane Doe")
    assert "Journeys: Automate onboarding journeys." in forward.body_text and "Dear Jane," in forward.body_text
    assert "\r" not in forward.body_text and "Sam Bcc: x" in forward.body_text and len(forward.subject) <= 70
    renewal = render_step("renewal", ctx, account, CONFIG, None, None)
    assert "<b>Acme" not in renewal.body_html and "Dear &lt;b&gt;Acme&lt;/b&gt; &amp; Co team," in renewal.body_html
    assert "Your renewal comes up in August 2026." in renewal.body_text
    advocacy = render_step("advocacy", ctx, account, CONFIG, "https://reviews.example/acme?a=1&b=2", None)
    assert "https://reviews.example/acme?a=1&b=2" in advocacy.body_text
    assert 'href="https://reviews.example/acme?a=1&amp;b=2"' in advocacy.body_html
    assert "reply and I will send you the details" in render_step("advocacy", ctx, account, CONFIG, None, None
                                                                  ).body_text


def test_the_example_section_loads_once_uncommented_and_the_adapters_map_its_crm_fields():
    from pathlib import Path

    import yaml

    from milestone_stream.agents.ingest.config import AdaptersConfig

    repo = Path(__file__).resolve().parents[2]
    lines = (repo / "rules.example.yaml").read_text().splitlines()
    start = lines.index("# anniversary_sequence:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#  ") and line != "# anniversary_sequence:":
            break
        block.append(line[2:])
    rules = Rules.model_validate(yaml.safe_load("\n".join(block)))
    assert rules.anniversary_sequence is not None and len(rules.anniversary_sequence.capabilities) == 3
    adapters = AdaptersConfig.load(repo / "adapters.example.yaml", Rules.load(repo / "rules.example.yaml"))
    mapped = {str(getattr(f, "to", f)) for f in adapters.salesforce_cdc.fields.values()}
    assert {"renewal_date", "status", "top_use_case", "qbr_completed_at"} <= mapped


def test_the_cooldown_applies_to_every_step_another_note_postpones_the_step_and_the_next():
    row = started()
    cooldown = timedelta(days=14)
    at = T1 + timedelta(days=6)
    # step 1 itself (the drafter's last note when it drafted step 1) holds nothing
    assert isinstance(sq.due(row, ACCOUNT, at, CONFIG, T1, cooldown)[0], sq.Draft)
    other = T1 + timedelta(days=2)   # a usage milestone's note, drafted after step 1
    [postpone] = sq.due(row, ACCOUNT, at, CONFIG, other, cooldown)
    assert isinstance(postpone, sq.Postpone) and postpone.shift == other + cooldown - at
    sq.mark(row, postpone)
    assert step(row, "2")["due"] == (other + cooldown + timedelta(hours=24)).isoformat()
    assert step(row, "3")["due"] == (T1 + timedelta(days=14) + postpone.shift).isoformat()
    assert sq.next_due(row, CONFIG) == other + cooldown
    assert sq.due(row, ACCOUNT, other + cooldown - timedelta(seconds=1), CONFIG, other, cooldown) == []
    [two] = sq.due(row, ACCOUNT, other + cooldown, CONFIG, other, cooldown)
    assert isinstance(two, sq.Draft) and any(n.startswith("cooldown: another note was drafted on") for n in two.notes)
    # the drafter's side: a drafted later step counts as a note
    assert sq.last_drafted(row) is None
    row.sequences["ann-1"]["p"]["2"]["at"] = (other + cooldown).isoformat()
    assert sq.last_drafted(row) == other + cooldown
