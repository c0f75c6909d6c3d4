"""Signed, expiring tokens: one-tap links, CSM sessions and CSRF tokens, all HMAC-SHA256.

Why stateless: any number of approval UI processes verify the same token with the shared secret.
Single use is not a property of the token but of the log: an approval decided once (the first
decision on `approvals.decisions`) answers every later tap with what was decided.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

ACTIONS = ("send", "edit", "dont_send")


class BadToken(Exception):
    """Forged, malformed or for another purpose: answered with 403."""


class ExpiredToken(BadToken):
    """Signed by us but past its expiry: answered with 410."""


class Signer:
    def __init__(self, key: bytes, clock=time.time) -> None:
        if len(key) < 32:
            raise ValueError("signing key must be at least 32 bytes")
        self._key = key
        self._clock = clock

    def sign(self, purpose: str, claims: dict, expires_at: float) -> str:
        body = _b64(json.dumps({**claims, "p": purpose, "e": int(expires_at)}, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, purpose: str, token: str) -> dict:
        body, _, mac = (token or "").partition(".")
        if not body or not hmac.compare_digest(mac, self._mac(body)):
            raise BadToken("the link's signature is not valid")
        try:
            claims = json.loads(_unb64(body))
        except ValueError:
            raise BadToken("the link is malformed") from None
        if claims.get("p") != purpose:
            raise BadToken("the token was issued for another purpose")
        if self._clock() >= claims["e"]:
            raise ExpiredToken("the link has expired")
        return claims

    def link_token(self, approval_id: str, csm_email: str, action: str, expires_at: float) -> str:
        """A one-tap link: bound to one approval, one CSM and one action."""
        assert action in ACTIONS
        return self.sign("link", {"a": approval_id, "c": csm_email, "x": action}, expires_at)

    def session(self, csm_email: str, ttl: float = 12 * 3600) -> str:
        return self.sign("session", {"c": csm_email}, self._clock() + ttl)

    def csrf(self, session_token: str, approval_id: str) -> str:
        """Bound to the session and the approval it is rendered for (a stolen form token is useless)."""
        return self._mac(f"csrf\x1f{session_token}\x1f{approval_id}")

    def check_csrf(self, token: str, session_token: str, approval_id: str) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf(session_token, approval_id))

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
