"""The impact page's query (sinks/impact/web.py): only a milestone kind and a cohort id as the report
writes them are read, and the cache of built reports stays bounded.

Why: each report not in the cache reads approvals.requests and crm.changes whole; a signed-in user who
varies the query (any [a-z0-9_-] text was taken) could make the UI read both topics again and again and
keep every report it built."""
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from milestone_stream.sinks.approvals.signing import Signer
from milestone_stream.sinks.approvals.web import ApprovalUI
from milestone_stream.sinks.impact import web as impact_web
from milestone_stream.sinks.impact.report import build
from milestone_stream.sinks.impact.web import ImpactPage

NOW = datetime(2030, 1, 2, tzinfo=UTC)


class View:
    def inbox(self, csm_email):
        return []


@pytest.fixture
async def site():
    signer = Signer(b"k" * 32)
    loads: list[tuple[str | None, str | None]] = []

    async def publish(d):
        raise AssertionError("the impact page decides nothing")

    async def load(cohort, kind):
        loads.append((cohort, kind))
        return build([], [], NOW, cohort=cohort, kind=kind)

    ui = ApprovalUI(View(), signer, publish, clock=lambda: NOW)
    page = ImpactPage(ui, load)
    ui.routes += page.routes()
    async with TestClient(TestServer(ui.app())) as client:
        yield SimpleNamespace(client=client, page=page, loads=loads,
                              cookie={"Cookie": f"ms_session={signer.session('sam@vendor.example')}"})


async def test_a_kind_that_is_no_milestone_kind_or_a_cohort_that_is_no_cohort_id_is_400(site):
    for query in ("kind=nonsense", "kind=anniversary_", "cohort=zzz", "cohort=c-0123456789abc", "cohort=c-XYZ"):
        for path in ("/impact", "/impact.csv"):
            r = await site.client.get(f"{path}?{query}", headers=site.cookie)
            assert r.status == 400, (path, query)
    assert site.loads == []
    r = await site.client.get("/impact?kind=anniversary&cohort=c-0123456789ab", headers=site.cookie)
    assert r.status == 200 and site.loads == [("c-0123456789ab", "anniversary")]


async def test_the_cache_of_reports_is_bounded(site):
    for n in range(impact_web.CACHE_MAX + 40):
        r = await site.client.get(f"/impact.csv?cohort=c-{n:012x}", headers=site.cookie)
        assert r.status == 200
    assert len(site.page._cache) <= impact_web.CACHE_MAX
    # the newest stay cached: asked again, not built again
    built = len(site.loads)
    await site.client.get(f"/impact.csv?cohort=c-{impact_web.CACHE_MAX + 39:012x}", headers=site.cookie)
    assert len(site.loads) == built
