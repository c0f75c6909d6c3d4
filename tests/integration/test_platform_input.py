"""Platform teams' ways in, against the real broker and a real worker: `milestones publish` from a
file (ids kept or derived, so a second publish counts nothing; refused lines named; dry runs send
nothing) and JSON documents on the input topics beside Avro (hostile ones dead-lettered)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.ops import publish as pub
from milestone_stream.schemas.records import CrmChange, TelemetryEvent
from milestone_stream.topics import ensure_topics

from support import pipes
from support.events import T0
from support.helpers import REPO, Worker, dead_letters, milestones, table_rows

BOUND = 60.0


def run_cli(args: list[str], bootstrap: str, prefix: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILESTONES_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, MILESTONES_TOPIC_PREFIX=prefix, MILESTONES_PARTITIONS="3")
    return subprocess.run([sys.executable, "-m", "milestone_stream.cli", *args], env=env, cwd=REPO, input=stdin,
                          capture_output=True, timeout=BOUND)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def telemetry_file(tmp_path: Path) -> Path:
    """Six events of 100 for `filed` (600: the 500 tier, and the 1,000 tier only if counted twice), half
    without ids; line 4 is bad (a string value)."""
    lines = []
    for i in range(6):
        doc = {"account_id": "filed", "metric": "emails_sent", "value": 100, "occurred_at": at(i),
               "source": "platform.mailer"}
        if i % 2:
            doc["event_id"] = f"filed-{i}"
        lines.append(json.dumps(doc))
    lines.insert(3, json.dumps({"account_id": "filed", "metric": "emails_sent", "value": "100",
                                "occurred_at": at(9), "source": "platform.mailer"}))
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


async def until_processed(bootstrap: str, prefix: str, telemetry: str, account: str) -> UsageRow:
    """The account's usage row once it records the last offset of the account's input (the worker has
    applied, or recognised as a duplicate, every record of it)."""
    last = max(r.offset for r in await read_topic(bootstrap, telemetry) if r.key == account.encode())

    async def done() -> UsageRow | None:
        stored = (await table_rows(bootstrap, prefix, "usage")).get(account)
        row = UsageRow.from_stored(stored) if stored else None
        return row if row is not None and row.offset >= last else None
    return await wait_for(done, 90, interval=0.5, what=f"{account}'s events applied")


async def test_publish_sends_valid_lines_refuses_bad_ones_and_a_second_publish_counts_nothing(
        kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    path = telemetry_file(tmp_path)

    first = run_cli(["publish", str(path)], kafka_bootstrap, topics.prefix)
    out = first.stdout.decode()
    assert first.returncode == 1, (first.stdout, first.stderr)  # a refused line: exit 1, the rest sent
    assert "sent: 6 telemetry events; refused: 1 line(s)" in out
    assert "line 4: invalid: telemetry_event: value: Input should be a valid number" in out
    assert "\r" not in out  # not a terminal: the plain summary, no progress bar

    sent = await read_topic(kafka_bootstrap, topics.telemetry)  # read_committed
    events = [TelemetryEvent.from_avro(r.value) for r in sent]
    assert len(events) == 6 and {r.key for r in sent} == {b"filed"} and len({r.partition for r in sent}) == 1
    ids = sorted(e.event_id for e in events)
    assert [i for i in ids if not i.startswith("pub:")] == ["filed-1", "filed-3", "filed-5"]  # given ids kept
    assert len({i for i in ids if i.startswith("pub:")}) == 3                                  # the rest derived

    second = run_cli(["publish", str(path)], kafka_bootstrap, topics.prefix)
    assert second.returncode == 1 and b"sent: 6 telemetry events" in second.stdout
    again = [TelemetryEvent.from_avro(r.value) for r in await read_topic(kafka_bootstrap, topics.telemetry)]
    assert len(again) == 12 and sorted(e.event_id for e in again) == sorted(ids * 2)  # the same ids again

    w = Worker(kafka_bootstrap, topics.prefix, tmp_path).start()
    try:
        row = await until_processed(kafka_bootstrap, topics.prefix, topics.telemetry, "filed")
        assert row.total("emails_sent", 0.0) == 600.0  # not 1,200: the second publish counted nothing
        fired = await milestones(kafka_bootstrap, topics.milestones)
        assert sorted(m.threshold for m in fired) == [500.0]
    finally:
        assert w.stop() == 0, f"worker did not exit cleanly; log: {w.log}"


async def test_a_dry_run_validates_and_sends_nothing(kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    result = run_cli(["publish", "--dry-run", str(REPO / "samples" / "crm.csv")], kafka_bootstrap, topics.prefix)
    assert result.returncode == 0, result.stderr
    assert b"valid (dry run, nothing sent): 2 CRM changes; refused: 0 line(s)" in result.stdout
    # a dry run needs no broker at all
    offline = run_cli(["publish", "--dry-run", "-"], "127.0.0.1:1", topics.prefix,
                      stdin=(REPO / "samples" / "telemetry.jsonl").read_bytes())
    assert offline.returncode == 0 and b"19 telemetry events" in offline.stdout, offline.stderr
    assert await read_topic(kafka_bootstrap, topics.telemetry, idle_ms=300) == []
    assert await read_topic(kafka_bootstrap, topics.crm, idle_ms=300) == []

    # and the same file for real: CRM changes on crm.changes, a contact and typed values from the CSV
    sent = run_cli(["publish", str(REPO / "samples" / "crm.csv")], kafka_bootstrap, topics.prefix)
    assert sent.returncode == 0 and b"sent: 2 CRM changes; refused: 0" in sent.stdout, sent.stderr
    changes = {c.account_id: c for c in (CrmChange.from_avro(r.value)
                                         for r in await read_topic(kafka_bootstrap, topics.crm))}
    assert set(changes) == {"initech", "soylent"}
    assert changes["initech"].change_id == "crm-initech-1" and changes["soylent"].change_id.startswith("pub:")
    values = {c.field: c.value for c in changes["initech"].changes}
    assert values["roi_percent"] == 120 and values["adoption.sso"] is True and values["name"] == "Initech"
    assert changes["initech"].contacts[0].email == "bill@initech.example"


async def test_retime_publishes_a_dated_sample_as_of_now_with_the_same_ids(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    sample = REPO / "samples" / "telemetry.jsonl"
    result = run_cli(["publish", "--retime", str(sample)], kafka_bootstrap, topics.prefix)
    assert result.returncode == 0 and b"sent: 19 telemetry events" in result.stdout, result.stderr
    sent = [TelemetryEvent.from_avro(r.value) for r in await read_topic(kafka_bootstrap, topics.telemetry)]
    latest = max(e.occurred_at for e in sent)
    assert timedelta(seconds=30) < datetime.now(UTC) - latest < timedelta(minutes=5)
    as_written = [line.record for line in pub.read(sample.open("rb"), "jsonl", None)[1]]
    assert sorted(e.event_id for e in sent) == sorted(e.event_id for e in as_written)
    shifts = {e.occurred_at - w.occurred_at for e, w in zip(sorted(sent, key=lambda e: e.event_id),
                                                             sorted(as_written, key=lambda e: e.event_id), strict=True)}
    assert len(shifts) == 1  # one shift for every line: the file keeps its shape
    stdin = run_cli(["publish", "--retime", "-"], kafka_bootstrap, topics.prefix, stdin=sample.read_bytes())
    assert stdin.returncode == 2
    assert stdin.stderr == b"milestones: configuration error: --retime reads the file twice: give a file, not stdin\n"
    missing = run_cli(["publish", "no-such-file.jsonl"], kafka_bootstrap, topics.prefix)
    assert missing.returncode == 2 and missing.stderr.startswith(b"milestones: configuration error: cannot read")


def test_publish_to_an_unreachable_broker_is_one_line(tmp_path, topics):
    result = run_cli(["publish", str(REPO / "samples" / "telemetry.jsonl")], "127.0.0.1:1", topics.prefix)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("milestones: cannot reach Kafka at 127.0.0.1:1"), lines


async def test_json_documents_on_the_topic_count_like_avro_and_hostile_ones_are_dead_letters(
        kafka_bootstrap, topics, tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)

    def doc(i: int, **kw: object) -> bytes:
        return json.dumps({"event_id": f"js-{i}", "account_id": "js", "metric": "emails_sent", "value": 300,
                           "occurred_at": at(i), "source": "platform.mailer", **kw}).encode()
    avro = TelemetryEvent(event_id="js-avro", account_id="js", metric="emails_sent", value=300.0,
                          occurred_at=T0 + timedelta(minutes=5), source="platform.mailer").to_avro()
    hostile = {
        b'{"event_id": "js-9", "account_id": "js", "value": NaN}': "malformed_json",
        doc(10).replace(b'"value": 300', b'"value": 300, "value": 3000000'): "malformed_json",
        doc(11, value="300"): "invalid",
        doc(12, occurred_at="2026-11-24T12:00:00"): "invalid",
        b"  \n" + b'{"a":' * 50_000 + b"1" + b"}" * 50_000: "malformed_json",  # deep nesting
        doc(13, account_id="other"): "key_mismatch",
    }
    async with producer(kafka_bootstrap) as prod:
        await prod.send_and_wait(topics.telemetry, key=b"js", value=b" \n" + doc(1))  # whitespace first
        for value in hostile:
            await prod.send_and_wait(topics.telemetry, key=b"js", value=value)
        await prod.send_and_wait(topics.telemetry, key=b"js", value=avro)
        await prod.send_and_wait(topics.telemetry, key=b"js", value=doc(1))  # a duplicate, as JSON
        crm = {"change_id": "js-c1", "account_id": "js", "occurred_at": at(0), "source": "hubspot",
               "changes": [{"field": "adoption.sso", "value": True}]}
        await prod.send_and_wait(topics.crm, key=b"js", value=json.dumps(crm).encode())

    w = Worker(kafka_bootstrap, topics.prefix, tmp_path).start()
    try:
        row = await until_processed(kafka_bootstrap, topics.prefix, topics.telemetry, "js")
        assert row.total("emails_sent", 0.0) == 600.0  # one JSON event and one Avro event, the copy once

        async def letters():  # (the drafter parks the milestones too: these accounts have no CSM)
            got = [d for d in await dead_letters(kafka_bootstrap, topics.deadletter) if d.stage == "usage"]
            return got if len(got) >= len(hostile) else None
        parked = await wait_for(letters, 60, what="the hostile documents' dead letters")
        assert sorted(d.reason for d in parked) == sorted(hostile.values())
        by_value = {d.value: d for d in parked}
        for value, reason in hostile.items():
            assert by_value[value].reason == reason and by_value[value].stage == "usage"
        assert "value: Input should be a valid number" in by_value[doc(11, value="300")].error
        assert "occurred_at: a time needs its UTC offset" in by_value[doc(12, occurred_at="2026-11-24T12:00:00")].error

        async def fired():
            got = await milestones(kafka_bootstrap, topics.milestones)
            return got if {m.kind for m in got} >= {"usage_threshold", "feature_adopted"} else None
        got = await wait_for(fired, 60, what="the JSON inputs' milestones")
        assert sorted((m.kind, m.threshold) for m in got) == [("feature_adopted", None), ("usage_threshold", 500.0)]
    finally:
        assert w.stop() == 0, f"worker did not exit cleanly; log: {w.log}"


def _line(n: int) -> bytes:
    return (json.dumps({"event_id": f"ctrl-c-{n}", "account_id": "ctrl-c", "metric": "emails_sent", "value": 1,
                        "occurred_at": at(0), "source": "platform.mailer"}) + "\n").encode()


async def test_ctrl_c_while_publishing_says_how_many_lines_the_broker_acknowledged(
        kafka_bootstrap, topics, monkeypatch, capsys):
    from milestone_stream import cli

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("MILESTONES_TOPIC_PREFIX", topics.prefix)
    monkeypatch.setenv("MILESTONES_PARTITIONS", "3")
    pipes.stdin(monkeypatch, 2_500, _line)
    # (cli.main runs its own event loop: off this test's loop, in a thread)
    import asyncio
    assert await asyncio.to_thread(cli.main, ["publish", "--format", "jsonl", "-"]) == 130
    err = capsys.readouterr().err
    assert "2,000 record(s) acknowledged by the broker, every line up to line 2,000 included" in err, err
    on_topic = await read_topic(kafka_bootstrap, topics.telemetry)
    assert len(on_topic) >= 2_000  # what it said was acknowledged is there
