"""Drafting a congratulations note: the deterministic template, the grounding guard, and rendering.

Why this split: the model (sinks/claude.py) and the template both produce only a subject and body
paragraphs; the guard checks them against the compiled context; rendering then adds what must never
come from a model — the greeting to a recipient from CRM data, the CSM's signature, the links.
"""
from __future__ import annotations

import html
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from milestone_stream.models import Milestone
from milestone_stream.rules import Rules
from milestone_stream.sinks.context import Context, numbers_in

TEMPLATE = "template"
URL_OR_EMAIL = re.compile(r"(https?://|www\.|\b[\w.+-]+@[\w-]+\.[\w.-]+)", re.IGNORECASE)


class Note(BaseModel):
    """What a drafter writes: a subject and plain-text paragraphs. Nothing else is taken from it."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    subject: str = Field(min_length=3, max_length=160)
    paragraphs: list[str] = Field(min_length=1, max_length=8)

    @field_validator("subject")
    @classmethod
    def _one_line(cls, subject: str) -> str:
        if "\r" in subject or "\n" in subject:
            raise ValueError("subject must be one line")
        return subject.strip()

    @field_validator("paragraphs")
    @classmethod
    def _short_paragraphs(cls, paragraphs: list[str]) -> list[str]:
        if any(not p.strip() or len(p) > 1500 for p in paragraphs):
            raise ValueError("paragraphs must be non-empty and at most 1,500 characters")
        return [p.strip() for p in paragraphs]


def guard(note: Note, ctx: Context) -> str | None:
    """Why the note may not be used, or None. Every number must be one the context states."""
    text = "\n".join([note.subject, *note.paragraphs])
    found = URL_OR_EMAIL.search(text)
    if found:
        return f"the draft contains a link or address ({found.group(0)!r}); links and recipients come from data only"
    allowed = ctx.allowed_numbers()
    invented = [n for n in numbers_in(text) if not any(abs(n - a) < 1e-9 for a in allowed)]
    if invented:
        return f"the draft states {', '.join(f'{n:g}' for n in invented)}, not in the compiled context"
    return None


def phrase(metric: str | None, ctx: Context, rules: Rules) -> str:
    """The metric in the customer's words: "touchpoints with clients" for financial services."""
    framing = rules.drafting.framing.get(metric or "", {})
    if ctx.industry and ctx.industry.lower() in framing:
        return framing[ctx.industry.lower()]
    usage = rules.usage.get(metric or "")
    return (usage.label if usage and usage.label else (metric or "").replace("_", " "))


def headline(m: Milestone, ctx: Context, rules: Rules) -> str:
    if m.kind == "usage_threshold" and m.threshold is not None:
        return f"{m.threshold:,.0f} {phrase(m.metric, ctx, rules)}"
    if m.kind == "roi_threshold" and m.value is not None:
        return f"{m.value:g}% ROI"
    return m.title[0].lower() + m.title[1:] if m.title[:1].isupper() and not m.title[:2].isupper() else m.title


def template_note(ctx: Context, rules: Rules) -> Note:
    """The deterministic draft: same context, same words."""
    heads = [headline(m, ctx, rules) for m in ctx.milestones]
    joined = heads[0] if len(heads) == 1 else ", ".join(heads[:-1]) + " and " + heads[-1]
    paragraphs = [f"Congratulations to everyone at {ctx.account_name} on reaching {joined}."]
    detail = []
    if ctx.customer_since:
        detail.append(f"since {ctx.customer_since.isoformat()} your team has built real momentum")
    if len(ctx.modules_adopted) == 1:
        detail.append(f"you have made {ctx.modules_adopted[0]} part of how you work")
    elif ctx.modules_adopted:
        detail.append(f"you now use {len(ctx.modules_adopted)} of our modules ({', '.join(ctx.modules_adopted)})")
    if detail:
        paragraphs.append(f"{' and '.join(detail)[0].upper()}{' and '.join(detail)[1:]}. "
                          f"It is a pleasure to see what you achieve with it.")
    if rules.drafting.close_with == "pace" and ctx.pace:
        metric = next(m.metric for m in ctx.milestones if m.kind == "usage_threshold")
        paragraphs.append(f"At your current pace you will reach {ctx.pace.figure.replace(' in about', ' ' + phrase(metric, ctx, rules) + ' in about')}"
                          f" — we would love to help you get there.")
    elif rules.drafting.close_with == "advocacy" and rules.drafting.advocacy_link:
        paragraphs.append("If our work together has helped, would you consider sharing your experience in a short review?")
    return Note(subject=f"Congratulations, {ctx.account_name}: {joined}"[:160], paragraphs=paragraphs)


class Rendered(BaseModel):
    subject: str
    body_text: str
    body_html: str


def render(note: Note, ctx: Context, rules: Rules, recipient_name: str | None) -> Rendered:
    """The email as sent: greeting and signature from CRM data, every data value HTML-escaped."""
    greeting = f"Dear {recipient_name.split()[0]}," if recipient_name else f"Dear {ctx.account_name} team,"
    closing = ["Warm regards,", ctx.csm_name or "Your Customer Success team"]
    link = rules.drafting.advocacy_link if rules.drafting.close_with == "advocacy" else None
    return Rendered(subject=note.subject, body_text=text_body(greeting, note.paragraphs, closing, link),
                    body_html=html_body(greeting, note.paragraphs, closing, link))


def text_body(greeting: str, paragraphs: list[str], closing: list[str], link: str | None = None) -> str:
    blocks = [greeting, *paragraphs, *([link] if link else []), "\n".join(closing)]
    return "\n\n".join(blocks) + "\n"


def html_body(greeting: str, paragraphs: list[str], closing: list[str], link: str | None = None) -> str:
    e = html.escape
    parts = [f"<p>{e(greeting)}</p>", *(f"<p>{e(p)}</p>" for p in paragraphs)]
    if link:
        parts.append(f'<p><a href="{e(link, quote=True)}">{e(link)}</a></p>')
    parts.append("<p>" + "<br>".join(e(line) for line in closing) + "</p>")
    return "\n".join(parts)


def html_from_text(body_text: str) -> str:
    """An edited plain-text body as HTML: paragraphs on blank lines, everything escaped."""
    paragraphs = [p for p in re.split(r"\n\s*\n", body_text.strip()) if p.strip()]
    return "\n".join("<p>" + "<br>".join(html.escape(line) for line in p.splitlines()) + "</p>" for p in paragraphs)
