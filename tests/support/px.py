"""Gainsight PX custom events as PX sends them: the REST API's custom-event body, and the webhook envelope."""
from __future__ import annotations

PROPERTY_KEY = "AP-XXXXXXXXXXXX-2"
JUNE_1 = 1_780_304_400_000  # 2026-06-01T09:00:00Z in epoch milliseconds


def px_config(topic: str = "px.events", **extra) -> dict:
    return {"topic": topic,
            "events": {"Report Exported": {"metric": "emails_sent"},
                       "Emails Delivered": {"metric": "emails_sent", "value": "count"}},
            **extra}


def px_event(name: str = "Report Exported", account: str | None = "acct-1", user: str = "user-42",
             date: object = JUNE_1, attributes: dict | None = None, session: str | None = "s-1", **top) -> dict:
    """A custom event body as the PX REST API takes it (and a PX export carries it)."""
    body = {"eventName": name, "identifyId": user, "date": date, "attributes": attributes or {"format": "csv"},
            "propertyKey": PROPERTY_KEY, "sessionId": session, "userType": "USER",
            "url": "https://app.example/reports", "referrer": ""}
    if account is not None:
        body["accountId"] = account
    return {**body, **top}


def px_webhook(event: dict, event_type: str = "CUSTOM") -> dict:
    """The same event in PX's webhook envelope: the user beside the event, an eventType and an eventId."""
    inner = {k: v for k, v in event.items() if k not in ("identifyId", "accountId")}
    return {"user": {"aptrinsicId": "a1b2", "identifyId": event.get("identifyId"), "type": "USER",
                     "accountId": event.get("accountId"), "email": "user@customer.example"},
            "event": {**inner, "eventType": event_type, "eventId": "e-123"}}
