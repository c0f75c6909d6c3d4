"""Benchmark: publish → milestone latency at a fixed rate, where it goes, and the same against an earlier commit.

    .venv/bin/python bench/latency.py [--rate 11500] [--seconds 20] [--runs 2] [--before <git ref>]

Why it exists: bench/detector.py reports one p50/p99 at one rate. To change the latency one needs to know
which part a change moves, and a before figure from the same run on the same shared machine (single
runs here vary by 2-4 x in p99). Each measurement starts a worker on fresh topics, warms it up (every
account's row exists), then publishes `--rate` events/s for `--seconds` (a tier every 250 per account:
a milestone per 25 events, so the drafter works too) and reads the milestones read_committed. Reported:
- total: publish → milestone read, p50 / p99 / max;
- worker: publish → the milestone record's CreateTime (set by the worker's producer as it queues it);
- visible: CreateTime → read (the broker, the transaction or ack, the reader's poll);
- the publisher's achieved rate, and the CPU of the worker, of this process and of the machine.
With `--before REF` the worker of that commit (a git worktree, imported through a link tree) is measured
between runs of the working tree's, run for run. Appended to bench/results.md.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from detector import LATENCY_RULES, ROOT, broker, code_version, measure

#: where each of the package's import names lives in a checkout (pyproject.toml's package-dir)
PACKAGE_DIRS = {"": "streams", "agents": "agents", "schemas": "schemas", "sinks": "sinks"}


def checkout(ref: str, tmp: Path) -> dict[str, str]:
    """A worktree of `ref` and a link tree importing `milestone_stream` from it: the env for its worker."""
    code = tmp / f"code-{ref.replace('/', '_')}"
    _git("worktree", "add", "--detach", str(code), ref, check=True)
    package = tmp / "tree" / "milestone_stream"
    package.mkdir(parents=True)
    for entry in (code / "streams").iterdir():
        (package / entry.name).symlink_to(entry)
    for name, folder in PACKAGE_DIRS.items():
        if name:
            (package / name).symlink_to(code / folder)
    return {"PYTHONPATH": str(package.parent)}  # ahead of the editable install's finder


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=11_500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--before", help="a git ref whose worker is measured between the working tree's runs")
    parser.add_argument("--store", default="rocksdb://")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    code = code_version()
    (tmp / "rules.yaml").write_text(LATENCY_RULES)
    contestants = [(code, {})]
    if args.before:
        contestants.append((f"before: {args.before} ({short_ref(args.before)})", checkout(args.before, tmp)))
    bootstrap, kafka = await broker(tmp)
    results: list[tuple[str, dict[str, float]]] = []
    try:
        for _ in range(args.runs):
            for name, env in contestants:
                results.append((name, await measure(bootstrap, args, args.rate, tmp, env)))
                print(name, {k: round(v) for k, v in results[-1][1].items()}, flush=True)
    finally:
        if kafka:
            kafka.stop()
        remove_checkout(tmp)
    report = (f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — latency at {args.rate:,.0f} events/s "
              f"({platform.node()}, {os.cpu_count()} cores, bench/latency.py)\n"
              f"{args.seconds:g} s at the rate after a warm-up, {args.accounts:,} accounts, {args.partitions} "
              f"partitions, a milestone per 25 events, store {args.store}; runs in the order listed.\n\n"
              "| worker | published/s | p50 | p99 | max | worker p50 / p99 | visible p99 | CPU worker / bench / "
              "machine (of 2) |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for name, r in results:
        report += (f"| {name} | {r['achieved']:,.0f} | {r['p50']:,.0f} ms | {r['p99']:,.0f} ms | {r['max']:,.0f} ms "
                   f"| {r['worker p50']:,.0f} / {r['worker p99']:,.0f} ms | {r['visible p99']:,.0f} ms "
                   f"| {r['worker cpu']:.0f} % / {r['bench cpu']:.0f} % / {r['machine busy']:.0f} % |\n")
    print(report)
    with open(ROOT / "bench" / "results.md", "a") as out:
        out.write(report)


def remove_checkout(tmp: Path) -> None:
    """Undo `checkout` in `tmp` (if any): its worktree and its link tree."""
    for code in tmp.glob("code-*"):
        _git("worktree", "remove", "--force", str(code))
    shutil.rmtree(tmp / "tree", ignore_errors=True)


def short_ref(ref: str) -> str:
    return _git("rev-parse", "--short", ref).stdout.strip()


def _git(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    git = shutil.which("git")
    if git is None:
        raise SystemExit("--before needs git")
    return subprocess.run([git, *args], cwd=ROOT, capture_output=True, text=True, check=check)


if __name__ == "__main__":
    asyncio.run(main())
