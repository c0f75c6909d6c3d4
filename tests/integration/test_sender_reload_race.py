"""The sender's outcomes (`Sender.outcomes`: every sender process's records, kept current by a follower of
`emails.outcomes`, plus what this process records, at once) must hold each outcome this process records
exactly once, whichever comes first: its own record, or the follower reading it back. A forgotten `sent`
lets the next digest tick send the digest again (review of c538398); a doubled one would miscount the
attempts.

Real broker and real outcomes topic. Both orders are made certain, not timed: the follower is started
only after the outcomes are recorded (the record first), or the producer's acknowledgement is held
until the follower has read the record (the follower first).
"""
import asyncio
from types import SimpleNamespace

from milestone_stream.deadletter import DeadLetters
from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.schemas.records import DeadLetter
from milestone_stream.sinks.sender.outbox import Sender
from milestone_stream.sinks.sender.smtp import NotDelivered, SmtpConfig


async def test_an_outcome_this_process_records_is_kept_once_whichever_sees_it_first(kafka_bootstrap, created_topics):
    sender = Sender(kafka_bootstrap, created_topics, f"{created_topics.prefix}sender",
                    SmtpConfig(host="127.0.0.1", port=1), lambda r: {}, domain="review.example")
    deliveries: list[str] = []

    async def deliver() -> str:
        deliveries.append("digest")
        return "250 2.0.0 queued"

    async with producer(kafka_bootstrap) as prod:
        sender._prod = prod
        sender._dead = DeadLetters(created_topics.deadletter, lambda t, k, v: prod.send_and_wait(t, key=k, value=v))
        # the record first: recorded before the follower runs, then read back by it
        await sender.once("digest-1", "csm_digest", None, deliver)
        await sender._follow.start()
        try:
            await sender.caught_up()
            assert [o.outcome for o in sender.outcomes[("digest-1", "csm_digest")]] == ["attempting", "sent"]

            # the follower first: each acknowledgement returns only once the follower has read the record
            real_send = prod.send_and_wait

            async def send_then_wait_for_the_follower(*args, **kwargs):
                at = await real_send(*args, **kwargs)
                await sender._follow.caught_up_to(at.topic, at.partition, at.offset)
                return at

            sender._prod = SimpleNamespace(send_and_wait=send_then_wait_for_the_follower)
            await sender.once("digest-2", "csm_digest", None, deliver)
            sender._prod = prod
            assert [o.outcome for o in sender.outcomes[("digest-2", "csm_digest")]] == ["attempting", "sent"]

            for did in ("digest-1", "digest-2"):  # the next tick
                await sender.once(did, "csm_digest", None, deliver)
            assert deliveries == ["digest", "digest"], "a digest was sent twice"
            await sender.caught_up()
            for did in ("digest-1", "digest-2"):  # nothing more arrives later
                assert [o.outcome for o in sender.outcomes[(did, "csm_digest")]] == ["attempting", "sent"]
        finally:
            await sender._follow.stop()


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
