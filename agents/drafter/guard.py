"""The grounding guard: may a drafted note (the model's or the template's) be shown to a customer?

Why strict: a draft is read by a customer's executive under the vendor's name, and it is written
from CRM text that anyone with CRM access (or an integration) can set. So the guard rejects every
link or address in any spelling, and every figure (in digits or words) that a cited fact does not
state. A false alarm costs a template draft; a miss costs the customer's trust.

Why its own module: the drafter (model.py) runs it on every note, whoever wrote it; the template
(template.py) only writes notes. It reads figures with the context compiler's `figures_in` and
`fold`, so the guard and the facts it checks against agree on what a figure is.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from milestone_stream.agents.drafter.context import NUMBER_WORDS, Context, Stated, clean_text, figures_in, fold

if TYPE_CHECKING:
    from milestone_stream.agents.drafter.template import Note


_SCHEMES = ("https?|s?ftp|ftps|mailto|data|javascript|vbscript|livescript|tel|sms|smsto|mms|file|about|blob|"
            "callto|sip|sips|skype|facetime|ws|wss|irc|ircs|news|nntp|urn|magnet|market|intent|itms|itms-apps|"
            "webcal|ssh|telnet|ldap|gopher|git|svn|fb|tg|whatsapp|viber|slack|zoommtg|ms-[a-z-]+")
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
# What the guard rejects, checked in this order on the folded text (see `fold`): (what, pattern).
LINK_RULES: list[tuple[str, re.Pattern]] = [(what, re.compile(pattern)) for what, pattern in [
    ("a link", r"[a-z][a-z0-9+.-]{0,31}\s*:\s*/\s*/"),                                   # any scheme://
    ("a link", rf"(?<![\w-])(?:{_SCHEMES}):(?=\S)"),                                      # mailto:x, data:…
    ("a link", r"(?<![\w-])(?:https?|ftp|mailto|javascript|vbscript|tel|sms|callto)\s*:"),  # "mailto: x"
    ("a defanged link", r"(?<![\w-])(?:h(?:xx|\*\*|x\*|\*x|tt)ps?|fxp|hxxp|meow)(?![\w-])"),
    ("a defanged link", r"[\[({<]\s*(?:\.|dot|:|/|://|@|at)\s*[\])}>]"),                  # [.] (dot) [at] [:]
    ("a link", r"(?<![\w-])www\d{0,3}\s*(?:\.|\[|\(|\{|dot\b)"),
    ("an email address", r"@"),
    ("an email address", rf"(?<![\w-])[\w.+-]+\s+at\s+{_LABEL}\s+dot\s+{_LABEL}"),   # boss at evil dot example
    ("a defanged link", rf"(?<![\w-]){_LABEL}\s+dot\s+{_LABEL}"),                        # evil dot example
    ("a defanged link", rf"(?<![\w-]){_LABEL}\s+\.\s*[^\W\d_]{{2,63}}(?![\w-])"),          # evil . example
    ("an IP address", r"(?<![\w.])\d{1,3}(?:\s*\.\s*\d{1,3}){3}(?![\w])"),
    ("a link", r"(?<![\w-])localhost(?![\w-])"),
    ("a domain name", rf"(?<![\w-])(?:{_LABEL}\.)+(?:[^\W\d_]{{2,63}}|xn--[\w-]+)(?![\w-])"),   # evil.example/claim
]]


def find_link(text: str) -> tuple[str, str] | None:
    """The first link, address or host name in a text, in any spelling: (what, as written), or None."""
    folded = fold(text)
    for what, pattern in LINK_RULES:
        found = pattern.search(folded)
        if found:
            return what, found.group(0)
    return None


def guard(note: Note, ctx: Context) -> str | None:
    """Why the note may not be used, or None.

    No link, address or host name in any spelling (`LINK_RULES`), and every figure it states, in
    digits or in words, must be one a cited fact states, as a number, a percentage or a date
    (`Context.allowed_figures`). A CRM name written verbatim (the account's "3M") is a name, not a
    figure, unless a percentage follows it."""
    text = "\n".join([note.subject, *note.paragraphs])
    link = find_link(text)
    if link:
        return (f"the draft contains a link or address ({link[0]}: {clean_text(link[1], 60)!r}); "
                f"links and recipients come from data only")
    allowed = ctx.allowed_figures()
    invented = [s for s in figures_in(mask_names(fold(text), ctx.quoted_names())) if not grounded(s, allowed)]
    if invented:
        shown = ", ".join(dict.fromkeys(clean_text(s.text, 40) for s in invented))
        return f"the draft states {shown}, not in the compiled context"
    return None


def grounded(stated: Stated, allowed: set) -> bool:
    """A figure is grounded by a fact stating the same value of the same kind; "thousands" never is."""
    return stated.kind != "vague" and stated.key in allowed


def mask_names(folded: str, names: list[str]) -> str:
    """The text without verbatim occurrences of CRM names, so that a name's digits are not read as
    figures. A name is masked only as a whole (word boundaries), not when "%" or "percent" follows
    it, and only if it has a letter outside number words: an account named "9999999" or "Two
    Million" grounds nothing."""
    for name in sorted({fold(n) for n in names}, key=len, reverse=True):
        words = re.findall(r"[^\W\d_]+", name)
        if not any(w not in NUMBER_WORDS for w in words):
            continue
        folded = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)(?!\s*(?:%|percent|per\s+cent|pct))", " ", folded)
    return folded
