"""The health score (pure arithmetic): weighted components, a component without input sharing its
weight, the bands, the weights validated at start-up, the inputs read from the drafter's rows; and
the score never reaching a customer email."""
from datetime import UTC, datetime, timedelta

import pytest

from milestone_stream.agents.detector.crm import ProfileRow
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.agents.drafter import health
from milestone_stream.agents.drafter.context import compile_context
from milestone_stream.agents.drafter.riskrules import HealthRules
from milestone_stream.agents.drafter.template import render, template_note
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Contact, Health, Milestone
from milestone_stream.sinks.sender import mail

from support.stack import approval_request, decision

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
H = HealthRules()


def test_full_inputs_weigh_each_component_by_the_playbook():
    i = health.Inputs(idle_days=1, tiers_reached=3, tiers_total=6, modules=2, nps=40, contacts=2, executive=True,
                      open_escalations=0)
    h = health.score(i, roi=150, h=H)
    by = {c.name: c for c in h.components}
    assert by["engagement"].score == 100                 # active within 7 days
    assert by["product_usage"].score == 50               # mean of 3/6 tiers (50) and 2 modules (50)
    assert by["relationship"].score == 85                # mean of NPS 40 -> 70 and an executive sponsor (100)
    assert by["outcomes"].score == 75                    # ROI 150% / 2
    assert [c.weight for c in h.components] == [0.4, 0.3, 0.2, 0.1]
    assert h.score == round(0.4 * 100 + 0.3 * 50 + 0.2 * 85 + 0.1 * 75)  # 79.5 -> 80
    assert h.band == "green"


def test_a_component_without_input_shares_its_weight():
    i = health.Inputs(idle_days=1)  # only engagement known
    h = health.score(i, roi=None, h=H)
    assert h.score == 100 and h.band == "green"
    assert [c.score for c in h.components] == [100, None, None, None]
    i = health.Inputs(idle_days=30 - 23 * 0.5, contacts=1, executive=False)  # engagement 50, relationship 40
    h = health.score(i, roi=None, h=H)
    assert h.score == round((0.4 * 50 + 0.2 * 40) / 0.6)  # 46.7 -> 47
    assert h.band == "red"


def test_no_input_at_all_is_no_score():
    assert health.score(health.Inputs(), roi=None, h=H) is None


@pytest.mark.parametrize(("value", "band"), [(100, "green"), (80, "green"), (79, "yellow"), (60, "yellow"),
                                             (59, "red"), (0, "red")])
def test_bands(value, band):
    assert health.band(value, H) == band


def test_engagement_falls_linearly_from_active_to_idle():
    assert health.engagement(health.Inputs(idle_days=7), H)[0] == 100
    assert health.engagement(health.Inputs(idle_days=18.5), H)[0] == pytest.approx(50)
    assert health.engagement(health.Inputs(idle_days=30), H)[0] == 0
    assert health.engagement(health.Inputs(idle_days=400), H)[0] == 0


def test_escalations_lower_the_relationship_never_below_zero():
    i = health.Inputs(nps=100, contacts=1, executive=True, open_escalations=2)
    assert health.relationship(i, H)[0] == 60
    assert health.relationship(health.Inputs(nps=-100, open_escalations=9), H)[0] == 0
    assert health.relationship(health.Inputs(open_escalations=3), H)[0] is None  # no NPS, no contacts


def test_outcomes_from_roi_are_bounded():
    assert health.outcomes(-50)[0] == 0 and health.outcomes(500)[0] == 100 and health.outcomes(None)[0] is None


@pytest.mark.parametrize("weights", [
    {"engagement": 0.5, "product_usage": 0.3, "relationship": 0.2, "outcomes": 0.1},  # 1.1
    {"engagement": 1.2, "product_usage": -0.2},
    {"engagement": float("nan"), "outcomes": 1},
    {"nps": 1.0},
    {},
])
def test_weights_must_sum_to_one_and_name_known_components(weights):
    with pytest.raises(ValueError):
        Rules.model_validate({"risk": {"health": {"weights": weights}}})


@pytest.mark.parametrize("days", [{"idle_days": float("inf")}, {"active_days": float("inf"), "idle_days": 30},
                                  {"idle_days": 1e308}])
def test_engagement_days_are_finite_and_bounded(days):
    # idle_days: .inf was accepted and made every account's engagement 100 (inf / inf is NaN, clamped to 100)
    with pytest.raises(ValueError):
        Rules.model_validate({"risk": {"health": days}})


def test_configured_weights_and_bands_are_used():
    rules = Rules.model_validate({"risk": {"health": {"weights": {"engagement": 0.5, "outcomes": 0.5},
                                                      "green_from": 90, "yellow_from": 50}}})
    h = health.score(health.Inputs(idle_days=0, nps=0), roi=100, h=rules.risk.health)
    assert [c.name for c in h.components] == ["engagement", "outcomes"]
    assert h.score == 75 and h.band == "yellow"
    with pytest.raises(ValueError, match="yellow_from"):
        Rules.model_validate({"risk": {"health": {"green_from": 60, "yellow_from": 70}}})


def rows():
    profile = ProfileRow.from_stored({"p": {"name": "Acme", "nps": 20, "roi_percent": 120, "open_escalations": 1,
                                            "adoption.reports": True, "adoption.api": True,
                                            "csm_email": "sam@vendor.example"},
                                      "c": [{"name": "Jane", "email": "jane@acme.example",
                                             "role": "executive_sponsor"}]})
    usage = UsageRow.from_stored({"t": {"emails_sent": 12000.0},
                                  "s": {"emails_sent": [(NOW - timedelta(days=200)).timestamp(),
                                                        (NOW - timedelta(days=10)).timestamp()]}})
    return profile, usage


def test_inputs_come_from_the_drafters_rows_and_name_their_sources():
    profile, usage = rows()
    ctx = compile_context("acme", [], profile, usage, Rules(), NOW)
    h = health.of_account(ctx, profile, usage, Rules(), NOW)
    by = {c.name: c for c in h.components}
    assert by["engagement"].score == pytest.approx(round(100 * 20 / 23, 1))  # last event 10 days ago
    assert "10.0 days ago" in by["engagement"].source
    assert by["product_usage"].score == pytest.approx(round((100 * 4 / 6 + 50) / 2, 1))  # 4 of 6 tiers, 2 modules
    assert "4 of 6 usage tiers" in by["product_usage"].source and "2 module(s)" in by["product_usage"].source
    assert by["relationship"].score == 80 - 20  # mean of NPS 20 -> 60 and a sponsor (100), one escalation
    assert by["outcomes"].score == 60 and "roi_percent 120" in by["outcomes"].source


def test_unreadable_crm_values_are_no_input():
    profile = ProfileRow.from_stored({"p": {"nps": "lots", "roi_percent": float("nan")}})
    ctx = compile_context("acme", [], profile, UsageRow(), Rules(), NOW)
    assert health.of_account(ctx, profile, UsageRow(), Rules(), NOW) is None


def test_the_score_never_reaches_a_customer_email():
    """The request carries the score for the CSM; the customer email is built from the decision, which has
    no field for it, and the drafted note from the context, which has none either."""
    profile, usage = rows()
    tier = Milestone(milestone_id="m-10k", account_id="acme", kind="usage_threshold", metric="emails_sent",
                     threshold=10000, value=12000.0, title="10,000 emails sent", reached_at=NOW)
    ctx = compile_context("acme", [tier], profile, usage, Rules(), NOW)
    h = health.of_account(ctx, profile, usage, Rules(), NOW)
    assert isinstance(h, Health)
    note = render(template_note(ctx, Rules()), ctx, Rules(), "Jane")
    req = approval_request(1, health=h, risk_signals=["Logins down 42%"], subject=note.subject,
                           body_text=note.body_text, body_html=note.body_html,
                           recipients=[Contact(name="Jane", email="jane@acme.example", role="executive_sponsor")])
    out = mail.customer_email(decision(req), "Sam Rivera", "milestones.test", None).message
    shown = "\n".join([out["Subject"], *(part.get_content() for part in out.iter_parts())]).lower()
    assert "jane" in shown  # the note itself is there
    for secret in ("health", "score", "engagement", "relationship", "logins down", h.band,
                   *(c.source.lower() for c in h.components)):
        assert secret not in shown, secret


def test_the_commented_rules_example_uncommented_is_the_default():
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "rules.example.yaml").read_text()
    start = text.index("# risk:\n")
    block = []
    for line in text[start:].splitlines():
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    section = yaml.safe_load("\n".join(block))
    assert Rules.model_validate(section).risk == Rules().risk
