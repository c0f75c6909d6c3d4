"""Slack messages built from hostile CRM data: escaped as Slack's formatting reference says, bounded to
Block Kit's limits; the Web API's failures classified for the outbox protocol; and the UI's Slack
settings checked at start (pure logic)."""
import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from milestone_stream.schemas.records import Contact
from milestone_stream.settings import ConfigError, Settings
from milestone_stream.sinks.approvals.service import slack_interactions
from milestone_stream.sinks.sender import slack
from milestone_stream.sinks.sender.smtp import DeliveryUnknown, NotDelivered

from support.stack import approval_request, decision

LINKS = {"send": "http://ui/t/s", "edit": "http://ui/t/e", "dont_send": "http://ui/t/d"}
HOSTILE = ["<!channel>", "<!here|here>", "<@U123|boss>", "<#C1|general>", "<https://evil.example|click>",
           "*bold*", "_it_", "~gone~", "`code`", "```block```", "&amp;", "a\r\nb", "x\u202ey", "zero\u200bwidth",
           "\x00\x1b[31m", "line\u2028sep", "é" * 5000, "&" * 4000, "<" * 4000, "*" * 4000]


def shown(blocks) -> list[str]:
    out = []
    for b in blocks:
        if "text" in b:
            out.append(b["text"]["text"])
        for e in b.get("elements", []):
            t = e.get("text")
            out.append(t if isinstance(t, str) else t["text"])
    return out


def unescaped_control(text: str) -> bool:
    """A `<` or `>` Slack would parse, or an `&` that is not one of the three entities."""
    body = re.sub(r"^>", "", text, flags=re.M)  # our own quote marks at line starts
    return "<" in body or ">" in body or re.search(r"&(?!amp;|lt;|gt;)", body) is not None


@pytest.mark.parametrize("evil", HOSTILE)
def test_crm_text_is_escaped_and_bounded_everywhere_in_the_request_message(evil):
    req = approval_request(1, account_name=evil, subject=evil[:160], body_text=f"Dear {evil},\n\n{evil}\n",
                           recipients=[Contact(name=evil[:256], email="jane@acme.example", role="x")],
                           policy_notes=[evil], milestone_titles=[evil], milestone_sources=[evil])
    text, blocks = slack.request_message(req, LINKS)
    assert len(text) <= slack.FALLBACK_MAX and not unescaped_control(text)
    for t in shown(blocks):
        assert len(t) <= slack.SECTION_MAX, len(t)
        assert not unescaped_control(t), t[:200]
        assert "\r" not in t and "\x00" not in t and "\x1b" not in t and "\u202e" not in t and "\u2028" not in t
        assert not re.search(r"(?<!\u200b)[*_~`](?!\u200b)", t.replace("*Heads up!*", "").replace(
            "*Subject:*", "")), "a formatting mark from data is not fenced"
    for b in blocks:
        for e in b.get("elements", []):
            if e.get("type") == "button":
                assert len(e["text"]["text"]) <= slack.BUTTON_MAX
    assert len(json.dumps(blocks, ensure_ascii=False)) < 40_000 and len(blocks) <= 50


def test_the_buttons_carry_the_approval_id_and_the_signed_edit_link():
    req = approval_request(2)
    _, blocks = slack.request_message(req, LINKS)
    [actions] = [b for b in blocks if b["type"] == "actions"]
    by_id = {e["action_id"]: e for e in actions["elements"]}
    assert by_id["send"]["value"] == by_id["dont_send"]["value"] == req.approval_id
    assert by_id["send"]["style"] == "primary" and "confirm" in by_id["send"]
    assert by_id["edit"]["url"] == LINKS["edit"] and by_id["dont_send"]["style"] == "danger"


def test_a_request_without_recipient_offers_choose_recipient_instead_of_send():
    _, blocks = slack.request_message(approval_request(3, recipients=()), LINKS)
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == ["edit", "dont_send"]
    assert actions["elements"][0]["text"]["text"] == "Choose recipient"


def test_a_cut_never_splits_an_entity_or_a_fence():
    for n in range(1, 40):
        cut = slack.data("&<*" * 50, n)
        assert len(cut) <= n
        body = cut.removesuffix("…")
        assert re.fullmatch(r"(?:&amp;|&lt;|\u200b\*\u200b)*", body), cut


def test_the_decided_message_has_no_buttons_and_escapes_the_reason():
    req = approval_request(4)
    _, sent = slack.decided_message(decision(req))
    assert "Approved" in shown(sent)[0] and not any(b["type"] == "actions" for b in sent)
    _, declined = slack.decided_message(decision(req, "dont_send", reason="<!channel> not now"))
    assert "&lt;!channel&gt; not now" in shown(declined)[0]


def test_the_digest_lists_at_most_twenty_per_section_and_counts_the_rest():
    now = datetime(2026, 11, 26, 8, tzinfo=UTC)
    stale = [approval_request(i, account_name=f"<b>{i}", created_at=now - timedelta(days=2)) for i in range(30)]
    _, blocks = slack.digest_message("2026-11-26", stale, stale[:1], "http://ui")
    texts = shown(blocks)
    assert "Waiting for you for more than a day* (30)" in texts[1] and "…and 10 more" in texts[1]
    assert texts[1].count("\n•") == slack.LIST_MAX and "Expiring within a day* (1)" in texts[2]
    assert not any(unescaped_control(t) for t in texts)


def response(status: int, body: object, headers: dict | None = None):
    return SimpleNamespace(status_code=status, data=body, headers=headers or {})


@pytest.mark.parametrize(("status", "body", "posting", "expected"), [
    (429, {"ok": False, "error": "ratelimited"}, True, ("retry", 30.0)),
    (200, {"ok": False, "error": "ratelimited"}, True, ("retry", 30.0)),
    (200, {"ok": False, "error": "internal_error"}, True, ("unknown", None)),  # Slack: may have succeeded
    (200, {"ok": False, "error": "internal_error"}, False, ("retry", None)),
    (503, b"", True, ("retry", None)),
    (200, {"ok": False, "error": "channel_not_found"}, True, ("permanent", None)),
    (200, {"ok": False, "error": "invalid_auth"}, False, ("permanent", None)),
    (200, {"ok": False, "error": "fatal_error"}, True, ("unknown", None)),
    (200, {"ok": False, "error": "fatal_error"}, False, ("permanent", None)),
])
def test_web_api_failures_are_classified_for_the_outbox(status, body, posting, expected):
    exc = slack._classified("chat.postMessage", response(status, body, {"Retry-After": "30"}), posting)
    kind, retry_after = expected
    if kind == "unknown":
        assert isinstance(exc, DeliveryUnknown)
        return
    assert isinstance(exc, NotDelivered) and exc.permanent == (kind == "permanent")
    assert exc.retry_after == retry_after


def test_a_posted_message_is_found_again_from_the_outcome_detail():
    assert slack.posted(json.dumps({"channel": "D1", "ts": "1.2"})) == ("D1", "1.2")
    for junk in (None, "", "250 OK", "[]", '{"channel": 1, "ts": "x"}'):
        assert slack.posted(junk) is None


def test_the_ui_needs_both_the_bot_token_and_the_signing_secret_or_neither():
    assert slack_interactions(Settings.from_env({}), ui=None) is None  # type: ignore[arg-type]
    for only in ({"MILESTONES_SLACK_BOT_TOKEN": "xoxb-1"}, {"MILESTONES_SLACK_SIGNING_SECRET": "s" * 32}):
        with pytest.raises(ConfigError, match="must be set too"):
            slack_interactions(Settings.from_env(only), ui=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="MILESTONES_SLACK_API_URL"):
        Settings.from_env({"MILESTONES_SLACK_API_URL": "https://slack.com/api"})  # no trailing slash
