"""Sent emails → Gainsight CS Timeline activities, against the real broker and a local Timeline API:
one activity per email, whatever happens (duplicates, refusals, a SIGKILL mid-call, a 429 storm)."""
import asyncio
import html
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from milestone_stream.ids import stable_id
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest, Contact, DeadLetter, EmailOutcome
from milestone_stream.sinks.gainsight.outcomes import ActivityOutcome
from milestone_stream.sinks.gainsight.service import ActivityStage
from milestone_stream.sinks.gainsight.timeline import TimelineClient
from milestone_stream.topics import ensure_topics

from support.gainsight_api import ACCESS_KEY, TimelineAPI

CSM = "sam.rivera@vendor.example"
NOW = datetime.now(UTC)


def approval(n: int, **kw) -> tuple[ApprovalRequest, ApprovalDecision, EmailOutcome]:
    """An approval as the drafter, the UI and the sender leave it: request, decision `send`, outcome `sent`."""
    approval_id = stable_id("approval", f"gs-{n}")
    jane = Contact(name="Jane Doe", email="jane@acme.example", role="executive_sponsor")
    request = ApprovalRequest(
        approval_id=approval_id, milestone_ids=[f"m-{n}"], account_id=f"acct-{n}", account_name=f"Account {n}",
        csm_email=CSM, recipients=[jane], subject=f"Congratulations, Account {n}",
        body_text="Dear Jane,\n\nCongratulations on 10,000 emails sent.", body_html="<p>Dear Jane,</p>",
        citations=[], drafted_by="template", guard_verdict="passed", created_at=NOW, expires_at=NOW + timedelta(days=7),
        csm_name="Sam Rivera")
    fields = dict(approval_id=approval_id, decision="send", csm_email=CSM, account_id=request.account_id,
                  subject=request.subject, body_text=request.body_text, recipients=[jane], decided_at=NOW,
                  csm_name="Sam Rivera")
    decision = ApprovalDecision(**{**fields, **kw})
    sent = EmailOutcome(approval_id=approval_id, message_id=f"<{approval_id}.customer_email@milestones.test>",
                        outcome="sent", attempt=1, detail="250 OK", recorded_at=NOW, purpose="customer_email")
    return request, decision, sent


async def publish(bootstrap, topics, *approvals, outcomes=True):
    async with producer(bootstrap) as prod:
        for request, decision, sent in approvals:
            await prod.send_and_wait(topics.approval_requests, key=request.account_id.encode(),
                                     value=request.to_avro())
            await prod.send_and_wait(topics.approval_decisions, key=decision.approval_id.encode(),
                                     value=decision.to_avro())
            if outcomes:
                # what the sender writes around a send: attempting, then sent
                attempting = sent.model_copy(update={"outcome": "attempting", "detail": None})
                for o in (attempting, sent):
                    await prod.send_and_wait(topics.email_outcomes, key=o.approval_id.encode(), value=o.to_avro())


async def activity_outcomes(bootstrap, topics) -> list[ActivityOutcome]:
    return [ActivityOutcome.from_avro(r.value) for r in await read_topic(bootstrap, topics.activity_outcomes,
                                                                         idle_ms=300)]


async def until(bootstrap, topics, approval_id, outcome, timeout=60):
    async def seen():
        return any(o.approval_id == approval_id and o.outcome == outcome
                   for o in await activity_outcomes(bootstrap, topics))
    await wait_for(seen, timeout, interval=0.3, what=f"{approval_id} {outcome}")


@pytest.fixture
async def gainsight_topics(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    return topics


class Stage:
    """The stage in this process against the local Timeline API."""

    def __init__(self, bootstrap, topics, api: TimelineAPI, rate: float = 200, retry_seconds: float = 60):
        client = TimelineClient(api.url, ACCESS_KEY, calls_per_minute=rate, timeout=5)
        self.stage = ActivityStage(bootstrap, topics, f"{topics.prefix}gainsight", client,
                                   retry_seconds=retry_seconds, backoff=(0.2, 1.0))
        self._stop = asyncio.Event()

    async def __aenter__(self):
        self._task = asyncio.create_task(self.stage.run(self._stop))
        return self

    async def __aexit__(self, *exc):
        self._stop.set()
        await asyncio.wait_for(self._task, 30)


async def test_an_email_sent_becomes_one_timeline_activity_with_the_documented_shape(kafka_bootstrap,
                                                                                   gainsight_topics):
    api = await TimelineAPI(users={CSM}, companies={"Account 1": "1C00A"}).start()
    hostile = approval(1, subject="Congrats\r\nBcc: x@evil.example <script>alert(1)</script>",
                       body_text="Dear Jane,\n\n<b>10,000</b> emails & counting.\u2028Bye")
    try:
        async with Stage(kafka_bootstrap, gainsight_topics, api):
            await publish(kafka_bootstrap, gainsight_topics, hostile)
            await until(kafka_bootstrap, gainsight_topics, hostile[0].approval_id, "sent")
            # the sender's outcome delivered again (a replay): still one activity, no second call
            await publish(kafka_bootstrap, gainsight_topics, hostile)
            again = approval(1)[2].model_copy(update={"detail": "a replayed copy"})
            async with producer(kafka_bootstrap) as prod:
                await prod.send_and_wait(gainsight_topics.email_outcomes, key=again.approval_id.encode(),
                                         value=again.to_avro())
            # a marker after the copies: once it is recorded, the copies were read before it
            marker = approval(2)
            api.companies["Account 2"] = "1C00B"
            await publish(kafka_bootstrap, gainsight_topics, marker)
            await until(kafka_bootstrap, gainsight_topics, marker[0].approval_id, "sent")
    finally:
        await api.stop()
    approval_id = hostile[0].approval_id
    assert api.posts_for(approval_id) == 1 and len(api.activities) == 2
    call = next(r for r in api.requests if r["body"]["records"][0]["ExternalId"] == approval_id)
    assert call["headers"]["accesskey"] == ACCESS_KEY
    record = call["body"]["records"][0]
    assert (record["ContextName"], record["TypeName"], record["Author"], record["companyName"]) == \
        ("Company", "Email", CSM, "Account 1")
    assert record["Subject"] == "Congrats Bcc: x@evil.example <script>alert(1)</script>"  # one line, text
    assert "\r" not in record["Subject"] and "\n" not in record["Subject"]
    assert "<b>" not in record["Notes"] and html.escape("<b>10,000</b> emails & counting.") in record["Notes"]
    assert "Jane Doe &lt;jane@acme.example&gt;" in record["Notes"] and "\u2028" not in record["Notes"]
    assert datetime.fromisoformat(record["ActivityDate"]) == NOW.replace(microsecond=NOW.microsecond // 1000 * 1000)
    assert call["body"]["lookups"]["AuthorId"]["fields"] == {"Author": "Email"}
    assert call["body"]["lookups"]["GsCompanyId"]["fields"] == {"companyName": "Name"}
    trail = [o.outcome for o in await activity_outcomes(kafka_bootstrap, gainsight_topics)
             if o.approval_id == approval_id]
    assert trail == ["attempting", "sent"], trail


async def test_a_refusal_is_a_dead_letter_and_a_5xx_is_retried(kafka_bootstrap, gainsight_topics):
    api = await TimelineAPI(users={CSM}, companies={"Account 3": "1C00C"}).start()
    unknown_company, flaky = approval(4), approval(3)
    api.fail(503, times=2)
    try:
        async with Stage(kafka_bootstrap, gainsight_topics, api):
            await publish(kafka_bootstrap, gainsight_topics, flaky)
            await until(kafka_bootstrap, gainsight_topics, flaky[0].approval_id, "sent")
            await publish(kafka_bootstrap, gainsight_topics, unknown_company)
            await until(kafka_bootstrap, gainsight_topics, unknown_company[0].approval_id, "failed")
    finally:
        await api.stop()
    trail = [o.outcome for o in await activity_outcomes(kafka_bootstrap, gainsight_topics)
             if o.approval_id == flaky[0].approval_id]
    assert trail == ["attempting", "retrying", "attempting", "retrying", "attempting", "sent"], trail
    assert list(api.activities) == [flaky[0].approval_id]
    letters = [DeadLetter.from_avro(r.value) for r in await read_topic(kafka_bootstrap, gainsight_topics.deadletter)]
    assert [(d.stage, d.reason, d.topic) for d in letters] == [
        ("gainsight_timeline", "activity_refused", gainsight_topics.email_outcomes)]
    assert "no Company named Account 4" in letters[0].error and unknown_company[0].approval_id in letters[0].error
    assert EmailOutcome.from_avro(letters[0].value).approval_id == unknown_company[0].approval_id


async def test_a_refused_activity_is_recorded_after_the_fix_when_its_dead_letter_is_replayed(kafka_bootstrap,
                                                                                            gainsight_topics):
    api = await TimelineAPI(users={CSM}, companies={}).start()
    refused = approval(5)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MILESTONES_TOPIC_PREFIX": gainsight_topics.prefix, "MILESTONES_APP_ID": f"{gainsight_topics.prefix}app"}
    try:
        async with Stage(kafka_bootstrap, gainsight_topics, api):
            await publish(kafka_bootstrap, gainsight_topics, refused)
            await until(kafka_bootstrap, gainsight_topics, refused[0].approval_id, "failed")
            api.companies["Account 5"] = "1C00E"  # the CRM fixed
            (letter,) = await read_topic(kafka_bootstrap, gainsight_topics.deadletter)
            replay = subprocess.run([sys.executable, "-m", "milestone_stream.cli", "deadletter", "replay",
                                     f"{letter.partition}:{letter.offset}"], env=env, capture_output=True, text=True,
                                    timeout=120)
            assert replay.returncode == 0, replay.stdout + replay.stderr
            await until(kafka_bootstrap, gainsight_topics, refused[0].approval_id, "sent")
    finally:
        await api.stop()
    assert api.posts_for(refused[0].approval_id) == 2 and list(api.activities) == [refused[0].approval_id]
    trail = [o.outcome for o in await activity_outcomes(kafka_bootstrap, gainsight_topics)]
    assert trail == ["attempting", "failed", "attempting", "sent"], trail


async def test_a_429_storm_loses_nothing_and_the_rate_and_retry_after_are_respected(kafka_bootstrap,
                                                                                   gainsight_topics):
    """Twenty emails at once against a tenant that first answers 429 (Retry-After: 1) five times and then
    allows only 8 calls in any 2 s: every email becomes one activity, no call comes while a Retry-After
    runs, and calls are never closer than the stage's own pace (300/min here: 0.2 s)."""
    approvals = [approval(100 + i) for i in range(20)]
    api = await TimelineAPI(users={CSM}, companies={a[0].account_name: f"1C{i}" for i, a in enumerate(approvals)},
                            limit=8, window=2.0).start()
    api.fail(429, {"Retry-After": "1"}, times=5)
    try:
        async with Stage(kafka_bootstrap, gainsight_topics, api, rate=300):
            await publish(kafka_bootstrap, gainsight_topics, *approvals)

            async def all_sent():
                done = {o.approval_id for o in await activity_outcomes(kafka_bootstrap, gainsight_topics)
                        if o.outcome == "sent"}
                return done >= {a[0].approval_id for a in approvals}
            await wait_for(all_sent, 120, interval=0.5, what="20 activities")
    finally:
        await api.stop()
    assert sorted(api.activities) == sorted(a[0].approval_id for a in approvals)
    assert all(api.posts_for(a[0].approval_id) >= 1 for a in approvals)
    statuses = [r["status"] for r in api.requests]
    assert statuses.count(200) == 20 and statuses.count(429) >= 5, statuses  # the storm happened
    assert api.violations == [], f"calls came while a Retry-After ran: {api.violations}"
    arrivals = [r["at"] for r in api.requests]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # one call per 0.2 s at the client; at the server a call's transit time can shift it a little
    assert min(gaps) >= 0.15, f"calls closer than the pace: {min(gaps):.3f}s"
    assert max(sum(t <= u < t + 1.0 for u in arrivals) for t in arrivals) <= 6, "more than 300/min in a second"
    outcomes = await activity_outcomes(kafka_bootstrap, gainsight_topics)
    assert sum(o.outcome == "sent" for o in outcomes) == 20 and not any(o.outcome == "failed" for o in outcomes)


async def test_sigkill_mid_call_records_unknown_and_never_duplicates_the_activity(kafka_bootstrap, gainsight_topics,
                                                                                 tmp_path):
    """A real `milestones gainsight` process is killed while Gainsight has the activity but has not
    answered: the restarted stage records `unknown` and does not call again; the next email goes on."""
    first, cut, after = approval(200), approval(201), approval(202)
    api = await TimelineAPI(users={CSM}, companies={a[0].account_name: "1C" for a in (first, cut, after)}).start()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MILESTONES_TOPIC_PREFIX": gainsight_topics.prefix, "MILESTONES_APP_ID": f"{gainsight_topics.prefix}app",
           "MILESTONES_GAINSIGHT_URL": api.url, "MILESTONES_GAINSIGHT_ACCESS_KEY": ACCESS_KEY,
           "MILESTONES_GAINSIGHT_TIMEOUT": "60"}
    log = open(tmp_path / "gainsight.log", "ab")

    def start_stage():
        return subprocess.Popen([sys.executable, "-m", "milestone_stream.cli", "gainsight"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)

    stage = start_stage()
    try:
        await publish(kafka_bootstrap, gainsight_topics, first)
        await until(kafka_bootstrap, gainsight_topics, first[0].approval_id, "sent")
        api.held.clear()  # Gainsight stores the next activity and does not answer
        await publish(kafka_bootstrap, gainsight_topics, cut)
        await wait_for(lambda: cut[0].approval_id in api.activities, 60, what="the activity to reach Gainsight")
        stage.send_signal(signal.SIGKILL)
        stage.wait(10)
        api.held.set()
        stage = start_stage()
        await until(kafka_bootstrap, gainsight_topics, cut[0].approval_id, "unknown")
        await publish(kafka_bootstrap, gainsight_topics, after)
        await until(kafka_bootstrap, gainsight_topics, after[0].approval_id, "sent")
    finally:
        api.held.set()
        if stage.poll() is None:
            stage.send_signal(signal.SIGTERM)
            assert stage.wait(30) == 0, f"stage did not stop cleanly; log: {tmp_path / 'gainsight.log'}"
        await api.stop()
    for a in (first, cut, after):
        assert api.posts_for(a[0].approval_id) == 1, f"{a[0].approval_id} posted {api.posts_for(a[0].approval_id)}x"
    assert len(api.activities) == 3
    trail = [o.outcome for o in await activity_outcomes(kafka_bootstrap, gainsight_topics)
             if o.approval_id == cut[0].approval_id]
    assert trail == ["attempting", "unknown"], trail


@pytest.mark.parametrize(("extra", "code", "says"), [
    ({}, 0, "MILESTONES_GAINSIGHT_URL is not set; the stage is off"),
    ({"MILESTONES_GAINSIGHT_URL": "https://acme.gainsightcloud.com"}, 2, "MILESTONES_GAINSIGHT_ACCESS_KEY must be set"),
    ({"MILESTONES_GAINSIGHT_URL": "https://acme.gainsightcloud.com", "MILESTONES_GAINSIGHT_ACCESS_KEY": "k",
      "MILESTONES_GAINSIGHT_RATE": "500"}, 2, "MILESTONES_GAINSIGHT_RATE='500'"),
    ({"MILESTONES_GAINSIGHT_URL": "https://acme.gainsightcloud.com", "MILESTONES_GAINSIGHT_ACCESS_KEY": "k",
      "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, 2, "cannot reach Kafka at 127.0.0.1:1"),
])
def test_the_command_is_off_without_a_url_and_a_bad_setting_is_one_line(extra, code, says):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILESTONES_GAINSIGHT_")}
    done = subprocess.run([sys.executable, "-m", "milestone_stream.cli", "gainsight"], env={**env, **extra},
                          capture_output=True, text=True, timeout=60)
    out = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == code and len(out) == 1 and says in out[0], (done.returncode, out)
