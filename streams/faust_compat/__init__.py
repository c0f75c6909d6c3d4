"""Where Faust logs a failure and goes on, the worker corrects it or stops loudly.

Why one package: it is the only place in the project that names private Faust or aiokafka internals,
so an upgrade has one place to review. faust-streaming and aiokafka are pinned to the minor versions
tested (pyproject.toml), and every private name used is declared with its shape in
`private.PRIVATE_NAMES`, which tests/unit/test_faust_compat.py checks against the installed versions.

- consumer.py: `OrderedConsumer` applies each partition in order around rebalances (`admit`), never
  committing past a skipped message, and bounds aiokafka's fetch wait.
- events.py: `as_current` makes an event Faust's current one (the changelog partition of a table
  write); `current` and `settled` say whether a message or a timer may act now.
- recovery.py: a changelog recovery error stops the worker (exit RECOVERY_ERROR_EXIT).
- loops.py: `each_in_order` / `batches_in_order`, the agents' loops, parking a failing step's input
  as a dead letter (`park_or_stop`; exit DEAD_LETTER_EXIT if even that fails).
- worker.py: the worker without Faust's progress spinner.
- drain.py: the consume loop, handing a batched agent's topic over a fetch at a time (`deliver_batches`)
  instead of message by message through Faust's conductor and stream.
- tables.py: `write_many`, a batch's table writes with their changelog records sent as Kafka batches, and
  `read`, a look-up in the event's own partition; both as bytes straight to RocksDB where Faust's
  encodings can be reproduced (`RawTable`).
- produce.py: `send_now`, records sent in Kafka batches closed at once (no linger), partitioned as a keyed send.
- rocksdb_memory.py: one block cache for all of a worker's RocksDB databases, their memtables charged to it
  (`bound_rocksdb`).
"""
from __future__ import annotations

from faust.types import AppT

from milestone_stream.faust_compat import consumer as _consumer, recovery as _recovery
from milestone_stream.faust_compat.consumer import OrderedConsumer, admit
from milestone_stream.faust_compat.drain import deliver_batches
from milestone_stream.faust_compat.events import as_current, current, owned, settled, timer
from milestone_stream.faust_compat.loops import DEAD_LETTER_EXIT, Park, batches_in_order, each_in_order, park_or_stop
from milestone_stream.faust_compat.private import PINNED, PRIVATE_NAMES
from milestone_stream.faust_compat.produce import send_now
from milestone_stream.faust_compat.recovery import RECOVERY_ERROR_EXIT
from milestone_stream.faust_compat.rocksdb_memory import bound as bound_rocksdb
from milestone_stream.faust_compat.tables import read, reads_copies, use_bytes, write_many
from milestone_stream.faust_compat.worker import worker

__all__ = ["install", "each_in_order", "batches_in_order", "current", "as_current", "admit", "settled",
           "park_or_stop", "DEAD_LETTER_EXIT", "RECOVERY_ERROR_EXIT", "Park", "OrderedConsumer", "worker",
           "PRIVATE_NAMES", "PINNED", "read", "reads_copies", "write_many", "bound_rocksdb", "deliver_batches", "timer",
           "owned", "send_now"]


def install(app: AppT, table_bytes: bool = True) -> None:
    """Before the worker starts `app`: the ordered consumer, the recovery stop, and whether its tables may be
    read and written as bytes (tables.py)."""
    _consumer.install(app)
    _recovery.install()
    use_bytes(app, table_bytes)
