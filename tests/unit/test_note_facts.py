"""The facts behind the notes (agents/drafter/context.py): the value summary's cited figures, hostile CRM
values, the grounding guard accepting every figure the template writes and refusing invented ones, and
the model (through the real `anthropic` SDK against a local Messages API) getting the same facts."""
import json
import unicodedata
from datetime import UTC, datetime

import pytest

from milestone_stream.agents.drafter.context import compile_context, read_period
from milestone_stream.agents.drafter.guard import guard
from milestone_stream.agents.drafter.model import Drafter
from milestone_stream.agents.drafter.template import SUBJECT_LIMIT, Note, render, template_note
from milestone_stream.rules import Drafting

from support.drafting import NOW, rows, usage_milestone
from support.messages_api import MODEL, MessagesAPI
from support.notes import RULES, anniversary, feature, milestone, roi, year_of_usage


def ctx_of(milestones, row_pair=None, rules=RULES, **profile):
    return compile_context("acme", milestones, *(row_pair or rows(**{"industry": "software", **profile})), rules, NOW)


def test_every_summary_figure_is_a_cited_fact_with_source_record_and_as_of():
    ctx = ctx_of([anniversary()], row_pair=year_of_usage(roi_period="Q2 2026"))
    by_key = {f.key: f for f in ctx.facts if f.key}
    assert {k: by_key[k].said for k in by_key} == {
        "lifetime:emails_sent": "47,832 emails sent", "lifetime:campaigns_run": "31 campaigns run",
        "past_year:emails_sent": "30,100 emails sent", "past_year:campaigns_run": "20 campaigns run",
        "roi": "152% ROI in Q2 2026", "roi_period": "in Q2 2026", "customer_since": "June 2024"}
    assert by_key["lifetime:emails_sent"].record == ("sum of telemetry.events for account acme, metric emails_sent "
                                                     "from 2024-06-03")
    assert by_key["lifetime:emails_sent"].as_of == NOW and by_key["roi_period"].source == "salesforce"
    assert by_key["roi_period"].record == "001ACME field roi_period"
    cited = {c.figure for c in ctx.citations()}
    assert {"lifetime emails sent: 47,832", "emails sent in the past year: 30,100",
            "campaigns run in the past year: 20", "reported ROI period: Q2 2026", "customer since: 2024-06-01"} <= cited


@pytest.mark.parametrize("milestones", [
    [anniversary()], [anniversary(1), usage_milestone(), roi(), feature()], [roi()], [usage_milestone()],
    [milestone("renewal_signed", "Renewal signed on 2026-04-30", "renewal_signed_at")],
    [milestone("certification", "3 certified in admin basics", "certification.admin_basics", value=3)]])
@pytest.mark.parametrize("close_with", ["pace", "advocacy", "none"])
@pytest.mark.parametrize("industry", ["software", "financial services", "nonprofit"])
def test_the_guard_accepts_every_figure_the_template_writes(milestones, close_with, industry):
    rules = RULES.model_copy(update={"drafting": Drafting(close_with=close_with,
                                                          advocacy_link="https://reviews.example/acme")})
    for first in (datetime(2024, 6, 3, tzinfo=UTC), datetime(2025, 3, 9, tzinfo=UTC), NOW):
        ctx = ctx_of(milestones, row_pair=year_of_usage(first, roi_period="Q2 2026", industry=industry), rules=rules)
        note = template_note(ctx, rules)
        assert guard(note, ctx) is None, note


@pytest.mark.parametrize("invented", [
    "In the past year alone: 30,101 emails sent.",        # a figure off by one
    "Since you joined us in June 2023, you sent a lot.",  # a year no fact states
    "It has been three years since you started.",         # the anniversary is two
    "152% ROI in Q3 2026.",                               # the period is Q2
    "You reached 152% ROI on 3 June 2024.",               # a day of the month no fact states
    "Thousands of emails sent.",                          # vague magnitudes are never grounded
])
def test_the_guard_still_refuses_invented_figures(invented):
    ctx = ctx_of([anniversary()], row_pair=year_of_usage(roi_period="Q2 2026"))
    assert "not in the compiled context" in guard(Note(subject="Celebrating two years", paragraphs=[invented]), ctx)


def test_the_period_is_read_strictly():
    assert [read_period(v) for v in ("Q2 2026", " q4  2025 ", "2026/H2", "fy-2024", "2026")] == \
        ["Q2 2026", "Q4 2025", "H2 2026", "FY2024", "2026"]
    assert [read_period(v) for v in ("Q2", "Q2 1850", "Q2 2026 <b>", 2026, None, "x" * 10**6, "Q2\n2026\r\nBcc")] == \
        [None, None, None, None, None, None, None]


HOSTILE = {"name": "Acme\r\nBcc: x <script>alert(1)</script> " + "A" * 2_000_000, "industry": "<i>nonprofit</i>\r\n",
           "csm_name": "Sam\x00 <b>Rivera</b>", "roi_period": "Q2 2026\r\n<addr>"}


def test_hostile_crm_values_stay_data_in_every_part_of_the_email():
    milestones = [anniversary(), usage_milestone(), roi(), feature("sso\r\n<b>")]
    ctx = compile_context("acme", milestones, *year_of_usage(**HOSTILE), RULES, NOW)
    note = template_note(ctx, RULES)
    assert guard(note, ctx) is None
    out = render(note, ctx, RULES, "<Jane>\r\nBcc: evil")
    assert len(out.subject) <= SUBJECT_LIMIT and not any(unicodedata.category(c) == "Cc" for c in out.subject)
    # plain text: no control characters but the line breaks between paragraphs; no CR at all
    assert not any(unicodedata.category(c) == "Cc" and c != "\n" for c in out.body_text)
    assert all(len(line) < 1600 for line in out.body_text.splitlines())
    assert "<script>" not in out.body_html and "&lt;script&gt;" in out.body_html and "<b>" not in out.body_html
    assert out.body_text.startswith("Dear <Jane>,\n\n") and "<p>Dear &lt;Jane&gt;,</p>" in out.body_html
    assert out.subject == "Happy second anniversary"                        # the name did not fit: left out, not cut
    assert "in Q2 2026" not in " ".join(note.paragraphs)                    # the period was unreadable
    assert any("roi_period" in n for n in ctx.data_notes)


@pytest.fixture
async def api():
    server = await MessagesAPI().start()
    yield server
    await server.stop()


async def test_the_model_gets_the_same_facts_the_lead_and_the_summary(api):
    ctx = ctx_of([feature(), usage_milestone(), anniversary()], row_pair=year_of_usage(roi_period="Q2 2026"))
    api.then("tool", {"subject": "Happy second anniversary, Acme Corp",
                      "paragraphs": ["Two years together since June 2024, and 30,100 emails sent in the past year."]})
    out = await Drafter(RULES, api_key="test-key", model=MODEL, base_url=api.url, timeout=5).draft(ctx)
    assert out.drafted_by == MODEL, out.verdict
    prompt = api.requests[-1]["body"]["messages"][0]["content"]
    data = json.loads(prompt.split("<account_data>", 1)[1].split("</account_data>", 1)[0])
    assert data["lead_milestone"] == "two years together"
    assert data["also_milestones"] == ["10,000 emails sent", "first use of sso"]
    assert data["value_summary"] == {"since": "June 2024", "since_means": "the customer's start",
                                     "lifetime": ["47,832 emails sent", "31 campaigns run"],
                                     "past_year": ["30,100 emails sent", "20 campaigns run"],
                                     "roi": "152% ROI in Q2 2026"}
    assert {"what": "emails sent in the past year", "figure": "30,100", "say": "30,100 emails sent"} in data["facts"]
    assert len(data["facts"]) == len(ctx.facts)
    sent = api.requests[0]["body"]
    assert sent["tools"][0]["input_schema"]["properties"]["subject"]["maxLength"] == SUBJECT_LIMIT
    assert "never as ISO dates" in sent["system"] and '"and also"' in sent["system"]


async def test_a_model_subject_longer_than_70_characters_falls_back_to_the_template(api):
    ctx = ctx_of([usage_milestone()])
    api.then("tool", {"subject": "Celebrating " + "ten thousand emails " * 4, "paragraphs": ["Well done."]})
    out = await Drafter(RULES, api_key="test-key", model=MODEL, base_url=api.url, timeout=5).draft(ctx)
    assert out.drafted_by == "template" and "malformed" in out.verdict
    assert out.note == template_note(ctx, RULES)
