"""The approval UI's Slack interaction endpoint (`POST /slack/interactions`): a CSM's tap on Send or
Don't send in Slack becomes the same decision the web form takes.

Why here, in the UI: a decision is taken by exactly one path (`ApprovalUI.take`: first decision wins,
read back before answering), so a tap in Slack and a click in the browser cannot both win.
Why no CSRF token: Slack signs every request (`X-Slack-Signature: v0=HMAC-SHA256(signing secret,
"v0:{X-Slack-Request-Timestamp}:{body}")`), checked by slack-sdk's `SignatureVerifier`, which also
refuses a timestamp more than five minutes off; a forged, edited or stale request answers 401 before
anything in it is read. A replay within those five minutes is a valid request for a request already
decided: it changes nothing (single use through the log, as for one-tap links).
Why the email look-up: the request names its CSM by email; Slack names who tapped by user id. The
tapper's email (users.info → profile.email) must be the request's CSM, else 403 and nothing is decided.
The message itself is updated by the sender once the decision is on `approvals.decisions`, whichever
path took it.
"""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs

from aiohttp import web
from slack_sdk.signature import Clock as SlackClock, SignatureVerifier

from milestone_stream.sinks.approvals.web import ApprovalUI
from milestone_stream.sinks.sender.slack import SlackApi
from milestone_stream.sinks.sender.smtp import DeliveryUnknown, NotDelivered

log = logging.getLogger(__name__)
PATH = "/slack/interactions"


class _WallClock(SlackClock):
    """Slack's timestamps are wall-clock seconds, whatever MILESTONES_NOW says."""

    def now(self) -> float:
        return time.time()


class SlackInteractions:
    def __init__(self, ui: ApprovalUI, signing_secret: str, api: SlackApi) -> None:
        self.ui, self.api = ui, api
        self.verifier = SignatureVerifier(signing_secret, clock=_WallClock())

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self.handle)]

    def signed(self, body: bytes, timestamp: str | None, signature: str | None) -> bool:
        try:
            return self.verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except (ValueError, TypeError, UnicodeError):  # a timestamp not an integer, non-ASCII or non-UTF-8 bytes
            return False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.signed(body, request.headers.get("X-Slack-Request-Timestamp"),
                           request.headers.get("X-Slack-Signature")):
            return _answer(401, "invalid or stale signature")
        try:
            payload = json.loads(parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0])
            action = payload["actions"][0]
            action_id, approval_id, user_id = action["action_id"], action["value"], payload["user"]["id"]
            kind = payload["type"]
        except (ValueError, KeyError, IndexError, TypeError):
            return _answer(400, "not a block_actions payload")
        if kind != "block_actions" or not all(isinstance(v, str) for v in (action_id, approval_id, user_id)):
            return _answer(400, "not a block_actions payload")
        if action_id not in ("send", "dont_send"):
            return _answer(200, "nothing to do")  # "Edit draft" is a link button: Slack opens the URL itself
        a = await self.ui.view.request(approval_id, timeout=2)
        if a is None:
            return _answer(404, "no such approval request")
        if a.held_out:
            return _answer(409, "held out for measurement: this request is never sent")
        try:
            email = await self.api.user_email(user_id)
        except (NotDelivered, DeliveryUnknown) as exc:
            log.warning("slack: users.info failed; nothing decided", extra={"approval_id": approval_id,
                                                                               "error": str(exc)})
            return _answer(502, "could not look up the Slack user")
        if email is None or email.lower() != a.csm_email.lower():
            log.warning("slack: a tap by someone other than the request's CSM; nothing decided",
                        extra={"approval_id": approval_id, "slack_user": user_id[:64]})
            return _answer(403, "only the request's CSM can decide it")
        try:
            taken = await self.ui.take(a, a.csm_email, action_id, {})
        except ValueError as exc:
            return _answer(400, str(exc))
        status = self.ui.view.status(a.approval_id, self.ui.clock())
        return web.json_response({"ok": True, "decided": taken, "status": status})


def _answer(status: int, why: str) -> web.Response:
    return web.json_response({"ok": status < 300, "error" if status >= 300 else "detail": why}, status=status)
