"""Throughput of the working tree's worker against a commit's, run for run in one run: a change's before and after.

    .venv/bin/python bench/ab.py --before REF [--runs 3] [--events 100000] [--accounts 2000] [--store rocksdb://]

Why: these shared cores drift by 10-20 % within minutes, so a before measured an hour earlier cannot show a
change of that size. Here each round publishes the same input to fresh topics twice and runs the working
tree's worker on one and REF's (a git worktree, imported through `latency.checkout`'s link tree) on the
other, alternating which goes first, on the same broker (`KAFKA_BOOTSTRAP_SERVERS`, else a local one).
Rate: events/s from the worker's first commit to all committed, as `bench/detector.py` measures it.
Appends a table to bench/results.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from detector import ROOT, broker, code_version, drop_topics, worker_rate
from latency import checkout, remove_checkout, short_ref

from milestone_stream.topics import TopicNames


async def one_run(bootstrap: str, args: argparse.Namespace, tmp: Path, env: dict[str, str]) -> tuple[float, float]:
    """(events/s, peak RSS MiB) of one worker over `args.events` events published before it starts."""
    prefix = f"benchab{uuid.uuid4().hex[:6]}"
    try:
        return await worker_rate(bootstrap, args, TopicNames(f"{prefix}."), tmp, **env)
    finally:
        await drop_topics(bootstrap, prefix)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="the git ref whose worker is the before")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--store", default="rocksdb://")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    after, before = code_version(), f"before: {args.before} ({short_ref(args.before)})"
    contestants = [(after, {}), (before, checkout(args.before, tmp))]
    bootstrap, kafka = await broker(tmp)
    results: dict[str, list[tuple[float, float]]] = {after: [], before: []}
    try:
        for round_ in range(args.runs):
            for name, env in contestants if round_ % 2 == 0 else contestants[::-1]:
                results[name].append(await one_run(bootstrap, args, tmp, env))
                print(f"{name}: {results[name][-1][0]:,.0f} events/s", flush=True)
    finally:
        if kafka:
            kafka.stop()
        remove_checkout(tmp)
    report = (f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — throughput, after and before run for run "
              f"({platform.node()}, {os.cpu_count()} cores, bench/ab.py)\n"
              f"{args.events:,} events for {args.accounts:,} accounts, {args.partitions} partitions, store "
              f"{args.store}, default rules; rounds alternate which worker goes first.\n\n"
              "| worker | events/s, each run | median | peak RSS |\n| --- | --- | --- | --- |\n")
    for name, runs in results.items():
        report += (f"| {name} | {'; '.join(f'{eps:,.0f}' for eps, _ in runs)} "
                   f"| {statistics.median(eps for eps, _ in runs):,.0f} | {max(rss for _, rss in runs):,.0f} MiB |\n")
    print(report)
    with open(ROOT / "bench" / "results.md", "a") as out:
        out.write(report)


if __name__ == "__main__":
    asyncio.run(main())
