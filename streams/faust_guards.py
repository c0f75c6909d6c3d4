"""Where Faust logs a failure and goes on, the worker corrects it or stops loudly.

Two failure modes seen in this project's crash tests:
- Around a rebalance a Faust stream skips the messages it had already fetched (flow control paused,
  or fetched under an older group generation) and still acknowledges them, so the next commit can
  pass input that was never processed; after the rebalance Faust seeks to that offset and the
  skipped input is gone (accounts ended one event short). `SkipSafeConsumer` releases such a
  message without counting it as processed, so the commit stops before it: where Faust seeks back
  after the rebalance it is fetched again at once; where it does not (seen once in seven crash
  runs), the partition's committed offset stays put, its lag grows visibly, and the next restart
  processes the message. The row's offset check makes a message that was in fact processed a no-op
  when it returns. Re-fetching it in-process is still to do.
- Changelog recovery catches every error per record and logs "Error in recovery" as a warning,
  leaving a table partly restored (a worker then counts from wrong totals). `install` adds a log filter that
  turns that warning into an immediate, non-zero exit, so a supervisor sees it and nothing is
  computed from a half-restored table.
"""
from __future__ import annotations

import logging
import os
import sys

from faust.transport.drivers.aiokafka import Consumer as FaustAIOKafkaConsumer

RECOVERY_ERROR_EXIT = 70


class SkipSafeConsumer(FaustAIOKafkaConsumer):
    def ack(self, message) -> bool:
        app = self.app
        if message.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return super().ack(message)


class _StopOnRecoveryError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Error in recovery"):
            print(f"milestones: table recovery failed, stopping the worker: {record.getMessage()}",
                  file=sys.stderr, flush=True)
            logging.shutdown()
            os._exit(RECOVERY_ERROR_EXIT)
        return True


def install(app) -> None:
    """Apply both guards to `app` (before the worker starts it)."""
    app.transport.Consumer = SkipSafeConsumer
    logging.getLogger("faust.tables.recovery").addFilter(_StopOnRecoveryError())


def settled(app) -> bool:
    """Timers that read tables act only on a settled assignment whose tables are fully recovered."""
    return not app.rebalancing and app.tables.recovery.completed.is_set()
