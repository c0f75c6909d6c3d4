"""Which consumer groups `milestones lag` reports: the Gainsight stage's only when it is configured."""
from milestone_stream.ops.lag import product_groups
from milestone_stream.topics import TopicNames


def test_the_gainsight_stage_is_listed_only_when_configured() -> None:
    names = TopicNames("t.")
    assert set(product_groups("app", names)) == {"app", "app-sender"}
    groups = product_groups("app", names, gainsight=True)
    assert groups["app-gainsight"] == ["t.emails.outcomes"]


def test_the_topics_of_features_the_rules_turn_on_are_listed_with_them() -> None:
    names = TopicNames("t.")
    plain = product_groups("app", names)
    assert "t.risks" in plain["app"] and "t.risks" in plain["app-sender"]  # the gates agent, the alerts
    assert "t.milestones.risk-clock" not in plain["app"] and "t.approvals.decisions" not in plain["app"]
    on = product_groups("app", names, signals=True, sequence=True)["app"]
    assert {"t.milestones.risk-clock", "t.milestones.sequence", "t.approvals.decisions"} <= set(on)
