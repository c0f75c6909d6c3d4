"""The measurement holdout and the impact report on the real broker: a held-out account's milestone is
drafted (held_out, with the note) by a real worker and never sent — not from the UI, not from a one-tap
link, not from a forged decision written straight to approvals.decisions (the real SMTP server receives
nothing for it); `milestones impact` prints the expected table and writes the CSV; the UI page renders
the chart and the CSV download."""
import asyncio
import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from playwright.async_api import async_playwright, expect
from test_browser import CHROMIUM, FLAGS, SCREENSHOTS

from milestone_stream.agents.drafter.holdout import Holdout, assign, bucket, parse_note
from milestone_stream.dev.kafka_local import free_port
from milestone_stream.ids import milestone_id
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.schemas.records import ApprovalRequest, Contact, CrmChange, FieldChange, Milestone
from milestone_stream.sinks.approvals.links import one_tap_links
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.sinks.approvals.web import CSP, ApprovalUI
from milestone_stream.sinks.impact import stats
from milestone_stream.sinks.impact.source import load
from milestone_stream.sinks.impact.web import ImpactPage
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, publish
from support.slack_api import SlackApi, block_actions, signed_headers
from support.stack import (
    SECRET,
    ApprovalStack,
    SmtpServer,
    approval_request,
    decision,
    outcomes,
    until_outcome,
)

NOW = datetime.now(UTC)
CSM = "sam.rivera@vendor.example"
SALT = "it-holdout"
JANE = Contact(name="Jane Doe", email="jane@acme.example", role="executive_sponsor")


def profile(account: str) -> CrmChange:
    values = {"name": f"Account {account}", "industry": "retail", "csm_email": CSM, "csm_name": "Sam Rivera"}
    return CrmChange(change_id=f"profile-{account}", account_id=account, source="salesforce",
                     occurred_at=NOW - timedelta(days=1), contacts=[JANE],
                     changes=[FieldChange(field=k, value=v) for k, v in values.items()])


def milestone(account: str) -> Milestone:
    return Milestone(milestone_id=milestone_id(account, "usage_threshold", "emails_sent", 10000), account_id=account,
                     kind="usage_threshold", metric="emails_sent", threshold=10000, value=10250.0,
                     title="10,000 emails sent", reached_at=NOW)


def accounts_by_arm(share: float) -> tuple[str, str]:
    """An account id that is held out and one that is celebrated under SALT at `share`."""
    ids = [f"acct-{i}" for i in range(100)]
    return (next(a for a in ids if bucket(SALT, a) < share), next(a for a in ids if bucket(SALT, a) >= share))


async def requests_on(bootstrap, topics) -> list[ApprovalRequest]:
    return [ApprovalRequest.from_avro(r.value) for r in await read_topic(bootstrap, topics.approval_requests,
                                                                           idle_ms=500)]


async def test_a_held_out_account_is_drafted_and_never_sent(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    held, celebrated = accounts_by_arm(0.5)
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"holdout: {{share: 0.5, salt: {SALT}}}\n")
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, MILESTONES_GATHER_SECONDS="0.3",
                    MILESTONES_DRAFTER_INTERVAL="0.2", MILESTONES_RULES=str(rules), ANTHROPIC_API_KEY="").start()
    smtp = SmtpServer().start()
    try:
        await publish(kafka_bootstrap, topics.crm, [profile(held), profile(celebrated)])
        await wait_for(lambda: _keys(read_topic(kafka_bootstrap, f"{topics.prefix}detector-profiles-changelog",
                                                idle_ms=300), 2), 60, what="both profiles to be recorded")
        await publish(kafka_bootstrap, topics.milestones, [milestone(held), milestone(celebrated)])
        found = await wait_for(lambda: _two(requests_on(kafka_bootstrap, topics)), 90, what="two approval requests")
        by_account = {r.account_id: r for r in found}
        out, kept = by_account[held], by_account[celebrated]
        cohort = Holdout(share=0.5, salt=SALT).cohort
        assert out.held_out and not kept.held_out
        assert parse_note(out.policy_notes) is not None and parse_note(out.policy_notes).cohort == cohort
        assert any(n.startswith("measurement: held out") and "never sent" in n for n in out.policy_notes)
        assert any(n.startswith("measurement: celebrated") for n in kept.policy_notes)

        async with ApprovalStack(kafka_bootstrap, topics, smtp.port) as stack:
            # the celebrated account's CSM is notified; nobody is for the held-out one
            await wait_for(smtp.mailbox.notifications, 60, what="the celebrated account's notification")
            session = stack.signer.session(CSM)
            async with aiohttp.ClientSession(cookies={"ms_session": session}) as browser:
                async with browser.get(f"{stack.url}/r/{out.approval_id}") as r:
                    page = await r.text()
                    assert r.status == 200 and "Held out for measurement" in page and "held out</span>" in page
                    assert "Send email" not in page
                csrf = stack.signer.csrf(session, out.approval_id)
                async with browser.post(f"{stack.url}/r/{out.approval_id}/decide",
                                        data={"csrf": csrf, "action": "send"}) as r:
                    assert r.status == 409 and "Held out for measurement" in await r.text()
            link = one_tap_links(stack.settings, stack.signer)(out)["send"]
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                async with browser.get(link) as tap:
                    text = await tap.text()
                    assert tap.status == 409 and "Held out for measurement" in text and "Confirm" not in text
            assert out.approval_id not in stack.view.decisions  # nothing was recorded by the UI

            # a forged send decision straight to the topic, and a real one for the celebrated account
            async with producer(kafka_bootstrap) as prod:
                for d in (decision(out, recipients=[JANE]), decision(kept, recipients=[JANE])):
                    await prod.send_and_wait(topics.approval_decisions, key=d.approval_id.encode(), value=d.to_avro())
            [refused] = await until_outcome(kafka_bootstrap, topics, out.approval_id, "not_sent")
            assert refused.detail.startswith("held out for measurement")
            await until_outcome(kafka_bootstrap, topics, kept.approval_id, "sent")
            await stack.view.caught_up()
            assert stack.view.status(out.approval_id) == "held out"
        assert [m["Message-ID"] for m in smtp.mailbox.customer_emails()] == [f"<{kept.approval_id}@milestones.test>"]
        assert all(out.account_id not in m.get_body(("plain",)).get_content() for m in smtp.mailbox.notifications())
        mine = [o for o in await outcomes(kafka_bootstrap, topics) if o.approval_id == out.approval_id]
        assert [o.outcome for o in mine] == ["not_sent"]  # never even attempted
        assert not [o for p in ("csm_notification",) for o in await outcomes(kafka_bootstrap, topics, p)
                    if o.approval_id == out.approval_id]
    finally:
        smtp.stop()
        assert worker.stop() == 0


async def _keys(records, n: int) -> bool:
    return len({r.key for r in await records}) >= n


async def _two(found):
    got = await found
    return got if len({r.account_id for r in got}) == 2 else None


# the report ----------------------------------------------------------------------------------------------
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
AT = datetime(2025, 3, 1, tzinfo=UTC)


def population(config: Holdout) -> tuple[list[ApprovalRequest], list[CrmChange], dict[bool, list[str]]]:
    """60 celebrated and 40 held-out accounts: renewals won 54/60 vs 24/40, NPS responses only from 10 held-out
    accounts (not enough), advocacy 12/60 vs 8/40."""
    arms: dict[bool, list[str]] = {False: [], True: []}
    requests, changes = [], []
    i = 0
    while len(arms[False]) < 60 or len(arms[True]) < 40:
        account, i = f"acct-{i}", i + 1
        arm = assign(config, account, ["usage_threshold"])
        if len(arms[arm.held_out]) >= (40 if arm.held_out else 60):
            continue
        k = len(arms[arm.held_out])
        arms[arm.held_out].append(account)
        requests.append(approval_request(i, account_id=account, held_out=arm.held_out, policy_notes=arm.notes,
                                         created_at=AT, expires_at=AT + timedelta(days=7)))
        won = k < (24 if arm.held_out else 54)
        changes += [CrmChange(change_id=f"p-{account}", account_id=account, source="salesforce",
                              occurred_at=AT - timedelta(days=30),
                              changes=[FieldChange(field="tier", value="enterprise" if k % 2 else "growth"),
                                       FieldChange(field="industry", value="retail"),
                                       FieldChange(field="contract_start", value="2023-01-15")]),
                    CrmChange(change_id=f"r-{account}", account_id=account, source="salesforce",
                              occurred_at=AT + timedelta(days=120),
                              changes=[FieldChange(field="renewal_outcome", value="won" if won else "lost"),
                                       FieldChange(field="renewal_closed_at", value="2025-06-30")])]
        if arm.held_out and k < 10 or not arm.held_out:
            changes.append(CrmChange(change_id=f"n-{account}", account_id=account, source="segment",
                                     occurred_at=AT + timedelta(days=5),
                                     changes=[FieldChange(field="nps_response_score", value=9),
                                              FieldChange(field="nps_responded_at", value="2025-03-06T10:00:00Z")]))
        if k < (8 if arm.held_out else 12):
            changes.append(CrmChange(change_id=f"a-{account}", account_id=account, source="salesforce",
                                     occurred_at=AT + timedelta(days=20),
                                     changes=[FieldChange(field="advocacy_action", value="review"),
                                              FieldChange(field="advocacy_at", value="2025-03-21")]))
    return requests, changes, arms


async def test_the_impact_command_and_page_on_a_population_in_kafka(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    config = Holdout(share=0.4, salt="report-it")
    requests, changes, _ = population(config)
    await publish(kafka_bootstrap, topics.approval_requests, requests)
    await publish(kafka_bootstrap, topics.crm, changes)
    out_csv = tmp_path / "impact.csv"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MILESTONES_TOPIC_PREFIX": topics.prefix,
           "MILESTONES_NOW": AS_OF.isoformat()}
    run = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "milestone_stream.cli", "impact",
                                                   "--csv", str(out_csv)],
                                  env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"Impact of celebrating: cohort {config.cohort}, all milestone kinds, as of 2026-06-01")
    assert lines[1] == "accounts: 60 celebrated, 40 held out"
    expected = stats.newcombe(54, 60, 24, 40)
    renewal = next(t for t in lines if t.startswith("12-month renewal rate"))
    assert "90.0% (n=60)" in renewal and "60.0% (n=40)" in renewal and "higher when celebrated" in renewal
    assert f"+30.0 pts [{100 * expected.low:+.1f}, {100 * expected.high:+.1f}]" in renewal
    nps = next(t for t in lines if t.startswith("NPS within 30 days"))
    assert "not enough data" in nps and "NPS pts [" not in nps
    advocacy = next(t for t in lines if t.startswith("Advocacy within 90 days"))
    assert "20.0% (n=60)" in advocacy and "20.0% (n=40)" in advocacy and "no clear difference" in advocacy
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    overall = {r["outcome"]: r for r in rows if r["scope"] == "overall"}
    assert overall["renewal"]["difference"] == "30.00" and overall["renewal"]["celebrated_n"] == "60"
    assert overall["nps"]["difference"] == "" and overall["nps"]["verdict"] == "not enough data"
    assert {r["stratum"] for r in rows if r["scope"] == "tier"} == {"enterprise", "growth"}

    # the UI page: chart, table and download, under the UI's CSP
    view = ApprovalView(kafka_bootstrap, topics)
    await view.start()
    port = free_port()
    signer = Signer(SECRET.encode())

    async def no_publish(decision):
        raise AssertionError("the impact page decides nothing")

    ui = ApprovalUI(view, signer, no_publish, clock=lambda: AS_OF)
    ui.routes += ImpactPage(ui, lambda cohort, kind: load(kafka_bootstrap, topics, ui.clock, cohort=cohort,
                                                          kind=kind)).routes()
    runner = web.AppRunner(ui.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(f"http://127.0.0.1:{port}/impact") as r:
                assert r.status == 401
        async with aiohttp.ClientSession(cookies={"ms_session": signer.session(CSM)}) as browser:
            async with browser.get(f"http://127.0.0.1:{port}/impact") as r:
                page = await r.text()
                assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
            assert "<svg" in page and page.count("<circle") == 4  # renewal and advocacy, naive and stratified
            assert "not enough data (n=60 vs 10" in page and "<script" not in page
            assert f"/impact.csv?cohort={config.cohort}" in page
            async with browser.get(f"http://127.0.0.1:{port}/impact.csv?cohort={config.cohort}") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
                assert "attachment" in r.headers["Content-Disposition"]
                assert (await r.text()) == out_csv.read_text()
            async with browser.get(f"http://127.0.0.1:{port}/impact?kind=<script>") as r:
                assert r.status == 400
        # in a real browser under the CSP: the chart is drawn (nothing blocked), four dots, the verdicts legible
        async with async_playwright() as p:
            chromium = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                context = await chromium.new_context(viewport={"width": 900, "height": 1200})
                await context.add_cookies([{"name": "ms_session", "value": signer.session(CSM),
                                            "url": f"http://127.0.0.1:{port}"}])
                page = await context.new_page()
                problems: list[str] = []
                page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
                await page.goto(f"http://127.0.0.1:{port}/impact")
                chart = page.locator("svg")
                await expect(chart).to_be_visible()
                box = await chart.bounding_box()
                assert box is not None and box["width"] > 600 and box["height"] > 250
                await expect(chart.locator("circle")).to_have_count(4)
                await expect(chart).to_contain_text("higher when celebrated")
                await expect(chart).to_contain_text("not enough data")
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(SCREENSHOTS / "impact.png"), full_page=True)
                assert problems == []  # no Content-Security-Policy violation, no error
            finally:
                await chromium.close()
    finally:
        await runner.cleanup()
        await view.stop()


async def test_a_forged_decision_read_before_its_held_out_request_and_a_slack_tap_send_nothing(kafka_bootstrap,
                                                                                               topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    slack = await SlackApi({"U0SAM": CSM}).start()
    smtp = SmtpServer().start()
    held = approval_request(1, csm=CSM, held_out=True, policy_notes=["measurement: held out (cohort c-000000000000; "
                                                                    "usage_threshold): never sent"])
    normal = approval_request(2, csm=CSM)
    # both on the topics before any sender runs: whichever the sender reads first, nothing is sent
    async with producer(kafka_bootstrap) as prod:
        await prod.send_and_wait(topics.approval_decisions, key=held.approval_id.encode(),
                                 value=decision(held).to_avro())
        await prod.send_and_wait(topics.approval_requests, key=held.account_id.encode(), value=held.to_avro())
        await prod.send_and_wait(topics.approval_requests, key=normal.account_id.encode(), value=normal.to_avro())
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port, slack_url=slack.url) as stack:
            [refused] = await until_outcome(kafka_bootstrap, topics, held.approval_id, "not_sent")
            assert "held out for measurement" in refused.detail
            await until_outcome(kafka_bootstrap, topics, normal.approval_id, "sent", purpose="csm_slack")
            await _sender_read_all_requests(kafka_bootstrap, topics)
            assert [p["blocks"] for p in slack.posted()] and len(slack.posted()) == 1  # the normal request's only
            await stack.view.request(held.approval_id)
            body = block_actions("U0SAM", "send", held.approval_id)
            async with aiohttp.ClientSession() as client:
                async with client.post(f"{stack.url}/slack/interactions", data=body,
                                       headers=signed_headers(body)) as r:
                    assert r.status == 409 and "held out for measurement" in (await r.json())["error"]
            decided = [r for r in await read_topic(kafka_bootstrap, topics.approval_decisions, idle_ms=500)]
            assert len(decided) == 1  # only the forged one: the tap recorded nothing
    finally:
        smtp.stop()
        await slack.stop()
    assert smtp.mailbox.customer_emails() == []
    assert [m["To"] for m in smtp.mailbox.notifications()] == [CSM]  # the normal request's notification only
    held_outcomes = [o for p in ("customer_email", "csm_notification", "csm_slack")
                     for o in await outcomes(kafka_bootstrap, topics, p) if o.approval_id == held.approval_id]
    assert [(o.purpose, o.outcome) for o in held_outcomes] == [("customer_email", "not_sent")]


async def _sender_read_all_requests(bootstrap, topics) -> None:
    """Wait until the sender's group has committed every approval request on the topic (handled them all)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topics.approval_requests, p) for p in range(3)]  # created with 3 partitions
        ends = await consumer.end_offsets(tps)

        async def done() -> bool:
            committed = await admin.list_consumer_group_offsets(f"{topics.prefix}sender")
            return all(end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items())
        await wait_for(done, 30, what="the sender to handle every request")
    finally:
        await consumer.stop()
        await admin.close()
