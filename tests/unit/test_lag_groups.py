"""Which consumer groups `milestones lag` reports: the Gainsight stage's only when it is configured."""
from milestone_stream.ops.lag import product_groups
from milestone_stream.topics import TopicNames


def test_the_gainsight_stage_is_listed_only_when_configured() -> None:
    names = TopicNames("t.")
    assert set(product_groups("app", names)) == {"app", "app-sender"}
    groups = product_groups("app", names, gainsight=True)
    assert groups["app-gainsight"] == ["t.emails.outcomes"]
