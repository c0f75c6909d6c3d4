"""Risk signals through a real worker process and the real broker: every signal opens once per episode and
clears once, a replay of the same input publishes nothing new, a later clock clears what time ends, and
what the agent cannot process (a tick that is not one, an undecodable or raising CRM change) is a dead letter.

Why a worker process with an injected clock (MILESTONES_NOW): usage signals are decided at the timer's
ticks against the event-time day totals the usage agent keeps, so the test stands on a fixed day, and a
second worker started 31 days later sees the ticket window empty and the new users missing again.
The `risks` topic is read read_committed and every record counted.
"""
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

from milestone_stream.kafka_io import producer, read_topic, wait_for
from milestone_stream.ops.lag import measure
from milestone_stream.schemas.records import Contact, CrmChange, FieldChange, RiskSignal, TelemetryEvent
from milestone_stream.topics import ensure_topics

from support.helpers import Worker, dead_letters, publish

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
TODAY = datetime(2026, 3, 10, tzinfo=UTC)
RULES = """
signals:
  counters: [logins, support_tickets, new_users]
  evaluate_every_seconds: 0.3
  usage_drop: {metric: logins, window_days: 7, drop_percent: 30, min_base: 10, playbook: [Call the admin]}
  ticket_surge: {metric: support_tickets, window_days: 30, max_tickets: 10}
  no_new_users: {metric: new_users, period_days: 14}
  champion_departure: {playbook: [Schedule an executive check-in within 48 hours]}
"""
JANE = Contact(name="Jane Doe", email="jane@acme.example", role="champion")
BOB = Contact(name="Bob Roe", email="bob@acme.example", role="executive_sponsor")
CAROL = Contact(name="Carol Poe", email="carol@acme.example", role="champion")


# the first worker's signals rules raise for account "boom" (as a bug would): its input is dead-lettered
RAISING = """
import sys
from milestone_stream.agents.signals import agent, episodes

def raising(row, change, *args, **kwargs):
    if change.account_id == "boom":
        raise RuntimeError("injected fault")
    return episodes.observe_change(row, change, *args, **kwargs)

agent.observe_change = raising
from milestone_stream.cli import main
sys.exit(main(["worker"]))
"""


def event(account: str, event_id: str, metric: str, value: float, at: datetime) -> TelemetryEvent:
    return TelemetryEvent(event_id=event_id, account_id=account, metric=metric, value=value, occurred_at=at,
                          source="platform")


def crm(n: int, *fields: tuple[str, object], contacts=None) -> CrmChange:
    return CrmChange(change_id=f"c{n}", account_id="acme", occurred_at=NOW - timedelta(hours=20 - n),
                     source="salesforce", source_record="001A", contacts=contacts,
                     changes=[FieldChange(field=f, value=v) for f, v in fields])


def day(n: int, hour: int = 12) -> datetime:
    return TODAY + timedelta(days=n, hours=hour)


OPENING_USAGE = (
    [event("drop", f"l{n}", "logins", 20, day(n)) for n in range(-14, -7)]        # previous window: 140
    + [event("drop", f"l{n}", "logins", 5, day(n)) for n in range(-7, 0)]         # this window: 35, down 75%
    + [event("tickets", f"t{n}", "support_tickets", 1, NOW - timedelta(hours=1, minutes=n)) for n in range(11)]
    + [event("quiet", "u1", "new_users", 3, day(-20))]                            # none for 20 days
)
OPENING_CRM = [
    crm(1, ("name", "Acme"), ("csm_email", "sam@vendor.example"), ("nps", 50), ("mrr", 1000),
        ("invoice_overdue", False), contacts=[JANE, BOB]),
    crm(2, ("nps", 35)),                       # down 15 points
    crm(3, contacts=[BOB]),                    # the champion left
    crm(4, ("invoice_overdue", True)),
    crm(5, ("mrr", 800)),
]
CLEARING_USAGE = ([event("drop", f"m{n}", "logins", 20, day(n)) for n in range(-7, 0)]   # late logins: 175
                  + [event("quiet", "u2", "new_users", 1, NOW - timedelta(hours=1))])
CLEARING_CRM = [crm(6, ("nps", 45)), crm(7, contacts=[BOB, CAROL]), crm(8, ("invoice_overdue", False)),
                crm(9, ("mrr", 1000))]


async def risks(bootstrap: str, topic: str) -> list[RiskSignal]:
    return [RiskSignal.from_avro(r.value) for r in await read_topic(bootstrap, topic, isolation_level="read_committed")]


async def until(bootstrap: str, topic: str, count: int, what: str) -> list[RiskSignal]:
    async def enough():
        got = await risks(bootstrap, topic)
        return got if len(got) >= count else None
    return await wait_for(enough, 30, interval=0.3, what=what)


async def all_applied(bootstrap: str, topics) -> None:
    """Every input record committed by the worker, then every tick sent after that: its decisions are made."""
    group = {f"{topics.prefix}detector": [topics.telemetry, topics.crm]}

    async def committed():
        rows = await measure(bootstrap, group)
        return rows and all(r.lag == 0 for r in rows)
    await wait_for(committed, 30, interval=0.3, what="the input committed")
    ticks = {f"{topics.prefix}detector": [topics.risk_clock]}
    ends = {r.partition: r.end for r in await measure(bootstrap, ticks)}

    async def ticked():
        rows = await measure(bootstrap, ticks)
        return rows and all((r.committed or 0) >= ends[r.partition] for r in rows)
    await wait_for(ticked, 30, interval=0.3, what="the ticks after the input")


def by_id(records: list[RiskSignal]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r.signal_id, []).append(r.state)
    return out


async def test_each_signal_opens_once_and_clears_once_and_a_replay_publishes_nothing(kafka_bootstrap, topics,
                                                                                      tmp_path):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {"MILESTONES_RULES": str(rules)}
    worker = Worker(kafka_bootstrap, topics.prefix, tmp_path, "a", MILESTONES_NOW=NOW.isoformat(), **env)
    worker.command = [sys.executable, "-c", RAISING]
    worker.start()
    try:
        # before the real input, what the agent cannot process: dead-lettered, and the stream goes on
        async with producer(kafka_bootstrap) as prod:
            await prod.send_and_wait(topics.risk_clock, key=b"acme", value=b"not an instant")
            await prod.send_and_wait(topics.crm, key=b"acme", value=b"not a CRM change")
        await publish(kafka_bootstrap, topics.crm, [crm(0, ("nps", 1)).model_copy(update={"account_id": "boom"})])
        await publish(kafka_bootstrap, topics.telemetry, OPENING_USAGE)
        await publish(kafka_bootstrap, topics.crm, OPENING_CRM)
        opened = await until(kafka_bootstrap, topics.risks, 7, "seven openings")
        assert all(r.state == "open" for r in opened)
        kinds = {(r.account_id, r.kind): r for r in opened}
        assert set(kinds) == {("drop", "usage_drop"), ("tickets", "ticket_surge"), ("quiet", "no_new_users"),
                              ("acme", "nps_drop"), ("acme", "champion_departure"), ("acme", "invoice_overdue"),
                              ("acme", "mrr_contraction")}
        usage_drop = kinds[("drop", "usage_drop")]
        assert (usage_drop.level, usage_drop.opened_at, usage_drop.playbook) == ("yellow", TODAY, ["Call the admin"])
        assert [e.record for e in usage_drop.evidence] == ["logins 140 on 2026-02-24..2026-03-02",
                                                           "logins 35 on 2026-03-03..2026-03-09"]
        assert kinds[("tickets", "ticket_surge")].level == "red"
        assert kinds[("quiet", "no_new_users")].opened_at == day(-6, 0)
        champion = kinds[("acme", "champion_departure")]
        assert (champion.level, champion.title) == ("executive", "Champion Jane Doe <jane@acme.example> left")
        assert (champion.csm_email, champion.account_name) == ("sam@vendor.example", "Acme")
        nps = kinds[("acme", "nps_drop")]
        assert nps.level == "orange" and [e.record for e in nps.evidence] == [
            "field nps 50 (change c1)", "001A field nps 35 (change c2)"]

        await publish(kafka_bootstrap, topics.telemetry, CLEARING_USAGE)
        await publish(kafka_bootstrap, topics.crm, CLEARING_CRM)
        both = await until(kafka_bootstrap, topics.risks, 13, "six clearings")
        cleared = [r for r in both if r.state == "cleared"]
        assert {(r.account_id, r.kind) for r in cleared} == set(kinds) - {("tickets", "ticket_surge")}
        assert all(r.signal_id == kinds[(r.account_id, r.kind)].signal_id for r in cleared)

        # the same input again (the same event and change ids): nothing new, however long the ticks go on
        await publish(kafka_bootstrap, topics.telemetry, OPENING_USAGE + CLEARING_USAGE)
        await publish(kafka_bootstrap, topics.crm, OPENING_CRM + CLEARING_CRM)
        await all_applied(kafka_bootstrap, topics)
        assert len(await risks(kafka_bootstrap, topics.risks)) == 13
        letters = [d for d in await dead_letters(kafka_bootstrap, topics.deadletter) if d.stage == "signals"]
        assert sorted((d.reason, d.topic, d.key) for d in letters) == [
            ("invalid_tick", topics.risk_clock, b"acme"), ("unexpected_error", topics.crm, b"boom"),
            ("wrong_marker", topics.crm, b"acme")]   # not Avro's single-object marker: undecodable
    finally:
        assert worker.stop() == 0, f"worker did not exit cleanly; log: {worker.log}"

    # 31 days later, in a worker that restores the rows from their changelogs: the ticket window is empty
    # (the surge it has in its row clears), and no new users for 30 days is a new episode
    later = Worker(kafka_bootstrap, topics.prefix, tmp_path, "b", MILESTONES_NOW=(NOW + timedelta(days=31)).isoformat(),
                   **env).start()
    try:
        await until(kafka_bootstrap, topics.risks, 15, "the ticket surge cleared, new users missed again")
        await all_applied(kafka_bootstrap, topics)
        final = await risks(kafka_bootstrap, topics.risks)
    finally:
        assert later.stop() == 0, f"worker did not exit cleanly; log: {later.log}"
    states = by_id(final)
    assert len(final) == 15 and len(states) == 8
    assert Counter(tuple(s) for s in states.values()) == {("open", "cleared"): 7, ("open",): 1}
    again = [r for r in final if r.kind == "no_new_users" and r.signal_id != kinds[("quiet", "no_new_users")].signal_id]
    assert [(r.state, r.opened_at) for r in again] == [("open", TODAY + timedelta(days=14))]
    [surge] = [r for r in final if r.kind == "ticket_surge" and r.state == "cleared"]
    assert surge.at == TODAY + timedelta(days=31)
