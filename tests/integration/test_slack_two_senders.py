"""Two sender processes in one group (the normal deployment): the Slack post is made by the sender that
holds the request's partition, the decision handled by the one holding the decision's partition. The
decision's sender must update the message it did not post, exactly once (review of 6c44b3c: it re-read
the outcomes at most every 5 s, so a post recorded by the other sender just after that re-read was
never found, and the message kept its buttons).

Real broker, two real `Sender.run` loops in one consumer group, a local server speaking the Slack Web
API. Each approval is chosen so that its request and its decision are held by different senders, and
the second one is decided right after the first: within 5 s of the decision sender's last look.
"""
import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from milestone_stream.kafka_io import producer, wait_for
from milestone_stream.sinks.approvals.links import one_tap_links
from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.sender.outbox import Sender
from milestone_stream.sinks.sender.slack import SlackApi as SlackClient
from milestone_stream.sinks.sender.smtp import SmtpConfig
from milestone_stream.topics import ensure_topics

from support import slack_api
from support.slack_api import SlackApi
from support.stack import DOMAIN, SECRET, SmtpServer, approval_request, decision, outcomes, settings, until_outcome

CSM = "sam.rivera@vendor.example"
PARTITIONS = 3


@pytest.fixture
async def approval_topics(kafka_bootstrap, topics):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=PARTITIONS)
    return topics


def partition_of(key: bytes) -> int:
    """The partition the producer's default partitioner gives this key (murmur2, as Kafka's Java client)."""
    everything = list(range(PARTITIONS))
    return DefaultPartitioner()(key, everything, everything)


def holder(senders: list[Sender], topic: str, partition: int) -> Sender:
    [s] = [s for s in senders if TopicPartition(topic, partition) in s.assigned]
    return s


async def test_the_sender_that_did_not_post_updates_the_slack_message_once(kafka_bootstrap, approval_topics):
    topics = approval_topics
    slack = await SlackApi({"U0SAM": CSM}).start()
    smtp = SmtpServer().start()
    links = one_tap_links(settings(topics, smtp.port), Signer(SECRET.encode()))
    senders = [Sender(kafka_bootstrap, topics, f"{topics.prefix}sender",
                      SmtpConfig(host="127.0.0.1", port=smtp.port, timeout=10), links, domain=DOMAIN,
                      retry_seconds=60, backoff=(0.2, 1.0), slack_api=SlackClient(slack_api.TOKEN, slack.url))
               for _ in range(2)]
    stop = asyncio.Event()
    runs = [asyncio.create_task(s.run(stop)) for s in senders]
    try:
        # both in the group, every partition of the sender's three topics (requests, decisions, risks)
        # assigned between them, and each sender's state loaded
        await wait_for(lambda: all(s.loaded.is_set() and s.assigned for s in senders)
                       and sum(len(s.assigned) for s in senders) == 3 * PARTITIONS, 60, what="two senders")
        # approvals whose request (keyed by account) and decision (keyed by approval id) go to different senders
        split = [req for req in map(approval_request, range(1, 200))
                 if holder(senders, topics.approval_requests, partition_of(req.account_id.encode()))
                 is not holder(senders, topics.approval_decisions, partition_of(req.approval_id.encode()))]
        first, second = split[:2]

        async with producer(kafka_bootstrap) as prod:
            async def request(req):
                at = await prod.send_and_wait(topics.approval_requests, key=req.account_id.encode(),
                                              value=req.to_avro())
                assert at.partition == partition_of(req.account_id.encode())
                await until_outcome(kafka_bootstrap, topics, req.approval_id, "sent", purpose="csm_slack")

            async def decide(req):
                at = await prod.send_and_wait(topics.approval_decisions, key=req.approval_id.encode(),
                                              value=decision(req, "dont_send").to_avro())
                assert at.partition == partition_of(req.approval_id.encode())
                await until_outcome(kafka_bootstrap, topics, req.approval_id, "not_sent")

            await request(first)
            await decide(first)
            await until_outcome(kafka_bootstrap, topics, first.approval_id, "sent", purpose="csm_slack_update")
            # posted by one sender moments after the other last looked at the outcomes, then decided
            await request(second)
            await decide(second)
            await until_outcome(kafka_bootstrap, topics, second.approval_id, "sent", purpose="csm_slack_update",
                                timeout=30)

        for req in (first, second):  # the premise: the decision went to the sender that did not post
            assert holder(senders, topics.approval_requests, partition_of(req.account_id.encode())) is not \
                holder(senders, topics.approval_decisions, partition_of(req.approval_id.encode()))
        posts = slack.posted()
        updates = slack.posted("chat.update")
        assert len(posts) == 2
        assert sorted((u["channel"], u["ts"]) for u in updates) == sorted(slack.messages), "each message updated once"
        assert all(not any(b["type"] == "actions" for b in m["blocks"]) for m in slack.messages.values()), \
            "a message kept its buttons"
        trail = [(o.approval_id, o.outcome) for o in await outcomes(kafka_bootstrap, topics, "csm_slack_update")]
        assert sorted(trail) == sorted((r.approval_id, o) for r in (first, second) for o in ("attempting", "sent"))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*runs), 30)
        smtp.stop()
        await slack.stop()
