"""The links a CSM taps: one-tap decision links in the notification, and a sign-in link.

Why here: the sender puts them in the CSM's notification and the UI verifies them; both build them
from the same settings (the UI's public URL) and the same signed tokens (signing.py).
"""
from __future__ import annotations

from collections.abc import Callable

from milestone_stream.schemas.records import ApprovalRequest
from milestone_stream.settings import Settings
from milestone_stream.sinks.approvals.signing import ACTIONS, Signer


def one_tap_links(settings: Settings, signer: Signer) -> Callable[[ApprovalRequest], dict[str, str]]:
    """approval request → {action: URL}; each link bound to the approval, its CSM and one action."""
    def links(request: ApprovalRequest) -> dict[str, str]:
        expires = request.expires_at.timestamp()
        out = {}
        for action in ACTIONS:
            token = signer.link_token(request.approval_id, request.csm_email, action, expires)
            out[action] = f"{settings.ui_url}/t/{token}"
        return out
    return links


def sign_in_link(settings: Settings, csm_email: str, ttl: float = 12 * 3600) -> str:
    return f"{settings.ui_url}/s/{Signer(settings.signing_key()).session(csm_email, ttl)}"
