"""The CSM's notification names the milestones a request celebrates: from the titles the request
carries (v3 of its contract), or, for a request written before, from its citations (pure logic)."""
from datetime import UTC, datetime

from milestone_stream.agents.drafter.context import compile_context, milestone_source, milestone_title
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Evidence, Milestone
from milestone_stream.sinks.sender import mail

from support.stack import approval_request

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LINKS = {"send": "http://ui/t/s", "edit": "http://ui/t/e", "dont_send": "http://ui/t/d"}


def milestones() -> list[Milestone]:
    mailer = [Evidence(source="platform.mailer", record="event e-77", occurred_at=NOW)]
    return [Milestone(milestone_id="m-10k", account_id="acme", kind="usage_threshold", metric="emails_sent",
                      threshold=10000, value=10450.0, title="10,000 emails sent", reached_at=NOW, evidence=mailer),
            Milestone(milestone_id="m-5k", account_id="acme", kind="usage_threshold", metric="emails_sent",
                      threshold=5000, value=10450.0, title="5,000 emails sent", reached_at=NOW, evidence=mailer),
            Milestone(milestone_id="m-qbr", account_id="acme", kind="qbr_completed", metric="qbr_completed_at",
                      title="QBR completed on 2026-05-01", reached_at=NOW)]


def requests():
    """The same drafted note as a v3 request (titles carried, as the drafter fills them) and as a
    request written before v3 (citations only)."""
    ctx = compile_context("acme", milestones(), None, None, Rules(), NOW)
    old = approval_request(1, citations=ctx.citations())
    new = old.model_copy(update=dict(
        milestone_titles=[milestone_title(m) for m in ctx.milestones],
        milestone_sources=[f"{s}: {r}" for s, r, _ in map(milestone_source, ctx.milestones)]))
    return new, old


def test_a_request_carries_its_milestones_titles_and_sources():
    new, _ = requests()
    assert mail.celebrated(new) == (
        ["10,000 emails sent", "5,000 emails sent", "QBR completed on 2026-05-01"],
        ["platform.mailer: event e-77", "platform.mailer: event e-77", "milestone-stream: acme"])


def test_a_request_written_before_the_titles_were_carried_reads_the_same_from_its_citations():
    new, old = requests()
    assert old.milestone_titles == [] and mail.celebrated(old) == mail.celebrated(new)
    texts = [mail.notification(r, LINKS, "milestones.test", None, NOW).message for r in (new, old)]
    assert texts[0].as_string() == texts[1].as_string()
    assert ("just hit a milestone: 10,000 emails sent; 5,000 emails sent; QBR completed on 2026-05-01 "
            "(sources: milestone-stream: acme; platform.mailer: event e-77)") in texts[0].get_content()
