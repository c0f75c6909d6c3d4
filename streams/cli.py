"""`milestones`: the one entry point. Sub-commands grow with the product."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from milestone_stream import logs
from milestone_stream.settings import ConfigError, Settings


def cmd_broker(args: argparse.Namespace) -> int:
    from milestone_stream.dev.kafka_local import run_until_interrupted

    run_until_interrupted(Path(args.data_dir))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    s = Settings.from_env()
    created = asyncio.run(_ensure_topics(s, _require_bootstrap(s)))
    print("created: " + (", ".join(created) or "nothing (all exist)"))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from milestone_stream import faust_compat, gc_tuning
    from milestone_stream.agents.ingest.config import AdaptersConfig
    from milestone_stream.app import build_app, required_topics
    from milestone_stream.clock import Clock
    from milestone_stream.rules import Rules
    from milestone_stream.topics import ensure

    s = Settings.from_env()
    rules = Rules.load(s.rules_file)  # fail fast, before touching Kafka
    adapters = AdaptersConfig.load(s.adapters_file, rules)
    try:
        clock = Clock.from_iso(s.now)
    except ValueError:
        raise ConfigError(f"MILESTONES_NOW={s.now!r} is not an ISO-8601 instant") from None
    bootstrap = _require_bootstrap(s)  # pre-flight: an unreachable broker is one line, before Faust retries forever
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_ensure_topics(s, _require_bootstrap(s)))
    app = build_app(s, rules, clock, adapters)
    # every topic an agent or table uses exists, with its partitions, before any agent starts
    loop.run_until_complete(ensure(bootstrap, required_topics(app, s), s.replication_factor))
    # a quiet worker without Faust's progress spinner (why: faust_compat/worker.py)
    worker = faust_compat.worker(app, loop=loop, loglevel=s.log_level.upper(), logging_config=logs.config(s.log_level),
                                 stop_seconds=s.stop_seconds)
    if s.gc_gen0:  # here, not earlier: a start that fails on its config changes nothing
        gc_tuning.tune(s.gc_gen0)
        gc_tuning.freeze_startup()
    worker.execute_from_commandline()  # its stop, and the exit after it, end within s.stop_seconds


def cmd_ui(args: argparse.Namespace) -> int:
    from milestone_stream.sinks.approvals.service import serve_ui

    return _serve(serve_ui)


def cmd_sender(args: argparse.Namespace) -> int:
    from milestone_stream.sinks.sender.service import serve_sender

    return _serve(serve_sender)


def cmd_gainsight(args: argparse.Namespace) -> int:
    """Each sent email as a Gainsight CS Timeline activity (docs/gainsight.md); off when its URL is unset."""
    from milestone_stream.sinks.gainsight.config import GainsightSettings
    from milestone_stream.sinks.gainsight.service import serve_gainsight

    s, g = Settings.from_env(), GainsightSettings.from_env()
    logs.configure(s.log_level)
    if not g.enabled:
        print("gainsight: MILESTONES_GAINSIGHT_URL is not set; the stage is off", flush=True)
        return 0
    bootstrap = _require_bootstrap(s)
    asyncio.run(_ensure_topics(s, bootstrap))
    asyncio.run(serve_gainsight(s, bootstrap, g))
    return 0


def _serve(service: Callable[[Settings, str], Coroutine[Any, Any, None]]) -> int:
    """Run a service of the approval side: its settings checked first (the signing key included)."""
    s = Settings.from_env()
    s.signing_key()
    logs.configure(s.log_level)
    asyncio.run(service(s, _require_bootstrap(s)))
    return 0


def cmd_lag(args: argparse.Namespace) -> int:
    """Exit status 1 when the total lag exceeds --max-lag (for alerts and health checks)."""
    import json

    from milestone_stream.ops.lag import as_json, as_table, measure, product_groups
    from milestone_stream.rules import Rules
    from milestone_stream.sinks.gainsight.config import GainsightSettings
    from milestone_stream.topics import TopicNames

    s = Settings.from_env()
    rules = Rules.load(s.rules_file)
    groups = product_groups(s.app_id, TopicNames(s.topic_prefix), _adapter_topics(s),
                            gainsight=GainsightSettings.from_env().enabled, signals=rules.signals is not None,
                            sequence=rules.anniversary_sequence is not None)
    bootstrap = _require_bootstrap(s)

    async def once() -> int:
        rows = await measure(bootstrap, groups)
        print(json.dumps(as_json(rows)) if args.json else as_table(rows), flush=True)
        return sum(r.lag for r in rows)

    async def run() -> int:
        while True:
            total = await once()
            if not args.watch:
                return total
            await asyncio.sleep(args.watch)

    try:
        total = asyncio.run(run())
    except KeyboardInterrupt:
        return 0
    return 1 if args.max_lag is not None and total > args.max_lag else 0


def _instant(option: str, text: str) -> datetime:
    """An ISO-8601 time from the command line; without an offset it is UTC (as every time the product shows)."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not an ISO-8601 time (e.g. 2026-11-25T09:00Z)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def cmd_deadletter(args: argparse.Namespace) -> int:
    import json

    from milestone_stream.ops.deadletters import AlreadyReplayed, describe, parked, replay
    from milestone_stream.topics import TopicNames

    s = Settings.from_env()
    names = TopicNames(s.topic_prefix)
    bootstrap = _require_bootstrap(s)
    if args.action == "list":
        since = _instant("--since", args.since) if args.since else None
        found = asyncio.run(parked(bootstrap, names, stage=args.stage, reason=args.reason, since=since))
        for p in found:
            print(json.dumps({"id": p.id, "replayed_at": p.replayed_at, **p.letter.model_dump(mode="json",
                                                                                            exclude={"value"})})
                  if args.json else describe(p))
        if not args.json:
            print(f"{len(found)} dead letter(s)")
        return 0
    try:
        done = asyncio.run(replay(bootstrap, names, args.ids))
    except (KeyError, AlreadyReplayed) as exc:
        print(f"milestones: {exc.args[0]}", file=sys.stderr)
        return 1
    for p in done:
        print(f"replayed {p.id} to {p.letter.topic}")
    return 0


def _adapter_topics(s: Settings) -> list[str]:
    from milestone_stream.agents.ingest.config import AdaptersConfig
    from milestone_stream.rules import Rules

    return AdaptersConfig.load(s.adapters_file, Rules.load(s.rules_file)).source_topics()


def cmd_resync(args: argparse.Namespace) -> int:
    """What Salesforce could not send (CDC gap and overflow events): records to re-read."""
    import json

    from milestone_stream.kafka_io import read_topic
    from milestone_stream.schemas.records import ResyncNeeded
    from milestone_stream.topics import TopicNames

    s = Settings.from_env()
    records = asyncio.run(read_topic(_require_bootstrap(s), TopicNames(s.topic_prefix).resync, idle_ms=300))
    needed = sorted((ResyncNeeded.from_avro(r.value) for r in records), key=lambda n: n.committed_at)
    for n in needed:
        print(json.dumps(n.model_dump(mode="json")) if args.json else
              f"{n.committed_at:%Y-%m-%d %H:%M:%S} {n.change_type:<13} {n.entity} "
              f"{', '.join(n.record_ids) or '(every record changed since then: overflow)'}  "
              f"[{n.topic}[{n.partition}]@{n.offset}]")
    if not args.json:
        print(f"{len(needed)} resync request(s)")
    return 0


def cmd_publish_sample(args: argparse.Namespace) -> int:
    from datetime import datetime

    from milestone_stream.dev.sample import sample
    from milestone_stream.kafka_io import producer
    from milestone_stream.topics import TopicNames

    s = Settings.from_env()
    names = TopicNames(s.topic_prefix)
    bootstrap = _require_bootstrap(s)

    async def publish() -> None:
        changes, events = sample(datetime.now(UTC))
        async with producer(bootstrap) as prod:
            for c in changes:
                await prod.send(names.crm, key=c.account_id.encode(), value=c.to_avro())
            for e in events:
                await prod.send(names.telemetry, key=e.account_id.encode(), value=e.to_avro(),
                                timestamp_ms=int(e.occurred_at.timestamp() * 1000))
        print(f"published {len(changes)} CRM changes and {len(events)} telemetry events")

    asyncio.run(publish())
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Telemetry or CRM changes from a JSON-lines or CSV file (or stdin) to the product topics; exit 1
    when any line was refused (the valid ones are sent all the same)."""
    from datetime import datetime, timedelta

    from milestone_stream.ops.progress import Progress
    from milestone_stream.ops.publish import Summary, guess_format, publish, retime_shift
    from milestone_stream.topics import TopicNames

    s = Settings.from_env()
    bootstrap = None if args.dry_run else _require_bootstrap(s)
    if args.file == "-" and sys.stdin is None:  # started with stdin closed (`<&-`)
        raise ConfigError("cannot read stdin: it is closed")
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # closed by the with below
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
    with stream:
        regular = args.file != "-" and Path(args.file).is_file()
        head = stream.peek(64)[:64]  # type: ignore[union-attr]  # both are buffered readers
        fmt = args.format or guess_format(args.file, head)
        progress = Progress(sys.stdout, Path(args.file).stat().st_size if regular else None)
        if args.retime and not regular:
            raise ConfigError("--retime reads the file twice: give a file, not stdin")
        shift = retime_shift(stream, fmt, args.kind, datetime.now(UTC)) if args.retime else timedelta(0)
        if bootstrap:
            asyncio.run(_ensure_topics(s, bootstrap))
        summary = Summary()
        try:
            asyncio.run(publish(stream, fmt, args.kind, bootstrap=bootstrap, names=TopicNames(s.topic_prefix),
                                progress=progress, shift=shift, summary=summary))
        except KeyboardInterrupt:  # Ctrl-C: say what that means instead of a traceback
            progress.close()
            print("milestones publish: interrupted: " + ("nothing was sent (dry run)" if bootstrap is None else
                  f"{summary.acked:,} record(s) acknowledged by the broker, every line up to line "
                  f"{summary.acked_through:,} included; later lines may have been sent or not. Publishing the "
                  "file again is safe (each line's id is kept or derived from its content, so nothing counts "
                  "twice)"), file=sys.stderr)
            return 130
    print("\n".join(summary.lines()), flush=True)
    return 1 if summary.refused else 0


def cmd_impact(args: argparse.Namespace) -> int:
    """Celebrated against held-out accounts: renewal, NPS and advocacy differences (docs/impact.md)."""
    from typing import get_args

    from milestone_stream.clock import Clock
    from milestone_stream.schemas.records import MilestoneKind
    from milestone_stream.sinks.impact import render
    from milestone_stream.sinks.impact.source import load
    from milestone_stream.topics import TopicNames

    s = Settings.from_env()
    try:
        clock = Clock.from_iso(s.now)
    except ValueError:
        raise ConfigError(f"MILESTONES_NOW={s.now!r} is not an ISO-8601 instant") from None
    kinds = get_args(MilestoneKind)
    if args.kind is not None and args.kind not in kinds:
        raise ConfigError(f"--kind {args.kind!r} is not a milestone kind: {', '.join(kinds)}")
    report = asyncio.run(load(_require_bootstrap(s), TopicNames(s.topic_prefix), clock.now, cohort=args.cohort,
                              kind=args.kind))
    print(render.text(report), flush=True)
    if args.csv:
        try:
            Path(args.csv).write_text(render.csv_text(report), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {args.csv}: {exc.strerror}") from None
        print(f"wrote {args.csv}")
    return 0


def cmd_json_schema(args: argparse.Namespace) -> int:
    from milestone_stream.schemas.json_schema import write

    for path in write(Path(args.out) if args.out else None):
        print(f"wrote {path}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from milestone_stream.dev.up import up

    return up(args.exit_after, _require_bootstrap)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


async def _ensure_topics(s: Settings, bootstrap: str) -> list[str]:
    from milestone_stream.topics import TopicNames, ensure_topics

    return await ensure_topics(bootstrap, TopicNames(s.topic_prefix).all(), s.partitions, s.replication_factor)


def _require_bootstrap(s: Settings) -> str:
    """The bootstrap servers, checked once per process to answer (see `kafka_local.check_reachable`).

    Why here: every command that talks to Kafka passes through this before it builds a client, so
    one check covers them all; an unreachable broker raises KafkaUnreachable, one line in `main`.
    """
    if not s.bootstrap_servers:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set (or run `milestones up` for a local broker)")
    if s.bootstrap_servers not in _REACHED:
        from milestone_stream.dev.kafka_local import check_reachable

        check_reachable(s.bootstrap_servers)
        _REACHED.add(s.bootstrap_servers)
    return s.bootstrap_servers


_REACHED: set[str] = set()


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
    p = sub.add_parser("publish", help="send telemetry or CRM changes from a JSON-lines or CSV file (- for stdin)")
    p.add_argument("file", help="a .jsonl or .csv file, or - for stdin")
    p.add_argument("--kind", choices=["telemetry", "crm"],
                   help="what the lines are (default: telemetry when a line or the CSV header has metric)")
    p.add_argument("--format", choices=["jsonl", "csv"], help="default: by extension; stdin: { is JSON lines")
    p.add_argument("--dry-run", action="store_true", help="validate every line, send nothing")
    p.add_argument("--retime", action="store_true",
                   help="move every time by one amount so the latest is a minute ago (samples, demos; ids unchanged)")
    p.set_defaults(func=cmd_publish)
    p = sub.add_parser("json-schema", help="write the JSON Schema of JSON input from the models (schemas/json/)")
    p.add_argument("--out", help="folder to write to (default: the package's schemas/json)")
    p.set_defaults(func=cmd_json_schema)
    sub.add_parser("ui", help="run the approval UI (web)").set_defaults(func=cmd_ui)
    p = sub.add_parser("lag", help="consumer lag of the product's groups, from the broker")
    p.add_argument("--json", action="store_true", help="one JSON object per report")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="report again every SECONDS")
    p.add_argument("--max-lag", type=int, help="exit 1 when the total lag exceeds this many messages")
    p.set_defaults(func=cmd_lag)
    p = sub.add_parser("deadletter", help="list or replay dead letters")
    dl = p.add_subparsers(dest="action", required=True)
    q = dl.add_parser("list", help="dead letters, oldest first")
    q.add_argument("--stage")
    q.add_argument("--reason")
    q.add_argument("--since", help="ISO time (UTC unless it has an offset)")
    q.add_argument("--json", action="store_true")
    q = dl.add_parser("replay", help="re-publish dead letters to their original topic, once")
    q.add_argument("ids", nargs="+", help="ids from `deadletter list` (partition:offset)")
    p.set_defaults(func=cmd_deadletter)
    p = sub.add_parser("resync", help="Salesforce records to re-read after CDC gap or overflow events")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_resync)
    p = sub.add_parser("sender", help="run the sender: CSM notifications and approved emails by SMTP")
    p.set_defaults(func=cmd_sender)
    p = sub.add_parser("impact", help="does celebrating change renewals, NPS and advocacy? celebrated vs held out")
    p.add_argument("--cohort", help="the holdout cohort (c-...; default: the newest on the topic)")
    p.add_argument("--kind", help="only accounts celebrated (or held out) for this milestone kind")
    p.add_argument("--csv", metavar="PATH", help="also write the figures as CSV")
    p.set_defaults(func=cmd_impact)
    p = sub.add_parser("gainsight", help="record each sent email as a Gainsight CS Timeline activity")
    p.set_defaults(func=cmd_gainsight)
    args = parser.parse_args(argv)
    if args.command in _SERVICES:
        from milestone_stream.signals import exit_until_started

        exit_until_started()
    try:
        if args.command in _READS_OR_WRITES_VALUES:
            _schema_registry()
        return args.func(args)
    except ConfigError as exc:
        print(exc.args[0] if exc.args else exc, file=sys.stderr)
        return 2
    except Exception as exc:
        # Why: an operator needs the cause in one line, not aiokafka's 30-line traceback. The
        # pre-flight in `_require_bootstrap` catches an unreachable broker up front; this catches a
        # broker that went away after it, and the local launcher's own errors.
        code = _one_line(exc)
        if code is None:
            raise
        return code


#: the long-running services, which a supervisor stops with SIGTERM (why the early handler: signals.py)
_SERVICES = frozenset({"worker", "ui", "sender", "gainsight"})

#: the commands that decode or encode topic values (`up` starts processes that each do this themselves)
_READS_OR_WRITES_VALUES = frozenset({"worker", "ui", "sender", "gainsight", "deadletter", "resync", "publish-sample",
                                     "publish", "impact"})


def _schema_registry() -> None:
    """Both framings are read; with MILESTONES_SCHEMA_REGISTRY_URL its compatibility is checked first
    (docs/schema-registry.md)."""
    from milestone_stream.schema_registry import start

    start(Settings.from_env())


def _one_line(exc: Exception) -> int | None:
    """Print a known failure as one line on stderr and return the exit status; None for the rest."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from milestone_stream.dev.kafka_local import BrokerError, KafkaUnreachable

    where = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "the local broker")
    if isinstance(exc, KafkaUnreachable):
        message, code = str(exc), 2
    elif isinstance(exc, KafkaConnectionError):
        message, code = f"cannot reach Kafka at {where} ({exc}); start a broker or set KAFKA_BOOTSTRAP_SERVERS", 2
    elif isinstance(exc, KafkaError):
        message, code = f"Kafka at {where} failed: {exc}", 1
    elif isinstance(exc, BrokerError):
        message, code = str(exc), 1
    else:
        return None
    print("milestones: " + " ".join(message.split()), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
