"""Building the emails: the approved congratulations note, and the CSM's approval notification.

Why here and strict: every header value comes from data (CRM names, an edited subject, a recipient a
CSM typed in). Addresses and names are treated differently:
- an address (addr_spec) must be exactly one plain `local@domain`; anything else — a display name,
  a second address, a comment, a quoted local part, CR/LF — is refused (`InvalidAddress`, a
  permanent failure), never "cleaned" into a different address;
- a display name is only ever shown, so it is cleaned (control characters dropped, encoded-word
  syntax broken, length bounded) and set as the `display_name` of an `email.headerregistry.Address`,
  never formatted into a string that the header parser would read back as addresses.
The Subject and Message-ID are still refused when they hold CR or LF.

Why the message is checked on the wire: the standard library's header folder (Python 3.11) can
fold a long or non-ASCII display name so that a receiver reads different addresses — it encodes the
comma between two recipients, or decodes an encoded word written inside a name. So each message is
serialised and parsed back, and an address header that does not parse to exactly the intended
addresses is rebuilt with a plainer name (RFC 5322 specials removed), then with no name at all; the
addresses never change, and the SMTP envelope comes from the same `Address` objects.
The Message-ID is derived from the approval id, so a re-send could be recognised by any receiver.
"""
from __future__ import annotations

import email
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime

from milestone_stream.agents.drafter.context import MILESTONE
from milestone_stream.schemas.records import ApprovalDecision, ApprovalRequest

NAME_MAX = 100  # characters of a display name; more is cut (a name is shown, never needed in full)

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]+')
_KEEP = {"\u200c", "\u200d"}  # zero-width (non-)joiners: part of how some scripts write names
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class HeaderInjection(ValueError):
    """A header value that could add headers or change recipients: the message is refused (a
    permanent failure, dead-lettered)."""


class InvalidAddress(HeaderInjection):
    """Not exactly one plain addr_spec."""


@dataclass(frozen=True)
class Outgoing:
    """A message and its SMTP envelope, both from the same `Address` objects."""
    message: EmailMessage
    sender: str
    recipients: list[str]


def checked(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjection(f"header {name} contains CR or LF; refused")
    return value


def subject_text(value: str) -> str:
    """A subject as it may be sent: CR/LF refused (an edit that tries is an attack, not a typo), other
    control and line-separator characters dropped, and `=?` broken — Python before 3.11.10 decodes an
    encoded word in a header and writes its CR/LF to the wire (CVE-2024-6923)."""
    checked("Subject", value)
    text = "".join(" " if unicodedata.category(c) in ("Zl", "Zp") or c in "\x0b\x0c\x85" else
                   "" if unicodedata.category(c) in _INVISIBLE and c not in _KEEP else c for c in value)
    return " ".join(text.replace("=?", "= ?").split())


def message_id(approval_id: str, domain: str, purpose: str = "customer_email") -> str:
    prefix = {"customer_email": "", "csm_digest": "digest.", "risk_alert": "risk."}.get(purpose, "notify.")
    return f"<{prefix}{approval_id}@{domain}>"


def addr_spec(value: str) -> str:
    """`value` if it is exactly one plain address (`local@domain`, ASCII, dot-atoms); else InvalidAddress."""
    if not isinstance(value, str) or len(value) > 254 or not _ADDR_SPEC.fullmatch(value) \
            or len(value.rpartition("@")[0]) > 64:
        raise InvalidAddress(f"not a single plain email address: {value!r:.80}")
    try:
        parsed = Address(addr_spec=value)
    except (ValueError, IndexError):
        raise InvalidAddress(f"not a single plain email address: {value!r:.80}") from None
    if parsed.addr_spec != value:
        raise InvalidAddress(f"not a single plain email address: {value!r:.80}")
    return value


def display_name(value: str | None) -> str:
    """A name as it may be shown: control and format characters dropped, whitespace (CR/LF included)
    made single spaces, `=?` broken (so no receiver decodes an encoded word written into the name),
    at most NAME_MAX characters. `<x@y>`, commas, quotes and the like stay — as text of the name."""
    text = unicodedata.normalize("NFC", value or "")
    text = "".join(" " if c.isspace() else "" if unicodedata.category(c) in _INVISIBLE and c not in _KEEP else c
                   for c in text)
    text = " ".join(text.replace("=?", "= ?").split())
    return text[:NAME_MAX].rstrip()


def mailbox(name: str | None, address: str) -> Address:
    """An `Address` with a cleaned display name and a checked addr_spec."""
    return Address(display_name=display_name(name), addr_spec=addr_spec(address))


def _plainer(a: Address, level: int) -> Address:
    """Level 0 as built; 1 without RFC 5322 specials in the name; 2 without a name."""
    if level == 0:
        return a
    name = " ".join(_SPECIALS.sub(" ", a.display_name).split()) if level == 1 else ""
    return Address(display_name=name, addr_spec=a.addr_spec)


def read_back(msg: EmailMessage) -> EmailMessage:
    """The message as a receiver reads it: serialised as it is sent, parsed with the standard policy."""
    return email.message_from_bytes(msg.as_bytes(), policy=default)


def misread(back: EmailMessage, intended: dict[str, list[Address]]) -> list[str]:
    """The address headers a receiver would read differently, each compared by addr_spec, in order."""
    wrong = []
    for header, addresses in intended.items():
        try:
            found = back.get_all(header) or []
            read = [a.addr_spec for h in found for a in h.addresses]
        except Exception:  # noqa: BLE001 — the parser itself fails on some mis-folded headers: misread too
            found, read = [], []
        if len(found) != 1 or read != [a.addr_spec for a in addresses]:
            wrong.append(header)
    return wrong


def added_headers(msg: EmailMessage, back: EmailMessage) -> list[str]:
    """Headers a receiver would read that the message was not given (an injection through a value)."""
    given = sorted(k.lower() for k in msg.keys())
    read = sorted(k.lower() for k in back.keys())
    return [k for k in read if read.count(k) > given.count(k)]


def _message(subject: str, to: list[Address], sender: Address, reply_to: Address | None, msgid: str,
             when: datetime, text: str, html: str | None) -> Outgoing:
    unique: dict[str, Address] = {}
    for a in to:
        unique.setdefault(a.addr_spec.lower(), a)
    intended = {"From": [sender], "To": list(unique.values()), **({"Reply-To": [reply_to]} if reply_to else {})}
    levels = dict.fromkeys(intended, 0)
    while True:
        msg = EmailMessage(policy=SMTP)
        msg["Subject"] = subject_text(subject)
        for header, addresses in intended.items():
            plain = [_plainer(a, levels[header]) for a in addresses]
            msg[header] = plain[0] if header != "To" else plain
        msg["Message-ID"] = checked("Message-ID", msgid)
        msg["Date"] = format_datetime(when)
        msg.set_content(text)
        if html:
            msg.add_alternative(html, subtype="html")
        back = read_back(msg)
        extra = added_headers(msg, back)
        if extra:
            raise HeaderInjection(f"the message would carry headers nobody set ({', '.join(extra)}); refused")
        wrong = misread(back, intended)
        if not wrong:
            return Outgoing(msg, sender.addr_spec, [a.addr_spec for a in intended["To"]])
        if any(levels[h] == 2 for h in wrong):
            raise HeaderInjection(f"header {', '.join(wrong)} would not be read as its addresses; refused")
        for h in wrong:
            levels[h] += 1


def plain_message(subject: str, to: Address, sender: Address, msgid: str, when: datetime, text: str) -> Outgoing:
    """A plain-text message to one mailbox, checked on the wire like every other (the risk alert's)."""
    return _message(subject, [to], sender=sender, reply_to=None, msgid=msgid, when=when, text=text, html=None)


def customer_email(decision: ApprovalDecision, csm_name: str, domain: str, sender_address: str | None) -> Outgoing:
    """From the CSM (or a configured sender with Reply-To the CSM), to the approved recipients."""
    if not decision.recipients:
        raise InvalidAddress("the decision names no recipient")
    csm = mailbox(csm_name, decision.csm_email)
    return _message(decision.subject or "", [mailbox(r.name, r.email) for r in decision.recipients],
                    sender=mailbox(csm_name, sender_address) if sender_address else csm,
                    reply_to=csm if sender_address else None,
                    msgid=message_id(decision.approval_id, domain), when=decision.decided_at,
                    text=decision.body_text or "", html=decision.body_html)


def celebrated(request: ApprovalRequest) -> tuple[list[str], list[str]]:
    """The titles of the milestones a request celebrates, and where each came from ("system: record").

    Carried by the request since v3 of its contract; a request written before carries neither, so
    for it only they are read back from its citations, as the drafter wrote them then
    ("milestone: <title>", record "<record> (milestone <id>)")."""
    if request.milestone_titles:
        return request.milestone_titles, request.milestone_sources
    fired = [c for c in request.citations if c.figure.startswith(f"{MILESTONE}: ")]
    return ([c.figure.split(": ", 1)[1] for c in fired],
            [f"{c.source}: {c.record.split(' (milestone ')[0]}" for c in fired])


def notification(request: ApprovalRequest, links: dict[str, str], domain: str, sender_address: str | None,
                 when: datetime) -> Outgoing:
    """The CSM's "Heads up!" email with the one-tap links (plain text; every value from data)."""
    titles, origins = celebrated(request)
    title = "; ".join(titles)
    sources = "; ".join(sorted(set(origins)))
    to = request.recipients[0].name if request.recipients else "a recipient you choose"
    notes = "".join(f"Note: {n}\n" for n in request.policy_notes)
    text = (f"Heads up! Your customer {request.account_name} just hit a milestone: {title} (sources: {sources}).\n\n"
            f"{notes}I've drafted a congratulatory email to {to}:\n\n"
            f"Subject: {request.subject}\n\n{request.body_text}\n"
            f"Send email:  {links['send']}\nEdit draft:  {links['edit']}\nDon't send:  {links['dont_send']}\n\n"
            f"These links work once, for you only, until {request.expires_at:%Y-%m-%d %H:%M} UTC.\n")
    return _message(f"Heads up! {request.account_name}: {title}"[:200], [mailbox("", request.csm_email)],
                    sender=mailbox("Milestone Stream", sender_address or request.csm_email), reply_to=None,
                    msgid=message_id(request.approval_id, domain, "csm_notification"),
                    when=when, text=text, html=None)


def _line(text: str, limit: int) -> str:
    """A value from data on one line of a plain-text email: no control characters, at most `limit`."""
    one = " ".join("".join(" " if c.isspace() else "" if unicodedata.category(c) in _INVISIBLE else c
                           for c in text or "").split())
    return one if len(one) <= limit else one[:limit - 1] + "…"


def digest(digest_id: str, csm_email: str, day: str, stale: list[ApprovalRequest], expiring: list[ApprovalRequest],
           inbox_link: str, domain: str, sender_address: str | None, when: datetime, listed: int = 50) -> Outgoing:
    """The CSM's daily digest: pending requests waiting more than a day, and requests about to expire."""
    parts = [f"Good morning! {len(stale) + len(expiring)} approval requests need you today ({day}).\n"]
    for heading, items in (("Waiting for you for more than a day", stale), ("Expiring within a day", expiring)):
        if items:
            parts.append(f"\n{heading} ({len(items)}):\n")
            parts += [f"- {_line(r.account_name, 120)}: {_line(r.subject, 160)} "
                      f"(expires {r.expires_at:%Y-%m-%d %H:%M} UTC)\n" for r in items[:listed]]
            if len(items) > listed:
                parts.append(f"- …and {len(items) - listed} more\n")
    parts.append(f"\nOpen your approvals: {inbox_link}\n")
    return _message(f"Your approvals digest for {day}: {len(stale) + len(expiring)} waiting",
                    [mailbox("", csm_email)], sender=mailbox("Milestone Stream", sender_address or csm_email),
                    reply_to=None, msgid=message_id(digest_id, domain, "csm_digest"), when=when,
                    text="".join(parts), html=None)
