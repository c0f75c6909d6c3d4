"""The impact report's statistics (sinks/impact/stats.py) and figures (report.py, render.py), on
synthetic populations with a known effect, with none, with a tenure confounder and with too few
accounts. Fixed seeds: the same figures every run."""
import csv
import io
import random
from datetime import UTC, datetime, timedelta

import pytest

from milestone_stream.agents.drafter.holdout import Holdout, assign
from milestone_stream.schemas.records import ApprovalRequest, CrmChange, FieldChange
from milestone_stream.sinks.impact import render, stats
from milestone_stream.sinks.impact.report import build


def test_newcombe_and_wilson_match_the_published_examples():
    # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10
    i = stats.newcombe(56, 70, 48, 80)
    assert (round(i.low, 4), round(i.high, 4)) == (0.0524, 0.3339)
    i = stats.newcombe(9, 10, 3, 10)
    assert (round(i.low, 4), round(i.high, 4)) == (0.1705, 0.8090)
    low, high = stats.wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert abs(stats.t_quantile(0.975, 10) - 2.2281) < 1e-3
    assert abs(stats.t_quantile(0.975, 30) - 2.0423) < 1e-3


def test_mantel_haenszel_with_one_stratum_is_the_plain_difference_with_the_wald_variance():
    i, dropped = stats.mantel_haenszel([stats.Table(80, 100, 70, 100)])
    assert i is not None and dropped == 0
    assert i.estimate == pytest.approx(0.10)
    wald = (0.8 * 0.2 / 100 + 0.7 * 0.3 / 100) ** 0.5
    assert (i.high - i.estimate) / stats.Z95 == pytest.approx(wald)
    none, dropped = stats.mantel_haenszel([stats.Table(3, 5, 0, 0)])
    assert none is None and dropped == 5


def nps_scores(rng: random.Random, n: int, promoters: float, detractors: float) -> list[float]:
    return [stats.nps_points(rng.choice((9, 10)) if (u := rng.random()) < promoters
                             else rng.randint(0, 6) if u < promoters + detractors else rng.choice((7, 8)))
            for _ in range(n)]


def test_a_known_effect_is_recovered_within_the_interval():
    rng = random.Random(20261126)
    n1, n0 = 9_000, 1_000  # a 10% holdout
    won1 = sum(rng.random() < 0.80 for _ in range(n1))
    won0 = sum(rng.random() < 0.70 for _ in range(n0))
    i = stats.newcombe(won1, n1, won0, n0)
    assert i.low < 0.10 < i.high
    assert stats.verdict(n1, n0, i) == stats.HIGHER
    # NPS +3: 43% promoters / 20% detractors (NPS 23) against 40% / 20% (NPS 20)
    a, b = nps_scores(rng, 40_000, 0.43, 0.20), nps_scores(rng, 40_000, 0.40, 0.20)
    nps = stats.welch(stats.Sample.of(a), stats.Sample.of(b))
    assert nps.low < 3 < nps.high


def test_no_effect_shows_no_difference():
    rng = random.Random(7)
    n1, n0 = 9_000, 1_000
    won1 = sum(rng.random() < 0.75 for _ in range(n1))
    won0 = sum(rng.random() < 0.75 for _ in range(n0))
    i = stats.newcombe(won1, n1, won0, n0)
    assert i.low < 0 < i.high and stats.verdict(n1, n0, i) == stats.NO_CLEAR
    a, b = nps_scores(rng, 5_000, 0.4, 0.2), nps_scores(rng, 1_000, 0.4, 0.2)
    nps = stats.welch(stats.Sample.of(a), stats.Sample.of(b))
    assert nps.low < 0 < nps.high and stats.verdict(5_000, 1_000, nps) == stats.NO_CLEAR


def test_small_counts_are_not_enough_data():
    i = stats.newcombe(20, 20, 0, 20)  # a huge difference, but 20 accounts per arm
    assert i.excludes_zero()
    assert stats.verdict(20, 20, i) == stats.NOT_ENOUGH
    assert stats.verdict(500, 29, i) == stats.NOT_ENOUGH
    assert stats.verdict(500, 30, None) == stats.NOT_ENOUGH


# whole reports from records -----------------------------------------------------------------------------
T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def request(account: str, held_out: bool, notes: list[str], at: datetime) -> ApprovalRequest:
    return ApprovalRequest(approval_id=f"ap-{account}-{at:%j}", milestone_ids=[f"m-{account}"], account_id=account,
                           account_name=account, csm_email="csm@example.com", recipients=[], subject="s",
                           body_text="b", body_html="<p>b</p>", citations=[], drafted_by="template",
                           guard_verdict="ok", policy_notes=notes, created_at=at, expires_at=at + timedelta(days=7),
                           held_out=held_out)


def change(account: str, n: int, at: datetime, **fields: object) -> CrmChange:
    return CrmChange(change_id=f"c-{account}-{n}", account_id=account, occurred_at=at, source="test",
                     changes=[FieldChange(field=k, value=v) for k, v in fields.items()])  # type: ignore[arg-type]


def population(seed: int, n: int, *, renewal=(0.80, 0.70), promoters=(0.43, 0.40), advocacy=(0.20, 0.20),
               share=0.2, tenure_effect=0.0, tenure_biased_holdout=False):
    """Accounts with a milestone in early 2025; outcomes drawn by arm (celebrated, held out). With a tenure
    effect, long-tenured accounts renew `tenure_effect` more; with a biased holdout, long-tenured accounts are
    held out three times as often (as when anniversaries have a larger share)."""
    rng = random.Random(seed)
    config = Holdout(share=share, salt=f"s{seed}")
    requests, changes = [], []
    for i in range(n):
        account = f"acct-{i}"
        long = i % 2 == 0
        at = T0 + timedelta(days=rng.randint(0, 60))
        arm = assign(config, account, ["anniversary" if long else "usage_threshold"])
        held = (rng.random() < 0.45 if long else rng.random() < 0.15) if tenure_biased_holdout else arm.held_out
        note = arm.notes[0].replace("measurement: held out", "measurement: celebrated") if not held else \
            arm.notes[0].replace("measurement: celebrated", "measurement: held out")
        requests.append(request(account, held, [note], at))
        k = 1 if held else 0
        start = (at - timedelta(days=365 * (6 if long else 1) + 30)).date().isoformat()
        changes.append(change(account, 0, T0 - timedelta(days=400), tier="enterprise" if i % 3 else "growth",
                              industry=("retail", "healthcare")[i % 5 == 0], contract_start=start))
        p_renew = renewal[k] + (tenure_effect if long else -tenure_effect)
        changes.append(change(account, 1, at + timedelta(days=200), renewal_outcome="won" if rng.random() < p_renew
                              else "lost", renewal_closed_at=(at + timedelta(days=200)).date().isoformat()))
        u = rng.random()
        score = 9 if u < promoters[k] else 4 if u < promoters[k] + 0.2 else 7
        changes.append(change(account, 2, at + timedelta(days=10), nps_response_score=score,
                              nps_responded_at=(at + timedelta(days=10)).isoformat()))
        if rng.random() < advocacy[k]:
            changes.append(change(account, 3, at + timedelta(days=40), advocacy_action="review"))
    return requests, changes, config


def test_the_report_recovers_a_known_effect_overall_and_stratified():
    requests, changes, config = population(11, 12_000)
    report = build(requests, changes, NOW)
    assert report.cohort == config.cohort
    assert abs(report.held_out / (report.held_out + report.celebrated) - 0.2) < 0.02
    for scope in ("overall", "stratified"):
        renewal = report.row("renewal", scope, "all" if scope == "overall" else "tier x industry x tenure")
        assert renewal.interval is not None and renewal.interval.low < 10 < renewal.interval.high
        assert renewal.verdict == stats.HIGHER
        nps = report.row("nps", scope, "all" if scope == "overall" else "tier x industry x tenure")
        assert nps.interval is not None and nps.interval.low < 3 < nps.interval.high
        advocacy = report.row("advocacy", scope, "all" if scope == "overall" else "tier x industry x tenure")
        assert advocacy.interval is not None and advocacy.interval.low < 0 < advocacy.interval.high
        assert advocacy.verdict == stats.NO_CLEAR
    assert {r.stratum for r in report.rows if r.scope == "tenure"} == {"1-2 years", "5+ years"}
    assert {r.stratum for r in report.rows if r.scope == "industry"} == {"retail", "healthcare"}


def test_stratifying_removes_the_tenure_bias_a_naive_comparison_shows():
    # no effect of celebrating at all; long-tenured accounts renew 90%, others 60%; long-tenured accounts
    # are held out three times as often: the naive difference is a spurious negative "lift"
    requests, changes, _ = population(5, 8_000, renewal=(0.75, 0.75), tenure_effect=0.15, tenure_biased_holdout=True)
    report = build(requests, changes, NOW)
    naive = report.row("renewal")
    pooled = report.row("renewal", "stratified", "tier x industry x tenure")
    assert naive.verdict == stats.LOWER and naive.interval is not None and naive.interval.high < -3
    assert pooled.interval is not None and pooled.interval.low < 0 < pooled.interval.high
    assert pooled.verdict == stats.NO_CLEAR


def test_a_small_population_says_not_enough_data_and_prints_no_lift():
    requests, changes, _ = population(3, 60, renewal=(1.0, 0.0), share=0.2)
    report = build(requests, changes, NOW)
    row = report.row("renewal")
    assert row.n0 < 30 and row.verdict == stats.NOT_ENOUGH
    text = render.text(report)
    line = next(t for t in text.splitlines() if t.startswith("12-month renewal rate"))
    assert "not enough data" in line and "pts [" not in line
    rows = list(csv.DictReader(io.StringIO(render.csv_text(report))))
    overall = next(r for r in rows if r["outcome"] == "renewal" and r["scope"] == "overall")
    assert overall["difference"] == "" and overall["verdict"] == stats.NOT_ENOUGH
    assert "not enough data" in render.svg(report)


def test_windows_cohorts_and_unreadable_values():
    cfg = Holdout(share=0.5, salt="w")
    old = Holdout(share=0.5, salt="old")
    a = assign(cfg, "a", ["anniversary"])
    reqs = [request("a", a.held_out, a.notes, T0), request("b", False, ["no measurement note"], T0),
            request("c", False, assign(old, "c", ["anniversary"]).notes, T0 - timedelta(days=30))]
    changes = [change("a", 1, T0 + timedelta(days=31), nps_response_score=10),          # after 30 days: not counted
               change("a", 2, T0 + timedelta(days=400), renewal_outcome="won"),       # after 12 months: not counted
               change("a", 3, T0 + timedelta(days=5), nps_response_score=11),         # unreadable
               change("a", 4, T0 + timedelta(days=5), advocacy_action="tweet"),       # unreadable
               change("a", 5, T0 - timedelta(days=1), advocacy_action="review")]      # before: not counted
    report = build(reqs, changes, T0 + timedelta(days=60))
    assert report.cohort == cfg.cohort and report.celebrated + report.held_out == 1
    assert report.row("nps").n1 + report.row("nps").n0 == 0
    assert report.row("renewal").n1 + report.row("renewal").n0 == 0
    assert report.row("advocacy").n1 + report.row("advocacy").n0 == 0  # 90 days not passed, none yet
    assert any("2 CRM outcome value(s) not readable" in n for n in report.notes)
    assert any(old.cohort in n for n in report.notes)
    assert build(reqs, changes, NOW, cohort=old.cohort).celebrated + build(reqs, changes, NOW,
                                                                            cohort=old.cohort).held_out == 1


def test_the_chart_escapes_crm_text_and_the_csv_defuses_formulas():
    requests, changes, _ = population(9, 200)
    changes.append(change("acct-1", 9, T0 - timedelta(days=300), industry="=HYPERLINK(\"x\")<script>"))
    report = build(requests, changes, NOW)
    assert "<script>" not in render.svg(report)
    rows = list(csv.DictReader(io.StringIO(render.csv_text(report))))
    assert any(r["stratum"].startswith("'=HYPERLINK") for r in rows)
    assert render.svg(report).startswith("<svg") and "<circle" in render.svg(report)


def test_the_stratified_verdict_counts_only_the_accounts_its_strata_compare():
    # 100 accounts per arm, but the arms share one stratum of 3 + 3 accounts (every other celebrated account
    # is 'gold', every other held-out one 'silver'): the pooled figure rests on 6 accounts and must say not
    # enough data, not a +100-point lift (it used the naive arms' 100/100 for the 30-per-arm rule)
    cfg = Holdout(share=0.5, salt="strata")
    requests, changes = [], []
    for arm, held in (("c", False), ("h", True)):
        note = assign(cfg, "x", ["anniversary"]).notes[0]
        note = note.replace("held out", "celebrated") if not held else note.replace("celebrated", "held out")
        for i in range(100):
            account = f"{arm}{i}"
            requests.append(request(account, held, [note], T0))
            changes.append(change(account, 0, T0 - timedelta(days=400), industry="retail",
                                  tier="shared" if i < 3 else ("gold" if not held else "silver")))
            if (i < 3 and not held) or (i >= 3 and i % 2 == 0):
                changes.append(change(account, 1, T0 + timedelta(days=20), advocacy_action="review"))
    report = build(requests, changes, NOW)
    naive = report.row("advocacy")
    pooled = report.row("advocacy", "stratified", "tier x industry x tenure")
    assert (naive.n1, naive.n0) == (100, 100)
    assert (pooled.n1, pooled.n0, pooled.dropped) == (3, 3, 194)
    assert pooled.verdict == stats.NOT_ENOUGH
    assert "higher when celebrated" not in render.svg(report)


def test_an_account_held_out_for_one_kind_and_celebrated_for_another_is_in_neither_arm():
    # shares by kind: held out for its anniversary, celebrated (a note sent) for a usage tier 30 days later
    cfg = Holdout(share=0.0, by_kind={"anniversary": 0.5}, salt="mixed")
    both = next(a for a in (f"acct-{i}" for i in range(100)) if assign(cfg, a, ["anniversary"]).held_out)
    held, sent = assign(cfg, both, ["anniversary"]), assign(cfg, both, ["usage_threshold"])
    assert held.held_out and not sent.held_out
    plain = assign(cfg, "plain", ["usage_threshold"])
    reqs = [request(both, True, held.notes, T0), request(both, False, sent.notes, T0 + timedelta(days=30)),
            request("plain", False, plain.notes, T0)]
    report = build(reqs, [], T0 + timedelta(days=60))
    assert (report.celebrated, report.held_out) == (1, 0)  # "both" counted in neither arm
    assert any("1 account(s) left out: held out for one milestone kind and celebrated for another" in n
               for n in report.notes)
