"""Building the emails: the approved congratulations note, and the CSM's approval notification.

Why here and strict: every header value comes from data (CRM names, an edited subject), so each is
checked for CR/LF before it is set — a header injection is refused, never "cleaned". The
Message-ID is derived from the approval id, so a re-send could be recognised by any receiver.
"""
from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from datetime import datetime

from milestone_stream.models import ApprovalDecision, ApprovalRequest
from milestone_stream.sinks.context import MILESTONE


class HeaderInjection(ValueError):
    """A header value with CR or LF: the message is refused (a permanent failure)."""


def checked(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjection(f"header {name} contains CR or LF; refused")
    return value


def message_id(approval_id: str, domain: str, purpose: str = "customer_email") -> str:
    prefix = "" if purpose == "customer_email" else "notify."
    return f"<{prefix}{approval_id}@{domain}>"


def address(name: str, email: str) -> str:
    checked("address", name)
    checked("address", email)
    Address(addr_spec=email)  # raises on a malformed address
    return formataddr((name, email))


def _message(subject: str, to: list[str], sender: str, reply_to: str | None, msgid: str, when: datetime,
             text: str, html: str | None) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = checked("Subject", subject)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Message-ID"] = checked("Message-ID", msgid)
    msg["Date"] = format_datetime(when)
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


def customer_email(decision: ApprovalDecision, csm_name: str, domain: str, sender_address: str | None) -> EmailMessage:
    """From the CSM (or a configured sender with Reply-To the CSM), to the approved recipients."""
    if not decision.recipients:
        raise HeaderInjection("the decision names no recipient")
    csm = address(csm_name, decision.csm_email)
    return _message(decision.subject or "", [address(r.name, r.email) for r in decision.recipients],
                    sender=address(csm_name, sender_address) if sender_address else csm,
                    reply_to=csm if sender_address else None,
                    msgid=message_id(decision.approval_id, domain), when=decision.decided_at,
                    text=decision.body_text or "", html=decision.body_html)


def notification(request: ApprovalRequest, links: dict[str, str], domain: str, sender_address: str | None,
                 when: datetime) -> EmailMessage:
    """The CSM's "Heads up!" email with the one-tap links (plain text; every value from data)."""
    fired = [c for c in request.citations if c.figure.startswith(f"{MILESTONE}: ")]
    title = "; ".join(c.figure.split(": ", 1)[1] for c in fired)
    sources = "; ".join(sorted({f"{c.source}: {c.record.split(' (milestone ')[0]}" for c in fired}))
    to = request.recipients[0].name if request.recipients else "a recipient you choose"
    notes = "".join(f"Note: {n}\n" for n in request.policy_notes)
    text = (f"Heads up! Your customer {request.account_name} just hit a milestone: {title} (sources: {sources}).\n\n"
            f"{notes}I've drafted a congratulatory email to {to}:\n\n"
            f"Subject: {request.subject}\n\n{request.body_text}\n"
            f"Send email:  {links['send']}\nEdit draft:  {links['edit']}\nDon't send:  {links['dont_send']}\n\n"
            f"These links work once, for you only, until {request.expires_at:%Y-%m-%d %H:%M} UTC.\n")
    csm = address("Milestone Stream", sender_address or request.csm_email)
    return _message(f"Heads up! {request.account_name}: {title}"[:200], [address("", request.csm_email)],
                    sender=csm, reply_to=None, msgid=message_id(request.approval_id, domain, "csm_notification"),
                    when=when, text=text, html=None)
