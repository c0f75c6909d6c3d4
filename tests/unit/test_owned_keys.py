"""A timer acts only on the accounts whose partition this worker owns as active (not a standby's rows)."""
from types import SimpleNamespace

from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from milestone_stream.faust_compat import owned


def test_a_key_is_owned_when_its_partition_is_one_of_the_active_ones() -> None:
    every = list(range(6))
    keys = [f"acct{i}".encode() for i in range(50)]
    partition = {k: DefaultPartitioner()(k, every, every) for k in keys}  # what a keyed send chooses
    app = SimpleNamespace(assignor=SimpleNamespace(assigned_actives=lambda: {TP("t.telemetry", 4), TP("other", 1)}))
    mine = owned(app, "t.telemetry", 6)  # type: ignore[arg-type]
    assert [k for k in keys if mine(k)] == [k for k in keys if partition[k] == 4]
    assert any(partition[k] == 1 for k in keys) and not any(mine(k) for k in keys if partition[k] == 1)
