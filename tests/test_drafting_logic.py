"""Pure logic of drafting: context, template framing, the grounding guard, policy. No broker."""
from datetime import datetime, timedelta, timezone

from milestone_stream.ids import milestone_id
from milestone_stream.models import Evidence, Milestone
from milestone_stream.rules import Drafting, Rules
from milestone_stream.sinks import policy
from milestone_stream.sinks.context import compile_context, numbers_in
from milestone_stream.sinks.drafting import Note, guard, render, template_note

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = 86400


def usage_milestone(account="acme", tier=10000, value=10450.0):
    return Milestone(milestone_id=milestone_id(account, "usage_threshold", "emails_sent", tier), account_id=account,
                     kind="usage_threshold", metric="emails_sent", threshold=tier, value=value,
                     title=f"{tier:,} emails sent", reached_at=NOW,
                     evidence=[Evidence(source="platform.mailer", record="event e-77", occurred_at=NOW)])


def rows(industry="financial services", contacts=None, **profile):
    p = {"name": "Acme Corp", "industry": industry, "csm_email": "sam@vendor.example", "csm_name": "Sam Rivera",
         "contract_start": "2024-06-01", "roi_percent": 152, "adoption.automation_sequences": True, **profile}
    src = {f: ["salesforce", "001ACME", "2026-05-01T00:00:00+00:00"] for f in p}
    contacts = contacts if contacts is not None else [
        {"name": "Raj Admin", "email": "raj@acme.example", "role": "admin"},
        {"name": "Jane Doe", "email": "jane@acme.example", "role": "executive_sponsor"}]
    profile_row = {"p": p, "c": contacts, "s": src}
    usage_row = {"t": {"emails_sent": 10450.0}, "s": {"emails_sent": [(NOW - timedelta(days=300)).timestamp(), NOW.timestamp()]},
                 "w": {}}
    return profile_row, usage_row


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
    assert "At your current pace you will reach 50,000 touchpoints with clients in about 37 months" in fin_note.paragraphs[-1]
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
    row = policy.new_row()
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
    ctx = compile_context("acme", [usage_milestone()], *rows(contacts=[], health="red", open_escalations=2), Rules(), NOW)
    notes = policy.review_notes(ctx)
    assert notes[0] == "at risk — consider not sending (health is red; 2 open escalation(s))"
    assert "no executive contact" in notes[1]


async def test_a_template_that_fails_the_guard_is_flagged_to_the_csm_not_dropped():
    from milestone_stream.sinks.claude import Drafter

    framing = Drafting(framing={"emails_sent": {"financial services": "24/7 client touchpoints"}})
    rules = Rules(drafting=framing)
    out = await Drafter(rules).draft(compile_context("acme", [usage_milestone()], *rows(), rules, NOW))
    assert out.drafted_by == "template" and out.verdict.startswith("FAILED") and "24, 7" in out.verdict
