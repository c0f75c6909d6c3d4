"""Deterministic ids: the same milestone, approval or message always gets the same id."""
from __future__ import annotations

import hashlib


def stable_id(*parts: object, length: int = 32) -> str:
    """A hex id from the parts; replays and re-deliveries regenerate it exactly."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def milestone_id(account_id: str, kind: str, metric: str | None, key: object) -> str:
    """account, kind, metric and tier/level/date: one id per milestone, ever."""
    return stable_id("milestone", account_id, kind, metric, _canonical(key))


def _canonical(key: object) -> str:
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)
