"""Every private Faust / aiokafka name faust_compat relies on still exists with the shape it relies on.

Why: those names are not API; an upgrade that renames or reshapes one would not fail, it would just
stop correcting Faust (a `_new_offset` never called again commits past a skipped message). These
tests read `faust_compat.PRIVATE_NAMES` and check each entry against the installed packages, build
the live objects faust_compat builds (without a broker), and check the installed versions against
the pins. No broker, no process.
"""
from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import importlib
import inspect
import logging
import tomllib
from importlib.metadata import version

import faust
import pytest
from faust.types import TP
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from milestone_stream import faust_compat
from milestone_stream.faust_compat import consumer as compat_consumer
from milestone_stream.faust_compat.private import PINNED, PRIVATE_NAMES, Private

from support.helpers import REPO


def resolve(dotted: str):
    """`package.module.Class.attr` → the object, importing the longest module prefix."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = inspect.getattr_static(obj, name) if isinstance(obj, type) else getattr(obj, name)
        return obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    raise ImportError(dotted)


def owner_and_name(p: Private):
    *owner, name = f"{p.module}.{p.qualname}".split(".")
    return resolve(".".join(owner)), name


def by_kind(kind: str) -> list:
    return [pytest.param(p, id=f"{p.module}.{p.qualname}") for p in PRIVATE_NAMES if p.kind == kind]


def binds(sig: inspect.Signature, p: Private, self: bool) -> None:
    placeholders = [object()] * (len(p.args) + self)
    sig.bind(*placeholders, **{k: object() for k in p.kwargs})  # raises TypeError when the shape changed
    named = list(sig.parameters)[self:self + len(p.args)]
    assert named == list(p.args), f"{p.qualname}: leading parameters {named}, relied on {list(p.args)}"


@pytest.fixture(scope="module")
async def live(tmp_path_factory):
    """The objects faust_compat builds, built as the worker builds them, without touching a broker."""
    app = faust.App("faust-compat-shape-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    compat_consumer.install(app)  # the consumer only: the recovery filter is process-wide
    thread = app.consumer._new_consumer_thread()
    kafka = thread._create_worker_consumer(app.transport)
    worker = faust.Worker(app, loop=asyncio.get_running_loop(), quiet=True)  # Faust's own, spinner and all
    rocks = faust.App("faust-compat-rocksdb", broker="kafka://127.0.0.1:1", store="rocksdb://", web_enabled=False,
                      datadir=str(tmp_path_factory.mktemp("rocksdb")))
    store = rocks.Table("shape", key_type=str, partitions=1).data
    yield {"app": app, "consumer": app.consumer, "thread": thread, "kafka": kafka, "worker": worker, "store": store}
    await kafka.stop()


def test_every_entry_has_a_known_kind_and_says_why():
    kinds = {"contextvar", "method", "attribute", "class", "logger"}
    for p in PRIVATE_NAMES:
        assert p.kind in kinds and p.why and p.used_by, p


@pytest.mark.parametrize("p", by_kind("contextvar"))
def test_context_variable(p: Private):
    assert isinstance(resolve(f"{p.module}.{p.qualname}"), contextvars.ContextVar)


@pytest.mark.parametrize("p", by_kind("method"))
def test_method_binds_as_called(p: Private):
    owner, name = owner_and_name(p)
    assert isinstance(owner, type), p
    method = resolve(f"{p.module}.{p.qualname}")
    assert callable(method), f"{p.qualname} is no longer a method"
    binds(inspect.signature(method), p, self=True)


@pytest.mark.parametrize("p", by_kind("class"))
def test_class_constructs_as_called(p: Private):
    cls = resolve(f"{p.module}.{p.qualname}")
    assert isinstance(cls, type)
    binds(inspect.signature(cls), p, self=False)


INSTANCES = {  # which live object stands for instances of a declared class
    "faust.transport.consumer.Consumer": "consumer",
    "faust.transport.consumer.ThreadDelegateConsumer": "consumer",
    "aiokafka.consumer.consumer.AIOKafkaConsumer": "kafka",
    "faust.worker.Worker": "worker",
    "faust.stores.rocksdb.Store": "store",
}


@pytest.mark.parametrize("p", by_kind("attribute"))
def test_instance_attribute(p: Private, live):
    owner, name = owner_and_name(p)
    obj = live[INSTANCES[f"{owner.__module__}.{owner.__qualname__}"]]
    assert isinstance(obj, owner)
    assert hasattr(obj, name), f"{owner.__qualname__} instances have no {name}"
    if p.type:
        value = getattr(obj, name)
        assert isinstance(value, resolve(p.type)), f"{name} is {type(value)}, relied on {p.type}"


@pytest.mark.parametrize("p", [q for q in PRIVATE_NAMES if q.read_by])
def test_still_read_where_relied_on(p: Private):
    name = p.qualname.rsplit(".", 1)[-1]
    reader = resolve(p.read_by)
    source = inspect.getsource(getattr(reader, "fun", reader))  # (a mode `Service.task` wraps its function)
    assert name in source.split("\n", 1)[1], f"{p.read_by} no longer reads {name}: setting it has no effect"


@pytest.mark.parametrize("p", by_kind("logger"))
def test_logger_still_logs_the_message(p: Private):
    module = importlib.import_module(p.module)
    loggers = [v for v in vars(module).values() if isinstance(v, logging.Logger) or
               isinstance(getattr(v, "logger", None), logging.Logger)]
    assert any((getattr(v, "logger", v)).name == p.qualname for v in loggers), f"no logger {p.qualname}"
    assert p.text in inspect.getsource(module), f"{p.module} no longer logs {p.text!r}"
    assert p.qualname == faust_compat.recovery.RECOVERY_LOGGER and p.text == faust_compat.recovery.RECOVERY_ERROR_PREFIX


def test_the_live_consumer_is_the_ordered_one_with_the_bounded_fetch_wait(live):
    assert isinstance(live["consumer"], faust_compat.OrderedConsumer)
    assert isinstance(live["thread"], compat_consumer._ConsumerThread)
    assert live["kafka"]._fetch_max_wait_ms == int(compat_consumer.FETCH_WAIT_SECONDS * 1000)
    assert isinstance(live["consumer"]._unacked_messages, collections.abc.MutableSet)


async def test_the_worker_has_no_spinner_and_leaves_the_root_level_alone(live):
    def root_after_setup(worker) -> int:
        logger = logging.getLogger("faust-compat-spinner-test")
        logger.handlers[:] = [logging.NullHandler()]
        logger.setLevel(logging.WARNING)
        worker.on_setup_root_logger(logger, logging.WARNING)
        return logger.level

    plain = live["worker"]
    assert plain.spinner is not None and root_after_setup(plain) == logging.DEBUG  # what the workaround avoids
    ours = faust_compat.worker(live["app"], loop=asyncio.get_running_loop(), loglevel="WARNING", logging_config=None)
    assert ours.spinner is None and root_after_setup(ours) == logging.WARNING


def test_installed_versions_are_the_pinned_ones():
    deps = {Requirement(d).name: Requirement(d).specifier
            for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    for package, pins in PINNED.items():
        assert deps[package] == SpecifierSet(",".join(pins)), f"pyproject.toml pins {package} {deps[package]}"
        installed = version(package)
        assert installed in deps[package], f"{package} {installed} is outside the tested {deps[package]}"


async def test_a_fetch_takes_a_snapshot_of_the_active_partitions_and_none_fetches_nothing(live, monkeypatch):
    consumer = live["consumer"]
    active = {TP("t", 0), TP("t", 1)}
    seen: list[set] = []

    async def fetch(partitions, timeout):
        active.clear()  # recovery empties Faust's set while the fetch waits on the consumer thread ...
        await asyncio.sleep(0)
        seen.append(set(partitions))  # ... the fetch still asks for the partitions active when it began
        return {}

    monkeypatch.setattr(consumer._thread, "getmany", fetch)
    await consumer._getmany(active, 1.0)
    assert seen == [{TP("t", 0), TP("t", 1)}]
    assert await consumer._getmany(set(), 1.0) == {} and len(seen) == 1  # aiokafka would read "none" as "all"


def _message(tp: TP, offset: int, generation: int) -> faust.types.Message:
    return faust.types.Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=tp,
                               generation_id=generation)


async def test_a_skipped_message_leaves_a_hole_only_in_the_generation_in_force(live, monkeypatch):
    consumer, app, tp = live["consumer"], live["app"], TP("holes", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(app, "consumer_generation_id", 7)
    was_active = app.flow_control.is_active()
    app.flow_control.suspend()  # a rebalance under way: Faust skips, yet acknowledges, what it fetched
    consumer.holes.clear()
    try:
        assert consumer.ack(_message(tp, 10, generation=6)) is False  # fetched before the last assignment
        assert tp not in consumer.holes  # the new generation re-reads it from the committed offset
        assert consumer.ack(_message(tp, 12, generation=7)) is False
        assert consumer.holes == {tp: 12}  # this generation's: nothing passes it until it comes back
    finally:
        consumer.holes.clear()
        if was_active:
            app.flow_control.resume()


async def test_an_assignment_drops_the_holes_of_its_partitions(live, monkeypatch):
    consumer, kept, given = live["consumer"], TP("holes", 1), TP("holes", 2)
    calls = []

    async def callbacks(assigned, generation):
        calls.append((assigned, generation))

    monkeypatch.setattr(consumer, "_on_partitions_assigned", callbacks)
    consumer.holes.update({kept: 3, given: 5})
    await consumer.on_partitions_assigned({given}, 8)
    assert consumer.holes == {kept: 3} and calls == [({given}, 8)]  # Faust's own assignment still runs
    consumer.holes.clear()


async def test_input_partitions_get_their_share_beside_changelogs(live, monkeypatch):
    consumer, app = live["consumer"], live["app"]
    table = app.Table("shares", partitions=1)
    changelog, telemetry = TP(table.changelog_topic.get_topic_name(), 0), TP("telemetry", 0)
    asked: list[tuple[set, float]] = []

    async def fetch(partitions, timeout):
        asked.append((set(partitions), timeout))
        return {next(iter(partitions)): ["r"]} if telemetry in partitions and len(partitions) == 1 else {}

    monkeypatch.setattr(consumer._thread, "getmany", fetch)
    assert await consumer._getmany({changelog, telemetry}, 1.0) == {telemetry: ["r"]}
    assert asked == [({telemetry}, 0), ({changelog}, 0)]  # each side asked apart, neither waits
    asked.clear()

    async def nothing(partitions, timeout):
        asked.append((set(partitions), timeout))
        return {}

    monkeypatch.setattr(consumer._thread, "getmany", nothing)
    assert await consumer._getmany({changelog, telemetry}, 1.0) == {}
    assert asked == [({telemetry}, 0), ({changelog}, 0), ({changelog, telemetry}, 1.0)]  # then one fetch waits
