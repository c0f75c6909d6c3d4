"""Risk signals on the real broker: what an episode on `risks` does. A milestone of an account with an
open orange signal is held (no request drafted; the drafter's row names the signal) and released
once, merged, when the signal clears; the CSM is alerted once per episode even when the opening is
delivered twice, and a sender killed mid-alert never alerts twice; the request page shows the
account's health. Records are published to `risks` directly, as the signals agent would."""
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from milestone_stream.ids import milestone_id
from milestone_stream.kafka_io import read_topic, wait_for
from milestone_stream.schemas.records import (
    ApprovalRequest,
    Contact,
    CrmChange,
    Evidence,
    FieldChange,
    Milestone,
    RiskSignal,
)
from milestone_stream.sinks.approvals.risks import RiskBoard
from milestone_stream.topics import ensure_topics

from support import slack_api
from support.helpers import Worker, publish, table_rows
from support.stack import DOMAIN, SECRET, ApprovalStack, SmtpServer, dead_letters, outcomes, until_outcome

NOW = datetime.now(UTC).replace(microsecond=0)
CSM = "sam.rivera@vendor.example"
JANE = Contact(name="Jane Doe", email="jane@acme.example", role="executive_sponsor")
TITLE = "Logins down 42% against the previous 14 days"


def profile(account: str) -> CrmChange:
    values = {"name": "Acme Corp", "industry": "retail", "csm_email": CSM, "csm_name": "Samantha Rivera",
              "nps": 30, "roi_percent": 140, "adoption.reports": True}
    return CrmChange(change_id=f"profile-{account}", account_id=account, source="salesforce",
                     source_record=f"001{account.upper()}", occurred_at=NOW - timedelta(days=1),
                     changes=[FieldChange(field=k, value=v) for k, v in values.items()], contacts=[JANE])


def milestone(account: str, tier: int) -> Milestone:
    return Milestone(milestone_id=milestone_id(account, "usage_threshold", "emails_sent", tier), account_id=account,
                     kind="usage_threshold", metric="emails_sent", threshold=tier, value=tier + 10.0,
                     title=f"{tier:,} emails sent", reached_at=NOW,
                     evidence=[Evidence(source="platform.mailer", record="event e-9", occurred_at=NOW)])


def risk(account: str, sid: str, state: str = "open", level: str = "orange", title: str = TITLE,
         csm: str | None = CSM) -> RiskSignal:
    return RiskSignal(signal_id=sid, account_id=account, kind="usage_drop", level=level, state=state, title=title,
                      opened_at=NOW - timedelta(hours=2), at=NOW - timedelta(hours=2) if state == "open" else NOW,
                      evidence=[Evidence(source="platform.logins", record="daily logins, last 14 days",
                                         occurred_at=NOW - timedelta(hours=2))],
                      playbook=["Call the champion within 48 hours", "Review the adoption plan together"],
                      csm_email=csm, account_name="Acme Corp")


async def requests_on(bootstrap, topics) -> list[ApprovalRequest]:
    return [ApprovalRequest.from_avro(r.value)
            for r in await read_topic(bootstrap, topics.approval_requests, idle_ms=500)]


def alerts(smtp) -> list:
    return [m for m in smtp.mailbox.received if m["Message-ID"].startswith("<risk.")]


@pytest.fixture
async def created(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    return topics


async def test_held_while_an_orange_signal_is_open_released_once_when_it_clears_one_alert_health_shown(
        kafka_bootstrap, created, tmp_path):
    topics = created
    rules = tmp_path / "rules.yaml"  # no cooldown: the note after the release is drafted at once
    rules.write_text("cooldown_days: 0\nrisk:\n  gate_level: orange\n")
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_GATHER_SECONDS="0.3",
                    MILESTONES_DRAFTER_INTERVAL="0.2", MILESTONES_NOW=NOW.isoformat(),
                    MILESTONES_RULES=str(rules)).start()
    smtp = SmtpServer().start()
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port) as stack:
            await publish(kafka_bootstrap, topics.crm, [profile("acme")])
            await wait_for(lambda: table_rows(kafka_bootstrap, topics.prefix, "profiles"), 60,
                           what="the profile to be recorded")
            await publish(kafka_bootstrap, topics.risks, [risk("acme", "sig-1"), risk("acme", "sig-1")])  # twice
            await wait_for(lambda: table_rows(kafka_bootstrap, topics.prefix, "gates"), 60,
                           what="the gate to be recorded")
            await publish(kafka_bootstrap, topics.milestones, [milestone("acme", 10000)])

            async def gated():
                row = (await table_rows(kafka_bootstrap, topics.prefix, "celebrations")).get("acme") or {}
                return row.get("g")
            [held] = await wait_for(gated, 60, what="the drafter to hold the milestone on the gate")
            assert held["s"] == "sig-1" and TITLE in held["n"] and "platform.logins" in held["n"]
            assert await requests_on(kafka_bootstrap, topics) == [], "drafted while an orange signal was open"

            await wait_for(lambda: alerts(smtp), 60, what="the CSM's risk alert")
            await publish(kafka_bootstrap, topics.milestones, [milestone("acme", 50000)])  # merged, still held
            await publish(kafka_bootstrap, topics.risks, [risk("acme", "sig-1", state="cleared")])
            [request] = await wait_for(lambda: requests_on(kafka_bootstrap, topics), 90, what="the released request")
            mine = {milestone("acme", t).milestone_id for t in (10000, 50000)}
            assert mine <= set(request.milestone_ids), "the milestones held were not merged into one note"
            [gate_note] = [n for n in request.policy_notes if n.startswith("risk gate:")]
            assert f"'{TITLE}'" in gate_note and "cleared " + NOW.isoformat()[:16] in gate_note
            assert request.risk_signals == []  # cleared when drafted
            assert request.health is not None and request.health.band in ("green", "yellow", "red")
            assert {c.name for c in request.health.components if c.score is not None} == {
                "product_usage", "relationship", "outcomes"}  # no product events: engagement has no input
            assert "health" not in (request.body_text + request.body_html + request.subject).lower()

            # a repeated clearing, then a yellow signal (below the gate) and a new milestone: drafted at once,
            # listing the yellow signal; the first request is not drafted again
            await publish(kafka_bootstrap, topics.risks, [risk("acme", "sig-1", state="cleared"),
                                                          risk("acme", "sig-2", level="yellow",
                                                               title="No new users in 30 days")])
            await wait_for(lambda: len(alerts(smtp)) == 2, 60, what="the yellow signal's alert")

            async def yellow_recorded():
                row = (await table_rows(kafka_bootstrap, topics.prefix, "gates")).get("acme") or {}
                return "sig-2" in (row.get("o") or {})
            await wait_for(yellow_recorded, 60, what="the gates agent to record the yellow signal")
            await publish(kafka_bootstrap, topics.milestones, [milestone("acme", 100000)])
            both = await wait_for(lambda: _two(requests_on(kafka_bootstrap, topics)), 120,
                                  what="the second request")
            assert [r.approval_id for r in both].count(request.approval_id) == 1, "released twice"
            assert both[1].risk_signals == ["No new users in 30 days"]
            assert not any(n.startswith("risk gate:") for n in both[1].policy_notes)

            board = RiskBoard(kafka_bootstrap, topics, stack.ui)  # the UI's /risks page, following `risks`
            await board.start()
            try:
                await board.caught_up()
                [(name, [open_signal])] = board.open_for(CSM)
                assert name == "Acme Corp" and open_signal.title == "No new users in 30 days"
            finally:
                await board.stop()
            await stack.view.caught_up()
            async with aiohttp.ClientSession(cookies={"ms_session": stack.signer.session(CSM)}) as browser:
                async with browser.get(f"{stack.url}/r/{request.approval_id}") as page:
                    assert page.status == 200
                    html = await page.text()
            assert f"Account health: {request.health.score:.0f}/100" in html and "relationship" in html
            assert "CRM nps 30" in html and "risk gate: held from" in html

            [alert] = [m for m in alerts(smtp) if "sig-1" in m["Message-ID"]]
            assert alert["To"] == CSM and alert["Subject"] == f"Risk alert: Acme Corp: {TITLE}"
            body = alert.get_body(("plain",)).get_content()
            assert "platform.logins: daily logins, last 14 days" in body
            assert "1. Call the champion within 48 hours" in body
        trail = [o.outcome for o in await outcomes(kafka_bootstrap, topics, "risk_alert") if o.approval_id == "sig-1"]
        assert trail == ["attempting", "sent"], "the opening delivered twice alerted twice"
    finally:
        smtp.stop()
        assert worker.stop() == 0, f"worker did not exit cleanly; log: {worker.log}"


async def _two(found):
    found = await found
    return found if len(found) >= 2 else None


async def test_an_alert_is_sent_once_across_a_restart_and_never_twice_after_a_sigkill(kafka_bootstrap, created,
                                                                                        tmp_path):
    topics = created
    smtp = SmtpServer().start()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MILESTONES_TOPIC_PREFIX": topics.prefix,
           "MILESTONES_APP_ID": f"{topics.prefix}app", "MILESTONES_SECRET": SECRET,
           "MILESTONES_SMTP_PORT": str(smtp.port), "MILESTONES_MESSAGE_ID_DOMAIN": DOMAIN}
    log = open(tmp_path / "sender.log", "ab")

    def start_sender(group: str):
        return subprocess.Popen([sys.executable, "-m", "milestone_stream.cli", "sender"],
                                env={**env, "MILESTONES_APP_ID": f"{topics.prefix}{group}"}, stdout=log,
                                stderr=subprocess.STDOUT)

    sender = start_sender("a")
    try:
        await publish(kafka_bootstrap, topics.risks, [risk("acme", "sig-ok"), risk("acme", "sig-ok")])
        await until_outcome(kafka_bootstrap, topics, "sig-ok", "sent", purpose="risk_alert")
        # a sender of another group reads `risks` from the start: the outcomes say it was alerted
        sender.send_signal(signal.SIGTERM)
        assert sender.wait(30) == 0
        smtp.mailbox.release.clear()  # hold the DATA reply: the next sender is killed while SMTP has the alert
        smtp.mailbox.in_data.clear()
        sender = start_sender("b")
        await publish(kafka_bootstrap, topics.risks, [risk("acme", "sig-kill")])
        await wait_for(lambda: len(alerts(smtp)) == 2, 60, what="the sender to hand the second alert to SMTP")
        sender.send_signal(signal.SIGKILL)
        sender.wait(10)
        smtp.mailbox.release.set()
        sender = start_sender("b")
        await until_outcome(kafka_bootstrap, topics, "sig-kill", "unknown", purpose="risk_alert")
        await publish(kafka_bootstrap, topics.risks, [risk("acme", "sig-nobody", csm=None)])

        async def parked():
            return [d for d in await dead_letters(kafka_bootstrap, topics) if d.reason == "no_csm_owner"]
        [letter] = await wait_for(parked, 60, what="the alert without a CSM to be dead-lettered")
        assert "sig-nobody" in letter.error and letter.topic == topics.risks
    finally:
        smtp.mailbox.release.set()
        if sender.poll() is None:
            sender.send_signal(signal.SIGTERM)
            assert sender.wait(30) == 0, f"sender did not stop cleanly; log: {tmp_path / 'sender.log'}"
        smtp.stop()
    assert sorted(m["Message-ID"] for m in alerts(smtp)) == [f"<risk.sig-kill@{DOMAIN}>", f"<risk.sig-ok@{DOMAIN}>"]
    trails = {}
    for o in await outcomes(kafka_bootstrap, topics, "risk_alert"):
        trails.setdefault(o.approval_id, []).append(o.outcome)
    assert trails == {"sig-ok": ["attempting", "sent"], "sig-kill": ["attempting", "unknown"]}, trails


async def test_the_slack_alert_is_posted_once_per_episode_with_escaped_text(kafka_bootstrap, created):
    topics = created
    api = await slack_api.SlackApi({"U0SAM": CSM}).start()
    smtp = SmtpServer().start()
    hostile = "<!channel> Logins *down* 42% <https://evil.example|click>\r\nnext"
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port, slack_url=api.url):
            await publish(kafka_bootstrap, topics.risks, [risk("acme", "sig-s", title=hostile)] * 2)
            await until_outcome(kafka_bootstrap, topics, "sig-s", "sent", purpose="risk_alert_slack")
            await until_outcome(kafka_bootstrap, topics, "sig-s", "sent", purpose="risk_alert")
    finally:
        await api.stop()
        smtp.stop()
    [post] = api.posted()
    assert post["channel"] == "D0SAM"
    shown = post["text"] + str(post["blocks"])
    assert "<!channel>" not in shown and "<https://evil" not in shown and "\r" not in shown
    assert "&lt;!channel&gt;" in shown and "Call the champion within 48 hours" in shown
    trail = [o.outcome for o in await outcomes(kafka_bootstrap, topics, "risk_alert_slack")]
    assert trail == ["attempting", "sent"]


async def test_an_episode_opened_before_the_crm_named_a_csm_alerts_that_csm_once_named(kafka_bootstrap, created,
                                                                                      tmp_path):
    """The signals agent's opening has no owner: the sender dead-letters it (nobody to alert). When a CRM
    change names the CSM, the agent announces the open episode again with the owner, and the CSM gets
    the one alert for it."""
    topics = created
    rules = tmp_path / "rules.yaml"
    rules.write_text("signals: {usage_drop: null, ticket_surge: null, no_new_users: null}\n")  # the CRM's only
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_NOW=NOW.isoformat(),
                    MILESTONES_RULES=str(rules)).start()
    smtp = SmtpServer().start()

    def change(n: int, *fields: tuple[str, object]) -> CrmChange:
        return CrmChange(change_id=f"owner-{n}", account_id="acme", source="salesforce", source_record="001ACME",
                         occurred_at=NOW - timedelta(hours=3 - n),
                         changes=[FieldChange(field=f, value=v) for f, v in fields])
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port):
            await publish(kafka_bootstrap, topics.crm, [change(1, ("name", "Acme Corp"), ("invoice_overdue", True))])

            async def parked():
                return [d for d in await dead_letters(kafka_bootstrap, topics) if d.reason == "no_csm_owner"]
            await wait_for(parked, 60, what="the ownerless opening to be dead-lettered by the sender")
            assert alerts(smtp) == []
            await publish(kafka_bootstrap, topics.crm, [change(2, ("csm_email", CSM))])
            [alert] = await wait_for(lambda: alerts(smtp), 60, what="the alert to the CSM named later")
            opened = [RiskSignal.from_avro(r.value) for r in await read_topic(kafka_bootstrap, topics.risks)]
            assert [(r.state, r.csm_email) for r in opened] == [("open", None), ("open", CSM)]
            assert opened[0].signal_id == opened[1].signal_id
            assert CSM in alert["To"] and alert["Message-ID"] == f"<risk.{opened[0].signal_id}@{DOMAIN}>"
            await until_outcome(kafka_bootstrap, topics, opened[0].signal_id, "sent", purpose="risk_alert")
    finally:
        assert worker.stop() == 0
        smtp.stop()
    assert len(alerts(smtp)) == 1
