"""Python's cyclic garbage collector, set for a worker that allocates a handful of objects per event.

Why: with Python's default gen-0 threshold (700 allocations) the worker ran a full collection about six
times a second, each over the whole heap of Faust, aiokafka, pydantic and the app: 4.3 s of collections
in a 100,000-event run at 15,300 events/s (bench/results.md, 2026-11-26). A larger gen-0 threshold
collects the young objects less often, and freezing what exists when the worker starts (modules,
classes, the app) keeps it out of every later full collection. Reference counting still frees almost
everything at once; only cycles wait longer, and a gen-0 of 50,000 small objects is a few MiB.
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
