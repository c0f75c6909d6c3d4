"""Example source payloads, shaped as the public Segment Spec and Salesforce CDC developer guide show them."""
from __future__ import annotations

import copy
from pathlib import Path

from milestone_stream.agents.ingest.config import AdaptersConfig

# an AccountChangeEvent schema in the shape the Pub/Sub API's GetSchema returns (ChangeEventHeader first,
# every field a union with null, BillingAddress a compound record and ShippingAddress the same named type);
# positions: 4 BillingAddress (nested 1 City), 7 Industry, 13 LastModifiedDate, 18 Contract_Start_Date__c,
# 20 ROI_Percent__c, 24 Description — the bitmaps in the tests are computed from these by hand
ACCOUNT_CHANGE_EVENT_SCHEMA = Path(__file__).parent / "data" / "account_change_event.avsc"


def adapters_config(segment_topic: str, cdc_topic: str) -> dict:
    return {
        "segment": {
            "topic": segment_topic,
            "account_from": ["context.groupId", "properties.account_id"],
            "track": {"Email Sent": {"metric": "emails_sent"},
                      "Emails Delivered": {"metric": "emails_sent", "value": "properties.count"}},
            "group_traits": {"name": "name", "industry": "industry", "plan": "plan"},
        },
        "salesforce_cdc": {
            "topic": cdc_topic,
            "fields": {"Name": "name", "Industry": "industry", "CSM_Email__c": "csm_email",
                       "ROI_Percent__c": {"to": "roi_percent", "type": "number"},
                       "Contract_Start_Date__c": {"to": "contract_start", "type": "date"},
                       "Uses_Automation__c": {"to": "adoption.automation_sequences", "type": "boolean"},
                       "BillingAddress.City": "billing_city"},
        },
    }


def config(segment_topic="segment.events", cdc_topic="sf.accounts", **cdc_extra) -> AdaptersConfig:
    """The adapters' configuration; `cdc_extra` adds to the salesforce_cdc section (`schema_file=...`)."""
    raw = adapters_config(segment_topic, cdc_topic)
    raw["salesforce_cdc"] |= cdc_extra
    return AdaptersConfig.model_validate(raw)


def track(message_id: str, account: str | None, event: str = "Email Sent", properties: dict | None = None,
          **top) -> dict:
    """A track call as a Segment library sends it (device clock in timestamp and sentAt)."""
    return {
        "type": "track", "event": event, "messageId": message_id, "userId": "user-42",
        "anonymousId": "507f191e810c19729de860ea",
        "context": {"library": {"name": "analytics.js", "version": "2.11.1"}, "ip": "203.0.113.7",
                    **({"groupId": account} if account else {})},
        "properties": {"campaign": "spring", **(properties or {})},
        "timestamp": "2026-06-01T09:00:00.000Z",
        "sentAt": "2026-06-01T09:00:05.000Z",
        "receivedAt": "2026-06-01T09:00:06.500Z",
        "version": 2,
        **top,
    }


def group(message_id: str, account: str, **traits) -> dict:
    return {"type": "group", "messageId": message_id, "groupId": account, "userId": "user-42",
            "traits": traits, "timestamp": "2026-06-01T08:00:00.000Z"}


_HEADER = {
    "entityName": "Account", "changeOrigin": "com/salesforce/api/soap/62.0;client=SfdcInternalAPI/",
    "transactionKey": "0002343d-9d90-e395-ed20-cf416ba652ad", "sequenceNumber": 1,
    "commitTimestamp": 1780300800000, "commitNumber": 10714958460, "commitUser": "005xx000001SwR9AAK",
    "nulledFields": [], "diffFields": [], "changedFields": [],
}


def cdc(change_type: str, record_ids: list[str], fields: dict | None = None, *, changed=(), nulled=(),
        sequence: int = 1, envelope: str = "flat") -> dict:
    """A change event; `envelope` "flat" (Pub/Sub API JSON) or "cometd" (data.payload, with replayId)."""
    header = copy.deepcopy(_HEADER) | {"changeType": change_type, "recordIds": record_ids, "sequenceNumber": sequence,
                                       "commitTimestamp": _HEADER["commitTimestamp"] + 1000 * (sequence - 1),
                                       "changedFields": list(changed), "nulledFields": list(nulled)}
    body = {"ChangeEventHeader": header, "Name": None, "Industry": None, "ROI_Percent__c": None,
            "LastModifiedDate": "2026-06-01T08:00:00.000Z", **(fields or {})}
    if envelope == "cometd":
        return {"data": {"schema": "IeRuaY6cbI_HsV8Rv1Mc5g", "payload": body, "event": {"replayId": 6}},
                "channel": "/data/AccountChangeEvent"}
    return body
