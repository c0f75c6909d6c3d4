"""The anniversary sequence on the real broker, driven by the injected clock (MILESTONES_NOW): a worker
per point in time, each restoring the `sequences` table from its changelog. Step 1 is drafted with
the anniversary; step 2 a week later (skipped when the CRM has a QBR this year); step 3 two weeks later
(renewal preparation or an advocacy invitation); a declined step 1, a churned account (CRM status) and
an account at risk (an orange signal on `risks`) have the rest cancelled with the reason. Under "this and
the follow-ups" the later steps are sent at their times, once each, across worker SIGKILLs: the real
SMTP server counts the emails. (The run after a SIGKILL waits for the broker to drop the killed
member's session before the group rebalances: up to a minute of the test's time.)"""
from datetime import UTC, datetime, timedelta

import aiohttp

from milestone_stream.agents.drafter import sequence as sq
from milestone_stream.ids import milestone_id
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.schemas.records import (
    ApprovalDecision,
    ApprovalRequest,
    Contact,
    CrmChange,
    Evidence,
    FieldChange,
    Milestone,
    RiskSignal,
)
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, publish, table_rows
from support.stack import ApprovalStack, SmtpServer, csrf_in, dead_letters, outcomes

T0 = datetime.now(UTC).replace(microsecond=0)
CSM = "sam.rivera@vendor.example"
ACCOUNTS = ("plain", "qbr", "decl", "churn", "risky")
LINK = "https://reviews.example/acme"
RULES = f"""cooldown_days: 0
drafting:
  advocacy_link: {LINK}
anniversary_sequence:
  capabilities:
    - name: Journeys
      summary: Automate the onboarding of every new team.
      use_cases: [onboarding]
"""


def profile(account: str, **extra) -> CrmChange:
    values = {"name": f"Acme {account}", "industry": "retail", "csm_email": CSM, "csm_name": "Samantha Rivera",
              "top_use_case": "onboarding", "contract_start": (T0 - timedelta(days=365)).date().isoformat(), **extra}
    return CrmChange(change_id=f"profile-{account}", account_id=account, source="salesforce",
                     source_record=f"001{account.upper()}", occurred_at=T0 - timedelta(days=1),
                     changes=[FieldChange(field=k, value=v) for k, v in values.items()],
                     contacts=[Contact(name="Jane Doe", email=f"jane@{account}.example", role="executive_sponsor")])


def anniversary(account: str) -> Milestone:
    return Milestone(milestone_id=milestone_id(account, "anniversary", None, 1), account_id=account,
                     kind="anniversary", threshold=1, value=1, title="1 year as a customer", reached_at=T0,
                     evidence=[Evidence(source="salesforce", record="contract_start", occurred_at=T0)])


async def requests_on(bootstrap, topics) -> list[ApprovalRequest]:
    return [ApprovalRequest.from_avro(r.value)
            for r in await read_topic(bootstrap, topics.approval_requests, idle_ms=300)]


async def requests_for(bootstrap, topics, n: int) -> dict[str, ApprovalRequest]:
    async def enough():
        found = {r.approval_id: r for r in await requests_on(bootstrap, topics)}
        return found if len(found) >= n else None
    return await wait_for(enough, 60, what=f"{n} approval requests")


def step_of(account: str, n: str) -> str:
    return sq.step_id(anniversary(account).milestone_id, n)


async def sequences(bootstrap, topics) -> dict:
    return await table_rows(bootstrap, topics.prefix, "sequences")


def worker(kafka_bootstrap, topics, tmp_path, name: str, at: datetime) -> Worker:
    return Worker(kafka_bootstrap, topics.prefix, tmp_path, name, MILESTONES_GATHER_SECONDS="0.3",
                  MILESTONES_DRAFTER_INTERVAL="0.2", MILESTONES_NOW=at.isoformat(),
                  MILESTONES_RULES=str(tmp_path / "rules.yaml")).start()


async def test_steps_drafted_at_their_times_qbr_suppresses_renewal_or_advocacy_decline_cancels(
        kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    (tmp_path / "rules.yaml").write_text(RULES)
    renewal = (T0 + timedelta(days=14 + 60)).date().isoformat()
    await publish(kafka_bootstrap, topics.crm, [
        profile("plain", renewal_date=renewal),
        profile("qbr", qbr_completed_at=(T0 - timedelta(days=90)).date().isoformat()),
        profile("decl"), profile("churn"), profile("risky")])
    w = worker(kafka_bootstrap, topics, tmp_path, "t0", T0)
    try:
        await wait_for(lambda: _has(table_rows(kafka_bootstrap, topics.prefix, "profiles"), 5), 60,
                       what="the profiles")
        await publish(kafka_bootstrap, topics.milestones, [anniversary(a) for a in ACCOUNTS])
        step1 = {r.account_id: r for r in (await requests_for(kafka_bootstrap, topics, 5)).values()}
        note = next(n for n in step1["plain"].policy_notes if n.startswith("anniversary sequence: step 1 of 3"))
        assert f"planned for {(T0 + timedelta(days=7)):%Y-%m-%d}" in note
        await publish_decisions(kafka_bootstrap, topics, [_decision(step1["decl"], "dont_send"),
                                                          _decision(step1["plain"], "send")])

        async def declined():
            row = (await sequences(kafka_bootstrap, topics)).get("decl") or {}
            steps = [p for s in row.get("q", {}).values() for p in s["p"].values()]
            return steps if steps and all(p["s"] == "cancelled" for p in steps) else None
        for p in await wait_for(declined, 60, what="the declined account's later steps to be cancelled"):
            assert p["w"] == "the CSM declined step 1 (the anniversary note)"
        # hostile records on the sequence's internal topic are dead letters, and the sequence goes on
        async with producer(kafka_bootstrap) as prod:
            for value in (b"S{not json", b"Xwhat", b"D\x00\x01garbage"):
                await prod.send_and_wait(topics.sequence, key=b"plain", value=value)

        async def parked():
            found = {d.reason for d in await dead_letters(kafka_bootstrap, topics) if d.stage == "sequence"}
            return found if len(found) >= 3 else None
        assert await wait_for(parked, 60, what="three dead letters") >= {"malformed_start", "unknown_record"}
    finally:
        assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
    assert len(await requests_on(kafka_bootstrap, topics)) == 5, "a later step was drafted on day 0"
    # during the week one account churns (CRM status) and another turns at risk (an orange signal)
    await publish(kafka_bootstrap, topics.crm, [CrmChange(
        change_id="churned", account_id="churn", source="salesforce", occurred_at=T0 + timedelta(days=3),
        changes=[FieldChange(field="status", value="Churned")])])
    await publish(kafka_bootstrap, topics.risks, [RiskSignal(
        signal_id="sig-1", account_id="risky", kind="usage_drop", level="orange", state="open",
        title="Logins down 42%", opened_at=T0 + timedelta(days=3), at=T0 + timedelta(days=3))])

    # a week later (step 2 is drafted a day before it is due): the forward-looking note, except after a QBR
    w = worker(kafka_bootstrap, topics, tmp_path, "t6", T0 + timedelta(days=6, hours=1))
    try:
        found = await requests_for(kafka_bootstrap, topics, 6)
        two = found[step_of("plain", "2")]
        assert "Journeys: Automate the onboarding of every new team." in two.body_text
        assert two.milestone_ids == [anniversary("plain").milestone_id] and two.recipients[0].name == "Jane Doe"
        assert any("step 2 of 3, a forward-looking note" in n for n in two.policy_notes)

        async def qbr_skipped():
            row = (await sequences(kafka_bootstrap, topics)).get("qbr") or {}
            return [s["p"]["2"] for s in row.get("q", {}).values() if s["p"]["2"]["s"] == "skipped"]
        [skipped] = await wait_for(qbr_skipped, 60, what="step 2 of the QBR account to be skipped")
        assert "QBR was completed on" in skipped["w"]

        async def cancelled(account):
            row = (await sequences(kafka_bootstrap, topics)).get(account) or {}
            steps = [p for s in row.get("q", {}).values() for p in s["p"].values()]
            return [p["w"] for p in steps] if steps and all(p["s"] == "cancelled" for p in steps) else None
        assert set(await wait_for(lambda: cancelled("churn"), 60, what="the churned account's steps cancelled")) \
            == {"the account churned (CRM status 'churned')"}
        assert set(await wait_for(lambda: cancelled("risky"), 60, what="the risky account's steps cancelled")) \
            == {"the account is at risk (open risk signal 'Logins down 42%' (orange))"}
    finally:
        assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
    assert step_of("qbr", "2") not in {r.approval_id for r in await requests_on(kafka_bootstrap, topics)}

    # two weeks later: renewal preparation (renewal within 90 days) or the advocacy invitation with the link
    w = worker(kafka_bootstrap, topics, tmp_path, "t13", T0 + timedelta(days=13, hours=1))
    try:
        found = await requests_for(kafka_bootstrap, topics, 8)
    finally:
        assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
    renewal_note, advocacy = found[step_of("plain", "3")], found[step_of("qbr", "3")]
    assert "Your renewal comes up in" in renewal_note.body_text and LINK not in renewal_note.body_text
    assert LINK in advocacy.body_text and f'href="{LINK}"' in advocacy.body_html
    assert any("was not drafted: suppressed: the CRM says a QBR" in n for n in advocacy.policy_notes)
    ids = [r.approval_id for r in await requests_on(kafka_bootstrap, topics)]
    assert len(ids) == len(set(ids)) == 8, "a step was drafted twice, or a cancelled one drafted"
    assert not {step_of(a, n) for a in ("decl", "churn", "risky") for n in ("2", "3")} & set(ids)


async def test_this_and_the_follow_ups_sends_each_step_once_at_its_time_across_sigkills(
        kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    (tmp_path / "rules.yaml").write_text(RULES)
    await publish(kafka_bootstrap, topics.crm, [profile("all")])
    smtp = SmtpServer().start()
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port) as stack:
            w = worker(kafka_bootstrap, topics, tmp_path, "t0", T0)
            try:
                await wait_for(lambda: _has(table_rows(kafka_bootstrap, topics.prefix, "profiles"), 1), 60,
                               what="the profile")
                await publish(kafka_bootstrap, topics.milestones, [anniversary("all")])
                [step1] = (await requests_for(kafka_bootstrap, topics, 1)).values()
                await stack.view.caught_up()
                # the CSM approves step 1 "and the follow-ups" on the request page (the web form)
                async with aiohttp.ClientSession(cookies={"ms_session": stack.signer.session(CSM)}) as browser:
                    async with browser.get(f"{stack.url}/r/{step1.approval_id}") as page:
                        html = await page.text()
                        assert "Send this and the follow-ups" in html
                    async with browser.post(f"{stack.url}/r/{step1.approval_id}/decide",
                                            data={"csrf": csrf_in(html), "action": "send",
                                                  "follow_ups": "1"}) as done:
                        assert done.status == 200
                await wait_for(lambda: len(smtp.mailbox.customer_emails()) == 1, 60, what="step 1's email")

                async def standing():
                    row = (await sequences(kafka_bootstrap, topics)).get("all") or {}
                    return [s for s in row.get("q", {}).values() if s.get("f")]
                [seq] = await wait_for(standing, 60, what="the standing approval to be recorded")
                assert seq["f"]["by"] == CSM
            finally:
                assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
            # past step 2's time: drafted, then sent on the CSM's behalf; SIGKILLed as soon as it is drafted
            # (the restarted worker rejoins the group once the broker drops the killed member's session)
            w = worker(kafka_bootstrap, topics, tmp_path, "t7", T0 + timedelta(days=7, hours=1))
            try:
                await requests_for(kafka_bootstrap, topics, 2)
            finally:
                w.kill()
            w = worker(kafka_bootstrap, topics, tmp_path, "t7b", T0 + timedelta(days=7, hours=2))
            try:
                await wait_for(lambda: len(smtp.mailbox.customer_emails()) >= 2, 150, what="step 2's email")
            finally:
                assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
            # 150 s as for step 2: when step 2's email came before t7b joined the group, it is this worker
            # that waits for the broker to drop the killed member (Faust's session timeout is 60 s)
            w = worker(kafka_bootstrap, topics, tmp_path, "t14", T0 + timedelta(days=14, hours=1))
            try:
                await wait_for(lambda: len(smtp.mailbox.customer_emails()) >= 3, 150, what="step 3's email")
                notified = await wait_for(lambda: [m for m in smtp.mailbox.notifications()
                                                   if step_of("all", "3") in m["Message-ID"]], 60,
                                          what="the CSM's notification of step 3")
                body = notified[0].get_body(("plain",)).get_content()
                assert "unless you choose Don't send before then" in body and "will be sent on" in body
            finally:
                assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
    finally:
        smtp.stop()
    ids = sorted(m["Message-ID"] for m in smtp.mailbox.customer_emails())
    assert len(ids) == len(set(ids)) == 3, ids
    sent = sorted(o.approval_id for o in await outcomes(kafka_bootstrap, topics) if o.outcome == "sent")
    assert sent == sorted([step1.approval_id, step_of("all", "2"), step_of("all", "3")])
    reasons = {d.approval_id: d.reason for d in
               [ApprovalDecision.from_avro(r.value)
                for r in await read_topic(kafka_bootstrap, topics.approval_decisions, idle_ms=300)]}
    assert reasons[step_of("all", "3")] == f"approved with the follow-ups on {T0:%Y-%m-%d} by {CSM}"


def _decision(r: ApprovalRequest, what: str) -> ApprovalDecision:
    return ApprovalDecision(approval_id=r.approval_id, decision=what, csm_email=r.csm_email, account_id=r.account_id,
                            subject=r.subject, body_text=r.body_text, body_html=r.body_html,
                            recipients=list(r.recipients), decided_at=T0)


async def publish_decisions(bootstrap, topics, decisions) -> None:
    """As the UI publishes them: keyed by approval id (the sequence's router re-keys them by account)."""
    async with producer(bootstrap) as prod:
        for d in decisions:
            await prod.send_and_wait(topics.approval_decisions, key=d.approval_id.encode(), value=d.to_avro())


async def _has(rows, n: int):
    return len(await rows) >= n


async def test_a_step_stopped_by_the_csm_before_its_time_is_not_sent_the_next_one_is(kafka_bootstrap, topics,
                                                                                      tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    (tmp_path / "rules.yaml").write_text(RULES)
    await publish(kafka_bootstrap, topics.crm, [profile("stop")])
    smtp = SmtpServer().start()
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port):
            w = worker(kafka_bootstrap, topics, tmp_path, "t0", T0)
            try:
                await wait_for(lambda: _has(table_rows(kafka_bootstrap, topics.prefix, "profiles"), 1), 60,
                               what="the profile")
                await publish(kafka_bootstrap, topics.milestones, [anniversary("stop")])
                [step1] = (await requests_for(kafka_bootstrap, topics, 1)).values()
                await publish_decisions(kafka_bootstrap, topics, [_decision(step1, "send").model_copy(
                    update={"follow_ups": True})])
                await wait_for(lambda: len(smtp.mailbox.customer_emails()) == 1, 60, what="step 1's email")
            finally:
                assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
            # a day before step 2 is due: drafted and shown, saying when it will go; the CSM stops it
            w = worker(kafka_bootstrap, topics, tmp_path, "t6", T0 + timedelta(days=6, hours=1))
            try:
                two = (await requests_for(kafka_bootstrap, topics, 2))[step_of("stop", "2")]
                assert any("will be sent on" in n for n in two.policy_notes)
                await publish_decisions(kafka_bootstrap, topics, [_decision(two, "dont_send")])

                async def stopped():
                    row = (await sequences(kafka_bootstrap, topics)).get("stop") or {}
                    return [s for s in row.get("q", {}).values() if s["p"]["2"]["s"] == "declined"]
                await wait_for(stopped, 60, what="step 2 to be recorded as stopped")
            finally:
                assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
            # past both steps' times: step 3 goes on the standing approval, step 2 never
            w = worker(kafka_bootstrap, topics, tmp_path, "t14", T0 + timedelta(days=14, hours=1))
            try:
                await wait_for(lambda: len(smtp.mailbox.customer_emails()) >= 2, 60, what="step 3's email")
            finally:
                assert w.stop() == 0, f"worker did not stop cleanly; log: {w.log}"
    finally:
        smtp.stop()
    sent = sorted(o.approval_id for o in await outcomes(kafka_bootstrap, topics) if o.outcome == "sent")
    assert sent == sorted([step1.approval_id, step_of("stop", "3")])
    assert len(smtp.mailbox.customer_emails()) == 2
    # the worker published no send for the stopped step (not merely lost to the CSM's earlier decision)
    decided = [ApprovalDecision.from_avro(r.value)
               for r in await read_topic(kafka_bootstrap, topics.approval_decisions, idle_ms=300)]
    assert [d.decision for d in decided if d.approval_id == step_of("stop", "2")] == ["dont_send"]
    assert [d.decision for d in decided if d.approval_id == step_of("stop", "3")] == ["send"]
