"""Recognising an ingestion adapter's re-publication after a crash, by the source offset.

Why offsets and not ids: an adapter that crashes re-publishes everything since its last commit,
possibly thousands of records for one account, far beyond a bounded window of recent ids. The
adapter publishes each source partition in order and waits for each ack, so per account and
source partition its records arrive with rising source offsets: one at or below the last applied
is a copy. `marks` ({"topic#partition": offset}) lives in the account's table row.
"""
from __future__ import annotations

from milestone_stream.schemas.records import Origin


def republished(marks: dict, origin: Origin | None) -> bool:
    """True for a copy already applied; otherwise records the origin and returns False."""
    if origin is None:
        return False
    if origin.offset <= marks.get(origin.stream, -1):
        return True
    marks[origin.stream] = origin.offset
    return False
