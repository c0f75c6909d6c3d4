"""The worker's garbage-collector settings (streams/gc_tuning.py) do what they say and nothing else."""
from __future__ import annotations

import gc
import weakref

from milestone_stream import gc_tuning
from milestone_stream.settings import Settings


def test_tune_sets_only_the_youngest_generation():
    before = gc.get_threshold()
    try:
        gc_tuning.tune(50_000)
        assert gc.get_threshold() == (50_000, *before[1:])
    finally:
        gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_freeze_collects_startup_garbage_first_then_keeps_the_rest_out_of_later_collections():
    garbage, kept = Node(), Node()
    garbage_ref, kept_ref = weakref.ref(garbage), weakref.ref(kept)
    del garbage
    try:
        gc_tuning.freeze_startup()
        assert garbage_ref() is None  # collected before the freeze
        del kept
        gc.collect()
        assert kept_ref() is not None  # frozen: no later collection looks at it
    finally:
        gc.unfreeze()
        gc.collect()
    assert kept_ref() is None


def test_the_default_is_tuned_and_0_leaves_python_as_it_comes():
    assert Settings.from_env({}).gc_gen0 == 50_000
    assert Settings.from_env({"MILESTONES_GC_GEN0": "0"}).gc_gen0 == 0
