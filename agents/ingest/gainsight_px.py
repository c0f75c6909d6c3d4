"""Gainsight PX custom events → telemetry events, by configuration like Segment's `track:` mapping.

Why its own mapper: PX is where many product teams already track what users do
(`aptrinsic('track', 'Report Exported', {...})` in the browser, or the PX REST API's custom event
body server-side), and its events have their own shape — `eventName`, `identifyId` (the user),
`accountId`, `date` in epoch milliseconds, `attributes`, `propertyKey` (the PX product), `sessionId`,
`userType` — and, unlike Segment's `messageId`, **no event id**.

The dedupe key. A PX event re-delivered (a connector's retry, an export replayed) must count once,
so its id is derived from what identifies it: `px:` + the first 32 hex digits (128 bits) of the
SHA-256 of the canonical JSON array

    [propertyKey, accountId, identifyId, eventName, date (epoch ms), sessionId, attributes]

(absent optional fields as null, `date` as the integer milliseconds it denotes, attributes with keys
sorted, no spaces, UTF-8). The same event always gets the same id, wherever and however often it is
delivered. Where it ends: two genuinely distinct events of the same user, session, name and
attributes within the same millisecond are one event here (PX gives nothing to tell them apart).

Accepted bodies: the custom-event body at the top level, or a PX webhook/export envelope
`{"event": {...}, "user": {...}}` (the account and user then also read from `user`; an `eventType`
other than `CUSTOM`, e.g. a page view, is skipped). What cannot be mapped is rejected with a
reason, like the other adapters: `malformed`, `no_account`, `invalid_timestamp`, `invalid_value`.
"""
from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field

from milestone_stream.agents.ingest.mapping import MISSING, Rejected, Skipped, instant, number
from milestone_stream.schemas.records import ID_MAX, Origin, TelemetryEvent
from milestone_stream.settings import Strict


class PxEventMapping(Strict):
    metric: str = Field(min_length=1)
    # an attribute whose number is the value (`rows`, or dotted into a nested object `export.rows`;
    # PX attribute names are case-insensitive, so is this lookup); None: 1 per event
    value: str | None = None


class PxConfig(Strict):
    topic: str = Field(min_length=1)
    events: dict[str, PxEventMapping] = Field(min_length=1)  # eventName → metric
    property_keys: list[str] = []        # only these PX products (propertyKey); empty: any
    user_types: list[str] = []           # only these userTypes (USER, LEAD, VISITOR…); empty: any
    account_prefix: str = ""             # account id = prefix + PX accountId (must agree with the CRM's)
    unmapped: Literal["skip", "deadletter"] = "skip"
    source: str = "Gainsight PX"         # cited as the source of figures


def _get(document: dict, name: str) -> object:
    """A key, or the same key in any letter case (PX treats property names case-insensitively)."""
    if name in document:
        return document[name]
    folded = name.casefold()
    return next((v for k, v in document.items() if isinstance(k, str) and k.casefold() == folded), MISSING)


def attribute(attributes: dict, path: str) -> object:
    """The attribute at a dotted path, case-insensitively; a flat key holding the dots is taken first."""
    found = _get(attributes, path)
    if found is not MISSING:
        return found
    node: object = attributes
    for step in path.split("."):
        if not isinstance(node, dict):
            return MISSING
        node = _get(node, step)
        if node is MISSING:
            return MISSING
    return node


def _shown(value: object) -> str:
    return type(value).__name__ if not isinstance(value, str) else repr(value[:40])


def _optional(value: object, what: str) -> str | None:
    """An optional identifier: absent or null is None, else as `_identifier`."""
    return None if value is MISSING or value is None else _identifier(value, what)


def _identifier(value: object, what: str, reason: str = "malformed") -> str:
    """A required identifier: a non-empty string of at most 256 characters."""
    if value is MISSING or value is None:
        raise Rejected(reason, f"a PX event has no {what}")
    if not isinstance(value, str) or not value.strip():
        raise Rejected(reason, f"{what} must be a non-empty string, got {_shown(value)}")
    if len(value) > ID_MAX:
        raise Rejected("invalid_value", f"{what} is longer than {ID_MAX} characters ({len(value):,})")
    return value


def _millis(value: object) -> int:
    """The event time as integer epoch milliseconds: PX sends an integer; an integral float or ISO text
    is taken too. Off the calendar, NaN, a boolean or anything else is `invalid_timestamp`."""
    if value is MISSING or value is None:
        raise Rejected("invalid_timestamp", "a PX event has no date")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    when = instant(value, "date")  # checks type, finiteness and the calendar (years 1–9999)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return round(when.timestamp() * 1000)


def dedupe_key(property_key: str | None, account: str, user: str, name: str, millis: int,
               session: str | None, attributes: dict) -> str:
    """The event id of a PX event (the rule is in the module docstring)."""
    try:
        canonical = json.dumps([property_key, account, user, name, millis, session, attributes],
                               sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, TypeError, RecursionError) as exc:  # nesting past the interpreter's depth
        raise Rejected("malformed", f"attributes cannot be read: {type(exc).__name__}") from None
    return "px:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def map_event(document: object, config: PxConfig, origin: Origin) -> TelemetryEvent | Skipped:
    """One PX event body → a telemetry event, or a counted skip; raises `Rejected`."""
    if not isinstance(document, dict):
        raise Rejected("malformed", f"a PX event is a JSON object, got {type(document).__name__}")
    user: dict = {}
    event = document
    if "eventName" not in document and isinstance(document.get("event"), dict):  # webhook / export envelope
        event = document["event"]
        user = document["user"] if isinstance(document.get("user"), dict) else {}
        kind = event.get("eventType")
        if kind is not None and kind != "CUSTOM":
            return Skipped(f"{str(kind)[:40].lower()}_event")
    name = _identifier(event.get("eventName", MISSING), "eventName")
    if config.property_keys and event.get("propertyKey") not in config.property_keys:
        return Skipped("other_product")
    user_type = event.get("userType", user.get("type"))
    if config.user_types and user_type not in config.user_types:
        return Skipped("user_type")
    mapping = config.events.get(name)
    if mapping is None:
        if config.unmapped == "deadletter":
            raise Rejected("unmapped_event", f"PX event {name!r} is not mapped to a metric")
        return Skipped("unmapped_event")
    account = _identifier(event.get("accountId", user.get("accountId", MISSING)), "accountId", "no_account")
    identify = _identifier(event.get("identifyId", user.get("identifyId", MISSING)), "identifyId")
    property_key = _optional(event.get("propertyKey", MISSING), "propertyKey")
    session = _optional(event.get("sessionId", MISSING), "sessionId")
    attributes = event.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise Rejected("malformed", f"attributes must be an object, got {type(attributes).__name__}")
    millis = _millis(event.get("date", MISSING))
    value = 1.0 if mapping.value is None else number(_present(attribute(attributes, mapping.value)),
                                                       f"attributes.{mapping.value}")
    account_id = config.account_prefix + account
    if len(account_id) > ID_MAX:
        raise Rejected("invalid_value", f"account id {config.account_prefix!r} + accountId is too long")
    return TelemetryEvent(
        event_id=dedupe_key(property_key, account, identify, name, millis, session, attributes),
        account_id=account_id, metric=mapping.metric, value=value,
        occurred_at=instant(millis, "date"), source=config.source,
        attributes={"px_event": name[:2000]}, origin=origin)


def _present(value: object) -> object:
    return None if value is MISSING else value
