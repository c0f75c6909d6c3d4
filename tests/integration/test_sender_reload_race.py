"""The sender's outcomes re-read (`Sender.reload`: at each assignment, and from `update_slack`) must not
forget an outcome this process records while the read is in flight: the digest task and the rebalance
listener run beside the record loop, and a forgotten `sent` lets the next tick send the digest again
(review of c538398).

Real broker and real outcomes topic. The interleaving is made certain, not timed: the reload's
`read_topic` (the real one) returns, so its end offsets are in the past, and a whole delivery of the
digest runs before the reload keeps what it read — the moment a digest tick can hit.
"""
from milestone_stream.deadletter import DeadLetters
from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.sinks.sender import outbox
from milestone_stream.sinks.sender.outbox import Sender
from milestone_stream.sinks.sender.smtp import SmtpConfig


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
