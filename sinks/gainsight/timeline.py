"""The Gainsight CS Timeline API client: one sent email → one Timeline activity on the company.

Why this shape (Gainsight's "Timeline APIs" article, Single Activity Save API):
- `POST {base}/v1/ant/es/activity`, header `accesskey`, JSON body `{"records": [activity], "lookups": {...}}`;
- the activity: `ContextName` Company, `TypeName` (an activity type configured in Timeline, "Email"
  by default), `ExternalId`, `Subject`, `Notes`, `ActivityDate` (ISO 8601 with milliseconds and
  offset), `Author` (an email address); the company by a field the `GsCompanyId` lookup resolves;
- `lookups`: `AuthorId` resolves `Author` against GsUser.Email and `GsCompanyId` the company key
  against Company.<field> (Name by default), both FIRSTMATCH and ERROR when nothing matches — so an
  unknown CSM or company is a refusal, never an activity on the wrong record;
- `ExternalId` is documented as the insert's idempotency key, unique across the tenant: we send the
  approval id, so a repeated insert can never become a second activity;
- 200 single inserts per minute (the stage paces to it); 429 with `Retry-After` when over it.
Answers: 2xx with `"result": true` is recorded; `"result": false` (Gainsight's envelope: `errorCode`,
`errorDesc`, `requestId`) or another 4xx is a refusal (permanent); 429 and 5xx are transient; a
refused connection is known not sent; a time-out or a dropped connection after sending is unknown.
"""
from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from milestone_stream.sinks.gainsight.target import NotRecorded, RecordUnknown, SentEmail

PATH = "/v1/ant/es/activity"
SUBJECT_MAX = 255       # a Timeline subject is one line of text
NOTES_MAX = 100_000     # characters of escaped notes: a note is for reading, the email itself is in the outbox
RETRY_AFTER_MAX = 3600  # a Retry-After further out than this is taken as this
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def subject(text: str) -> str:
    """One line: control characters and line separators become a space, at most 255 characters."""
    return " ".join(_CONTROL.sub(" ", text).split())[:SUBJECT_MAX] or "(no subject)"


def notes(email: SentEmail) -> str:
    """The note's rich text: who it went to, then the email's paragraphs, every piece of data escaped."""
    to = ", ".join(f"{c.name} <{c.email}>" if c.name else c.email for c in email.recipients) or "the customer"
    head = (f"Milestone congratulations sent to {to} by {email.csm_name or email.csm_email} "
            f"(Message-ID {email.message_id}).") if email.purpose != "risk_alert" else (
            f"Risk alert sent to the CSM {email.csm_email} (Message-ID {email.message_id}).")
    paragraphs = [head] + [p.strip() for p in email.body_text.split("\n\n") if p.strip()]
    text = "".join(f"<p>{html.escape(_CONTROL.sub(' ', p).strip(), quote=True)}</p>" for p in paragraphs)
    return text if len(text) <= NOTES_MAX else text[:NOTES_MAX - 20].rsplit("<p>", 1)[0] + "<p>[…]</p>"


def activity_date(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - (now or datetime.now(UTC))).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


class TimelineClient:
    """A `Target` (target.py) for Gainsight CS Timeline."""

    name = "gainsight_timeline"

    def __init__(self, base_url: str, access_key: str, *, type_name: str = "Email", company_field: str = "Name",
                 calls_per_minute: float = 200, timeout: float = 30) -> None:
        self.url = base_url.rstrip("/") + PATH
        self.access_key, self.type_name, self.company_field = access_key, type_name, company_field
        self.calls_per_minute, self.timeout = calls_per_minute, timeout

    def external_id(self, email: SentEmail) -> str:
        return email.approval_id

    def body(self, email: SentEmail) -> dict[str, Any]:
        """The request body. The company key is the account's name for Company.Name (Gainsight's own
        example), else the account id for a field that holds it (e.g. a Salesforce Account Id field)."""
        company = email.account_name if self.company_field == "Name" else email.account_id
        key = "companyName" if self.company_field == "Name" else "companyKey"
        return {
            "records": [{
                "ContextName": "Company", "TypeName": self.type_name, "ExternalId": self.external_id(email),
                "Subject": subject(email.subject), "Notes": notes(email),
                "ActivityDate": activity_date(email.sent_at), "Author": email.csm_email, key: company,
            }],
            "lookups": {
                "AuthorId": {"fields": {"Author": "Email"}, "lookupField": "Gsid", "objectName": "GsUser",
                             "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"},
                "GsCompanyId": {"fields": {key: self.company_field}, "lookupField": "Gsid",
                                "objectName": "Company", "multiMatchOption": "FIRSTMATCH", "onNoMatch": "ERROR"},
            },
        }

    async def record(self, email: SentEmail) -> str:
        headers = {"accesskey": self.access_key, "Content-Type": "application/json"}
        payload = json.dumps(self.body(email), ensure_ascii=False).encode()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
                async with session.post(self.url, data=payload, headers=headers) as response:
                    text = await response.text(errors="replace")
                    return _outcome(response.status, text, response.headers.get("Retry-After"))
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
            raise NotRecorded(f"Gainsight unreachable: {exc}", permanent=False) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RecordUnknown(f"Gainsight: {type(exc).__name__}: {exc}") from None


def _outcome(status: int, text: str, retry: str | None) -> str:
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        answer = {}
    answer = answer if isinstance(answer, dict) else {}
    error = f"{answer.get('errorCode') or ''} {answer.get('errorDesc') or ''}".strip() or text[:200]
    request = f" (requestId {answer['requestId']})" if answer.get("requestId") else ""
    if status == 429:
        raise NotRecorded(f"Gainsight answered 429 (rate limit){request}", permanent=False,
                          retry_after=retry_after(retry))
    if status >= 500:
        raise NotRecorded(f"Gainsight answered {status}: {error}{request}"[:500], permanent=False,
                          retry_after=retry_after(retry))
    if status >= 300 or answer.get("result") is False:
        raise NotRecorded(f"Gainsight refused the activity ({status}): {error}{request}"[:500], permanent=True)
    return f"{status} {json.dumps(answer.get('data'))[:300]}{request}"
