"""Risk-signal rules (the `signals:` section of the rules file): thresholds, windows, levels and playbooks.

Why configuration: what counts as a worrying drop differs per customer base and changes without a
release; a typo (an unknown metric, a negative threshold) must stop the worker at start-up with one
line, not silently fire nothing. Each signal is optional (null: not evaluated). The usage agent keeps
per-day totals of the metrics these rules name (`daily_days`), bounded to the days the windows need.
"""
from __future__ import annotations

import unicodedata
from functools import cached_property

from pydantic import Field, field_validator

from milestone_stream.schemas.records import RiskLevel
from milestone_stream.settings import Strict

PLAYBOOK_MAX = 10          # next actions per signal
ACTION_MAX = 300           # characters per next action


class Signal(Strict):
    """What every signal carries: its level and the playbook (next actions for the CSM)."""

    level: RiskLevel
    playbook: list[str] = Field(default_factory=list, max_length=PLAYBOOK_MAX)

    @field_validator("playbook")
    @classmethod
    def _actions(cls, actions: list[str]) -> list[str]:
        if any(not a.strip() or len(a) > ACTION_MAX or not _one_line(a) for a in actions):
            raise ValueError(f"each playbook action is a non-empty line of at most {ACTION_MAX} characters "
                             "(one line: no line breaks, tabs or other control characters)")
        return actions


def _one_line(text: str) -> bool:
    """No control character (CR, LF, tab, C1) and no line or paragraph separator."""
    return not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


class UsageDrop(Signal):
    """The metric's total over the last `window_days` complete UTC days, against the `window_days` before:
    down more than `drop_percent` (and the earlier window had at least `min_base`)."""

    level: RiskLevel = "yellow"
    metric: str = "logins"
    window_days: int = Field(7, ge=1, le=90)
    drop_percent: float = Field(30, gt=0, lt=100)
    min_base: float = Field(10, ge=0, le=1e9)  # finite: .inf would switch the signal off unnoticed


class NpsDrop(Signal):
    """The CRM's `nps` down more than `points` from the account's previous score."""

    level: RiskLevel = "orange"
    points: float = Field(10, gt=0, le=200)


class TicketSurge(Signal):
    """More than `max_tickets` of the metric (support tickets, one per event) in the last `window_days`
    UTC days, today included."""

    level: RiskLevel = "red"
    metric: str = "support_tickets"
    window_days: int = Field(30, ge=1, le=90)
    max_tickets: float = Field(10, ge=0, le=1e9)  # finite: .inf would switch the signal off unnoticed


class ChampionDeparture(Signal):
    """A contact holding one of `roles` leaves the CRM's contacts or loses the role."""

    level: RiskLevel = "executive"
    roles: list[str] = Field(default_factory=lambda: ["champion", "executive_sponsor"], min_length=1, max_length=10)

    @field_validator("roles")
    @classmethod
    def _named(cls, roles: list[str]) -> list[str]:
        # compared as episodes.py reads a contact's role: a role with no letter or digit would match every
        # contact without a role, and removing one would open an executive-level "… left" signal
        if any(not any(ch.isalnum() for ch in r) for r in roles):
            raise ValueError("champion_departure.roles: each role names one (letters or digits), e.g. champion")
        return roles


class NoNewUsers(Signal):
    """None of the metric (new users) for `period_days` UTC days, today included, after the account had some."""

    level: RiskLevel = "yellow"
    metric: str = "new_users"
    period_days: int = Field(14, ge=1, le=90)


class InvoiceOverdue(Signal):
    """The CRM's `invoice_overdue` is true."""

    level: RiskLevel = "orange"


class MrrContraction(Signal):
    """The CRM's `mrr` goes down by more than `min_drop_percent` (clears when back to the earlier figure)."""

    level: RiskLevel = "orange"
    min_drop_percent: float = Field(0, ge=0, lt=100)


class SignalRules(Strict):
    """Which risk signals are evaluated, and how. `counters` are telemetry metrics accepted only for the
    signals (summed per day, no usage tiers): e.g. support_tickets, new_users, logins."""

    counters: list[str] = Field(default_factory=list, max_length=100)
    evaluate_every_seconds: float = Field(60, gt=0, le=86400)  # the timer's ticks per owned account
    usage_drop: UsageDrop | None = UsageDrop()
    nps_drop: NpsDrop | None = NpsDrop()
    ticket_surge: TicketSurge | None = TicketSurge()
    champion_departure: ChampionDeparture | None = ChampionDeparture()
    no_new_users: NoNewUsers | None = NoNewUsers()
    invoice_overdue: InvoiceOverdue | None = InvoiceOverdue()
    mrr_contraction: MrrContraction | None = MrrContraction()

    def telemetry_metrics(self) -> list[str]:
        """The metrics the enabled signals read from telemetry."""
        return [r.metric for r in (self.usage_drop, self.ticket_surge, self.no_new_users) if r is not None]

    def check_metrics(self, usage: set[str], gauges: set[str]) -> None:
        """Every metric a signal names is counted: a usage metric, a gauge or one of `counters`."""
        clash = sorted(set(self.counters) & (usage | gauges))
        if clash:
            raise ValueError(f"signals.counters {clash} are already usage metrics or gauges")
        known = usage | gauges | set(self.counters)
        unknown = [m for m in self.telemetry_metrics() if m not in known]
        if unknown:
            raise ValueError(f"signals metric {unknown[0]!r} is not a usage metric, a gauge or one of "
                             "signals.counters")

    @cached_property
    def daily_days(self) -> dict[str, int]:
        """metric → how many UTC days of per-day totals the usage row keeps for it (today included)."""
        need: dict[str, int] = {}

        def keep(metric: str, days: int) -> None:
            need[metric] = max(need.get(metric, 0), days)

        if self.usage_drop is not None:     # two windows of complete days, and today
            keep(self.usage_drop.metric, 2 * self.usage_drop.window_days + 1)
        if self.ticket_surge is not None:   # the window, today included
            keep(self.ticket_surge.metric, self.ticket_surge.window_days)
        if self.no_new_users is not None:   # the period, today included, and the day before it
            keep(self.no_new_users.metric, self.no_new_users.period_days + 1)
        return need
