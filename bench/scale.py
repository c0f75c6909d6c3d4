"""Benchmark: one worker's peak memory against the number of accounts (issue 13: "RSS flat in accounts").

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000] [--per-account 2] [--store rocksdb://]

Why it exists: with the RocksDB store an account's row and its event ids live on local disk, so a
worker's memory should not grow with the number of accounts it owns; this measures it. For each
size, a fresh set of topics gets `--per-account` events for every account (distinct ids, so each
account has a row and that many id entries), then one worker (default rules: no tier is crossed)
reads them all. Reported per size: the worker's peak RSS (VmHWM) and RSS at the end, events/s from
its first commit to all committed, and the store's size on disk. Appended to bench/results.md.

Publishing millions of events: values are encoded once per event and sent in aiokafka batches
(`create_batch` / `send_batch`), one partition per account (account mod partitions).
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

from aiokafka import AIOKafkaProducer
from detector import ROOT, code_version, committed_total, drop_topics, event, peak_rss_mib, start_worker

from milestone_stream.topics import TopicNames, ensure_topics


async def publish_fast(bootstrap: str, topic: str, accounts: int, per_account: int, partitions: int,
                       id_prefix: str = "s") -> float:
    """`per_account` rounds over `accounts` accounts, in aiokafka batches; returns events/s published."""
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
                            max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024)
    await prod.start()
    began = time.perf_counter()
    try:
        open_batches = {p: prod.create_batch() for p in range(partitions)}
        pending: list[asyncio.Future] = []
        n = 0
        for j in range(per_account):
            for k in range(accounts):
                e = event(f"{id_prefix}{k}-{j}", k, n)
                n += 1
                p, key, value = k % partitions, e.account_id.encode(), e.to_avro()
                if open_batches[p].append(key=key, value=value, timestamp=None) is None:
                    pending.append(await prod.send_batch(open_batches[p], topic, partition=p))
                    open_batches[p] = prod.create_batch()
                    if open_batches[p].append(key=key, value=value, timestamp=None) is None:
                        raise RuntimeError("one event does not fit an empty batch")
                if len(pending) > 200:
                    await asyncio.gather(*pending)
                    pending = []
        for p, batch in open_batches.items():
            if batch.record_count():
                pending.append(await prod.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
        return n / (time.perf_counter() - began)
    finally:
        await prod.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


async def one_size(bootstrap: str, accounts: int, args: argparse.Namespace, tmp: Path) -> dict:
    names = TopicNames(f"scale{uuid.uuid4().hex[:6]}.")
    await ensure_topics(bootstrap, names.all(), args.partitions)
    total = accounts * args.per_account
    pub_eps = await publish_fast(bootstrap, names.telemetry, accounts, args.per_account, args.partitions)
    print(f"{accounts:,} accounts: {total:,} events published at {pub_eps:,.0f}/s", flush=True)
    data = tmp / f"w{accounts}"
    (tmp / "rules.yaml").write_text("{}\n")
    worker = start_worker(bootstrap, names.prefix, tmp / "rules.yaml", data, args.partitions, args.store)
    group = f"{names.prefix}detector"
    began = first = None
    last_print = time.perf_counter()
    try:
        while True:
            done = await committed_total(bootstrap, group, names.telemetry, args.partitions)
            now = time.perf_counter()
            if done and began is None:
                began, first = now, done
            if done >= total:
                assert began is not None and first is not None  # noqa: S101 - set when done first > 0
                eps = (total - first) / (now - began) if now > began else float("nan")
                return {"accounts": accounts, "events": total, "eps": eps, "peak": peak_rss_mib(worker.pid),
                        "rss": rss_mib(worker.pid), "disk": disk_mib(data)}
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited; see {data / 'worker.log'}")
            if now - last_print > 30:
                print(f"  {done:,} / {total:,} committed, RSS {rss_mib(worker.pid):,.0f} MiB", flush=True)
                last_print = now
            await asyncio.sleep(0.5)
    finally:
        worker.terminate()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        await drop_topics(bootstrap, names.prefix)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000", help="account counts, comma-separated")
    parser.add_argument("--per-account", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--store", default="rocksdb://")
    args = parser.parse_args()
    args.code = code_version()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise SystemExit("set KAFKA_BOOTSTRAP_SERVERS (a running broker)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    started = datetime.now(UTC)
    rows = []
    for accounts in (int(s) for s in args.sizes.split(",")):
        row = await one_size(bootstrap, accounts, args, tmp)
        print(f"  {row}", flush=True)
        rows.append(row)
        write(rows, args, started, final=False)
    write(rows, args, started, final=True)


def write(rows: list[dict], args: argparse.Namespace, started: datetime, final: bool) -> None:
    """The table so far, to stdout and (when final) to bench/results.md."""
    report = (
        f"\n### RSS against accounts, {started:%Y-%m-%d %H:%M} UTC — {platform.node()}, {os.cpu_count()} cores\n"
        f"conditions: one worker, store {args.store} (shared RocksDB budget "
        f"{os.environ.get('MILESTONES_ROCKSDB_MEMORY_MB', '64')} MiB), Python's collector gen-0 "
        f"{os.environ.get('MILESTONES_GC_GEN0', '50000')} (0: as it comes), {args.partitions} partitions, "
        f"{args.per_account} events "
        f"per account (distinct ids), default rules (no tier crossed), shared local broker; peak RSS is VmHWM; "
        f"store on disk measured while running (write-ahead logs included); code: {args.code}\n\n"
        "| accounts | events | worker events/s | peak RSS | RSS at end | store on disk |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        + "".join(f"| {r['accounts']:,} | {r['events']:,} | {r['eps']:,.0f} | {r['peak']:,.0f} MiB | "
                  f"{r['rss']:,.0f} MiB | {r['disk']:,.0f} MiB |\n" for r in rows)
    )
    print(report, flush=True)
    if final:
        with open(ROOT / "bench" / "results.md", "a") as out:
            out.write(report)


if __name__ == "__main__":
    asyncio.run(main())
