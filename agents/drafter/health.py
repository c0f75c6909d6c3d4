"""The account health score: weighted components, each 0-100, into one score 0-100 and a band.

Why here: the CSM approving a note should see at a glance how the account is doing, and why. It is
recomputed from the current table rows at each draft, shown on the approval request (never in a
customer email), and every component names the inputs it used.

Components (weights and bands from the rules' `risk.health`; playbook defaults 40/30/20/10, green
80-100, yellow 60-79, red below 60). A component without input is None and its weight is shared by
the others (the score is the weighted mean of the components that have a score); no component with
input: no score at all.
- engagement: recency of product activity. The newest event of any metric in the usage table:
  100 while it is at most `active_days` old (7), falling linearly to 0 at `idle_days` (30).
- product_usage: the mean of what is known of (a) depth: the share of the configured usage tiers the
  account's lifetime totals have reached, x 100, and (b) breadth: 25 per adopted module (CRM
  `adoption.*` flags), at most 100.
- relationship: the mean of what is known of (a) NPS (CRM field `nps`, -100..100) mapped to 0..100,
  (b) sponsorship: 100 with an executive contact on record, 40 with contacts but none executive;
  then minus 20 per open escalation (CRM `open_escalations`), never below 0. Neither (a) nor (b): None.
- outcomes: reported ROI (CRM `roi_percent`) / 2, from 0 (0% or less) to 100 (200% or more).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from milestone_stream.agents.detector.crm import ProfileRow
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.drafter.context import Context
from milestone_stream.agents.drafter.riskrules import HealthRules
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Health, HealthComponent

Scored = tuple[float | None, str]  # a component's score (None: no input) and the inputs it used


@dataclass(frozen=True)
class Inputs:
    """What the score is computed from (None: unknown)."""

    idle_days: float | None = None          # days since the newest product event
    tiers_reached: int | None = None        # configured usage tiers reached, of
    tiers_total: int | None = None          # ... the tiers of the metrics the account has totals for
    modules: int | None = None              # adopted modules (None: no adoption flags at all)
    nps: float | None = None                # -100..100
    contacts: int = 0
    executive: bool = False
    open_escalations: int | None = 0


def _clamp(x: float) -> float:
    return max(0.0, min(100.0, x))


def _mean(parts: list[float]) -> float | None:
    return sum(parts) / len(parts) if parts else None


def engagement(i: Inputs, h: HealthRules) -> Scored:
    if i.idle_days is None:
        return None, "no product events in the usage table"
    span = h.idle_days - h.active_days
    score = 100.0 if i.idle_days <= h.active_days else _clamp(100 * (h.idle_days - i.idle_days) / span)
    return score, f"usage table: last product event {i.idle_days:.1f} days ago"


def product_usage(i: Inputs, h: HealthRules) -> Scored:
    parts, used = [], []
    if i.tiers_total:
        parts.append(100 * (i.tiers_reached or 0) / i.tiers_total)
        used.append(f"usage table: {i.tiers_reached} of {i.tiers_total} usage tiers reached")
    if i.modules is not None:
        parts.append(min(100.0, 25.0 * i.modules))
        used.append(f"CRM: {i.modules} module(s) adopted")
    return _mean(parts), "; ".join(used) or "no usage totals and no adoption flags"


def relationship(i: Inputs, h: HealthRules) -> Scored:
    parts, used = [], []
    if i.nps is not None:
        parts.append(_clamp((i.nps + 100) / 2))
        used.append(f"CRM nps {i.nps:g}")
    if i.contacts:
        parts.append(100.0 if i.executive else 40.0)
        used.append("CRM contacts: executive sponsor on record" if i.executive else
                    "CRM contacts: no executive contact")
    base = _mean(parts)
    if base is None:
        return None, "no NPS and no contacts in CRM"
    if i.open_escalations:
        base = max(0.0, base - 20.0 * i.open_escalations)
        used.append(f"CRM: {i.open_escalations} open escalation(s), -20 each")
    return base, "; ".join(used)


def outcomes(roi: float | None) -> Scored:
    if roi is None:
        return None, "no reported ROI in CRM"
    return _clamp(roi / 2), f"CRM roi_percent {roi:g}"


def band(score: float, h: HealthRules) -> Literal["green", "yellow", "red"]:
    return "green" if score >= h.green_from else "yellow" if score >= h.yellow_from else "red"


def score(i: Inputs, roi: float | None, h: HealthRules) -> Health | None:
    """The weighted score (rounded to a whole number before banding) and its components; None when no
    component has input."""
    found = {"engagement": engagement(i, h), "product_usage": product_usage(i, h),
             "relationship": relationship(i, h), "outcomes": outcomes(roi)}
    components = [HealthComponent(name=name, weight=weight, score=None if s is None else round(s, 1), source=src)
                  for name, weight in h.weights.items() for s, src in [found[name]]]
    known = [(c.weight, found[c.name][0]) for c in components if found[c.name][0] is not None and c.weight > 0]
    total = sum(w for w, _ in known)
    if not known or total <= 0:
        return None
    value = float(round(sum(w * s for w, s in known if s is not None) / total))
    return Health(score=value, band=band(value, h), components=components)


def _number(value: object, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                return None
        else:
            return None
    return float(value) if math.isfinite(value) and low <= value <= high else None


def inputs(ctx: Context, profile: ProfileRow, usage: UsageRow, rules: Rules, now: datetime) -> Inputs:
    """The inputs from the rows the drafter already reads (the compiled context, the profile, the usage row)."""
    lasts = [span[1] for m in usage.totals if (span := usage.first_last(m)) is not None and math.isfinite(span[1])]
    reached = total = 0
    for metric, conf in rules.usage.items():
        value = usage.total(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            total += len(conf.tiers)
            reached += sum(1 for t in conf.tiers if value >= t)
    flags = [f for f in profile.fields if isinstance(f, str) and f.startswith("adoption.")]
    return Inputs(idle_days=max(0.0, (now.timestamp() - max(lasts)) / 86400) if lasts else None,
                  tiers_reached=reached if total else None, tiers_total=total or None,
                  modules=len(ctx.modules_adopted) if flags else None,
                  nps=_number(profile.field("nps"), -100, 100), contacts=len(ctx.contacts),
                  executive=bool(ctx.executives), open_escalations=ctx.open_escalations)


def of_account(ctx: Context, profile: ProfileRow, usage: UsageRow, rules: Rules, now: datetime) -> Health | None:
    return score(inputs(ctx, profile, usage, rules, now), _number(profile.field("roi_percent"), -1e6, 1e6),
                 rules.risk.health)
