"""Signed, expiring tokens: one-tap links, CSM sessions and CSRF tokens, all HMAC-SHA256.

Why stateless: any number of approval UI processes verify the same token with the shared secret.
Single use is not a property of the token but of the log: an approval decided once (the first
decision on `approvals.decisions`) answers every later tap with what was decided.

Why bytes and shape checks: a token, cookie or form field is whatever the client sent — non-ASCII,
lone surrogates, bad base64, JSON that is not an object. Secrets are compared as UTF-8 bytes (comparing
`str` raises for non-ASCII), and anything that is not exactly a token we issued is BadToken (403),
never an exception that answers 500. (`itsdangerous` could replace this hand-written format; that is
a later change, and must keep these properties.)
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time

ACTIONS = ("send", "edit", "dont_send")
CLAIMS = {"link": ("a", "c", "x"), "session": ("c",)}  # the string claims each purpose must carry


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
        body, _, mac = (token if isinstance(token, str) else "").partition(".")
        if not body or not _same(mac, self._mac(body)):
            raise BadToken("the link's signature is not valid")
        try:
            claims = json.loads(_unb64(body))
        except ValueError:  # bad base64 (binascii.Error), bad UTF-8, bad JSON: all ValueErrors
            raise BadToken("the link is malformed") from None
        if not isinstance(claims, dict) or claims.get("p") != purpose:
            raise BadToken("the token was issued for another purpose")
        expires = claims.get("e")
        if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not math.isfinite(expires) \
                or not all(isinstance(claims.get(k), str) for k in CLAIMS.get(purpose, ())) \
                or (purpose == "link" and claims["x"] not in ACTIONS):
            raise BadToken("the link is malformed")
        if self._clock() >= expires:
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
        return isinstance(token, str) and bool(token) and _same(token, self.csrf(session_token, approval_id))

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, _utf8(text), hashlib.sha256).digest())


def _utf8(text: str) -> bytes:
    """Any str to bytes: aiohttp decodes request bytes that are not UTF-8 to lone surrogates."""
    return text.encode("utf-8", "surrogatepass")


def _same(given: str, expected: str) -> bool:
    """Constant-time, as bytes: `hmac.compare_digest` raises TypeError for non-ASCII str."""
    return hmac.compare_digest(_utf8(given), _utf8(expected))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
