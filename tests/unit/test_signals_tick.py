"""A risk clock tick carries the day totals it saw: replayed after a crash (its openings acknowledged, its
row not written) it decides as the first run did, whatever the usage row holds by then."""
import json
from datetime import UTC, datetime

import pytest

from milestone_stream.agents.signals.agent import _tick
from milestone_stream.agents.signals.episodes import RiskRow, evaluate
from milestone_stream.agents.signals.rules import SignalRules
from milestone_stream.deadletter import Unprocessable

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
RULES = SignalRules.model_validate({"counters": ["logins"], "usage_drop": {"metric": "logins", "window_days": 7,
                                                                           "drop_percent": 30, "min_base": 10}})


def tick(days_back_values: dict[int, float]) -> bytes:
    """A tick at NOW with `logins` totals on days counted back from NOW's day (stored as epoch days)."""
    today = (NOW - datetime(1970, 1, 1, tzinfo=UTC)).days
    return json.dumps({"at": NOW.isoformat(),
                       "d": {"logins": {str(today - back): v for back, v in days_back_values.items()}}}).encode()


def test_a_replayed_tick_decides_from_the_totals_it_carries() -> None:
    before = {back: 20.0 for back in range(8, 15)}  # the previous window: 140
    recent = {back: 5.0 for back in range(1, 8)}    # the last complete window: 35, down 75%
    value = tick({**before, **recent})
    account, now, usage = _tick(b"a", value)
    first = evaluate(RiskRow(), account, usage, now, RULES)
    assert [r.kind for r in first] == ["usage_drop"]
    # the usage row has moved on since (late events); the replay reads the tick, not the row
    again, at, seen = _tick(b"a", value)
    assert evaluate(RiskRow(), again, seen, at, RULES) == first


@pytest.mark.parametrize("value", [b"2026-11-20T12:00:00+00:00", b"{}", b'{"at": "x", "d": {}}',
                                   b'{"at": "2026-11-20T12:00:00+00:00", "d": []}', b"\xff"])
def test_a_tick_that_is_not_one_is_unprocessable(value: bytes) -> None:
    with pytest.raises(Unprocessable, match="risk clock tick"):
        _tick(b"a", value)


@pytest.mark.parametrize("rule", [{"usage_drop": {"metric": "logins", "min_base": float("inf")}},
                                  {"ticket_surge": {"metric": "logins", "max_tickets": float("inf")}}])
def test_an_infinite_threshold_is_refused_at_start_up(rule: dict) -> None:
    with pytest.raises(ValueError):
        SignalRules.model_validate({"counters": ["logins"], **rule})
