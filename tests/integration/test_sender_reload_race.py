"""The sender's outcomes re-read (`Sender.reload`: at each assignment, and from `update_slack`) must not
forget an outcome this process records while the read is in flight: the digest task and the rebalance
listener run beside the record loop, and a forgotten `sent` lets the next tick send the digest again
(review of c538398).

Real broker and real outcomes topic. The interleaving is made certain, not timed: the reload's
`read_topic` (the real one) returns, so its end offsets are in the past, and a whole delivery of the
digest runs before the reload keeps what it read — the moment a digest tick can hit.
"""
import asyncio
from types import SimpleNamespace

from milestone_stream.deadletter import DeadLetters
from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.schemas.records import DeadLetter
from milestone_stream.sinks.sender import outbox
from milestone_stream.sinks.sender.outbox import Sender
from milestone_stream.sinks.sender.smtp import NotDelivered, SmtpConfig


async def test_an_outcome_recorded_during_a_reload_is_kept(kafka_bootstrap, created_topics, monkeypatch):
    sender = Sender(kafka_bootstrap, created_topics, f"{created_topics.prefix}sender",
                    SmtpConfig(host="127.0.0.1", port=1), lambda r: {}, domain="review.example")
    deliveries: list[str] = []

    async def deliver() -> str:
        deliveries.append("digest-1")
        return "250 2.0.0 queued"

    async def read_then_a_digest(*args, **kwargs):
        records = await read_topic(*args, **kwargs)
        await sender.once("digest-1", "csm_digest", None, deliver)  # the digest task, meanwhile
        return records

    async with producer(kafka_bootstrap) as prod:
        sender._prod = prod
        sender._dead = DeadLetters(created_topics.deadletter, lambda t, k, v: prod.send_and_wait(t, key=k, value=v))
        monkeypatch.setattr(outbox, "read_topic", read_then_a_digest)
        await sender.reload()
        monkeypatch.setattr(outbox, "read_topic", read_topic)
        assert deliveries == ["digest-1"]
        assert [o.outcome for o in sender.outcomes[("digest-1", "csm_digest")]] == ["attempting", "sent"]

        await sender.once("digest-1", "csm_digest", None, deliver)  # the next tick
        assert deliveries == ["digest-1"], "the digest was sent twice"

        await sender.reload()  # what the topic holds agrees: one attempt, sent
        assert [o.outcome for o in sender.outcomes[("digest-1", "csm_digest")]] == ["attempting", "sent"]


async def test_a_retry_after_past_the_window_fails_now_instead_of_holding_the_sender(kafka_bootstrap, created_topics):
    """A Slack 429 asking for an hour, with Slack's 5-minute window: the post is failed (and its request
    dead-lettered for replay) at once; before, the sender slept the hour with every customer email
    behind it (review of cabdfc7)."""
    sender = Sender(kafka_bootstrap, created_topics, f"{created_topics.prefix}sender",
                    SmtpConfig(host="127.0.0.1", port=1), lambda r: {}, domain="review.example")
    calls: list[int] = []

    async def rate_limited() -> str:
        calls.append(1)
        raise NotDelivered("chat.postMessage: 429 ratelimited", permanent=False, retry_after=3600)

    origin = SimpleNamespace(topic=created_topics.approval_requests, partition=0, offset=3, key=b"k", value=b"v")
    async with producer(kafka_bootstrap) as prod:
        sender._prod = prod
        sender._dead = DeadLetters(created_topics.deadletter, lambda t, k, v: prod.send_and_wait(t, key=k, value=v))
        await asyncio.wait_for(sender.once("a-1", "csm_slack", origin, rate_limited, 300.0), timeout=30)
    assert calls == [1]
    assert [o.outcome for o in sender.outcomes[("a-1", "csm_slack")]] == ["attempting", "failed"]
    [letter] = [DeadLetter.from_avro(r.value) for r in await read_topic(kafka_bootstrap, created_topics.deadletter)]
    assert (letter.stage, letter.reason, letter.offset) == ("sender", "delivery_failed", 3)
