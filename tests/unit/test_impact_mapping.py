"""The outcomes the impact report reads, as the adapters carry them with the example mappings
(adapters.example.yaml): Salesforce CDC fields and Segment group traits in, CRM changes out, and
the report's reading of those changes (a date alone is a new response with the last score; a group
call repeating the last response counts once)."""
from datetime import UTC, datetime, timedelta
from pathlib import Path

from milestone_stream.agents.ingest import salesforce_cdc, segment
from milestone_stream.agents.ingest.config import AdaptersConfig
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import CrmChange, Origin
from milestone_stream.sinks.impact.report import histories

from support.payloads import cdc, group

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = AdaptersConfig.load(REPO / "adapters.example.yaml", Rules.load(REPO / "rules.example.yaml"))
ORIGIN = Origin(topic="in", partition=0, offset=1)


def fields(change: CrmChange) -> dict:
    return {fc.field: fc.value for fc in change.changes}


def test_salesforce_cdc_carries_renewal_nps_and_advocacy_fields_with_their_types():
    assert EXAMPLE.salesforce_cdc is not None
    event = cdc("UPDATE", ["001A"], {"Renewal_Outcome__c": "won", "Renewal_Closed_Date__c": 20269,
                                     "Last_NPS_Score__c": 9, "Last_NPS_Response_Date__c": 1780000000000,
                                     "Last_Advocacy_Action__c": "case_study", "Last_Advocacy_Date__c": "2025-07-01"},
                changed=["Renewal_Outcome__c", "Renewal_Closed_Date__c", "Last_NPS_Score__c",
                         "Last_NPS_Response_Date__c", "Last_Advocacy_Action__c", "Last_Advocacy_Date__c"])
    [change] = salesforce_cdc.map_event(event, EXAMPLE.salesforce_cdc, ORIGIN)
    assert fields(change) == {"renewal_outcome": "won", "renewal_closed_at": "2025-06-30",
                              "nps_response_score": 9.0, "nps_responded_at": "2026-05-28T20:26:40+00:00",
                              "advocacy_action": "case_study", "advocacy_at": "2025-07-01"}
    h = histories([change], notes := [])[change.account_id]
    assert h.renewals == [(datetime(2025, 6, 30, tzinfo=UTC), True)]
    assert h.nps == [(datetime(2026, 5, 28, 20, 26, 40, tzinfo=UTC), 100.0)]
    assert h.advocacy == [datetime(2025, 7, 1, tzinfo=UTC)] and notes == []


def test_a_second_response_with_the_same_score_arrives_as_a_date_alone_and_still_counts():
    first = cdc("UPDATE", ["001A"], {"Last_NPS_Score__c": 6, "Last_NPS_Response_Date__c": "2025-01-10T09:00:00Z"},
                changed=["Last_NPS_Score__c", "Last_NPS_Response_Date__c"])
    second = cdc("UPDATE", ["001A"], {"Last_NPS_Response_Date__c": "2025-04-10T09:00:00Z"},
                 changed=["Last_NPS_Response_Date__c"], sequence=2)
    changes = [c for e in (first, second) for c in salesforce_cdc.map_event(e, EXAMPLE.salesforce_cdc, ORIGIN)]
    assert fields(changes[1]) == {"nps_responded_at": "2025-04-10T09:00:00+00:00"}
    h = histories(changes, [])["001A"]
    assert h.nps == [(datetime(2025, 1, 10, 9, tzinfo=UTC), -100.0), (datetime(2025, 4, 10, 9, tzinfo=UTC), -100.0)]


def test_segment_group_traits_carry_outcomes_and_a_repeated_trait_counts_once():
    assert EXAMPLE.segment is not None
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    traits = {"nps_score": 10, "nps_responded_at": "2026-05-30T10:00:00Z", "renewal_outcome": "lost",
              "renewal_closed_at": "2026-05-31", "advocacy_action": "referral", "advocacy_at": "2026-05-29"}
    one = segment.map_message(group("g-1", "acct-9", name="Acme", **traits), EXAMPLE.segment, ORIGIN, at)
    assert isinstance(one, CrmChange)
    assert fields(one) == {"name": "Acme", "nps_response_score": 10, "nps_responded_at": "2026-05-30T10:00:00Z",
                           "renewal_outcome": "lost", "renewal_closed_at": "2026-05-31",
                           "advocacy_action": "referral", "advocacy_at": "2026-05-29"}
    # the next group call sends every trait again: the same events, counted once
    again = segment.map_message(group("g-2", "acct-9", name="Acme Inc", **traits), EXAMPLE.segment, ORIGIN,
                                at + timedelta(days=1))
    h = histories([one, again], [])["acct-9"]
    assert h.nps == [(datetime(2026, 5, 30, 10, tzinfo=UTC), 100.0)]
    assert h.renewals == [(datetime(2026, 5, 31, tzinfo=UTC), False)]
    assert h.advocacy == [datetime(2026, 5, 29, tzinfo=UTC)]
