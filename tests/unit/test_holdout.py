"""The measurement holdout's rule (agents/drafter/holdout.py): deterministic, the configured share,
a new cohort when the share or the salt changes, validated in the rules file."""
import pytest
from pydantic import ValidationError

from milestone_stream.agents.drafter.holdout import Holdout, assign, bucket, parse_note
from milestone_stream.rules import Rules

IDS = [f"acct-{i}" for i in range(100_000)]


def held(config: Holdout, kinds=("usage_threshold",)) -> set[str]:
    return {a for a in IDS if assign(config, a, kinds).held_out}


def test_the_share_is_kept_within_one_percent_on_100k_accounts():
    for share in (0.05, 0.10, 0.25):
        got = len(held(Holdout(share=share))) / len(IDS)
        assert abs(got - share) <= 0.01, (share, got)


def test_the_same_account_lands_in_the_same_arm_every_time():
    first, again = held(Holdout()), held(Holdout(share=0.10, salt="holdout-1"))  # a new process, same rules
    assert first == again
    assert bucket("s", "acct-7") == bucket("s", "acct-7")
    assert 0 <= bucket("s", "acct-7") < 1


def test_a_new_salt_is_a_new_cohort_with_new_arms():
    a, b = Holdout(salt="q1-2026"), Holdout(salt="q2-2026")
    assert a.cohort != b.cohort
    overlap = len(held(a) & held(b)) / len(held(a))
    assert 0.07 < overlap < 0.13  # independent draws: about 10% of one arm is in the other


def test_a_new_share_is_a_new_cohort_and_the_buckets_nest():
    small, large = Holdout(share=0.10), Holdout(share=0.20)
    assert small.cohort != large.cohort
    assert Holdout(by_kind={"anniversary": 0.2}).cohort != Holdout().cohort
    assert held(small) <= held(large)  # raising a share only moves celebrated accounts into the holdout


def test_a_kind_has_its_own_share_and_a_mixed_batch_is_held_out_for_any_of_its_kinds():
    config = Holdout(share=0.10, by_kind={"anniversary": 0.30})
    anniversary = held(config, ("anniversary",))
    assert abs(len(anniversary) / len(IDS) - 0.30) <= 0.01
    assert held(config, ("anniversary", "usage_threshold")) == anniversary


def test_no_holdout_configured_means_every_account_is_celebrated_without_a_note():
    arm = assign(None, "acct-1", ["anniversary"])
    assert not arm.held_out and arm.notes == []


def test_the_note_names_arm_cohort_and_kinds_and_reads_back():
    config = Holdout(share=0.5)
    arms = {a: assign(config, a, ["usage_threshold", "anniversary"]) for a in IDS[:50]}
    assert {arm.held_out for arm in arms.values()} == {True, False}
    for arm in arms.values():
        measured = parse_note(["cooldown: something else", *arm.notes])
        assert measured is not None
        assert measured.held_out == arm.held_out
        assert measured.cohort == config.cohort
        assert measured.kinds == ("anniversary", "usage_threshold")
    held_note = next(a for a in arms.values() if a.held_out).notes[0]
    assert "never sent" in held_note
    assert parse_note(["at risk — consider not sending"]) is None


@pytest.mark.parametrize("section", [{"share": 0.7}, {"share": -0.1}, {"by_kind": {"anniversary": 0.9}},
                                     {"by_kind": {"not_a_kind": 0.1}}, {"salt": ""}, {"shares": 0.1}])
def test_the_rules_file_refuses_a_wrong_holdout(section):
    with pytest.raises(ValidationError):
        Rules.model_validate({"holdout": section})


def test_the_rules_file_holdout_defaults_to_ten_percent_and_is_off_when_absent():
    assert Rules().holdout is None
    assert Rules.model_validate({"holdout": {}}).holdout == Holdout(share=0.10)


def test_the_commented_example_section_loads_once_uncommented():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "rules.example.yaml").read_text()
    section = re.search(r"^# holdout:\n((?:#   .*\n)+)", text, re.M)
    assert section is not None
    uncommented = "holdout:\n" + "".join(line[1:] + "\n" for line in section.group(1).splitlines())
    config = Rules.model_validate(yaml.safe_load(uncommented)).holdout
    assert config is not None and config.share == 0.10 and config.cohort.startswith("c-")
