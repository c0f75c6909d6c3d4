"""The Gainsight PX mapper without a broker: PX custom-event bodies in, telemetry events (or reasons) out."""
import hashlib
import json
import math
from datetime import UTC, datetime

import pytest

from milestone_stream.agents.ingest import gainsight_px
from milestone_stream.agents.ingest.config import AdaptersConfig
from milestone_stream.agents.ingest.gainsight_px import PxConfig, dedupe_key
from milestone_stream.agents.ingest.mapping import Rejected, Skipped
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Origin, TelemetryEvent

from support.px import JUNE_1, PROPERTY_KEY, px_config, px_event, px_webhook

ORIGIN = Origin(topic="px.events", partition=1, offset=7)
PX = PxConfig.model_validate(px_config())


def px(body, config=PX):
    return gainsight_px.map_event(body, config, ORIGIN)


def rejected(body, config=PX) -> Rejected:
    with pytest.raises(Rejected) as err:
        px(body, config)
    return err.value


def test_a_custom_event_becomes_one_telemetry_event_cited_as_gainsight_px():
    event = px(px_event())
    assert isinstance(event, TelemetryEvent)
    assert (event.account_id, event.metric, event.value, event.source) == \
        ("acct-1", "emails_sent", 1.0, "Gainsight PX")
    assert event.occurred_at == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert event.origin == ORIGIN and event.attributes == {"px_event": "Report Exported"}
    assert event.event_id.startswith("px:") and len(event.event_id) == 35


def test_the_dedupe_key_is_stable_and_documented():
    """The id is the documented hash: the same PX event, however delivered, has the same id; any field
    that tells two events apart changes it."""
    attrs = {"b": 2, "a": [1, "x"]}
    body = px_event(attributes=attrs)
    canonical = json.dumps([PROPERTY_KEY, "acct-1", "user-42", "Report Exported", JUNE_1, "s-1",
                            {"a": [1, "x"], "b": 2}], separators=(",", ":"))
    assert px(body).event_id == "px:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
    # attribute order, an integral float date, ISO text of the same instant and the webhook envelope: same event
    same = [px_event(attributes={"a": [1, "x"], "b": 2}), px_event(attributes=attrs, date=float(JUNE_1)),
            px_event(attributes={"a": [1, "x"], "b": 2}, date="2026-06-01T09:00:00Z"),
            px_webhook(px_event(attributes={"b": 2, "a": [1, "x"]}))]
    assert {px(b).event_id for b in same} == {px(body).event_id}
    # fields outside the key (url, referrer, userType) do not make it another event
    assert px(px_event(attributes={"b": 2, "a": [1, "x"]}, url="https://other", userType="LEAD")).event_id == \
        px(body).event_id
    different = [px_event(attributes={"b": 3, "a": [1, "x"]}), px_event(attributes=attrs, date=JUNE_1 + 1),
                 px_event(attributes={"b": 2, "a": [1, "x"]}, session="s-2"),
                 px_event(attributes={"b": 2, "a": [1, "x"]}, user="user-43"),
                 px_event(attributes={"b": 2, "a": [1, "x"]}, account="acct-2"),
                 px_event(attributes={"b": 2, "a": [1, "x"]}, propertyKey="AP-OTHER-1"),
                 px_event(attributes={"b": 2, "a": [1, "x"]}, session=None)]
    ids = [px(b).event_id for b in different]
    assert len(set(ids)) == len(ids) and px(body).event_id not in ids
    assert dedupe_key(None, "a", "u", "n", 0, None, {}) == dedupe_key(None, "a", "u", "n", 0, None, {})


def test_a_numeric_attribute_is_the_value_case_insensitively_and_must_be_a_number():
    assert px(px_event("Emails Delivered", attributes={"count": 250})).value == 250.0
    assert px(px_event("Emails Delivered", attributes={"Count": 7})).value == 7.0  # PX: property names ignore case
    nested = PxConfig.model_validate(px_config(events={"Export": {"metric": "emails_sent", "value": "export.rows"}}))
    assert px(px_event("Export", attributes={"export": {"rows": 12}}), nested).value == 12.0
    for bad in ("250", -3, True, None, math.nan, math.inf, 2 ** 70, {"n": 1}):
        assert rejected(px_event("Emails Delivered", attributes={"count": bad})).reason == "invalid_value", bad
    assert rejected(px_event("Emails Delivered", attributes={"other": 1})).reason == "invalid_value"
    # a huge but finite value is passed on: the usage agent dead-letters it beyond max_event_value
    assert px(px_event("Emails Delivered", attributes={"count": 1e308})).value == 1e308


@pytest.mark.parametrize("date", [None, "yesterday", True, math.nan, math.inf, 1e20, -1e20, 2 ** 80, 253402300800000,
                                  "10000-01-01T00:00:00Z", {"ms": 1}, [JUNE_1]])
def test_a_date_missing_unreadable_or_off_the_calendar_is_refused(date):
    body = px_event(date=date)
    if date is None:
        del body["date"]
    assert rejected(body).reason == "invalid_timestamp"


def test_the_calendar_edges_are_accepted():
    assert px(px_event(date=253402300799999)).occurred_at.year == 9999  # 9999-12-31T23:59:59.999Z
    assert px(px_event(date=0)).occurred_at == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("accountId", None, "no_account"), ("accountId", "", "no_account"), ("accountId", 42, "no_account"),
    ("accountId", "a" * 257, "invalid_value"), ("identifyId", None, "malformed"), ("identifyId", ["u"], "malformed"),
    ("eventName", None, "malformed"), ("eventName", 3, "malformed"), ("sessionId", 12, "malformed"),
    ("propertyKey", {"k": 1}, "malformed"), ("attributes", "a=1", "malformed"), ("attributes", [1], "malformed"),
])
def test_bad_or_missing_fields_are_refused_with_a_reason(field, value, reason):
    body = px_event()
    if value is None:
        body.pop(field, None)
    else:
        body[field] = value
    assert rejected(body).reason == reason


def test_not_an_object_and_markup_and_control_characters():
    for doc in ([px_event()], "Report Exported", 3, None):
        assert rejected(doc).reason == "malformed"
    odd = px(px_event(account="<script>acct\r\n1</script>", attributes={"note": "\u2028\x00" * 1000}))
    assert odd.account_id == "<script>acct\r\n1</script>"  # carried as data; escaped where it is shown
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    assert rejected(px_event(attributes=deep)).reason == "malformed"


def test_unmapped_names_other_products_user_types_and_page_views_are_skipped_or_parked():
    assert px(px_event("Page Scrolled")) == Skipped("unmapped_event")
    strict = PxConfig.model_validate(px_config(unmapped="deadletter"))
    assert rejected(px_event("Page Scrolled"), strict).reason == "unmapped_event"
    only = PxConfig.model_validate(px_config(property_keys=["AP-OTHER-1"], user_types=["USER"]))
    assert px(px_event(), only) == Skipped("other_product")
    users = PxConfig.model_validate(px_config(user_types=["USER"]))
    assert px(px_event(userType="LEAD"), users) == Skipped("user_type")
    assert isinstance(px(px_event(), users), TelemetryEvent)
    assert px(px_webhook(px_event(), "PAGE_VIEW")) == Skipped("page_view_event")
    webhook = px(px_webhook(px_event()))
    assert isinstance(webhook, TelemetryEvent) and webhook.account_id == "acct-1"


def test_account_prefix():
    prefixed = PxConfig.model_validate(px_config(account_prefix="px-"))
    assert px(px_event(), prefixed).account_id == "px-acct-1"


def test_the_adapters_file_checks_px_metrics_and_topics(tmp_path):
    from milestone_stream.settings import ConfigError
    path = tmp_path / "adapters.yaml"
    path.write_text(json.dumps({"gainsight_px": px_config(events={"X": {"metric": "no_such_metric"}})}))
    with pytest.raises(ConfigError, match="gainsight_px.events maps to metrics the rules do not know"):
        AdaptersConfig.load(path, Rules())
    path.write_text(json.dumps({"gainsight_px": px_config(topic="t"),
                                "segment": {"topic": "t", "track": {"E": {"metric": "emails_sent"}}}}))
    with pytest.raises(ConfigError):
        AdaptersConfig.load(path, Rules())
    path.write_text(json.dumps({"gainsight_px": px_config()}))
    assert AdaptersConfig.load(path, Rules()).source_topics() == ["px.events"]


def test_three_thousand_hostile_bodies_map_or_are_refused_never_anything_else():
    import random
    rng = random.Random(11)
    values = [None, "", "x", "<b>", "\r\n", 0, -1, 1.5, 1e308, -1e308, math.nan, math.inf, 2 ** 64, True, [], {},
              {"count": math.nan}, JUNE_1, "2026-06-01", "a" * 300]
    fields = ["eventName", "identifyId", "accountId", "date", "attributes", "propertyKey", "sessionId", "userType"]
    for _ in range(3000):
        body = px_event(rng.choice(["Report Exported", "Emails Delivered"]), attributes={"count": rng.choice(values)})
        for field in rng.sample(fields, rng.randint(1, 3)):
            body[field] = rng.choice(values)
        try:
            result = px(body)
        except Rejected as err:
            assert err.reason in {"malformed", "no_account", "invalid_timestamp", "invalid_value"}
            continue
        assert isinstance(result, (TelemetryEvent, Skipped))
        if isinstance(result, TelemetryEvent):
            assert math.isfinite(result.value) and result.value >= 0
            TelemetryEvent.from_avro(result.to_avro())  # publishable
