"""The Gainsight stage's outcomes re-read (`ActivityStage.reload`, at each assignment) must not forget an
outcome the record loop writes while the read is in flight: the rebalance listener runs beside the loop,
and a forgotten `attempting`/`sent` lets the redelivered email outcome call the target again (review of
f9a9909). Real broker and outcomes topic; the interleaving is made certain: the reload's `read_topic`
(the real one) has returned, so its end offsets are in the past, when the stage records."""
from datetime import UTC, datetime
from types import SimpleNamespace

from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.sinks.gainsight import service
from milestone_stream.sinks.gainsight.service import ActivityStage
from milestone_stream.sinks.gainsight.target import SentEmail
from milestone_stream.sinks.gainsight.timeline import TimelineClient


async def test_an_activity_outcome_recorded_during_a_reload_is_kept(kafka_bootstrap, created_topics, monkeypatch):
    target = TimelineClient("http://127.0.0.1:9", "key")  # never called: the outcomes are recorded directly
    stage = ActivityStage(kafka_bootstrap, created_topics, f"{created_topics.prefix}gainsight", target)
    email = SentEmail(approval_id="a-1", account_id="acct-1", account_name="Acme", csm_email="sam@vendor.example",
                      csm_name=None, subject="s", body_text="b", sent_at=datetime.now(UTC), message_id="<a-1@x>")
    origin = SimpleNamespace(topic=created_topics.email_outcomes, partition=0, offset=7)

    async def read_then_record(*args, **kwargs):
        records = await read_topic(*args, **kwargs)
        await stage.record(email, "attempting", 1, None, origin)  # the record loop, meanwhile
        await stage.record(email, "sent", 1, "200", origin)
        return records

    async with producer(kafka_bootstrap) as prod:
        stage._prod = prod
        monkeypatch.setattr(service, "read_topic", read_then_record)
        await stage.reload()
        monkeypatch.setattr(service, "read_topic", read_topic)
        assert [o.outcome for o in stage.outcomes.get("a-1", [])] == ["attempting", "sent"]
        assert stage._settled("a-1", f"{created_topics.email_outcomes}:0:7")  # the redelivery does nothing
        await stage.reload()
        assert [o.outcome for o in stage.outcomes["a-1"]] == ["attempting", "sent"]
