"""`milestones publish --retime` moves every time by one shift; a line the shift would move off the
calendar (before year 1 or after 9999) is refused with its number, never a traceback halfway through
the file (review of 794b054)."""
import asyncio
import io
from datetime import UTC, datetime

from milestone_stream.ops.progress import Progress
from milestone_stream.ops.publish import publish, retime_shift
from milestone_stream.topics import TopicNames

LINES = (b'{"account_id":"a","metric":"m","value":1,"occurred_at":"0500-01-01T00:00:00Z","source":"s"}\n'
         b'{"account_id":"a","metric":"m","value":2,"occurred_at":"9999-01-01T00:00:00Z","source":"s"}\n'
         b'{"account_id":"a","metric":"m","value":3,"occurred_at":"9998-06-01T00:00:00Z","source":"s"}\n')


def test_a_time_the_shift_moves_off_the_calendar_is_a_refused_line() -> None:
    stream = io.BytesIO(LINES)
    shift = retime_shift(stream, "jsonl", None, datetime(2026, 11, 26, tzinfo=UTC))
    summary = asyncio.run(publish(stream, "jsonl", None, bootstrap=None, names=TopicNames("x."),
                                  progress=Progress(io.StringIO(), total=len(LINES), enabled=False), shift=shift))
    assert summary.sent["telemetry"] == 2
    assert [(r.line, r.reason) for r in summary.refused] == [(1, "invalid")]
    assert "calendar" in summary.refused[0].error
