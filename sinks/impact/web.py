"""The impact report as a page of the approval UI (`/impact`) and its CSV download (`/impact.csv`).

Why in the approval UI: that is where CS leaders and CSMs already sign in; the page shows the chart
(server-rendered SVG inline: no script, nothing fetched, within the UI's Content-Security-Policy),
the table beside it and the caveat. It shows aggregates only (no account names), to anyone signed in.
Why a short cache: the report reads `approvals.requests` and `crm.changes` whole; a page reloaded by
several people in a minute reads them once; it keeps at most CACHE_MAX reports, and the query is read only as
a cohort id and a milestone kind, so varying it cannot make the page read the topics without end.
"""
from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import get_args

from aiohttp import web
from markupsafe import Markup

from milestone_stream.schemas.records import MilestoneKind
from milestone_stream.sinks.approvals.web import HEADERS, ApprovalUI, page, problem
from milestone_stream.sinks.impact import render
from milestone_stream.sinks.impact.report import LABELS, OUTCOMES, Report

Load = Callable[[str | None, str | None], Awaitable[Report]]  # (cohort, kind) → the report, as of now
_COHORT = re.compile(r"c-[0-9a-f]{12}")  # a cohort id as agents/drafter/holdout.py writes it
_KINDS = frozenset(get_args(MilestoneKind))
CACHE_MAX = 32  # reports kept: each query not cached reads both topics whole, so neither may grow without bound


class ImpactPage:
    def __init__(self, ui: ApprovalUI, load: Load, ttl: float = 60) -> None:
        self.ui, self.load, self.ttl = ui, load, ttl
        self._cache: dict[tuple[str | None, str | None], tuple[float, Report]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/impact", self.page), web.get("/impact.csv", self.csv)]

    async def report(self, request: web.Request) -> Report | web.Response:
        if self.ui.identity(request) is None:
            return problem(401, "Sign in with your link", "Open the approval link from your notification email.")
        cohort, kind = request.query.get("cohort") or None, request.query.get("kind") or None
        if (cohort is not None and not _COHORT.fullmatch(cohort)) or (kind is not None and kind not in _KINDS):
            return problem(400, "Unknown cohort or kind", "Use a cohort id (c-…) and a milestone kind as shown.")
        key = (cohort, kind)
        cached = self._cache.get(key)
        if cached is None or time.monotonic() - cached[0] > self.ttl:
            cached = (time.monotonic(), await self.load(cohort, kind))
            self._cache.pop(key, None)
            self._cache[key] = cached  # newest last: the oldest built are let go first
            while len(self._cache) > CACHE_MAX:
                del self._cache[next(iter(self._cache))]
        return cached[1]

    async def page(self, request: web.Request) -> web.Response:
        report = await self.report(request)
        if isinstance(report, web.Response):
            return report
        query = "&".join(f"{k}={v}" for k, v in (("cohort", report.cohort), ("kind", report.kind)) if v)
        csv_link = "/impact.csv" + (f"?{query}" if query else "")
        overall = [(LABELS[o], report.row(o), report.row(o, "stratified", "tier x industry x tenure"))
                   for o in OUTCOMES]
        strata = [(LABELS[r.outcome], r) for r in report.rows if r.scope not in ("overall", "stratified")]
        return page("impact.html", report=report, chart=Markup(render.svg(report)),  # noqa: S704 — escaped in svg()
                    overall=overall, strata=strata, difference=render.difference, value=render.value,
                    methods=render.METHODS, caveat=render.CAVEAT, csv_link=csv_link)

    async def csv(self, request: web.Request) -> web.Response:
        report = await self.report(request)
        if isinstance(report, web.Response):
            return report
        name = f"impact-{report.cohort or 'none'}{'-' + report.kind if report.kind else ''}.csv"
        return web.Response(text=render.csv_text(report), content_type="text/csv", charset="utf-8",
                            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})
