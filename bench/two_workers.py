"""Benchmark: two workers in one consumer group, and what the rebalance between them costs (issue 13).

    .venv/bin/python bench/two_workers.py [--events 400000] [--accounts 8000] [--partitions 6]
                                          [--second-at 0.2] [--store rocksdb://]

Why it exists: the worker scales out by running more of it in one group; this measures what a
second worker adds and how long the group makes no progress while the partitions (and, with
RocksDB, their changelog state) move. The input is published first; worker A starts alone; once
it has committed `--second-at` of the input, worker B starts. The group's committed offsets are
polled every 0.1 s until all the input is committed. Reported: A's rate alone, the longest stretch
with no committed progress after B started (the rebalance cost; beside it the longest stretch
while A ran alone, which is the commit interval and polling), the two workers' combined rate from
the end of that stretch to the end, and the distinct milestones on the output (each account
crosses the 500 tier once: one per account, none lost, none doubled). Appended to bench/results.md.
400,000 events by default: with 100,000, worker A (25,000 events/s since the collector was tuned) had
committed everything before B had started and joined (about 4 s), and the run measured no rebalance.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError, RequestTimedOutError
from detector import ROOT, code_version, drop_topics, events, peak_rss_mib, publish, start_worker

from milestone_stream.kafka_io import read_topic
from milestone_stream.schemas.records import Milestone
from milestone_stream.topics import TopicNames, ensure_topics


class Committed:
    """The group's committed total on one topic, from one admin client (polled every 0.1 s)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.group, self.topic = group, topic

    async def __aenter__(self) -> Committed:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def total(self) -> int | None:
        """None when the broker did not answer in time (a busy shared broker): no sample."""
        try:
            offsets = await self.admin.list_consumer_group_offsets(self.group)
        except GroupCoordinatorNotAvailableError:
            return 0
        except RequestTimedOutError:
            return None
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == self.topic and meta.offset > 0)


def longest_gap(samples: list[tuple[float, int]], since: float) -> tuple[float, float]:
    """(seconds, end time) of the longest stretch after `since` in which the committed total did not move."""
    best, end, last_move = 0.0, since, since
    prev = None
    for t, done in samples:
        if t < since:
            prev = done
            continue
        if prev is not None and done > prev:
            if t - last_move > best:
                best, end = t - last_move, t
            last_move = t
        prev = done
    return best, end


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--accounts", type=int, default=8_000)  # 50 events of 10 each
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--second-at", type=float, default=0.2, help="fraction committed when worker B starts")
    parser.add_argument("--store", default="rocksdb://")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise SystemExit("set KAFKA_BOOTSTRAP_SERVERS (a running broker)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-two-"))
    code = code_version()
    (tmp / "rules.yaml").write_text("{}\n")  # default tiers: 50 events of 10 per account cross 500 once
    names = TopicNames(f"two{uuid.uuid4().hex[:6]}.")
    await ensure_topics(bootstrap, names.all(), args.partitions)
    await publish(bootstrap, names.telemetry, events(args.events, args.accounts))
    group = f"{names.prefix}detector"
    samples: list[tuple[float, int]] = []
    workers: list[subprocess.Popen] = []
    started_b = None
    try:
        async with Committed(bootstrap, group, names.telemetry) as committed:
            workers.append(start_worker(bootstrap, names.prefix, tmp / "rules.yaml", tmp / "a", args.partitions,
                                        args.store))
            while True:
                polled = await committed.total()
                now = time.perf_counter()
                if polled is None:
                    continue
                done = polled
                samples.append((now, done))
                if started_b is None and done >= args.second_at * args.events:
                    started_b = now
                    workers.append(start_worker(bootstrap, names.prefix, tmp / "rules.yaml", tmp / "b",
                                                args.partitions, args.store))
                if done >= args.events:
                    break
                for w, label in zip(workers, "ab", strict=False):
                    if w.poll() is not None:
                        raise SystemExit(f"worker {label} exited; see {tmp / label / 'worker.log'}")
                await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - now)))
        peaks = [peak_rss_mib(w.pid) for w in workers]
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()
    if started_b is None:
        raise SystemExit("worker A committed everything before B was to start")
    first_t, first_done = next((t, d) for t, d in samples if d > 0)
    at_b = max(d for t, d in samples if t <= started_b)
    alone_eps = (at_b - first_done) / (started_b - first_t)
    alone_gap, _ = longest_gap([s for s in samples if s[0] <= started_b], first_t)
    gap, gap_end = longest_gap(samples, started_b)
    after = next(d for t, d in samples if t >= gap_end)
    end_t = samples[-1][0]
    combined_eps = (args.events - after) / (end_t - gap_end) if end_t > gap_end else float("nan")
    milestones = [Milestone.from_avro(r.value) for r in await read_topic(bootstrap, names.milestones)]
    await drop_topics(bootstrap, names.prefix)
    distinct = len({m.milestone_id for m in milestones})
    report = (
        f"\n### Two workers, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.node()}, {os.cpu_count()} cores\n"
        f"conditions: {args.events:,} events for {args.accounts:,} accounts, {args.partitions} partitions, store "
        f"{args.store}, default rules, worker B started when A had committed {at_b:,} events "
        f"({at_b / args.events:.0%}); committed offsets polled every 0.1 s; workers and broker share the machine; "
        f"code: {code}\n\n"
        "| measure | value |\n| --- | --- |\n"
        f"| worker A alone | {alone_eps:,.0f} events/s |\n"
        f"| longest stretch without committed progress, A alone | {alone_gap:.1f} s |\n"
        f"| rebalance: longest stretch without committed progress after B started | {gap:.1f} s |\n"
        f"| A and B together, after that stretch | {combined_eps:,.0f} events/s ({combined_eps / alone_eps:.2f} x A "
        f"alone) |\n"
        f"| from B's start to all committed | {end_t - started_b:.1f} s for {args.events - at_b:,} events |\n"
        f"| peak RSS A, B | {peaks[0]:,.0f} MiB, {peaks[1]:,.0f} MiB |\n"
        f"| milestones on the output (distinct / records / expected) | {distinct:,} / {len(milestones):,} / "
        f"{args.accounts:,} |\n"
    )
    print(report)
    with open(ROOT / "bench" / "results.md", "a") as out:
        out.write(report)


if __name__ == "__main__":
    asyncio.run(main())
