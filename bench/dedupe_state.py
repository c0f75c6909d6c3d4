"""What exact duplicate detection costs per event: changelog bytes, memory, RocksDB disk.

    .venv/bin/python bench/dedupe_state.py [--events 300000] [--accounts 1]

Why a benchmark: the event-id table holds one entry per event within the dedupe horizon, so its
cost grows with events per account per horizon; the README states that cost per event, measured
here. Starts its own local broker (its log folder is where the changelog bytes are measured), then
runs one worker over the same input with the memory store and with the RocksDB store, each to the
end of its input, and prints per event: on-disk bytes of the `event_ids` changelog, the worker's
resident memory growth beyond a run over the same events with every id a duplicate of one (so
only the table's share is counted), and the RocksDB folder's size. Appends the figures to
bench/results.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from detector import ROOT, committed_total, event, peak_rss_mib, publish, start_worker

from milestone_stream.dev.kafka_local import LocalKafka
from milestone_stream.topics import TopicNames, ensure_topics


def folder_bytes(path: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in path.rglob(pattern) if f.is_file())


async def run(kafka: LocalKafka, tmp: Path, args, store: str, distinct: bool) -> dict:
    names = TopicNames(prefix=f"d{uuid.uuid4().hex[:6]}.")
    await ensure_topics(kafka.bootstrap_servers, names.all(), partitions=1)
    batch = [event(f"e{i}" if distinct else "same", i % args.accounts, i) for i in range(args.events)]
    await publish(kafka.bootstrap_servers, names.telemetry, batch)
    data = tmp / f"{store}-{distinct}-{names.prefix}"
    os.environ["MILESTONES_STORE"] = f"{store}://"
    worker = start_worker(kafka.bootstrap_servers, names.prefix, tmp / "rules.yaml", data, 1)
    began = time.perf_counter()
    try:
        detector_group = f"{names.prefix}detector"
        while await committed_total(kafka.bootstrap_servers, detector_group, names.telemetry, 1) < args.events:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited; see {data / 'worker.log'}")
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - began
        rss = peak_rss_mib(worker.pid)
    finally:
        worker.terminate()
        worker.wait(60)
    changelog = kafka.data_dir / "kraft" / f"{names.prefix}detector-event_ids-changelog-0"
    return {"rss_mib": rss, "changelog_bytes": folder_bytes(changelog, "*.log"), "seconds": elapsed,
            "rocksdb_bytes": folder_bytes(data / "faust", "*") if store == "rocksdb" else 0}


async def measure(kafka: LocalKafka, tmp: Path, args) -> list:
    rows = []
    for store in ("memory", "rocksdb"):
        base = await run(kafka, tmp, args, store, distinct=False)
        full = await run(kafka, tmp, args, store, distinct=True)
        rows.append((store, base, full))
    return rows


def main(args) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "rules.yaml").write_text("usage:\n  emails_sent: {tiers: [1000000000000]}\n")
        with LocalKafka(tmp / "kafka") as kafka:  # started outside the event loop (it probes with its own)
            rows = asyncio.run(measure(kafka, tmp, args))
    n = args.events
    lines = [f"\n### Dedupe state, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
             f"({n:,} events, {args.accounts} account(s), {platform.machine()}, local broker)\n",
             "| store | changelog bytes per event | memory per event (RSS beyond all-duplicates) "
             "| RocksDB bytes per event | worker events/s |", "| --- | --- | --- | --- | --- |"]
    for store, base, full in rows:
        lines.append(f"| {store} | {full['changelog_bytes'] / n:.0f} | "
                     f"{(full['rss_mib'] - base['rss_mib']) * 2**20 / n:.0f} B | "
                     f"{(full['rocksdb_bytes'] / n) if store == 'rocksdb' else 0:.0f} | {n / full['seconds']:,.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(ROOT / "bench" / "results.md", "a") as out:
        out.write(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--accounts", type=int, default=1)
    main(parser.parse_args())
