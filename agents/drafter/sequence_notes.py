"""The emails of the anniversary sequence's later steps (agents/drafter/sequence.py decides which and when).

Why their own template and not the model: step 2 names capabilities from the rules' catalogue and
step 3 a renewal month or the configured review link; none states a usage figure, so there is
nothing for the model to ground and nothing the guard could check. Every value from the CRM or the
rules is cleaned to one line here and HTML-escaped by the email template (agents/drafter/template.py).
"""
from __future__ import annotations

from milestone_stream.agents.drafter.context import NAME_LIMIT, Context, clean_text, month_year
from milestone_stream.agents.drafter.sequence import Account, AnniversarySequence, Kind, capabilities_for
from milestone_stream.agents.drafter.template import Rendered, html_body, text_body

SUBJECT_MAX = 70
NAME_IN_SUBJECT = 40


def render_step(kind: Kind, ctx: Context, account: Account, config: AnniversarySequence,
                advocacy_link: str | None, recipient_name: str | None) -> Rendered:
    """The step's subject and bodies; the greeting and signature as the drafter writes them."""
    name = clean_text(ctx.account_name, NAME_IN_SUBJECT) or "your team"
    if kind == "forward":
        chosen = capabilities_for(account, config)
        use = f" for {clean_text(account.top_use_case, 120)}" if account.top_use_case else ""
        paragraphs = [f"Last week we looked back on your year with us. Looking ahead, these are the capabilities "
                      f"we think could matter most{use} in the year to come:",
                      *(f"{clean_text(c.name, 80)}: {clean_text(c.summary, 300)}" for c in chosen),
                      "If one of them fits your plans, reply to this email and I will set up a short session."]
        subject, link = f"{name}: ideas for the year ahead", None
    elif kind == "renewal":
        when = f" in {month_year(account.renewal)}" if account.renewal else " soon"
        paragraphs = [f"Your renewal comes up{when}. Before then I would like to review with you what you "
                      "achieved this year and what you need next, so that the renewal fits how you work today.",
                      "Would you have 30 minutes in the coming weeks? Reply with a time that suits you."]
        subject, link = f"{name}: preparing your renewal together", None
    else:
        paragraphs = ["Thank you for a great year together. Teams like yours help others decide, and a short "
                      "review of your experience would mean a lot to us."
                      + ("" if advocacy_link else " If you are open to it, reply and I will send you the details.")]
        subject, link = f"{name}: would you share your experience?", advocacy_link
    first = clean_text(recipient_name, NAME_LIMIT).split()
    greeting = f"Dear {first[0]}," if first else f"Dear {ctx.account_name} team,"
    closing = ["Warm regards,", clean_text(ctx.csm_name, NAME_LIMIT) or "Your Customer Success team"]
    return Rendered(subject=subject[:SUBJECT_MAX], body_text=text_body(greeting, paragraphs, closing, link),
                    body_html=html_body(greeting, paragraphs, closing, link))
