"""Pure logic of drafting: context, template framing, the grounding guard, policy. No broker."""
import re
from datetime import timedelta

import pytest

from milestone_stream.agents.detector.crm import ProfileRow
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.drafter import policy
from milestone_stream.agents.drafter.context import compile_context, numbers_in
from milestone_stream.agents.drafter.guard import guard
from milestone_stream.agents.drafter.template import Note, render, template_note
from milestone_stream.rules import Drafting, Rules
from milestone_stream.schemas.records import Milestone

from support.drafting import DAY, NOW, rows, stored_rows, usage_milestone


def test_numbers_in_reads_figures_as_written():
    assert numbers_in("10,000 emails, 152% ROI since 2024-06-01; v2.5.") == [10000, 152, 2024, 6, 1, 2.5]


def test_context_cites_every_figure_and_puts_the_sponsor_first():
    ctx = compile_context("acme", [usage_milestone()], *rows(), Rules(), NOW)
    assert [c.name for c in ctx.contacts] == ["Jane Doe", "Raj Admin"]
    assert ctx.executives[0].email == "jane@acme.example"
    by_label = {f.label: f for f in ctx.facts}
    assert by_label["lifetime emails sent"].figure == "10,450"
    assert by_label["reported ROI"].figure == "152%" and by_label["reported ROI"].source == "salesforce"
    assert by_label["customer since"].figure == "2024-06-01"
    # 10,450 in 300 days → 34.8/day → 39,550 more to 50,000 → about 37 months
    assert ctx.pace.figure == "50,000 in about 37 months"
    assert all(c.source and c.record for c in ctx.citations())


def test_template_frames_the_milestone_in_the_industrys_words_and_passes_the_guard():
    fin = compile_context("acme", [usage_milestone()], *rows(), Rules(), NOW)
    ngo = compile_context("acme", [usage_milestone()], *rows(industry="nonprofit"), Rules(), NOW)
    fin_note, ngo_note = template_note(fin, Rules()), template_note(ngo, Rules())
    assert "10,000 touchpoints with clients" in fin_note.subject
    assert "10,000 communications with donors" in ngo_note.paragraphs[0]
    assert ("At your current pace you will reach 50,000 touchpoints with clients in about 37 months"
            in fin_note.paragraphs[-1])
    assert guard(fin_note, fin) is None and guard(ngo_note, ngo) is None
    assert template_note(fin, Rules()) == fin_note  # deterministic


def test_guard_rejects_invented_figures_links_and_addresses():
    ctx = compile_context("acme", [usage_milestone()], *rows(), Rules(), NOW)
    ok = Note(subject="10,000 touchpoints", paragraphs=["You reached 10,000 in 2024-06-01 terms, 152% ROI."])
    assert guard(ok, ctx) is None
    assert "37.5" in guard(Note(subject="Wow", paragraphs=["ROI grew 37.5% this quarter."]), ctx)
    assert "link" in guard(Note(subject="Wow", paragraphs=["See https://evil.example/x"]), ctx)
    assert "address" in guard(Note(subject="Wow", paragraphs=["Write to boss@evil.example"]), ctx)


def test_render_escapes_data_and_takes_greeting_and_signature_from_crm():
    profile_row, usage_row = rows(name="<script>alert(1)</script> & Co")
    ctx = compile_context("acme", [usage_milestone()], profile_row, usage_row, Rules(), NOW)
    out = render(template_note(ctx, Rules()), ctx, Rules(), "Jane Doe")
    assert out.body_text.startswith("Dear Jane,") and out.body_text.rstrip().endswith("Sam Rivera")
    assert "<script>" not in out.body_html and "&lt;script&gt;" in out.body_html
    advocacy = Rules(drafting=Drafting(close_with="advocacy", advocacy_link="https://reviews.example/acme"))
    out = render(template_note(ctx, advocacy), ctx, advocacy, None)
    assert out.body_text.startswith("Dear <script>alert(1)</script> & Co team,")
    assert 'href="https://reviews.example/acme"' in out.body_html


def test_policy_gathers_holds_for_the_cooldown_and_merges_never_drops():
    gather, cooldown = timedelta(seconds=10), timedelta(days=14)
    row = policy.CelebrationRow()
    m1, m2 = usage_milestone(tier=1000), usage_milestone(tier=5000)
    assert policy.take_in(row, m1, ("milestones", 0, 1), NOW)
    assert not policy.take_in(row, m1, ("milestones", 0, 2), NOW), "a re-delivered copy was taken twice"
    assert policy.take_in(row, m2, ("milestones", 0, 3), NOW)
    assert policy.release(row, NOW + timedelta(seconds=5), gather, cooldown) == ([], [])  # still gathering
    batch, notes = policy.release(row, NOW + timedelta(seconds=10), gather, cooldown)
    assert [m.threshold for m in batch] == [1000, 5000] and notes == []
    assert [m.threshold for m in policy.headline_milestones(batch)] == [5000]
    policy.mark_celebrated(row, NOW + timedelta(seconds=10))
    later = NOW + timedelta(days=3)
    m3 = usage_milestone(tier=10000)
    policy.take_in(row, m3, ("milestones", 0, 4), later)
    assert policy.release(row, later + timedelta(days=1), gather, cooldown) == ([], [])  # in cooldown: held
    assert policy.due_at(row, gather, cooldown) == NOW + timedelta(seconds=10) + cooldown
    batch, notes = policy.release(row, NOW + timedelta(days=15), gather, cooldown)
    assert [m.threshold for m in batch] == [10000] and "cooldown" in notes[0]


def test_review_notes_mark_at_risk_accounts_and_missing_executives():
    ctx = compile_context("acme", [usage_milestone()], *rows(contacts=[], health="red", open_escalations=2),
                          Rules(), NOW)
    notes = policy.review_notes(ctx)
    assert notes[0] == "at risk — consider not sending (health is red; 2 open escalation(s))"
    assert "no executive contact" in notes[1]


async def test_a_template_that_fails_the_guard_is_flagged_to_the_csm_not_dropped():
    from milestone_stream.agents.drafter.model import Drafter

    framing = Drafting(framing={"emails_sent": {"financial services": "24/7 client touchpoints"}})
    rules = Rules(drafting=framing)
    out = await Drafter(rules).draft(compile_context("acme", [usage_milestone()], *rows(), rules, NOW))
    assert out.drafted_by == "template" and out.verdict.startswith("FAILED") and "24, 7" in out.verdict


# --- hostile CRM and usage data: never a crash, always a sendable-looking draft for the CSM to check ---

def test_crm_text_the_template_cannot_use_as_is_is_cleaned_not_a_crash():
    profile_row, usage_row = rows(name="Acme\r\nBcc: evil@example.com", csm_name="Sam\u202e\nRivera")
    ctx = compile_context("acme", [usage_milestone()], profile_row, usage_row, Rules(), NOW)
    note = template_note(ctx, Rules())
    assert ctx.account_name == "Acme Bcc: evil@example.com" and "\n" not in note.subject
    assert render(note, ctx, Rules(), "Jane Doe").body_text.rstrip().endswith("Sam Rivera")
    long = compile_context("acme", [usage_milestone()], *rows(name="A" * 2000), Rules(), NOW)
    assert len(long.account_name) == 120 and len(template_note(long, Rules()).subject) <= 160


@pytest.mark.parametrize("recipient", ["", "   ", "\r\n\t", "\u200b", None])
def test_a_blank_recipient_name_greets_the_team(recipient):
    ctx = compile_context("acme", [usage_milestone()], *rows(), Rules(), NOW)
    assert render(template_note(ctx, Rules()), ctx, Rules(), recipient).body_text.startswith("Dear Acme Corp team,")


def test_a_blank_account_name_falls_back_to_the_account_id_with_a_note():
    ctx = compile_context("acme-42", [usage_milestone()], *rows(name=" \r\n "), Rules(), NOW)
    assert ctx.account_name == "acme-42"
    assert "account name: missing or unreadable in CRM" in policy.review_notes(ctx)[-1]


@pytest.mark.parametrize("value,note", [
    ("many", "open escalations: unreadable value 'many' in CRM"),
    (float("nan"), "open escalations: unreadable value 'nan' in CRM"),
    (1e308, "open escalations: unreadable value '1e+308' in CRM"),
    (-2, "open escalations: unreadable value '-2' in CRM"),
    ([1, 2], "open escalations: unreadable value '[1, 2]' in CRM"),
    ({"n": 3}, "open escalations: unreadable value \"{'n': 3}\" in CRM"),
])
def test_an_unreadable_escalation_count_is_unknown_and_told_to_the_csm(value, note):
    ctx = compile_context("acme", [usage_milestone()], *rows(open_escalations=value), Rules(), NOW)
    assert ctx.open_escalations is None
    assert any(n.startswith(note) for n in policy.review_notes(ctx)), policy.review_notes(ctx)
    assert compile_context("acme", [usage_milestone()], *rows(open_escalations="3"), Rules(), NOW).open_escalations == 3


@pytest.mark.parametrize("roi", [float("nan"), float("inf"), 1e308, True, "152", [152], -1e9])
def test_an_unreadable_roi_states_no_figure(roi):
    ctx = compile_context("acme", [usage_milestone()], *rows(roi_percent=roi), Rules(), NOW)
    assert "reported ROI" not in {f.label for f in ctx.facts}
    assert any(n.startswith("reported ROI: unreadable value") for n in ctx.data_notes)


@pytest.mark.parametrize("start", ["garbage", "2024-13-45", "9999-12-31", "0001-01-01", 20240601, ["2024-06-01"], {}])
def test_an_unreadable_or_impossible_contract_start_is_left_out(start):
    ctx = compile_context("acme", [usage_milestone()], *rows(contract_start=start, health=["red"]), Rules(), NOW)
    assert ctx.customer_since is None and ctx.health is None
    assert any(n.startswith("health: unreadable value") for n in ctx.data_notes)


def test_usage_figures_are_never_inf_or_nan():
    profile_row, usage_row = stored_rows()
    usage_row["t"] = {"emails_sent": float("inf"), "calls": float("nan"), "chats": "many", "big": 1e308, "ok": 12.0}
    usage_row["s"] = {"emails_sent": "garbage", "ok": [1e308, -1e308]}
    usage_row["w"] = {"chats": {"s": "x", "m": float("nan")}, "ok": [1, 2], "x": {"s": 1e308, "m": 1}}
    ctx = compile_context("acme", [usage_milestone()], ProfileRow.from_stored(profile_row),
                          UsageRow.from_stored(usage_row), Rules(), NOW)
    figures = " ".join(f.figure for f in ctx.facts)
    assert "inf" not in figures and "nan" not in figures and "e+" not in figures
    assert {f.label for f in ctx.facts if f.label.startswith("lifetime")} == {"lifetime ok"}
    assert ctx.pace is None


HOSTILE_TEXT = ["", "   ", "\r\n", "Acme\r\nBcc: evil@example.com", "A" * 2000, "B" * 1_000_000,
                "<script>alert(1)</script>", "Jane <jane@evil.example>", "<addr@evil.example>", "\u202eevil\u200b",
                "\x00\x1b[31m\x85", "Ω" * 300, "9999999", "Acme 9999999", "two million", "\ud800x"]
HOSTILE_VALUES = [None, float("nan"), float("inf"), -float("inf"), 1e308, -1e308, "many", [1, 2], {"a": 1}, True,
                  -5, 0, 3, 2.5, "2024-06-01", "9999-99-99"]


def hostile_rows(rnd):
    """One profile row and usage row of random hostile values (a seeded property test, no library)."""
    pick = lambda: rnd.choice(HOSTILE_TEXT + HOSTILE_VALUES)     # noqa: E731
    p = {field: pick() for field in ("name", "industry", "csm_name", "csm_email", "top_use_case", "contract_start",
                                     "roi_percent", "open_escalations", "health") if rnd.random() < 0.8}
    for _ in range(rnd.randrange(4)):
        p[f"adoption.{rnd.choice(HOSTILE_TEXT)[:3000]}"] = rnd.choice([True, True, False, "yes"])
    contacts = [rnd.choice([{"name": pick(), "email": "jane@acme.example",
                             "role": rnd.choice(["ceo", "admin", pick()])},
                            {"name": rnd.choice(HOSTILE_TEXT), "email": "x@acme.example", "role": "executive_sponsor"},
                            "not a contact", None, {"name": "No Role"}])
                for _ in range(rnd.randrange(4))]
    provenance = {f: rnd.choice([["salesforce", "001", "2026-05-01T00:00:00+00:00"], pick(), ["a", "b"],
                                 ["s", "r", "2026-05-01T00:00:00"]]) for f in p}
    usage = {"t": {rnd.choice(["emails_sent", "x", rnd.choice(HOSTILE_TEXT)]): pick()
                   for _ in range(rnd.randrange(3))},
             "s": {"emails_sent": rnd.choice([[NOW.timestamp() - 300 * DAY, NOW.timestamp()], pick(), [1e308, 0],
                                               [NOW.timestamp() - 2 * DAY, NOW.timestamp()]])},
             "w": {"active_users": rnd.choice([{"s": NOW.timestamp(), "m": pick()}, pick()])}}
    if rnd.random() < 0.5:
        usage["t"]["emails_sent"] = rnd.choice([10450.0, 0.0, -3.0, 1e14])
    return ProfileRow.from_stored({"p": p, "c": contacts, "s": provenance}), UsageRow.from_stored(usage)


def hostile_milestones(rnd):
    title = rnd.choice(HOSTILE_TEXT) or "x"
    return rnd.choice([
        [usage_milestone()],
        [usage_milestone(), Milestone(milestone_id="m-feature", account_id="acme", kind="feature_adopted",
                                      metric=title[:5000], title=f"First use of {title}", reached_at=NOW)],
        [Milestone(milestone_id="m-roi", account_id="acme", kind="roi_threshold", metric="roi_percent",
                   threshold=150, value=rnd.choice([float("nan"), 1e308, 152.0]), title=title, reached_at=NOW)],
        [Milestone(milestone_id="m-qbr", account_id="acme", kind="qbr_completed", metric="qbr_completed_at",
                   title=f"QBR completed on {title[:10]}", reached_at=NOW)],
    ])


async def test_no_hostile_profile_or_usage_row_crashes_drafting_and_the_output_is_safe():
    import random

    from milestone_stream.agents.drafter.model import Drafter

    rnd = random.Random(1107)
    markup = re.compile(r"<(?!/?p>|br>|a href=\"https://reviews\.example/acme\">|/a>)")
    for n in range(300):
        profile_row, usage_row = hostile_rows(rnd)
        rules = Rules(drafting=Drafting(close_with=rnd.choice(["pace", "advocacy"]),
                                        advocacy_link="https://reviews.example/acme"))
        ctx = compile_context(rnd.choice(["acme", "\r\n", "x" * 500]), hostile_milestones(rnd), profile_row,
                              usage_row, rules, NOW)
        note = template_note(ctx, rules)
        guard(note, ctx)
        drafted = await Drafter(rules).draft(ctx)
        recipient = ctx.executives[0].name if ctx.executives else rnd.choice(HOSTILE_TEXT + [None])
        out = render(drafted.note, ctx, rules, recipient)
        notes = policy.review_notes(ctx)
        assert 3 <= len(out.subject) <= 160 and "\r" not in out.subject and "\n" not in out.subject, n
        assert not markup.search(out.body_html), (n, out.body_html[:300])
        assert len(out.body_text) < 12_000 and len(ctx.account_name) <= 120, n
        assert all(len(x) < 400 for x in notes), n
        assert not any(w in f.figure for f in ctx.facts for w in ("inf", "nan", "e+")), n
        for text in (ctx.account_name, ctx.csm_name or "", *(c.name for c in ctx.contacts), *ctx.modules_adopted):
            assert not re.search(r"[\x00-\x1f\x7f-\x9f\u200b\u202e\u2028]", text), (n, text[:80])


def test_the_template_passes_the_guard_for_ordinary_data_and_markup_is_escaped():
    ctx = compile_context("acme", [usage_milestone()], *rows(name="R&D <Labs>", industry="retail"), Rules(), NOW)
    note = template_note(ctx, Rules())
    assert guard(note, ctx) is None
    out = render(note, ctx, Rules(), "<b>Jane</b> Doe")
    assert "R&amp;D &lt;Labs&gt;" in out.body_html and "<Labs>" not in out.body_html
    assert out.body_html.startswith("<p>Dear &lt;b&gt;Jane&lt;/b&gt;,</p>")
