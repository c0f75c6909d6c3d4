"""`milestones`: the one entry point. Sub-commands grow with the product."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from milestone_stream.settings import ConfigError, Settings


def cmd_broker(args) -> int:
    from milestone_stream.kafka_local import run_until_interrupted

    run_until_interrupted(Path(args.data_dir))
    return 0


def cmd_topics(args) -> int:
    s = Settings.from_env()
    created = asyncio.run(_ensure_topics(s, _require_bootstrap(s)))
    print("created: " + (", ".join(created) or "nothing (all exist)"))
    return 0


def cmd_worker(args) -> int:
    import faust

    from milestone_stream.app import build_app
    from milestone_stream.clock import Clock
    from milestone_stream.rules import Rules

    s = Settings.from_env()
    rules = Rules.load(s.rules_file)  # fail fast, before touching Kafka
    try:
        clock = Clock.from_iso(s.now)
    except ValueError:
        raise ConfigError(f"MILESTONES_NOW={s.now!r} is not an ISO-8601 instant") from None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_ensure_topics(s, _require_bootstrap(s)))
    app = build_app(s, rules, clock)
    faust.Worker(app, loop=loop, loglevel=s.log_level.upper(), quiet=True).execute_from_commandline()
    return 0


def cmd_publish_sample(args) -> int:
    from datetime import datetime, timezone

    from milestone_stream.kafka_io import producer
    from milestone_stream.sample import sample
    from milestone_stream.topics import TopicNames

    s = Settings.from_env()
    names = TopicNames(s.topic_prefix)

    async def publish():
        changes, events = sample(datetime.now(timezone.utc))
        async with producer(_require_bootstrap(s)) as prod:
            for c in changes:
                await prod.send(names.crm, key=c.account_id.encode(), value=c.to_avro())
            for e in events:
                await prod.send(names.telemetry, key=e.account_id.encode(), value=e.to_avro(),
                                timestamp_ms=int(e.occurred_at.timestamp() * 1000))
        print(f"published {len(changes)} CRM changes and {len(events)} telemetry events")

    asyncio.run(publish())
    return 0


def cmd_up(args) -> int:
    """The embedded default: local broker (unless KAFKA_BOOTSTRAP_SERVERS), worker, sample data."""
    from milestone_stream.kafka_local import LocalKafka

    s = Settings.from_env()
    kafka = None
    env = dict(os.environ)
    if not s.bootstrap_servers:
        kafka = LocalKafka(s.data_dir / "kafka")
        print("starting a local Apache Kafka broker ...", flush=True)
        kafka.start()
        env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers
        print(f"broker ready at {kafka.bootstrap_servers} (log: {kafka.log_file})", flush=True)
    asyncio.run(_ensure_topics(s, env["KAFKA_BOOTSTRAP_SERVERS"]))
    worker_log = Path(s.data_dir) / "worker.log"
    worker_log.parent.mkdir(parents=True, exist_ok=True)
    worker = subprocess.Popen([sys.executable, "-m", "milestone_stream.cli", "worker"], env=env,
                              stdout=open(worker_log, "ab"), stderr=subprocess.STDOUT)
    print(f"worker started (pid {worker.pid}, log: {worker_log})", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "milestone_stream.cli", "publish-sample"], env=env, check=True)
        from milestone_stream.watch import watch_milestones

        asyncio.run(watch_milestones(env["KAFKA_BOOTSTRAP_SERVERS"], Settings.from_env(env),
                                     exit_after=args.exit_after, worker_alive=lambda: worker.poll() is None))
    except KeyboardInterrupt:
        pass
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        if kafka:
            kafka.stop()
        print("stopped", flush=True)
    return 0


async def _ensure_topics(s: Settings, bootstrap: str) -> list[str]:
    from milestone_stream.topics import TopicNames, ensure_topics

    return await ensure_topics(bootstrap, TopicNames(s.topic_prefix).all(), s.partitions, s.replication_factor)


def _require_bootstrap(s: Settings) -> str:
    if not s.bootstrap_servers:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set (or run `milestones up` for a local broker)")
    return s.bootstrap_servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="milestones", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="run everything locally: broker, worker, sample data; show milestones")
    p.add_argument("--exit-after", type=float, default=None,
                   help="stop after this many seconds without a new milestone (default: run until Ctrl-C)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("broker", help="run a local Apache Kafka broker until Ctrl-C")
    p.add_argument("--data-dir", default="var/kafka")
    p.set_defaults(func=cmd_broker)
    sub.add_parser("topics", help="create the product's topics").set_defaults(func=cmd_topics)
    sub.add_parser("worker", help="run the detector worker (Faust)").set_defaults(func=cmd_worker)
    sub.add_parser("publish-sample", help="publish the sample data set").set_defaults(func=cmd_publish_sample)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(exc.args[0] if exc.args else exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
