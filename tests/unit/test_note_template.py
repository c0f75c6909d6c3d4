"""The template's sentences, dates and subjects (agents/drafter/template.py) on compiled contexts."""
from datetime import UTC, datetime, timedelta

import pytest

from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.drafter.context import compile_context, month_year, years_phrase
from milestone_stream.agents.drafter.guard import guard
from milestone_stream.agents.drafter.template import SUBJECT_LIMIT, template_note
from milestone_stream.rules import Rules, UsageMetric

from support.drafting import NOW, rows, usage_milestone
from support.notes import RULES, anniversary, feature, milestone, roi, year_of_usage


def note_of(milestones, rules=RULES, row_pair=None, **profile):
    profile.setdefault("industry", "software")   # no framing: the metrics' labels
    ctx = compile_context("acme", milestones, *(row_pair or rows(**profile)), rules, NOW)
    note = template_note(ctx, rules)
    assert guard(note, ctx) is None, note
    return note, ctx


def test_one_milestone_is_one_clear_message():
    note, _ = note_of([usage_milestone()], rules=Rules(), industry="financial services")
    assert note.subject == "Celebrating 10,000 touchpoints with clients"
    assert note.paragraphs[0] == ("Congratulations to everyone at Acme Corp: your team has just passed "
                                  "10,000 touchpoints with clients.")
    assert "And also" not in " ".join(note.paragraphs)


def test_several_merged_are_one_lead_and_a_short_and_also():
    note, _ = note_of([feature("sso_v2"), roi(), usage_milestone(), anniversary()], roi_period="Q2 2026")
    lead, *_ = note.paragraphs
    assert lead == ("Happy anniversary to everyone at Acme Corp! It has been two years since you started working "
                    "with us, in June 2024. And also: passing 10,000 emails sent, reaching 152% ROI in Q2 2026 "
                    "and your first use of sso v2.")
    assert note.subject == "Happy second anniversary, Acme Corp"
    # without the anniversary the usage tier leads; the order the milestones came in does not matter
    note, _ = note_of([feature("sso_v2"), roi(), usage_milestone()])
    assert note.paragraphs[0].startswith("Congratulations to everyone at Acme Corp: your team has just passed "
                                         "10,000 emails sent. And also: reaching 152% ROI and your first use of "
                                         "sso v2.")
    assert note.subject == "Celebrating 10,000 emails sent"


def test_anniversary_with_lifetime_and_past_year_summary():
    note, ctx = note_of([anniversary()], row_pair=year_of_usage())
    assert note.paragraphs[1].startswith(
        "Since you joined us in June 2024, your work with us adds up to 47,832 emails sent and 31 campaigns run. "
        "In the past year alone: 30,100 emails sent and 20 campaigns run.")
    past = {f.key: f for f in ctx.past_year}
    assert past["past_year:emails_sent"].record.endswith("metric emails_sent, 2025-07 to 2026-06")
    # a usage note has the lifetime summary, not the past year's
    note, ctx = note_of([usage_milestone()], row_pair=year_of_usage())
    assert ctx.past_year == [] and "past year" not in " ".join(note.paragraphs)


def test_the_past_year_is_left_out_when_it_says_the_same_as_the_lifetime():
    profile_row, _ = rows(industry="software")
    usage = UsageRow.from_stored({"t": {"emails_sent": 3000.0}, "m": {"emails_sent": {"2026-05": 3000.0}},
                                  "s": {"emails_sent": [(NOW - timedelta(days=20)).timestamp(), NOW.timestamp()]}})
    note, ctx = note_of([anniversary()], row_pair=(profile_row, usage))
    assert ctx.past_year == []
    assert note.paragraphs[1].startswith("So far, your work with us adds up to 3,000 emails sent.")


def test_the_summary_says_since_when_only_as_far_as_the_telemetry_goes():
    joined, _ = note_of([usage_milestone()], row_pair=year_of_usage())
    assert "Since you joined us in June 2024, your work with us adds up to 47,832" in joined.paragraphs[1]
    later, ctx = note_of([usage_milestone()], row_pair=year_of_usage(first=datetime(2025, 3, 9, tzinfo=UTC)))
    assert "Since March 2025, your work with us adds up to 47,832" in later.paragraphs[1]
    assert ctx.since.key == "usage_since" and ctx.since.figure == "2025-03-09" and ctx.since.citation()
    recent, ctx = note_of([usage_milestone()], row_pair=year_of_usage(first=NOW - timedelta(days=10)))
    assert "So far, your work with us adds up to 47,832" in recent.paragraphs[1] and ctx.since is None


def test_industry_framing_in_the_lead_subject_and_summary():
    note, _ = note_of([usage_milestone()], rules=Rules(), industry="nonprofit")
    assert note.subject == "Celebrating 10,000 communications with donors"
    assert "just passed 10,000 communications with donors" in note.paragraphs[0]
    assert "adds up to 10,450 communications with donors" in note.paragraphs[1]
    other, _ = note_of([usage_milestone()], rules=Rules(), industry="Mining")
    assert "10,450 emails sent" in other.paragraphs[1]


@pytest.mark.parametrize("raw, said", [("Q2 2026", "Q2 2026"), ("q2-2026", "Q2 2026"), ("2026 Q2", "Q2 2026"),
                                       ("H1/2026", "H1 2026"), ("FY 2026", "FY2026"), ("2026", "2026")])
def test_roi_with_its_period(raw, said):
    note, ctx = note_of([roi()], roi_period=raw)
    assert note.paragraphs[0] == f"Congratulations to everyone at Acme Corp on reaching 152% ROI in {said}."
    assert note.subject == f"Celebrating 152% ROI in {said}"
    assert {c.figure for c in ctx.citations()} >= {"reported ROI: 152%", f"reported ROI period: {said}"}


@pytest.mark.parametrize("raw", ["<b>Q2</b>", "last quarter", "Q5 2026", "2026-04-01", "Q2 2026\r\nBcc: x",
                                 "Q2 " * 100])
def test_an_unreadable_roi_period_is_left_out_and_named_for_the_csm(raw):
    note, ctx = note_of([roi()], roi_period=raw)
    assert note.paragraphs[0] == "Congratulations to everyone at Acme Corp on reaching 152% ROI."
    assert any(n.startswith("ROI period: unreadable roi_period") for n in ctx.data_notes)


def test_the_period_belongs_to_the_current_roi_only():
    # the milestone fired at 152%, the CRM now reports 160% for Q3: the period is not the milestone's
    note, _ = note_of([roi()], roi_percent=160, roi_period="Q3 2026")
    assert note.paragraphs[0] == "Congratulations to everyone at Acme Corp on reaching 152% ROI."
    # the ROI is said in the summary when no milestone states it
    note, _ = note_of([usage_milestone()], roi_period="Q3 2026")
    assert "Your team reports 152% ROI in Q3 2026." in note.paragraphs[1]


def test_human_dates():
    assert month_year(datetime(2025, 11, 25).date()) == "November 2025"
    assert [years_phrase(n) for n in (1, 2, 5, 19, 25)] == ["one year", "two years", "five years", "nineteen years",
                                                           "25 years"]
    note, _ = note_of([milestone("qbr_completed", "QBR completed on 2026-05-01", "qbr_completed_at")])
    assert note.paragraphs[0] == "Congratulations to everyone at Acme Corp on a milestone: QBR completed in May 2026."
    assert "2026-05-01" not in note.subject + " ".join(note.paragraphs)
    note, _ = note_of([anniversary(5)])
    assert note.subject == "Happy fifth anniversary, Acme Corp"
    assert "It has been five years since you started working with us, in June 2024." in note.paragraphs[0]


@pytest.mark.parametrize("milestones", [[usage_milestone()], [anniversary(1)], [anniversary(12)], [roi()],
                                        [feature("x" * 200)], [feature()], [usage_milestone(), roi(), feature()],
                                        [milestone("certification", "3 certified in admin basics", "certification.x",
                                                   value=3)]])
@pytest.mark.parametrize("name", ["Acme Corp", "A" * 120, "Acme\r\nBcc: evil", "<b>Acme</b>\x00\u202e" + "x" * 10**6])
def test_subjects_are_one_readable_line_of_at_most_70_characters(milestones, name):
    long_framing = Rules(drafting={"framing": {"emails_sent": {"software": "touchpoints " * 8}}})
    for rules in (RULES, long_framing):
        note, _ = note_of(milestones, rules=rules, name=name)
        assert len(note.subject) <= SUBJECT_LIMIT and "\n" not in note.subject and "\r" not in note.subject
        assert "…" not in note.subject and note.subject.startswith(("Celebrating ", "Happy "))
    note, _ = note_of([usage_milestone()], rules=long_framing)
    assert note.subject == "Celebrating 10,000 emails sent"      # the label when the framing does not fit
    note, _ = note_of([feature("x" * 200)], name="A" * 120)
    assert note.subject == "Celebrating your team's milestone"


def test_many_metrics_with_long_labels_and_many_modules_stay_within_the_notes_limits():
    metrics = {f"metric_{n}": UsageMetric(tiers=[10], label=f"{'very long label ' * 5}{n}") for n in range(30)}
    rules = Rules(usage=metrics, spike=None)
    flags = {f"adoption.{'module_with_a_long_name_' * 3}{n}": True for n in range(5)}
    usage = UsageRow.from_stored({"t": {m: 1000.0 + n for n, m in enumerate(metrics)},
                                  "m": {m: {"2026-05": 10.0 + n} for n, m in enumerate(metrics)},
                                  "s": {m: [NOW.timestamp() - 400 * 86400, NOW.timestamp()] for m in metrics}})
    ctx = compile_context("acme", [anniversary()], rows(**flags)[0], usage, rules, NOW)
    note = template_note(ctx, rules)
    assert guard(note, ctx) is None and all(len(p) <= 1500 for p in note.paragraphs) and len(note.paragraphs) <= 8
    assert "1,000 very long label" in note.paragraphs[1] and "In the past year alone: 10 very long label" in \
        " ".join(note.paragraphs)
