"""Python's cyclic garbage collector, set for a worker that allocates a handful of objects per event.

Why: with Python's defaults (gen-0 threshold 700, nothing frozen) a worker reading 100,000 events ran
41-47 full collections, 4.3-4.8 s of collecting in all (counted with `gc.callbacks`), each over the whole
heap of Faust, aiokafka, pydantic and the app. With a gen-0 threshold of 50,000 and the startup heap
frozen: 14 full collections, 0.36 s, and 16,677 -> 20,896 events/s in one bench run (bench/results.md,
2026-11-26). Reference counting still frees almost everything at once; only garbage in cycles waits
longer. Peak RSS at 100k and 1M accounts was the same either way (bench/scale.py). A frozen object that
later becomes cyclic garbage is never freed; the frozen set is fixed at start, so that cannot grow.
"""
from __future__ import annotations

import gc


def tune(gen0: int) -> None:
    """Collect the youngest generation every `gen0` net allocations (Python's default: 700)."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)


def freeze_startup() -> None:
    """Move every object alive now to the permanent generation, out of the collector's way
    (call once the code is imported and the app built, just before it runs)."""
    gc.collect()
    gc.freeze()
