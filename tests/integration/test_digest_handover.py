"""The daily digest when partition 0 of approvals.requests moves to another sender in the middle of a
tick: the sender that lost it sends no further digest (the new holder re-reads the outcomes and sends
the rest once); before, it went on through every CSM, so both processes could send the same digest
(review of c538398). Real broker, real SMTP server; the rebalance listener's revocation is applied
right after the first CSM's digest, as it would land during a tick."""
from datetime import timedelta

from aiokafka import TopicPartition

from milestone_stream.deadletter import DeadLetters
from milestone_stream.kafka_io import producer
from milestone_stream.sinks.approvals.view import ApprovalView
from milestone_stream.sinks.sender.digest import Digest
from milestone_stream.sinks.sender.outbox import Sender, _Reload
from milestone_stream.sinks.sender.smtp import SmtpConfig

from support.stack import DOMAIN, NOW, SmtpServer, approval_request


class RevokedAfterFirstDigest(Sender):
    async def email_once(self, *args, **kwargs) -> None:
        await super().email_once(*args, **kwargs)
        await _Reload(self).on_partitions_revoked(list(self.assigned))


async def test_a_sender_that_loses_partition_0_mid_tick_sends_no_further_digest(kafka_bootstrap, created_topics):
    smtp = SmtpServer().start()
    view = ApprovalView(kafka_bootstrap, created_topics)  # not started: its requests are set here
    try:
        for n, csm in enumerate(("ann@vendor.example", "bob@vendor.example", "cy@vendor.example")):
            r = approval_request(n, csm=csm, created_at=NOW - timedelta(days=2), expires_at=NOW + timedelta(days=5))
            view.requests[r.approval_id] = r
        digest = Digest(view, 0, lambda csm: "http://ui.example/s/token")
        sender = RevokedAfterFirstDigest(kafka_bootstrap, created_topics, f"{created_topics.prefix}sender",
                                         SmtpConfig(host="127.0.0.1", port=smtp.port), lambda r: {},
                                         domain=DOMAIN, digest=digest, clock=lambda: NOW)
        async with producer(kafka_bootstrap) as prod:
            sender._prod = prod
            sender._dead = DeadLetters(created_topics.deadletter,
                                       lambda t, k, v: prod.send_and_wait(t, key=k, value=v))
            sender.assigned = {TopicPartition(created_topics.approval_requests, 0)}
            sender.loaded.set()
            await digest.tick(sender)
        digests = [m for m in smtp.mailbox.received if m["Message-ID"].startswith("<digest.")]
        assert len(digests) == 1, [m["To"] for m in digests]
    finally:
        await view.stop()
        smtp.stop()
