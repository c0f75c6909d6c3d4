"""Slack approval messages: the CSM's request as a Block Kit direct message with Send / Edit draft /
Don't send buttons, its update once decided, the daily digest; and the few Web API calls they take.

Why slack-sdk's `AsyncWebClient` with no retry handlers: the sender's outbox protocol (attempting →
call → outcome) decides what is retried. A client that re-sent a `chat.postMessage` on its own after a
dropped connection could post twice. Outcomes are classified like SMTP's (`NotDelivered` with
`permanent`, or `DeliveryUnknown`): a 429 (or `{"ok": false, "error": "ratelimited"}`) is known not
posted and retried no sooner than its `Retry-After`; another `ok: false` is the API's answer
(permanent, except Slack's transient `internal_error` / `service_unavailable` / `request_timeout`); a
time-out, a dropped connection or Slack's `internal_error` / `fatal_error` (documented as "some aspect
of the operation" possibly done) after a post was sent is unknown — never posted again. Look-ups and
`chat.update` change nothing when repeated, so for them every doubt is simply retried.

Why escaped and bounded here: every value in these messages comes from CRM data or a draft. In
`mrkdwn`, `&`, `<` and `>` are Slack's control characters (`<!channel>`, `<@U…>`, `<url|label>`),
so they are written as `&amp;` `&lt;` `&gt;`, as Slack's formatting reference prescribes; the
formatting marks `*` `_` `~` and the back-tick are fenced with zero-width spaces so a name cannot
bold, strike or code-format the message; control characters are dropped; `verbatim` stops Slack
from turning names into links or channel mentions. Each section is at most 3,000 characters (Block
Kit's limit), cut with "…" before a whole escaped character, never inside one.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest
from milestone_stream.sinks.sender.mail import celebrated
from milestone_stream.sinks.sender.smtp import DeliveryUnknown, NotDelivered

API_URL = "https://slack.com/api/"
SECTION_MAX = 3000      # characters of a section's text (Block Kit)
FALLBACK_MAX = 300      # the message's top-level `text`: what a notification shows
BUTTON_MAX = 75         # a button's label (Block Kit)
LIST_MAX = 20           # approvals listed per digest section; the rest are counted
ACTIONS = ("send", "edit", "dont_send")
# how long a Slack call's transient failures are retried: the sender handles its records one at a time,
# so a Slack outage must not hold customer emails back for MILESTONES_SEND_RETRY_SECONDS
RETRY_SECONDS = 300.0
TRANSIENT = frozenset({"ratelimited", "rate_limited", "internal_error", "service_unavailable", "request_timeout"})
_FENCED = {c: f"\u200b{c}\u200b" for c in "*_~`"}
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_UNITS = re.compile("&(?:amp|lt|gt);|\u200b[*_~`]\u200b|.", re.S)  # what a cut must keep whole

Blocks = list[dict[str, Any]]


# text ---------------------------------------------------------------------------------------------
def plain(text: str | None, multiline: bool = False) -> str:
    """Control, format and line-separator characters out; whitespace collapsed (kept line by line
    when `multiline`)."""
    lines = (text or "").replace("\r\n", "\n").split("\n") if multiline else [text or ""]
    cleaned = []
    for line in lines:
        chars = "".join(" " if c.isspace() or unicodedata.category(c) in ("Zl", "Zp") else
                        "" if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") else c for c in line)
        cleaned.append(" ".join(chars.split()))
    return "\n".join(cleaned).strip("\n") if multiline else cleaned[0]


def escape(text: str) -> str:
    """Data as literal mrkdwn: Slack's three control characters as entities, formatting marks fenced."""
    return "".join(_ENTITIES.get(c) or _FENCED.get(c) or c for c in text)


def bounded(parts: list[str], limit: int = SECTION_MAX) -> str:
    """Our own mrkdwn (already escaped pieces) joined and cut to `limit` at a piece boundary."""
    out, used = [], 0
    for part in parts:
        if used + len(part) > limit - 1:
            room = limit - 1 - used
            out.append(_cut_escaped(part, room) + "…")
            break
        out.append(part)
        used += len(part)
    return "".join(out)


def data(text: str | None, limit: int, multiline: bool = False) -> str:
    """One value from data as mrkdwn: cleaned, escaped, at most `limit` characters once escaped."""
    escaped = escape(plain(text, multiline))
    return escaped if len(escaped) <= limit else _cut_escaped(escaped, limit - 1) + "…"


def _cut_escaped(escaped: str, room: int) -> str:
    """The longest prefix of at most `room` characters that splits no entity and no fenced mark."""
    out, used = [], 0
    for unit in _UNITS.findall(escaped):
        if used + len(unit) > room:
            break
        out.append(unit)
        used += len(unit)
    return "".join(out)


def _text(mrkdwn: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": mrkdwn, "verbatim": True}


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": _text(bounded([mrkdwn]) if len(mrkdwn) > SECTION_MAX else mrkdwn)}


def _label(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": plain(text)[:BUTTON_MAX], "emoji": True}


def _quote(escaped_lines: str) -> str:
    return "\n".join(f">{line}" for line in escaped_lines.split("\n"))


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


# messages -----------------------------------------------------------------------------------------
def request_message(request: ApprovalRequest, links: Mapping[str, str]) -> tuple[str, Blocks]:
    """The approval request: what fired, the draft's preview, and the three buttons. "Send" carries
    the approval id and is confirmed in a dialog; "Edit draft" opens the signed one-tap edit link;
    a request without a recipient offers "Choose recipient" (the edit page) instead of "Send"."""
    titles, origins = celebrated(request)
    account = data(request.account_name, 300)
    title = data("; ".join(titles), 1200)
    sources = data("; ".join(sorted(set(origins))), 600)
    to = data(request.recipients[0].name or request.recipients[0].email, 200) if request.recipients \
        else "a recipient you choose"
    head = [f"*Heads up!* {account} just hit a milestone: {title}"]
    if sources:
        head.append(f"\nSources: {sources}")
    blocks: Blocks = [_section(bounded(head))]
    for note in request.policy_notes[:5]:
        blocks.append(_section(f":warning: {data(note, 2900)}"))
    draft = bounded([f"I've drafted a note to {to}:\n*Subject:* {data(request.subject, 400)}\n",
                     _quote(data(request.body_text, SECTION_MAX, multiline=True))])
    blocks.append(_section(draft))
    value = request.approval_id
    buttons: Blocks = []
    if request.recipients:
        buttons.append({"type": "button", "action_id": "send", "value": value, "style": "primary",
                        "text": _label("Send"),
                        "confirm": {"title": _label("Send this email?"),
                                    "text": {"type": "plain_text", "text": plain(
                                        f"The note goes to {request.recipients[0].email} now.")[:300]},
                                    "confirm": _label("Send"), "deny": _label("Not yet")}})
    buttons.append({"type": "button", "action_id": "edit", "value": value, "url": links["edit"],
                    "text": _label("Edit draft" if request.recipients else "Choose recipient")})
    buttons.append({"type": "button", "action_id": "dont_send", "value": value, "style": "danger",
                    "text": _label("Don't send")})
    blocks.append({"type": "actions", "block_id": "approval", "elements": buttons})
    blocks.append({"type": "context", "elements": [_text(
        f"For you only, until {_when(request.expires_at)} · approval {data(value, 300)}")]})
    fallback = data(f"Heads up! {request.account_name}: {'; '.join(titles)}", FALLBACK_MAX)
    return fallback, blocks


def decided_message(decision: ApprovalDecision) -> tuple[str, Blocks]:
    """The same message once decided (from here or the web UI): no buttons, what was chosen."""
    when = _when(decision.decided_at)
    if decision.decision == "send":
        to = ", ".join(plain(r.name) or r.email for r in decision.recipients)
        line = f":white_check_mark: *Approved* — \"{data(decision.subject, 400)}\" is being sent to {data(to, 600)}."
        fallback = "Approved: the email is being sent."
    else:
        reason = f" Reason: {data(decision.reason, 600)}" if decision.reason else ""
        line = f":no_entry_sign: *Not sent* — you chose not to send this note.{reason}"
        fallback = "Not sent."
    context = f"Decided by {data(decision.csm_email, 320)} at {when} · approval {data(decision.approval_id, 300)}"
    return fallback, [_section(line), {"type": "context", "elements": [_text(context)]}]


def digest_message(day: str, stale: list[ApprovalRequest], expiring: list[ApprovalRequest],
                   ui_url: str) -> tuple[str, Blocks]:
    """The daily digest: pending requests older than a day, and those about to expire."""
    blocks: Blocks = [_section(f"*Your approvals digest for {day}*")]
    for heading, items in (("Waiting for you for more than a day", stale), ("Expiring within a day", expiring)):
        if not items:
            continue
        lines = [f"*{heading}* ({len(items)})"]
        lines += [f"\n• {data(r.account_name, 200)}: {data(r.subject, 300)} — expires {_when(r.expires_at)}"
                  for r in items[:LIST_MAX]]
        if len(items) > LIST_MAX:
            lines.append(f"\n…and {len(items) - LIST_MAX} more")
        blocks.append(_section(bounded(lines)))
    blocks.append({"type": "actions", "block_id": "digest", "elements": [
        {"type": "button", "action_id": "open_inbox", "url": ui_url, "text": _label("Open your approvals")}]})
    return f"{len(stale) + len(expiring)} approvals need you ({day})", blocks


# the Web API --------------------------------------------------------------------------------------
class SlackApi:
    """The Web API calls of approval messages, each classified for the outbox protocol."""

    def __init__(self, token: str, api_url: str = API_URL, timeout: float = 10.0) -> None:
        self.client = AsyncWebClient(token=token, base_url=api_url, timeout=max(1, round(timeout)),
                                     retry_handlers=[])

    async def post_direct(self, email: str, text: str, blocks: Blocks) -> str:
        """users.lookupByEmail → conversations.open → chat.postMessage; returns where the message is,
        as JSON `{"channel": …, "ts": …}` (recorded as the outcome's detail, read back by `posted`)."""
        user = await self.user_id(email)
        opened = await _call(self.client.conversations_open(users=user), "conversations.open", posting=False)
        channel = _field(opened.get("channel"), "id", "conversations.open")
        sent = await _call(self.client.chat_postMessage(channel=channel, text=text, blocks=blocks,
                                                        unfurl_links=False, unfurl_media=False),
                           "chat.postMessage", posting=True)
        return json.dumps({"channel": sent.get("channel") or channel, "ts": sent.get("ts")})

    async def update(self, where: tuple[str, str], text: str, blocks: Blocks) -> str:
        channel, ts = where
        done = await _call(self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks),
                           "chat.update", posting=False)
        return json.dumps({"channel": done.get("channel") or channel, "ts": done.get("ts") or ts})

    async def user_id(self, email: str) -> str:
        found = await _call(self.client.users_lookupByEmail(email=email), "users.lookupByEmail", posting=False)
        return _field(found.get("user"), "id", "users.lookupByEmail")

    async def user_email(self, user_id: str) -> str | None:
        """The email of a Slack user (users.info → profile.email; needs the users:read.email scope)."""
        info = await _call(self.client.users_info(user=user_id), "users.info", posting=False)
        user = info.get("user")
        profile = user.get("profile") if isinstance(user, dict) else None
        email = profile.get("email") if isinstance(profile, dict) else None
        return email if isinstance(email, str) and email else None


def posted(detail: str | None) -> tuple[str, str] | None:
    """(channel, ts) from a `sent` outcome of `post_direct`, or None."""
    try:
        where = json.loads(detail or "")
    except ValueError:
        return None
    if isinstance(where, dict) and isinstance(where.get("channel"), str) and isinstance(where.get("ts"), str):
        return where["channel"], where["ts"]
    return None


def _field(obj: object, key: str, method: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        raise NotDelivered(f"{method}: answer without {key}", permanent=True)
    return value


async def _call(call: Awaitable[Any], method: str, *, posting: bool) -> dict[str, Any]:
    """One Web API call; its failure as NotDelivered or (for a post that may have happened) DeliveryUnknown."""
    try:
        response = await call
    except SlackApiError as exc:
        raise _classified(method, exc.response, posting) from None
    except aiohttp.ClientConnectorError as exc:
        raise NotDelivered(f"{method}: Slack unreachable: {exc}", permanent=False) from None
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        if posting:
            raise DeliveryUnknown(f"{method}: {type(exc).__name__}: {exc}") from None
        raise NotDelivered(f"{method}: {type(exc).__name__}: {exc}", permanent=False) from None
    body = response.data
    return body if isinstance(body, dict) else {}


def _classified(method: str, response: Any, posting: bool) -> Exception:
    status = getattr(response, "status_code", None) or getattr(response, "status", 0) or 0
    body = getattr(response, "data", None)
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, str) else None
    what = f"{method}: {status} {error or 'no JSON answer'}"[:300]
    if status == 429 or error in ("ratelimited", "rate_limited"):
        return NotDelivered(what, permanent=False, retry_after=_retry_after(getattr(response, "headers", None)))
    # Slack documents both as "It's possible some aspect of the operation succeeded before the error was
    # raised": a post answered so may be in the channel, and posting it again could show it twice
    if posting and error in ("fatal_error", "internal_error"):
        return DeliveryUnknown(what)
    if status >= 500 or error in TRANSIENT:
        return NotDelivered(what, permanent=False)
    return NotDelivered(what, permanent=True)


def _retry_after(headers: Any) -> float | None:
    try:
        value = float(headers.get("Retry-After")) if headers is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and 0 <= value <= 3600 else None
