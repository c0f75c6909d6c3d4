"""The CSM's risk alert (pure logic): the email names the evidence and the playbook, on one line each,
with hostile titles, evidence and names unable to add headers or recipients; the Slack message
escapes Slack's control characters and formatting marks and stays within Block Kit's limits."""
import email
from datetime import UTC, datetime
from email.policy import default

import pytest

from milestone_stream.schemas.records import Evidence, RiskSignal
from milestone_stream.sinks.sender import alerts, mail, slack

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOSTILE = ("Logins down\r\nBcc: evil@attacker.example\r\n\r\n<b>42%</b> <boss@evil.example> <!channel> *x* `y` "
           "=?utf-8?q?z?=")


def signal(**kw) -> RiskSignal:
    fields = dict(signal_id="sig-1", account_id="acme", kind="usage_drop", level="orange", state="open",
                  title="Logins down 42% against the previous 14 days", opened_at=NOW, at=NOW,
                  evidence=[Evidence(source="platform.logins", record="daily logins 2026-05-31", occurred_at=NOW)],
                  playbook=["Call the champion within 48 hours", "Review the adoption plan"],
                  csm_email="sam.rivera@vendor.example", account_name="Acme Corp")
    return RiskSignal(**{**fields, **kw})


def wire(out: mail.Outgoing) -> email.message.EmailMessage:
    return email.message_from_bytes(out.message.as_bytes(), policy=default)


def test_the_email_carries_the_evidence_and_the_playbook_to_the_csm():
    out = alerts.risk_email(signal(), "milestones.test", None, NOW)
    msg = wire(out)
    assert out.recipients == ["sam.rivera@vendor.example"]
    assert msg["To"] == "sam.rivera@vendor.example"
    assert msg["Subject"] == "Risk alert: Acme Corp: Logins down 42% against the previous 14 days"
    assert msg["Message-ID"] == "<risk.sig-1@milestones.test>"
    text = msg.get_body(("plain",)).get_content()
    assert "Level: orange (usage drop), opened 2026-06-01 12:00 UTC." in text
    assert "- platform.logins: daily logins 2026-05-31 (2026-06-01 12:00 UTC)" in text
    assert "1. Call the champion within 48 hours\n2. Review the adoption plan" in text.replace("\r\n", "\n")


def test_hostile_title_evidence_and_names_add_no_header_and_no_recipient():
    bad = signal(title=HOSTILE, account_name="Acme\r\nCc: x@evil.example",
                 evidence=[Evidence(source="crm\r\nX-Evil: 1", record=HOSTILE, occurred_at=NOW)],
                 playbook=[HOSTILE, "\x00\x1b[31m", "line\u2028sep"])
    out = alerts.risk_email(bad, "milestones.test", None, NOW)
    msg = wire(out)
    assert out.recipients == ["sam.rivera@vendor.example"]
    assert msg["Bcc"] is None and msg["Cc"] is None and msg["X-Evil"] is None
    assert sorted(k.lower() for k in msg.keys()) == sorted(
        ["subject", "from", "to", "message-id", "date", "mime-version", "content-type", "content-transfer-encoding"])
    assert "\n" not in msg["Subject"] and "Bcc: evil@attacker.example" in msg["Subject"]  # shown, as text
    assert [a.addr_spec for a in msg["To"].addresses] == ["sam.rivera@vendor.example"]
    body = msg.get_body(("plain",)).get_content()
    assert "\nBcc:" not in body and "\x1b" not in body and "\x00" not in body
    assert "<boss@evil.example>" in body  # plain text: shown as written, nothing to interpret


@pytest.mark.parametrize("csm", ["Sam <sam@vendor.example>", "a@b.example, c@d.example",
                                 "sam@vendor.example\r\nBcc: x@y", "not an address"])
def test_a_csm_email_that_is_not_one_plain_address_is_refused(csm):
    with pytest.raises(mail.InvalidAddress):
        alerts.risk_email(signal(csm_email=csm), "milestones.test", None, NOW)


def shown(blocks) -> str:
    out = []
    for b in blocks:
        if "text" in b:
            out.append(b["text"]["text"])
        out += [e["text"] for e in b.get("elements", []) if "text" in e]
    return "\n".join(out)


def test_the_slack_alert_escapes_and_bounds_hostile_values():
    text, blocks = alerts.risk_slack(signal(title=HOSTILE + "<" * 4000, account_name="<@U123|boss> & co",
                                            evidence=[Evidence(source="<!here>", record="*b* _i_ ~s~",
                                                               occurred_at=NOW)] * 30,
                                            playbook=["<https://evil.example|click>", "&amp;"] * 20))
    everything = shown(blocks) + text
    for raw in ("<!channel>", "<!here>", "<@U123", "<https://evil", "<boss@evil.example>", "\r"):
        assert raw not in everything, raw
    assert "&lt;!channel&gt;" in everything and "&lt;@U123|boss&gt; &amp; co" in everything
    assert "&amp;amp;" in everything  # an entity in data is data
    assert "\u200b*\u200bb\u200b*\u200b" in everything  # formatting marks fenced
    assert all(len(b["text"]["text"]) <= slack.SECTION_MAX for b in blocks if "text" in b)
    assert len(text) <= slack.FALLBACK_MAX and all(b.get("text", {}).get("verbatim", True) for b in blocks)
    assert everything.count("• ") == alerts.ITEMS_MAX  # evidence listed up to the bound


def test_the_slack_alert_lists_evidence_and_playbook():
    _, blocks = alerts.risk_slack(signal())
    body = shown(blocks)
    assert "*Risk alert* (orange) — Acme Corp: Logins down 42% against the previous 14 days" in body
    assert "• platform.logins: daily logins 2026-05-31 (2026-06-01 12:00 UTC)" in body
    assert "1. Call the champion within 48 hours" in body and "2. Review the adoption plan" in body
