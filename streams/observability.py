"""What an SRE scrapes and probes: Prometheus metrics, `/healthz` and `/readyz` on the worker's web port.

Why both Faust's sensor and our own metrics: Faust's (`milestones_faust_*`, in its own millisecond
units) covers the engine — messages, commits, rebalances, send latency; ours (base units, `_total`
only on counters) covers the product — what came in and out of each agent, milestones by kind,
dead letters by stage and reason, and the consumer lag per partition.
A worker is unhealthy when an agent with waiting input has made no progress for `stall_seconds`:
Faust only logs a warning for a stalled consumer, and a supervisor must be able to restart it.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import faust
from faust.tables.manager import TableManager
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

EVENTS_IN = Counter("milestones_events_in_total", "Input records taken by an agent", ["agent"])
EVENTS_OUT = Counter("milestones_events_out_total", "Records emitted by an agent (milestones, approval requests)",
                     ["agent"])
PROCESSING = Histogram("milestones_processing_seconds",
                       "Time an agent spent on one input record (per batch, its time per record, for batched agents)",
                       ["agent"],
                       buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30))
FIRED = Counter("milestones_fired_total", "Milestones fired, by kind (re-delivered copies included)", ["kind"])
DEAD_LETTERS = Counter("milestones_dead_letters_total", "Records dead-lettered, by stage and reason",
                       ["stage", "reason"])
REBALANCE_SKIPS = Counter("milestones_rebalance_skips_total",
                          "Partitions held in order after Faust skipped a message around a rebalance")
AGENT_CRASHES = Counter("milestones_agent_crashes_total", "Agents that stopped on an exception (Faust restarts them)",
                        ["agent"])
CRASH_LOOP = 3  # crashes within the stall window that make /healthz answer 503


class Running:
    """Which agents are inside their loop now, and when each last crashed.

    Why: Faust restarts a crashed agent and carries on, so a worker whose agent crashes at every
    start (a changelog topic it cannot use, say) still looks alive; readiness needs every agent
    running, and health fails when one keeps crashing."""

    def __init__(self) -> None:
        self.expected: set[str] = set()
        self.running: set[str] = set()
        self.crashes: dict[str, list[float]] = {}

    def expect(self, agent: str) -> None:
        self.expected.add(agent)

    @contextmanager
    def loop(self, agent: str) -> Iterator[None]:
        """Around an agent's loop: running inside it; an exception leaving it is a crash (Faust restarts the agent)."""
        self.running.add(agent)
        try:
            yield
        except Exception:
            self.crashes.setdefault(agent, []).append(time.monotonic())
            AGENT_CRASHES.labels(agent).inc()
            raise
        finally:
            self.running.discard(agent)

    def not_running(self) -> list[str]:
        return sorted(self.expected - self.running)

    def crash_looping(self, within: float) -> dict[str, int]:
        now = time.monotonic()
        recent = {a: sum(now - t <= within for t in times) for a, times in self.crashes.items()}
        return {a: n for a, n in recent.items() if n >= CRASH_LOOP}


RUNNING = Running()


class Progress:
    """When each agent last finished an input record, and which topics feed it."""

    def __init__(self) -> None:
        self.topics: dict[str, set[str]] = {}
        self.last: dict[str, float] = {}

    def register(self, agent: str, topics: set[str]) -> None:
        self.topics[agent] = topics
        self.last[agent] = time.monotonic()
        RUNNING.expect(agent)

    @contextmanager
    def record(self, agent: str, records: int = 1) -> Iterator[None]:
        """Time `records` input records (a batch is observed once, as its time per record)."""
        EVENTS_IN.labels(agent).inc(records)
        started = time.perf_counter()
        try:
            yield
        finally:
            PROCESSING.labels(agent).observe((time.perf_counter() - started) / records)
            self.last[agent] = time.monotonic()


PROGRESS = Progress()


def lag_by_tp(app: faust.App) -> dict[tuple[str, int], int]:
    """(topic, partition) → log end offset minus committed offset, for this worker's assigned inputs."""
    monitor, lag = app.monitor, {}
    for tp, end in dict(monitor.tp_end_offsets or {}).items():
        committed = (monitor.tp_committed_offsets or {}).get(tp)
        lag[(tp.topic, tp.partition)] = max(end - (committed if committed is not None else 0), 0)
    return lag


class LagCollector:
    """`milestones_consumer_lag{topic,partition}`, computed at scrape time from Faust's monitor."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("milestones_consumer_lag", "Messages not yet committed, per input partition",
                                   labels=["topic", "partition"])
        for (topic, partition), lag in sorted(lag_by_tp(self.app).items()):
            family.add_metric([topic, str(partition)], lag)
        yield family


def health(app: faust.App, stall_seconds: float) -> tuple[bool, dict[str, Any]]:
    now, lag = time.monotonic(), lag_by_tp(app)
    stalled = {agent: round(now - PROGRESS.last[agent], 1) for agent, topics in PROGRESS.topics.items()
               if any(v for (t, _), v in lag.items() if t in topics) and now - PROGRESS.last[agent] > stall_seconds}
    looping = RUNNING.crash_looping(stall_seconds)
    return not stalled and not looping, {"alive": True, "stalled_agents": stalled, "stall_seconds": stall_seconds,
                                         "crash_looping_agents": looping}


def readiness(app: faust.App, stall_seconds: float) -> tuple[bool, dict[str, Any]]:
    """Ready: joined, tables recovered, no rebalance, and every agent running (none crashing again and again)."""
    assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in app.consumer.assignment()) if app.consumer else []
    recovered = cast(TableManager, app.tables).recovery.completed.is_set()  # Faust's, typed as its ABC
    stopped = sorted(set(RUNNING.not_running()) | set(RUNNING.crash_looping(stall_seconds)))
    state = {"joined": bool(assigned), "assigned_partitions": len(assigned), "tables_recovered": recovered,
             "rebalancing": bool(app.rebalancing), "agents_not_running": stopped}
    return bool(assigned) and recovered and not app.rebalancing and not stopped, state


def install(app: faust.App, stall_seconds: float) -> None:
    """Faust's Prometheus sensor on /metrics, our metrics beside it, and the two probes."""
    from faust.sensors.prometheus import setup_prometheus_sensors
    from faust.web import Request, Response, View

    setup_prometheus_sensors(app, name_prefix="milestones_faust")
    REGISTRY.register(LagCollector(app))

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        ok, body = health(app, stall_seconds)
        return self.json(body, status=200 if ok else 503)

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        ok, body = readiness(app, stall_seconds)
        return self.json(body, status=200 if ok else 503)
