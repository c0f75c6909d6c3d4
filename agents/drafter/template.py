"""Drafting a congratulations note: the deterministic template, and rendering.

What the template writes: one lead milestone with its own sentence (an anniversary, then a usage
tier, ... see `LEAD_ORDER`); the others merged into the same note in one short "And also: …"; a
value summary the customer could not easily compile (every configured usage metric's lifetime
total in the customer's industry words, for an anniversary also the past year's, the reported ROI
with its period); dates as people say them ("in June 2024", "two years"); a subject of at most 70
characters, chosen whole, never cut. Every figure it writes is a cited `Fact`'s (`Fact.said`), so
the grounding guard accepts it.

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

from milestone_stream.agents.drafter.context import (
    DATED_KINDS,
    LABEL_LIMIT,
    NAME_LIMIT,
    Context,
    Fact,
    clean_text,
    format_number,
    metric_words,
    milestone_title,
    month_year,
    years_phrase,
)
from milestone_stream.dates import iso_date
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Milestone

TEMPLATE = "template"
SUBJECT_LIMIT = 70      # a subject a person would write; the template never cuts one, it picks one that fits
HEADLINES_LIMIT = 300    # characters of "and also" headlines in one note; the rest become "and more"
SUMMARY_LIMIT = 400      # characters of figures in one summary sentence; metrics beyond are left out
MODULES_NAMED = 5        # module names the template lists; beyond, it gives the count
PARAGRAPH_LIMIT = 1500


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
    paragraphs: list[str] = Field(min_length=1, max_length=8)   # each at most PARAGRAPH_LIMIT characters

    @field_validator("subject")
    @classmethod
    def _one_line(cls, subject: str) -> str:
        if "\r" in subject or "\n" in subject:
            raise ValueError("subject must be one line")
        return subject.strip()

    @field_validator("paragraphs")
    @classmethod
    def _short_paragraphs(cls, paragraphs: list[str]) -> list[str]:
        if any(not p.strip() or len(p) > PARAGRAPH_LIMIT for p in paragraphs):
            raise ValueError("paragraphs must be non-empty and at most 1,500 characters")
        return [p.strip() for p in paragraphs]


def phrase(metric: str | None, ctx: Context, rules: Rules) -> str:
    """The metric in the customer's words: "touchpoints with clients" for financial services."""
    return metric_words(metric, ctx.industry, rules)


# Which milestone leads a merged note: the rarer and more personal first, then by size.
LEAD_ORDER = ("anniversary", "usage_threshold", "renewal_signed", "roi_threshold", "certification",
              "implementation_signed_off", "qbr_completed", "feature_adopted", "adoption_spike")


def lead_first(milestones: list[Milestone]) -> list[Milestone]:
    """The milestones with the lead first: by LEAD_ORDER (unknown kinds last), then the higher tier."""
    def rank(m: Milestone) -> tuple[int, float]:
        kind = LEAD_ORDER.index(m.kind) if m.kind in LEAD_ORDER else len(LEAD_ORDER)
        return kind, -(m.threshold if _finite(m.threshold) else 0.0)
    return sorted(milestones, key=rank)


def headline(m: Milestone, ctx: Context, rules: Rules) -> str:
    """The milestone in a few words, as the "and also" sentence and the model's prompt name it:
    "10,000 touchpoints with clients", "210% ROI in Q2 2026", "two years together"."""
    if m.kind == "usage_threshold" and _finite(m.threshold):
        return f"{m.threshold:,.0f} {phrase(m.metric, ctx, rules)}"
    if m.kind == "roi_threshold" and _finite(m.value) and abs(m.value) < 1e6:
        return roi_words(m.value, ctx)
    if m.kind == "anniversary" and _years(m):
        return f"{years_phrase(_years(m))} together"
    title = milestone_title(m)
    dated = re.search(r" on (\d{4}-\d{2}-\d{2})$", title) if m.kind in DATED_KINDS else None
    day = iso_date(dated.group(1)) if dated else None
    if dated and day:   # "QBR completed in May 2026": the month, not a day no fact states
        title = f"{title[:dated.start()]} in {month_year(day)}"
    return title[0].lower() + title[1:] if title[:1].isupper() and not title[:2].isupper() else title


def also(m: Milestone, ctx: Context, rules: Rules) -> str:
    """A merged milestone in the "And also: …" sentence: "passing 10,000 touchpoints with clients",
    "reaching 152% ROI in Q2 2026", "your first use of sso", "two years together"."""
    if m.kind == "usage_threshold" and _finite(m.threshold):
        return f"passing {headline(m, ctx, rules)}"
    if m.kind == "roi_threshold" and _finite(m.value) and abs(m.value) < 1e6:
        return f"reaching {headline(m, ctx, rules)}"
    if m.kind == "feature_adopted" and _feature(m):
        return f"your first use of {_feature(m)}"
    return headline(m, ctx, rules)


def roi_words(value: float, ctx: Context) -> str:
    """"210% ROI", with the CRM's period when it is the period of this value ("210% ROI in Q2 2026")."""
    figure = format_number(value, percent=True) or ""
    if ctx.roi is not None and ctx.roi_period and ctx.roi.figure == figure:
        return f"{figure} ROI in {ctx.roi_period}"
    return f"{figure} ROI"


def lead_sentence(m: Milestone, ctx: Context, rules: Rules) -> str:
    """The note's opening: one clear message about the lead milestone."""
    team = f"everyone at {ctx.account_name}"
    if m.kind == "anniversary" and _years(m):
        when = f", in {month_year(ctx.customer_since)}" if ctx.customer_since else ""
        return (f"Happy anniversary to {team}! It has been {years_phrase(_years(m))} since you started "
                f"working with us{when}.")
    if m.kind == "usage_threshold" and _finite(m.threshold):
        return f"Congratulations to {team}: your team has just passed {headline(m, ctx, rules)}."
    if m.kind == "roi_threshold" and _finite(m.value) and abs(m.value) < 1e6:
        return f"Congratulations to {team} on reaching {roi_words(m.value, ctx)}."
    if m.kind == "feature_adopted" and m.metric and _feature(m):
        return f"Congratulations to {team}: your team has started using {_feature(m)}."
    return f"Congratulations to {team} on a milestone: {headline(m, ctx, rules)}."


def subject_line(m: Milestone, ctx: Context, rules: Rules) -> str:
    """A subject a person would write for the lead milestone, at most SUBJECT_LIMIT characters and
    never cut: the first candidate that fits ("Celebrating 10,000 touchpoints with clients",
    "Happy second anniversary, Acme Corp"), else a sentence without data."""
    candidates: list[str] = []
    if m.kind == "anniversary" and _years(m):
        n = _years(m)
        if n <= len(_ORDINAL_WORDS):
            candidates += [f"Happy {_ORDINAL_WORDS[n - 1]} anniversary, {ctx.account_name}",
                           f"Happy {_ORDINAL_WORDS[n - 1]} anniversary"]
        candidates.append(f"Celebrating {years_phrase(n)} together")
    elif m.kind == "usage_threshold" and _finite(m.threshold):
        usage = rules.usage.get(m.metric or "")
        candidates += [f"Celebrating {headline(m, ctx, rules)}",
                       *([f"Celebrating {m.threshold:,.0f} {usage.label}"] if usage and usage.label else [])]
    elif m.kind == "roi_threshold" and _finite(m.value) and abs(m.value) < 1e6:
        candidates += [f"Celebrating {roi_words(m.value, ctx)}", f"Celebrating {format_number(m.value, True)} ROI"]
    elif m.kind == "feature_adopted" and _feature(m):
        candidates.append(f"Celebrating your first use of {_feature(m)}")
    else:
        head = headline(m, ctx, rules)
        candidates.append(f"Celebrating {head}")
    candidates += [f"Celebrating a milestone with {ctx.account_name}", "Celebrating your team's milestone"]
    return next(c for c in candidates if len(c) <= SUBJECT_LIMIT)


def value_summary(ctx: Context) -> list[str]:
    """The value summary's sentences: every configured metric's lifetime total in the customer's
    words, counted from the customer's start or the month counting began ("so far" otherwise);
    for an anniversary the past year's; the CRM's ROI when no milestone states it."""
    sentences = []
    if ctx.lifetime:
        since = ctx.since
        opener = ("So far" if since is None else f"Since you joined us in {since.said}"
                  if since.key == "customer_since" else f"Since {since.said}")
        sentences.append(f"{opener}, your work with us adds up to {_join(_bounded(ctx.lifetime))}.")
    if ctx.past_year:
        sentences.append(f"In the past year alone: {_join(_bounded(ctx.past_year))}.")
    if ctx.roi is not None and not any(m.kind == "roi_threshold" for m in ctx.milestones):
        sentences.append(f"Your team reports {ctx.roi.said}.")
    modules = ctx.modules_adopted
    if len(modules) == 1:
        sentences.append(f"You have made {modules[0]} part of how you work.")
    elif 1 < len(modules) <= MODULES_NAMED:
        sentences.append(f"You now use {len(modules)} of our modules: {_join(modules)}.")
    elif modules:
        sentences.append(f"You now use {len(modules)} of our modules.")
    return sentences


def template_note(ctx: Context, rules: Rules) -> Note:
    """The deterministic draft: same context, same words. Raises only DraftFailed.

    One lead milestone (`lead_first`) with its own sentence; the others, if merged, in one short
    "And also: …"; then the value summary; then the close the rules choose."""
    ordered = lead_first(ctx.milestones)
    lead = ordered[0] if ordered else None
    if lead is None:
        paragraphs = [f"Congratulations to everyone at {ctx.account_name} on a milestone."]
    else:
        opening = lead_sentence(lead, ctx, rules)
        others = _headlines(ordered[1:], ctx, rules)
        if others:
            opening += f" And also: {_join(others)}."
        paragraphs = [opening]
    summary = value_summary(ctx)
    if summary:   # one paragraph; a sentence each if long labels and names would make it too long for one
        joined = " ".join(summary)
        paragraphs += [joined] if len(joined) <= PARAGRAPH_LIMIT else summary
    usage_metric = next((m.metric for m in ctx.milestones if m.kind == "usage_threshold"), None)
    if rules.drafting.close_with == "pace" and ctx.pace and usage_metric:
        reach = ctx.pace.figure.replace(" in about", " " + phrase(usage_metric, ctx, rules) + " in about")
        paragraphs.append(f"At your current pace you will reach {reach} — we would love to help you get there.")
    elif rules.drafting.close_with == "advocacy" and rules.drafting.advocacy_link:
        paragraphs.append("If our work together has helped, "
                          "would you consider sharing your experience in a short review?")
    subject = subject_line(lead, ctx, rules) if lead else "Celebrating your team's milestone"
    try:
        return Note(subject=subject, paragraphs=paragraphs)
    except ValidationError as exc:
        raise DraftFailed(f"the template could not write a valid note: {exc.errors()[0]['msg']}") from exc


_ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def _years(m: Milestone) -> int:
    """An anniversary's whole years (its threshold), 0 when unreadable."""
    value = m.threshold if _finite(m.threshold) else m.value
    return int(value) if _finite(value) and value == int(value) and 0 < value < 1000 else 0


def _feature(m: Milestone) -> str:
    """A feature's name as the note writes it (the CRM's field name, cleaned: a name, not a figure)."""
    return clean_text((m.metric or "").replace("_", " "), LABEL_LIMIT)


def _bounded(facts: list[Fact]) -> list[str]:
    """The facts' words, as many as fit in SUMMARY_LIMIT characters (the rules' first metrics first)."""
    out: list[str] = []
    for f in facts:
        if out and sum(len(w) + 2 for w in out) + len(f.said) > SUMMARY_LIMIT:
            break
        out.append(f.said)
    return out


def _join(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _headlines(milestones: list[Milestone], ctx: Context, rules: Rules) -> list[str]:
    """The merged milestones as "And also" names them (`also`), as many as fit in HEADLINES_LIMIT
    characters, then "more"."""
    heads: list[str] = []
    used = 0
    for h in (also(m, ctx, rules) for m in milestones):
        if heads and used + len(h) > HEADLINES_LIMIT:
            return heads + ["more"]
        heads.append(h)
        used += len(h) + 2
    return heads


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
