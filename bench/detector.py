"""Benchmark: the usage accumulator against a raw aiokafka consume→produce loop, same broker, same run.

    .venv/bin/python bench/detector.py [--events 100000] [--accounts 2000] [--partitions 6]
                                       [--rate 5000 --rate half] [--store rocksdb://]

The worker logs at error level (its log is in the run's temporary folder); BENCH_WORKER_LOG_LEVEL
changes that. MILESTONES_* variables (commit interval, linger, batch size) pass through to the worker.

Prints and appends to bench/results.md: sustained events/s of one worker (at_least_once, the shipped
guarantee) and of the raw baseline over the same input, their ratio, the worker's peak RSS, and
p50/p99 latency from publish to milestone visible to a read_committed consumer at fixed rates (each
`--rate`: events/s, or `half`, half of the worker's throughput measured earlier in the same run;
default 5,000 and half, issue 13's two latency targets).
Beside them, the Faust floor (bench/faust_floor.py): the same input through Faust agents that do
no work, to separate Faust's own per-message cost from the detector's; and the same job in Quix
Streams (bench/quix_usage.py: RocksDB state with its changelog, exact dedupe), the peer issue 13
measures the worker against. The worker's store is `--store` (MILESTONES_STORE; default rocksdb://,
as issue 13 asks; memory:// for the in-memory tables).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError, RequestTimedOutError

from milestone_stream.dev.kafka_local import LocalKafka
from milestone_stream.kafka_io import producer
from milestone_stream.schemas.records import Milestone, TelemetryEvent
from milestone_stream.settings import Settings
from milestone_stream.topics import TopicNames, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
#: each speed-up of the worker turned off alone (the setting and its value), and what the worker then does
BEFORES = [("MILESTONES_BATCH_CONSUME", "false", "telemetry through Faust's stream"),
           ("MILESTONES_TABLE_BYTES", "false", "tables through Faust's store (changelog still batched)"),
           ("MILESTONES_GC_GEN0", "0", "Python's garbage collector as it comes")]
# three days ago: every event (the latency run's start 2.3 days later) within the worker's dedupe horizon and in
# the past (an older one is dead-lettered, one in the future too)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


def event(event_id: str, account: int, ms: int) -> TelemetryEvent:
    return TelemetryEvent(event_id=event_id, account_id=f"acct{account}", metric="emails_sent", value=10.0,
                          occurred_at=T0 + timedelta(milliseconds=ms), source="bench")


def events(n: int, accounts: int, start: int = 0) -> list[TelemetryEvent]:
    """`n` events, the accounts in turn."""
    return [event(f"b{i}", i % accounts, i) for i in range(start, start + n)]


def staggered(account: int, n: int) -> list[TelemetryEvent]:
    """`n` events of one account."""
    return [event(f"w{account}-{j}", account, j) for j in range(n)]


async def publish(bootstrap, topic, batch, rate: float | None = None) -> dict[str, float]:
    sent_at = {}
    async with producer(bootstrap, linger_ms=2) as prod:
        began = time.perf_counter()
        futures = []
        for i, e in enumerate(batch):
            if rate and i % 50 == 0:
                ahead = began + i / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            sent_at[e.event_id] = time.perf_counter()
            futures.append(await prod.send(topic, key=e.account_id.encode(), value=e.to_avro()))
        for f in futures:
            await f
    return sent_at


async def committed_total(bootstrap, group, topic, partitions) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except GroupCoordinatorNotAvailableError:  # the broker is still creating __consumer_offsets
            return 0
        except RequestTimedOutError:  # a busy shared broker: as if nothing were committed yet; the callers poll again
            return 0
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)
    finally:
        await admin.close()


async def drop_topics(bootstrap: str, *markers: str) -> None:
    """Delete this run's topics (names holding one of `markers`: its prefixes, which the changelogs Faust and
    Quix name carry too), so that runs on a shared broker do not pile up partitions (each costs the broker
    heap and file handles). BENCH_KEEP_TOPICS=1 keeps them; a failure is reported, never fatal."""
    if os.environ.get("BENCH_KEEP_TOPICS") == "1":
        return
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            ours = [t for t in await admin.list_topics() if any(m in t for m in markers)]
            if ours:
                await admin.delete_topics(ours)
        finally:
            await admin.close()
    except Exception as exc:  # noqa: BLE001 - the figures are measured; leftover topics are only untidy
        print(f"could not delete the run's topics ({', '.join(markers)}): {exc!r}", file=sys.stderr)


async def raw_baseline(bootstrap, source, sink, total) -> float:
    """Consume, produce each value to `sink`, commit every 0.2 s: the floor any Kafka app pays."""
    group = f"raw-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed",
                                max_poll_records=2000)
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    await consumer.start()
    await prod.start()
    done, began, last_commit = 0, None, time.perf_counter()
    try:
        while done < total:
            batch = await consumer.getmany(timeout_ms=1000)
            began = began or time.perf_counter()
            for records in batch.values():
                for r in records:
                    await prod.send(sink, key=r.key, value=r.value)
                done += sum(1 for _ in records)
            if time.perf_counter() - last_commit > 0.2:
                await prod.flush()
                await consumer.commit()
                last_commit = time.perf_counter()
        await prod.flush()
        await consumer.commit()
        return total / (time.perf_counter() - began)
    finally:
        await consumer.stop()
        await prod.stop()


def start_worker(bootstrap, prefix, rules, data_dir, partitions, store="rocksdb://", **extra: str) -> subprocess.Popen:
    env = {**os.environ, **extra, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MILESTONES_TOPIC_PREFIX": prefix,
           "MILESTONES_STORE": store,
           "MILESTONES_APP_ID": f"{prefix}detector", "MILESTONES_PARTITIONS": str(partitions),
           "MILESTONES_WEB_PORT": "0", "MILESTONES_DATA_DIR": str(data_dir), "MILESTONES_RULES": str(rules),
           "MILESTONES_LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "error")}
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "milestone_stream.cli", "worker"], env=env,
                            stdout=open(data_dir / "worker.log", "ab"), stderr=subprocess.STDOUT)


def start_quix(bootstrap, topic, group, sink, state_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "quix_usage.py"), bootstrap, topic, group, sink,
                             str(state_dir)], stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def code_version() -> str:
    """Which worker code a run measured: the commit, and the files of the package changed since (the tree is shared)."""
    import milestone_stream
    where = Path(next(iter(milestone_stream.__path__))).resolve()
    if where != ROOT / "streams":
        return f"milestone_stream from {where}"
    git = shutil.which("git")
    if git is None:
        return "unknown (no git)"
    sha = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run([git, "status", "--porcelain", "--", "streams", "agents", "schemas"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split("\n")
    files = sorted(line[3:] for line in changed if line.strip())
    return f"commit {sha}" + (f" with uncommitted changes in {', '.join(files)}" if files else "")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_floor(bootstrap, topic, group, mode, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "faust_floor.py"), bootstrap, topic, group, mode],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


async def throughput(bootstrap, process: subprocess.Popen, group, topic, args, log: Path) -> tuple[float, float]:
    """Input published before `process` started: events/s from its first commit to all committed, peak RSS."""
    try:
        began = None
        while True:
            done = await committed_total(bootstrap, group, topic, args.partitions)
            if done and began is None:
                began, first = time.perf_counter(), done
            if done >= args.events:
                if first >= args.events:  # (else a rate of 0, and a ZeroDivisionError in the ratios)
                    raise SystemExit(f"{group} committed all {args.events:,} events at once: too few to measure "
                                     "a rate; raise --events")
                elapsed = time.perf_counter() - began
                return (args.events - first) / elapsed, peak_rss_mib(process.pid)
            if process.poll() is not None:
                raise SystemExit(f"{group} exited; see {log}")
            await asyncio.sleep(0.1)
    finally:
        process.terminate()
        process.wait(30)


async def worker_rate(bootstrap: str, args, names: TopicNames, tmp: Path, **env: str) -> tuple[float, float]:
    """Fresh topics `names` with `args.events` events published, then one worker (default rules, `env` added):
    its events/s from its first commit to all committed, and its peak RSS (`throughput`)."""
    await ensure_topics(bootstrap, names.all(), args.partitions)
    await publish(bootstrap, names.telemetry, events(args.events, args.accounts))
    data = tmp / names.prefix.rstrip(".")
    (tmp / "default-rules.yaml").write_text("{}\n")  # the default tiers (500 … 100k): milestones as rare as in use
    worker = start_worker(bootstrap, names.prefix, tmp / "default-rules.yaml", data, args.partitions, args.store,
                          **env)
    return await throughput(bootstrap, worker, f"{names.prefix}detector", names.telemetry, args, data / "worker.log")


HALF = " (half the detector worker's rate above)"
#: the latency runs' rules: a tier every 250 per account, so at 10 per event one event in 25 fires one
LATENCY_RULES = ("usage: {emails_sent: {tiers: [" + ", ".join(str(250 * k) for k in range(1, 4001))
                 + "]}}\nspike: null\n")


async def broker(tmp: Path) -> tuple[str, LocalKafka | None]:
    """KAFKA_BOOTSTRAP_SERVERS, else a local broker started in `tmp` (returned too: the caller stops it)."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        return bootstrap, None
    os.environ.setdefault("MILESTONES_CACHE_DIR", str(ROOT / ".cache"))
    kafka = await asyncio.to_thread(LocalKafka(tmp / "kafka").start)
    return kafka.bootstrap_servers, kafka


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return sum(values), values[3] + values[4]  # all, idle + iowait


def quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[max(0, int(len(sorted_values) * q) - 1)]


async def measure(bootstrap: str, args, rate: float, tmp: Path, env: dict[str, str]) -> dict[str, float]:
    """At `rate` events/s, after a warm-up (every account's row exists), publish → milestone read by a
    read_committed consumer; split at the milestone's CreateTime (the worker's part, visibility); with the
    publisher's achieved rate and the CPU of the worker, this process and the machine (bench/latency.py)."""
    names = TopicNames(f"lat{uuid.uuid4().hex[:6]}.")
    await ensure_topics(bootstrap, names.all(), args.partitions)
    worker = start_worker(bootstrap, names.prefix, tmp / "rules.yaml", tmp / names.prefix.rstrip("."),
                          args.partitions, args.store, **env)
    consumer = AIOKafkaConsumer(names.milestones, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest", isolation_level="read_committed")
    await consumer.start()
    received: dict[str, tuple[float, float]] = {}  # event id → (read at, CreateTime), wall clock
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=200)).values():
                now = time.time()
                for r in records:
                    key = Milestone.from_avro(r.value).evidence[0].record.removeprefix("event ")
                    received.setdefault(key, (now, r.timestamp / 1000))

    reader = asyncio.create_task(read())
    group = f"{names.prefix}detector"
    try:
        warmup = [e for k in range(args.accounts) for e in staggered(k, 10 + k % 25)]
        await publish(bootstrap, names.telemetry, warmup)
        while await committed_total(bootstrap, group, names.telemetry, args.partitions) < len(warmup):
            await asyncio.sleep(0.2)
        n = int(rate * args.seconds)
        batch = events(n, args.accounts, start=2 * 10**8)
        before = cpu_ticks(worker.pid), cpu_ticks(os.getpid()), machine_busy()
        wall, began = time.time(), time.perf_counter()
        sent = await publish(bootstrap, names.telemetry, batch, rate=rate)
        elapsed = time.perf_counter() - began
        after = cpu_ticks(worker.pid), cpu_ticks(os.getpid()), machine_busy()
        while await committed_total(bootstrap, group, names.telemetry, args.partitions) < len(warmup) + n:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # the last milestones reach the reader
    finally:
        stop.set()
        await reader
        await consumer.stop()
        worker.terminate()
        worker.wait(30)
        await drop_topics(bootstrap, names.prefix)
    to_wall = wall - began
    rows = [((read_at - sent[k] - to_wall) * 1000, (created - sent[k] - to_wall) * 1000)
            for k, (read_at, created) in received.items() if k in sent]
    if not rows:
        raise SystemExit("no milestone from the measured events arrived")
    total, in_worker = sorted(r[0] for r in rows), sorted(r[1] for r in rows)
    visible = sorted(a - b for a, b in rows)
    tick = os.sysconf("SC_CLK_TCK")
    all_ticks, idle_ticks = after[2][0] - before[2][0], after[2][1] - before[2][1]
    return {"samples": len(rows), "achieved": n / elapsed,
            "p50": statistics.median(total), "p99": quantile(total, 0.99), "max": total[-1],
            "worker p50": statistics.median(in_worker), "worker p99": quantile(in_worker, 0.99),
            "visible p99": quantile(visible, 0.99),
            "worker cpu": 100 * (after[0] - before[0]) / tick / elapsed,
            "bench cpu": 100 * (after[1] - before[1]) / tick / elapsed,
            "machine busy": 100 * (all_ticks - idle_ticks) / max(all_ticks, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rate", action="append", help="events/s, or half (of the worker's measured rate); "
                        "repeatable (default: 5000 and half)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--store", default="rocksdb://", help="the worker's MILESTONES_STORE (rocksdb:// or memory://)")
    args = parser.parse_args()
    rates = args.rate or ["5000", "half"]
    if any(r != "half" and not r.replace(".", "", 1).isdigit() for r in rates):
        parser.error("--rate takes events/s or half")
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    code = code_version()  # at the start: the tree is shared and may change during the run
    (tmp / "rules.yaml").write_text(LATENCY_RULES)  # latency: one event in 25 fires a milestone
    bootstrap, kafka = await broker(tmp)
    try:
        run = uuid.uuid4().hex[:6]
        a = TopicNames(f"bench{run}a.")
        worker_eps, rss = await worker_rate(bootstrap, args, a, tmp)
        sink = f"bench{run}.raw.out"
        quix_sink = f"{a.telemetry}.quix.milestones"
        await ensure_topics(bootstrap, [sink, f"{a.telemetry}.floor", quix_sink], args.partitions)
        # the same worker with one speed-up turned off at a time: each change's before, in the same run
        befores = [await worker_rate(bootstrap, args, TopicNames(f"bench{run}v{i}."), tmp, **{name: value})
                   for i, (name, value, _) in enumerate(BEFORES)]  # (events/s, peak RSS) per entry of BEFORES
        raw_eps = await raw_baseline(bootstrap, a.telemetry, sink, args.events)
        floors = {}
        for mode in ("consume", "produce", "drain"):
            group, log = f"bench{run}.floor-{mode}", tmp / f"floor-{mode}.log"
            floors[mode], _ = await throughput(bootstrap, start_floor(bootstrap, a.telemetry, group, mode, log),
                                               group, a.telemetry, args, log)
        group, log = f"bench{run}.quix", tmp / "quix.log"
        quix = start_quix(bootstrap, a.telemetry, group, quix_sink, tmp / "quix-state", log)
        quix_eps, quix_rss = await throughput(bootstrap, quix, group, a.telemetry, args, log)
        latencies = []  # (events/s, --rate as given, p50, p99, samples)
        for rate in rates:
            events_per_s = worker_eps / 2 if rate == "half" else float(rate)
            r = await measure(bootstrap, args, events_per_s, tmp, {})
            latencies.append((events_per_s, rate, r["p50"], r["p99"], r["samples"]))
    finally:
        if kafka:
            kafka.stop()
        else:
            await drop_topics(bootstrap, f"bench{run}")
    size = len(events(1, 1)[0].to_avro())
    settings = Settings.from_env()
    report = (
        f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.node()}, {os.cpu_count()} cores\n"
        f"conditions: Kafka 3.9.1 local (1 node), {args.partitions} partitions, {args.events:,} events for "
        f"{args.accounts:,} accounts, {size}-byte Avro values, guarantee at_least_once, commit interval "
        f"{settings.commit_interval} s, producer linger {settings.producer_linger * 1000:g} ms, batches of "
        f"{settings.batch_size} events or {settings.batch_seconds * 1000:g} ms, worker store {args.store}, "
        f"tiers crossed evenly in the latency run, worker and broker on the same machine; code: {code}\n\n"
        f"| measure | value |\n| --- | --- |\n"
        f"| raw aiokafka consume→produce (baseline) | {raw_eps:,.0f} events/s |\n"
        f"| Faust floor: agent that only consumes (batched) | {floors['consume']:,.0f} events/s "
        f"({floors['consume'] / raw_eps:.2f} x baseline) |\n"
        f"| Faust floor: agent that sends one record per event | {floors['produce']:,.0f} events/s "
        f"({floors['produce'] / raw_eps:.2f} x baseline) |\n"
        f"| Faust floor raised: each fetch to a batch step that does nothing (faust_compat/drain.py) | "
        f"{floors['drain']:,.0f} events/s ({floors['drain'] / raw_eps:.2f} x baseline) |\n"
        f"| detector worker (usage accumulator, default tiers) | {worker_eps:,.0f} events/s |\n"
        + "".join(f"| the same worker, {what} ({name}={value}) | {eps:,.0f} events/s, peak RSS {peak:,.0f} MiB |\n"
                  for (name, value, what), (eps, peak) in zip(BEFORES, befores, strict=True))
        + f"| ratio worker / baseline | {worker_eps / raw_eps:.2f} |\n"
        f"| ratio worker / raised floor | {worker_eps / floors['drain']:.2f} |\n"
        f"| worker peak RSS | {rss:,.0f} MiB |\n"
        f"| Quix Streams, same job (RocksDB state, changelog, exact dedupe) | {quix_eps:,.0f} events/s "
        f"({quix_eps / raw_eps:.2f} x baseline) |\n"
        f"| ratio worker / Quix | {worker_eps / quix_eps:.2f} |\n"
        f"| Quix peak RSS | {quix_rss:,.0f} MiB |\n"
        + "".join(f"| publish → milestone visible (read_committed) at {eps:,.0f} events/s"
                  f"{HALF if rate == 'half' else ''} | p50 {p50:,.0f} ms, p99 {p99:,.0f} ms "
                  f"({samples:,} milestones) |\n"
                  for eps, rate, p50, p99, samples in latencies)
    )
    print(report)
    with open(ROOT / "bench" / "results.md", "a") as out:
        out.write(report)


if __name__ == "__main__":
    asyncio.run(main())
