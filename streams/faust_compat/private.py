"""Every private (or undocumented) Faust and aiokafka name this package relies on, with its shape.

Why a declaration: these names are not API and can move in any release. Pinning faust-streaming and
aiokafka to the tested minor versions (pyproject.toml) keeps an upgrade deliberate; this list, checked
by tests/unit/test_faust_compat.py, makes it fail loudly in CI instead of silently losing the
correction (a renamed `_new_offset` would simply never be called, and commits would pass a hole).
Update the list together with the code that uses a name, and the pins together with the test run.
"""
from __future__ import annotations

from dataclasses import dataclass

#: the versions the corrections were written and tested against (kept equal to pyproject.toml's pins)
PINNED = {"faust-streaming": (">=0.15.3", "<0.16"), "aiokafka": (">=0.14", "<0.15")}


@dataclass(frozen=True)
class Private:
    """One relied-on name: `module` + `qualname` locate it; `kind` says which shape is checked.

    - "contextvar": a `contextvars.ContextVar` at module level.
    - "method": a function on a class, called (or overridden and called by Faust) as
      `method(*args, **{k: ... for k in kwargs})` — the signature must bind those names.
    - "attribute": an attribute of instances of the class, an instance of `type` (checked on live
      objects built without a broker).
    - "class": a class we subclass, constructed with `args`/`kwargs` (its signature must bind them).
    - "logger": a module whose logger has the name `qualname` and whose source logs `text`.
    `read_by`, when set, is a function whose source must still mention the name: the place Faust or
    aiokafka reads it, so that setting it still has an effect.
    """

    module: str
    qualname: str
    kind: str
    used_by: str
    why: str
    args: tuple[str, ...] = ()
    kwargs: tuple[str, ...] = ()
    type: str = ""
    read_by: str = ""
    text: str = ""


PRIVATE_NAMES: tuple[Private, ...] = (
    Private("faust.streams", "_current_event", "contextvar", "events.as_current",
            "holds a weakref to the event being processed; a table write takes its changelog partition from it",
            read_by="faust.streams.current_event"),
    Private("faust.transport.consumer", "Consumer._unacked_messages", "attribute",
            "consumer.OrderedConsumer.ack, drain._drain",
            "messages Faust waits for before it commits on stop/rebalance; one released uncounted is discarded",
            type="collections.abc.MutableSet", read_by="faust.transport.consumer.Consumer.wait_empty"),
    Private("faust.transport.consumer", "Consumer._new_offset", "method", "consumer.OrderedConsumer._new_offset",
            "the offset Faust is about to commit for a partition (None: nothing); overridden to stop at a hole",
            args=("tp",)),
    Private("faust.transport.consumer", "Consumer.ack", "method", "consumer.OrderedConsumer.ack",
            "counts a processed message for the commit; overridden to leave out what passed a hole",
            args=("message",)),
    Private("faust.transport.consumer", "Consumer.on_partitions_revoked", "method",
            "consumer.OrderedConsumer.on_partitions_revoked", "forget the holes of partitions given away",
            args=("revoked",)),
    Private("faust.transport.consumer", "Consumer._drain_messages", "method",
            "consumer.OrderedConsumer._drain_messages",
            "the fetcher's consume loop; overridden to hand a batched agent's topic over a fetch at a time (drain.py)",
            args=("fetcher",), read_by="faust.transport.consumer.Fetcher._fetcher"),
    Private("faust.transport.consumer", "ThreadDelegateConsumer._getmany", "method",
            "consumer.OrderedConsumer._getmany",
            "the fetch for Faust's set of active partitions; overridden to pass a snapshot (recovery changes the "
            "set during the fetch, and aiokafka reads an empty one as every partition)",
            args=("active_partitions", "timeout"), read_by="faust.transport.consumer.Consumer._wait_next_records"),
    Private("faust.transport.consumer", "Consumer._read_offset", "attribute", "drain.drain",
            "the last offset read per partition: a message below it is dropped (a fetch raced a seek back)",
            type="collections.abc.MutableMapping", read_by="faust.transport.consumer.Consumer.perform_seek"),
    Private("faust.transport.consumer", "Consumer._add_gap", "method", "drain.drain",
            "records offsets no message will acknowledge (compacted, transaction markers) so the commit passes them",
            args=("tp", "offset_from", "offset_to")),
    Private("faust.transport.consumer", "Consumer._commit_every", "attribute", "drain._commit_if_due",
            "broker_commit_every: commit after this many acknowledgements, as Faust's loop does",
            type="builtins.int", read_by="faust.transport.consumer.Consumer._drain_messages"),
    Private("faust.transport.consumer", "Consumer._n_acked", "attribute", "drain._commit_if_due",
            "acknowledgements since the last commit, counted by `ack`; reset when the loop commits",
            type="builtins.int", read_by="faust.transport.consumer.Consumer.ack"),
    Private("faust.transport.consumer", "ThreadDelegateConsumer._thread", "attribute",
            "consumer.OrderedConsumer.seek_on_its_thread",
            "the thread that owns aiokafka's consumer: a seek must run on it, not on the agents' loop",
            type="faust.transport.drivers.aiokafka.AIOKafkaConsumerThread"),
    Private("faust.transport.drivers.aiokafka", "Consumer._new_consumer_thread", "method",
            "consumer.OrderedConsumer._new_consumer_thread", "builds the thread that owns aiokafka's consumer"),
    Private("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "class", "consumer._ConsumerThread",
            "subclassed to bound the fetch wait; built as Faust builds it", args=("consumer",),
            kwargs=("loop", "beacon")),
    Private("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread._create_worker_consumer", "method",
            "consumer._ConsumerThread._create_worker_consumer",
            "builds a worker's aiokafka consumer from Faust's settings", args=("transport",)),
    Private("aiokafka.consumer.consumer", "AIOKafkaConsumer._fetch_max_wait_ms", "attribute",
            "consumer._ConsumerThread._create_worker_consumer",
            "how long the broker may hold a fetch; read when the consumer starts its fetcher", type="builtins.int",
            read_by="aiokafka.consumer.consumer.AIOKafkaConsumer.start"),
    Private("faust.transport.drivers.aiokafka", "Producer._ensure_producer", "method", "produce.aiokafka_producer",
            "the app's aiokafka producer, which Faust flushes before it commits offsets; changelog batches and "
            "emitted milestones go through it", read_by="faust.transport.drivers.aiokafka.Producer.send"),
    Private("faust.stores.rocksdb", "Store._db_for_partition", "method", "tables.RawTable",
            "a partition's RocksDB database (opened if needed), as the store's own `_set` and `_get` take it; "
            "the usage rows and event ids are read and written there as bytes", args=("partition",),
            read_by="faust.stores.rocksdb.Store._set"),
    Private("faust.stores.rocksdb", "Store.rocksdb_options", "attribute", "rocksdb_memory.bound",
            "the options a RocksDB store opens each partition's database with (`as_options`); replaced by options "
            "that add the worker's shared cache and write buffer manager", type="faust.stores.rocksdb.RocksDBOptions",
            read_by="faust.stores.rocksdb.Store._open_for_partition"),
    Private("faust.tables.recovery", "faust.tables.recovery", "logger", "recovery.install",
            "changelog recovery logs a failed record as a warning and goes on; the filter stops the worker",
            text="Error in recovery"),
    Private("faust.worker", "Worker.spinner", "attribute", "worker.worker",
            "with a spinner, Faust sets the root logger to DEBUG at WARN level and above (every debug record of "
            "aiokafka and Faust built); the worker has none", read_by="faust.worker.Worker._setup_spinner_handler"),
    Private("faust.worker", "Worker.on_setup_root_logger", "method", "worker.worker",
            "where Faust installs the spinner's handler, called by mode with the root logger and level",
            args=("logger", "level")),
)
