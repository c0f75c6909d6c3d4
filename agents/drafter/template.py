"""Drafting a congratulations note: the deterministic template, and rendering.

Why this split: the model (model.py) and the template both produce only a subject and body
paragraphs; the grounding guard (guard.py) checks them against the compiled context; rendering then
adds what must never come from a model — the greeting to a recipient from CRM data, the CSM's
signature, the links.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TypeGuard

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from milestone_stream.agents.drafter.context import LABEL_LIMIT, NAME_LIMIT, Context, clean_text, milestone_title
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Milestone

TEMPLATE = "template"
SUBJECT_LIMIT = 160
HEADLINES_LIMIT = 400    # characters of milestone headlines in one note; the rest become "and more"
MODULES_NAMED = 5        # module names the template lists; beyond, it gives the count


class DraftFailed(Exception):
    """The template cannot write a valid note from this context (the drafter dead-letters the
    milestones as `draft_failed`). Hostile CRM data alone should never cause it: it is cleaned first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Note(BaseModel):
    """What a drafter writes: a subject and plain-text paragraphs. Nothing else is taken from it."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    subject: str = Field(min_length=3, max_length=SUBJECT_LIMIT)
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


def phrase(metric: str | None, ctx: Context, rules: Rules) -> str:
    """The metric in the customer's words: "touchpoints with clients" for financial services."""
    framing = rules.drafting.framing.get(metric or "", {})
    if ctx.industry and ctx.industry.lower() in framing:
        return framing[ctx.industry.lower()]
    usage = rules.usage.get(metric or "")
    return (usage.label if usage and usage.label else clean_text((metric or "").replace("_", " "), LABEL_LIMIT))


def headline(m: Milestone, ctx: Context, rules: Rules) -> str:
    if m.kind == "usage_threshold" and _finite(m.threshold):
        return f"{m.threshold:,.0f} {phrase(m.metric, ctx, rules)}"
    if m.kind == "roi_threshold" and _finite(m.value) and abs(m.value) < 1e6:
        return f"{m.value:,.2f}".rstrip("0").rstrip(".") + "% ROI"
    title = milestone_title(m)
    return title[0].lower() + title[1:] if title[:1].isupper() and not title[:2].isupper() else title


def template_note(ctx: Context, rules: Rules) -> Note:
    """The deterministic draft: same context, same words. Raises only DraftFailed."""
    heads = _headlines(ctx, rules)
    joined = heads[0] if len(heads) == 1 else ", ".join(heads[:-1]) + " and " + heads[-1]
    paragraphs = [f"Congratulations to everyone at {ctx.account_name} on reaching {joined}."]
    detail = []
    if ctx.customer_since:
        detail.append(f"since {ctx.customer_since.isoformat()} your team has built real momentum")
    modules = ctx.modules_adopted
    if len(modules) == 1:
        detail.append(f"you have made {modules[0]} part of how you work")
    elif 1 < len(modules) <= MODULES_NAMED:
        detail.append(f"you now use {len(modules)} of our modules ({', '.join(modules)})")
    elif modules:
        detail.append(f"you now use {len(modules)} of our modules")
    if detail:
        sentence = " and ".join(detail)
        paragraphs.append(f"{sentence[0].upper()}{sentence[1:]}. It is a pleasure to see what you achieve with it.")
    usage_metric = next((m.metric for m in ctx.milestones if m.kind == "usage_threshold"), None)
    if rules.drafting.close_with == "pace" and ctx.pace and usage_metric:
        reach = ctx.pace.figure.replace(" in about", " " + phrase(usage_metric, ctx, rules) + " in about")
        paragraphs.append(f"At your current pace you will reach {reach} — we would love to help you get there.")
    elif rules.drafting.close_with == "advocacy" and rules.drafting.advocacy_link:
        paragraphs.append("If our work together has helped, "
                          "would you consider sharing your experience in a short review?")
    subject = f"Congratulations, {ctx.account_name}: {joined}"
    if len(subject) > SUBJECT_LIMIT:   # never cut inside a name or a figure
        subject = f"Congratulations, {ctx.account_name}!"
    try:
        return Note(subject=subject, paragraphs=paragraphs)
    except ValidationError as exc:
        raise DraftFailed(f"the template could not write a valid note: {exc.errors()[0]['msg']}") from exc


def _headlines(ctx: Context, rules: Rules) -> list[str]:
    """The milestones' headlines, as many as fit in HEADLINES_LIMIT characters, then "more"."""
    heads: list[str] = []
    used = 0
    for h in (headline(m, ctx, rules) for m in ctx.milestones):
        if heads and used + len(h) > HEADLINES_LIMIT:
            return heads + ["more"]
        heads.append(h)
        used += len(h) + 2
    return heads or ["a milestone"]


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and value == value and abs(value) < 1e15


class Rendered(BaseModel):
    subject: str
    body_text: str
    body_html: str


def render(note: Note, ctx: Context, rules: Rules, recipient_name: str | None) -> Rendered:
    """The email as sent: greeting and signature from CRM data (cleaned), every data value HTML-escaped.
    A blank recipient name greets the account's team."""
    first = clean_text(recipient_name, NAME_LIMIT).split()
    greeting = f"Dear {first[0]}," if first else f"Dear {ctx.account_name} team," if ctx.account_name else "Hello,"
    closing = ["Warm regards,", clean_text(ctx.csm_name, NAME_LIMIT) or "Your Customer Success team"]
    link = rules.drafting.advocacy_link if rules.drafting.close_with == "advocacy" else None
    return Rendered(subject=note.subject, body_text=text_body(greeting, note.paragraphs, closing, link),
                    body_html=html_body(greeting, note.paragraphs, closing, link))


def text_body(greeting: str, paragraphs: list[str], closing: list[str], link: str | None = None) -> str:
    blocks = [greeting, *paragraphs, *([link] if link else []), "\n".join(closing)]
    return "\n\n".join(blocks) + "\n"


# The email's HTML is a Jinja2 template with autoescape on: each value is escaped where it is written.
EMAIL_HTML = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined).get_template("email.html")


def html_body(greeting: str, paragraphs: list[str], closing: list[str], link: str | None = None) -> str:
    return _email_html([[greeting], *([p] for p in paragraphs)], link, closing)


def html_from_text(body_text: str) -> str:
    """An edited plain-text body as HTML: paragraphs on blank lines, everything escaped."""
    paragraphs = [p for p in re.split(r"\n\s*\n", body_text.strip()) if p.strip()]
    return _email_html([p.splitlines() for p in paragraphs])


def _email_html(paragraphs: list[list[str]], link: str | None = None, closing: list[str] | None = None) -> str:
    """Each paragraph (a list of lines) as one <p>, one per line; no newline after the last."""
    return EMAIL_HTML.render(paragraphs=paragraphs, link=link, closing=closing).removesuffix("\n")
