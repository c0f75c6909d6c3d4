"""Signed, expiring tokens: one-tap links, CSM sessions and CSRF tokens, all HMAC-SHA256.

Why stateless: any number of approval UI processes verify the same token with the shared secret.
Single use is not a property of the token but of the log: an approval decided once (the first
decision on `approvals.decisions`) answers every later tap with what was decided.

Why `itsdangerous` only for the signature: its `Signer` (HMAC-SHA256, the key used as given, "."
between value and signature) signs; the token format is unchanged — `base64url(compact JSON
claims).base64url(HMAC)` — so links already sent and sessions already set keep working. What the
library's higher layers would do differently, and why it is not used:
- `unsign` decodes the signature leniently (characters outside base64 are dropped, the spare bits of
  the last character ignored), so an edited token such as a valid one with "é" appended would pass;
  we compare the whole token, as bytes, with the one we would issue for its body.
- `URLSafeTimedSerializer` adds a third part (a timestamp) and a `max_age` fixed by the verifier;
  our expiry is absolute per token (the request's `expires_at`), signed inside the claims as `e`.
  Its zlib compression would also change the format.
- A salt per purpose would invalidate every outstanding link; the purpose is a signed claim (`p`)
  checked before anything else, and CSRF tokens sign a message no token body can spell.

Why bytes and shape checks: a token, cookie or form field is whatever the client sent — non-ASCII,
lone surrogates, bad base64, JSON that is not an object. Secrets are compared as UTF-8 bytes (comparing
`str` raises for non-ASCII), and anything that is not exactly a token we issued is BadToken (403),
never an exception that answers 500.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable

import itsdangerous
from itsdangerous.encoding import base64_decode, base64_encode

ACTIONS = ("send", "edit", "dont_send")
CLAIMS = {"link": ("a", "c", "x"), "session": ("c",)}  # the string claims each purpose must carry


class BadToken(Exception):
    """Forged, malformed or for another purpose: answered with 403."""


class ExpiredToken(BadToken):
    """Signed by us but past its expiry: answered with 410."""


class Signer:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("signing key must be at least 32 bytes")
        self._signer = itsdangerous.Signer(key, sep=".", key_derivation="none", digest_method=hashlib.sha256)
        self._clock = clock

    def sign(self, purpose: str, claims: dict, expires_at: float) -> str:
        body = base64_encode(json.dumps({**claims, "p": purpose, "e": int(expires_at)}, separators=(",", ":")))
        return self._signer.sign(body).decode("ascii")

    def verify(self, purpose: str, token: str) -> dict:
        given = _utf8(token if isinstance(token, str) else "")
        body, dot, _ = given.partition(b".")
        if not body or not dot or not hmac.compare_digest(given, self._signer.sign(body)):
            raise BadToken("the link's signature is not valid")
        try:
            claims = json.loads(base64_decode(body))
        except (itsdangerous.BadData, ValueError):  # bad base64, bad UTF-8, bad JSON
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
        if action not in ACTIONS:  # a programming error, checked under python -O too
            raise ValueError(f"unknown link action {action!r}")
        return self.sign("link", {"a": approval_id, "c": csm_email, "x": action}, expires_at)

    def session(self, csm_email: str, ttl: float = 12 * 3600) -> str:
        return self.sign("session", {"c": csm_email}, self._clock() + ttl)

    def csrf(self, session_token: str, approval_id: str) -> str:
        """Bound to the session and the approval it is rendered for (a stolen form token is useless).
        The message starts with "csrf" and a unit separator, which no token body (base64url) contains."""
        return self._signer.get_signature(_utf8(f"csrf\x1f{session_token}\x1f{approval_id}")).decode("ascii")

    def check_csrf(self, token: str, session_token: str, approval_id: str) -> bool:
        return isinstance(token, str) and bool(token) and \
            hmac.compare_digest(_utf8(token), _utf8(self.csrf(session_token, approval_id)))


def _utf8(text: str) -> bytes:
    """Any str to bytes: aiohttp decodes request bytes that are not UTF-8 to lone surrogates."""
    return text.encode("utf-8", "surrogatepass")
