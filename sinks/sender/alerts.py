"""Risk alerts: when a risk episode opens, its account's CSM is told once — what was seen (the
evidence) and what to do next (the signal's playbook) — by email, and by Slack direct message when
the sender has Slack configured.

Why through the sender's outbox: an alert is a message like the CSM's approval notification, with
the same promise. Its outcomes go to `emails.outcomes` under the episode's signal_id with purposes
`risk_alert` and `risk_alert_slack`, so a signal record delivered twice, replayed, or read again
after a crash is recognised (`sent`), and a sender killed between handing the alert over and
recording it leaves `attempting`, recorded `unknown` next time — never a second alert.

Only `open` records alert; a `cleared` one needs no message (the approval UI shows it cleared). A
record without a csm_email (the CRM profile names no CSM) is dead-lettered `no_csm_owner`: nobody
could be alerted, and the dead letter is where an operator sees that. Once the CRM names the CSM, the
signals agent announces each episode still open again, with the owner and the same signal_id
(`episodes._with_owner`), and the alert goes then; a replay of the dead letter would carry no owner.
An address that is not one plain address fails as any email does (`invalid_email`, dead-lettered,
outcome `failed`).

Every value comes from data (titles, evidence and playbook lines are written by rules and CRM text):
in the email each is one line with control characters removed, the subject cut to 200 characters
and the addresses `email.headerregistry.Address` objects (sinks/sender/mail.py); in Slack each is
escaped and bounded (sinks/sender/slack.py).
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRecord

from milestone_stream.agents.drafter.context import clean_text
from milestone_stream.deadletter import decode_or_park
from milestone_stream.schemas.records import RiskSignal
from milestone_stream.sinks.sender import mail, slack

if TYPE_CHECKING:
    from milestone_stream.sinks.sender.outbox import Sender

ITEMS_MAX = 10      # evidence items and playbook steps listed; the rest are counted
LINE_MAX = 300      # characters of one listed item


def _one_line(text: str | None, limit: int = LINE_MAX) -> str:
    return clean_text(text or "", limit)


def _account(signal: RiskSignal) -> str:
    return _one_line(signal.account_name, 120) or _one_line(signal.account_id, 120)


def _evidence(signal: RiskSignal) -> list[str]:
    return [_one_line(f"{e.source}: {e.record} ({e.occurred_at:%Y-%m-%d %H:%M} UTC)") for e in signal.evidence]


def _listed(items: list[str], numbered: bool) -> list[str]:
    shown = [f"{n}. {item}" if numbered else f"- {item}" for n, item in enumerate(items[:ITEMS_MAX], 1)]
    return shown + ([f"…and {len(items) - ITEMS_MAX} more"] if len(items) > ITEMS_MAX else [])


def risk_email(signal: RiskSignal, domain: str, sender_address: str | None, when: datetime) -> mail.Outgoing:
    """The CSM's alert email (plain text): what opened, its evidence, the playbook."""
    account, title = _account(signal), _one_line(signal.title) or signal.kind.replace("_", " ")
    steps = [s for s in (_one_line(p) for p in signal.playbook) if s]
    lines = [f"Risk alert for your account {account}: {title}",
             f"Level: {signal.level} ({signal.kind.replace('_', ' ')}), opened {signal.opened_at:%Y-%m-%d %H:%M} UTC.",
             "", "What was seen:", *(_listed(_evidence(signal), False) or ["- no evidence recorded"]),
             "", "Playbook, next steps:", *(_listed(steps, True) or ["1. review the account"]),
             "", "While a signal at or above the gate level is open, this account's milestone notes are held; "
                 "they are released when it clears.",
             f"You get this alert once for this episode (signal {_one_line(signal.signal_id, 80)})."]
    csm = signal.csm_email or ""
    return mail.plain_message(f"Risk alert: {account}: {title}"[:200], mail.mailbox("", csm),
                              sender=mail.mailbox("Milestone Stream", sender_address or csm),
                              msgid=mail.message_id(signal.signal_id, domain, "risk_alert"), when=when,
                              text="\n".join(lines) + "\n")


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn, "verbatim": True}}


def risk_slack(signal: RiskSignal) -> tuple[str, slack.Blocks]:
    """The CSM's alert as a Slack message: every value escaped, each section bounded."""
    account = slack.data(_account(signal), 300)
    title = slack.data(signal.title or signal.kind.replace("_", " "), 600)
    head = slack.bounded([f":rotating_light: *Risk alert* ({slack.data(signal.level, 20)}) — {account}: {title}\n",
                          f"Opened {signal.opened_at:%Y-%m-%d %H:%M} UTC"])
    evidence = [f"\n• {slack.data(e, LINE_MAX)}" for e in _evidence(signal)[:ITEMS_MAX]]
    steps = [f"\n{n}. {slack.data(p, LINE_MAX)}" for n, p in enumerate(
        [p for p in signal.playbook if slack.plain(p)][:ITEMS_MAX], 1)]
    footer = {"type": "mrkdwn", "verbatim": True,
              "text": slack.data(f"Once for this episode · signal {signal.signal_id}", 300)}
    blocks: slack.Blocks = [
        _section(head),
        _section(slack.bounded(["*What was seen*", *(evidence or ["\n• no evidence recorded"])])),
        _section(slack.bounded(["*Playbook, next steps*", *(steps or ["\n1. review the account"])])),
        {"type": "context", "elements": [footer]}]
    return slack.data(f"Risk alert: {_account(signal)}: {signal.title}", slack.FALLBACK_MAX), blocks


async def alert(sender: Sender, r: ConsumerRecord) -> None:
    """A `risks` record: an opening alerts its CSM once (email, and Slack when configured)."""
    signal = await decode_or_park(RiskSignal, value=r.value, key=r.key, topic=r.topic, partition=r.partition,
                                  offset=r.offset, stage="sender", dead_letters=sender.dead)
    if signal is None or signal.state != "open":
        return
    csm = (signal.csm_email or "").strip()
    if not csm:
        await sender.dead.send(stage="sender", reason="no_csm_owner",
                               error=f"risk_alert {signal.signal_id}: account {signal.account_id!r} has no csm_email "
                                     "in its CRM profile; the alert goes once the CRM names the CSM",
                               topic=r.topic, partition=r.partition, offset=r.offset, key=r.key, value=r.value)
        return
    await sender.email_once(signal.signal_id, "risk_alert", r, lambda: risk_email(
        signal, sender.domain, sender.sender_address, sender.clock()))
    if sender.slack is not None:
        api, (text, blocks) = sender.slack, risk_slack(signal)
        await sender.once(signal.signal_id, "risk_alert_slack", r, lambda: api.post_direct(csm, text, blocks),
                          slack.RETRY_SECONDS)
