"""Test helpers: worker processes that can be killed, and readers of what came out."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.kafka_io import producer, read_topic
from milestone_stream.schemas.records import DeadLetter, Milestone

TESTS = Path(__file__).resolve().parent  # tests/support: faults.py is imported from here by a worker
REPO = TESTS.parent.parent


class Worker:
    """A real `milestones worker` process with its own app id (consumer group) and topic prefix.

    `faults` (e.g. "usage=acct-x,crm=acct-y") starts it with the rules that raise of tests/faults.py."""

    def __init__(self, bootstrap: str, prefix: str, tmp: Path, name: str = "w", faults: str | None = None,
                 **env: str) -> None:
        self.log = tmp / f"{name}.log"
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MILESTONES_TOPIC_PREFIX": prefix,
                    "MILESTONES_APP_ID": f"{prefix}detector", "MILESTONES_PARTITIONS": "3",
                    "MILESTONES_WEB_PORT": "0", "MILESTONES_DATA_DIR": str(tmp / name),
                    "MILESTONES_LOG_LEVEL": "warning", **env}
        self.process: subprocess.Popen | None = None
        self.command = [sys.executable, "-m", "milestone_stream.cli", "worker"]
        if faults:
            self.env.update(TEST_FAULTS=faults,
                            PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
            self.command = [sys.executable, "-c", "import sys, faults; faults.install(); "
                            "from milestone_stream.cli import main; sys.exit(main(['worker']))"]

    def start(self) -> Worker:
        self.process = subprocess.Popen(self.command, env=self.env, stdout=open(self.log, "ab"),
                                        stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"worker did not stop on SIGTERM within {timeout}s; log: {self.log}") from None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


async def publish(bootstrap: str, topic: str, records, **config) -> None:
    async with producer(bootstrap, **config) as prod:
        futures = [await prod.send(topic, key=r.account_id.encode(), value=r.to_avro()) for r in records]
        for f in futures:
            await f


async def milestones(bootstrap: str, topic: str) -> list[Milestone]:
    return [Milestone.from_avro(r.value) for r in await read_topic(bootstrap, topic)]


async def dead_letters(bootstrap: str, topic: str) -> list[DeadLetter]:
    return [DeadLetter.from_avro(r.value) for r in await read_topic(bootstrap, topic)]


async def table_rows(bootstrap: str, prefix: str, table: str) -> dict:
    """The latest row per key of a worker's table, from its changelog (what a recovering worker restores),
    in its stored form (read it with the owner's row class, e.g. `UsageRow.from_stored`)."""
    rows = {}
    for r in await read_topic(bootstrap, f"{prefix}detector-{table}-changelog"):
        rows[json.loads(r.key)] = json.loads(r.value) if r.value else None
    return {k: v for k, v in rows.items() if v}


async def final_totals(bootstrap: str, prefix: str, metric: str = "emails_sent") -> dict:
    """Each account's cumulative total of `metric`, from the usage table's changelog."""
    return {k: UsageRow.from_stored(v).total(metric, 0.0)
            for k, v in (await table_rows(bootstrap, prefix, "usage")).items()}
