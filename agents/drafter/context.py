"""The context compiler: everything a congratulations note may say about an account, with a source.

Why: the note is only as trustworthy as its figures. Each figure the drafter may use is a `Fact`
carrying where it came from (source system, record, as-of time) and the figures it states
(`Fact.numbers`, set where the fact is built); the grounding guard then accepts only figures found
there — never a digit that merely appears in free text such as the account's or a module's name —
and the approval request carries the facts as citations.

Why so defensive: the CRM is written by people and integrations, so its values are hostile as a
matter of course (CR/LF, megabyte names, markup, "many" open escalations, NaN, 1e308). Compiling a
context never raises on such data: text is cleaned and cut (`clean_text`), an unreadable value is
treated as unknown and named in `Context.data_notes` for the CSM.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError

from milestone_stream.agents.detector.crm import PER_DATE, ProfileRow, Provenance
from milestone_stream.agents.detector.usage import UsageRow
from milestone_stream.dates import iso_date
from milestone_stream.rules import Rules
from milestone_stream.schemas.records import Citation, Contact, Milestone

EXECUTIVE_ROLES = ("executive_sponsor", "economic_buyer", "executive", "ceo", "cfo", "coo", "cto", "vp")
DETECTOR = "milestone-stream"
MILESTONE = "milestone"

# How much CRM text a note may carry (characters, after cleaning; a longer value is cut and ends in "…").
ACCOUNT_LIMIT = 120   # the account's name (subject, greeting, body)
NAME_LIMIT = 100      # a person's name: contacts, the CSM
LABEL_LIMIT = 80      # industry, module, metric and programme names
TITLE_LIMIT = 200     # a milestone's title
TEXT_LIMIT = 300      # free text handed to the model as data (top use case)
SHOWN_LIMIT = 40      # an unreadable value quoted back to the CSM in a review note

# Milestone kinds whose title the detector writes only from rules and numbers (agents/detector/usage.py,
# agents/detector/crm.py): their titles' figures are grounded. Other titles hold CRM text (a feature or
# programme name, a date as typed), so only their structured numbers count.
FORMATTED_TITLES = {"usage_threshold", "roi_threshold", "adoption_spike", "anniversary"}
DATED_KINDS = {kind for kind, _ in PER_DATE.values()}   # "QBR completed on 2026-05-01"

Token = tuple[str | None, str]  # (kind, text): the _TOKEN group that matched, the characters
Figure = tuple[str, float | str]   # ("number", 10450.0), ("percent", 152.0), ("date", "2024-06-01")


def clean_text(value: object, limit: int) -> str:
    """CRM text fit for a subject, greeting or body: one line, no control or invisible characters,
    whitespace collapsed, at most `limit` characters (a longer value is cut and ends in "…").

    C0/C1 controls (CR, LF, tab, …) and line/paragraph separators become spaces; format characters
    (bidi overrides and isolates, zero-width spaces and joiners, soft hyphen, BOM) and lone
    surrogates are removed. A number is written as text; anything else (None, a bool, a list, a
    dict, NaN, inf) is no text at all (""). Only the first 4 × limit characters are read.
    """
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, float)):
        value = format_number(value) or ""
    if not isinstance(value, str):
        return ""
    kept = []
    for ch in value[: limit * 4 + 16]:
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif category not in ("Cf", "Cs"):
            kept.append(ch)
    text = " ".join("".join(kept).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def format_number(value: object, percent: bool = False) -> str | None:
    """A figure as the note writes it ("10,450", "37.5", "152%"); None for a value that is not a
    finite number below 10^15 (NaN, inf, 1e308, a bool, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or abs(value) >= 1e15:
        return None
    text = f"{value:,.0f}" if value == round(value) else f"{value:,.2f}".rstrip("0").rstrip(".")
    return text + ("%" if percent else "")


class Fact(BaseModel):
    """One figure the note may state, exactly as it may be written, where it came from, and the
    figures it states (`numbers`: what the grounding guard accepts; labels never count).

    `said` is how a note says it ("10,450 touchpoints with clients", "in June 2024", "152% ROI in
    Q2 2026"): the template writes it and the model is given it; its figures are among `numbers`
    (a framing phrase's own digits never are). `key` names the fact for the template
    ("lifetime:emails_sent", "past_year:emails_sent", "customer_since", "roi")."""

    model_config = ConfigDict(frozen=True)
    label: str
    figure: str
    source: str
    record: str
    as_of: datetime
    numbers: tuple[Figure, ...] = ()
    said: str = ""
    key: str = ""

    def citation(self) -> Citation:
        return Citation(figure=f"{self.label}: {self.figure}", source=self.source, record=self.record,
                        as_of=self.as_of)


class Context(BaseModel):
    """The compiled context of one note (one milestone, or several merged after a cooldown)."""

    model_config = ConfigDict(frozen=True)
    account_id: str
    account_name: str
    industry: str | None = None
    top_use_case: str | None = None
    csm_name: str | None = None
    csm_email: str | None = None
    contacts: list[Contact] = []          # executive sponsor first
    milestones: list[Milestone]
    facts: list[Fact]
    modules_adopted: list[str] = []
    customer_since: date | None = None
    pace: Fact | None = None              # "at your current pace you will reach 50,000 … in about 8 months"
    health: str | None = None
    open_escalations: int | None = 0      # None: the CRM's value could not be read (see data_notes)
    data_notes: list[str] = []            # CRM values that could not be read, for the CSM
    # the value summary: each configured usage metric's lifetime total (rules' order, totals above 0),
    # and for an anniversary the past twelve months' (from the usage row's monthly totals)
    lifetime: list[Fact] = []
    past_year: list[Fact] = []
    since: Fact | None = None             # what "since …" in the summary refers to (see `summary_since`)
    roi: Fact | None = None               # the CRM's ROI, said with its period when the CRM gives one
    roi_period: str | None = None         # "Q2 2026", "H1 2026", "FY2026", "2026" (`read_period`)

    @property
    def executives(self) -> list[Contact]:
        return [c for c in self.contacts if is_executive(c.role)]

    def citations(self) -> list[Citation]:
        return [f.citation() for f in self.facts]

    def allowed_figures(self) -> set[Figure]:
        """Every figure the note may state: those the facts state, never digits in names or labels."""
        return {n for f in self.facts for n in f.numbers}

    def quoted_names(self) -> list[str]:
        """CRM names the note may quote verbatim (the account's, its industry's, modules', features'
        and programmes'): "3M" or "Acme 2" written as the name is a name, not a figure."""
        names = [self.account_name, self.industry or "", *self.modules_adopted]
        for m in self.milestones:
            if m.kind == "feature_adopted" and m.metric:
                names.append(clean_text(m.metric.replace("_", " "), LABEL_LIMIT))
            elif m.kind == "certification" and m.metric:
                names.append(clean_text(m.metric.split(".", 1)[-1].replace("_", " "), LABEL_LIMIT))
        return [n for n in dict.fromkeys(names) if n]


# --- human words for figures and dates -----------------------------------------------------------

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_SMALL = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
SINCE_START_DAYS = 45     # usage counted from within this many days of the contract's start covers "since you joined"
SINCE_SHOWN_DAYS = 60     # a count that started fewer days ago than this is said "so far", without a month


def month_year(day: date) -> str:
    """"June 2024": the month and year a note writes for a date (the day would be a figure no fact states)."""
    return f"{MONTHS[day.month - 1]} {day.year}"


def count_words(n: int) -> str:
    """A small whole number in words ("two"), a larger one in digits ("20", "1,200")."""
    return _SMALL[n] if 0 <= n < len(_SMALL) else f"{n:,}"


def years_phrase(n: int) -> str:
    """"one year", "two years", "25 years"."""
    return f"{count_words(n)} year{'' if n == 1 else 's'}"


def metric_words(metric: str | None, industry: str | None, rules: Rules) -> str:
    """A usage metric in the customer's words: the industry's framing from the rules ("touchpoints
    with clients" for financial services), else the metric's label ("emails sent"), else its name."""
    framing = rules.drafting.framing.get(metric or "", {})
    words = framing.get(industry.lower(), "") if industry else ""
    usage = rules.usage.get(metric or "")
    for text in (words, usage.label if usage else None, (metric or "").replace("_", " ")):
        cleaned = clean_text(text, LABEL_LIMIT)
        if cleaned:
            return cleaned
    return "uses"


_PERIODS = [
    (re.compile(r"(Q[1-4]|H[12])[\s/-]*((?:19|20)\d{2})"), "{0} {1}"),      # Q2 2026, H1-2026
    (re.compile(r"((?:19|20)\d{2})[\s/-]*(Q[1-4]|H[12])"), "{1} {0}"),      # 2026-Q2, 2026 H1
    (re.compile(r"FY[\s-]*((?:19|20)\d{2})"), "FY{0}"),                     # FY2026, FY 2026
    (re.compile(r"((?:19|20)\d{2})"), "{0}"),                                # 2026
]


def read_period(raw: object) -> str | None:
    """The ROI's period from the CRM's `roi_period` field as the note writes it: "Q2 2026", "H1 2026",
    "FY2026" or "2026" (also read: "2026-Q2", "q2/2026", "FY 2026"); None for anything else (free
    text, markup, a date, a number): the ROI is then stated without a period."""
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    text = " ".join(raw.upper().split())
    for pattern, shape in _PERIODS:
        found = pattern.fullmatch(text)
        if found:
            return shape.format(*found.groups())
    return None


# --- figures as written ------------------------------------------------------------------------

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_ORDINALS = {"third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
             "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15,
             "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
             "thirtieth": 30, "fortieth": 40, "fiftieth": 50, "sixtieth": 60, "seventieth": 70,
             "eightieth": 80, "ninetieth": 90, "hundredth": 100, "thousandth": 1e3, "millionth": 1e6,
             "billionth": 1e9}
_MULTIPLES = {"half": 0.5, "twice": 2, "double": 2, "doubled": 2, "doubling": 2, "thrice": 3, "triple": 3,
              "tripled": 3, "tripling": 3, "quadruple": 4, "quadrupled": 4}
_VAGUE = {"dozens", "hundreds", "thousands", "millions", "billions", "trillions", "tens"}
_SUFFIXES = {"k": 1e3, "m": 1e6, "mm": 1e6, "mn": 1e6, "bn": 1e9, "b": 1e9}   # "10k", "1.5m" (no space)
_IN_RUN = set(_UNITS) | set(_TENS) | set(_SCALES) | {"hundred", "dozen"}
NUMBER_WORDS = _IN_RUN | set(_ORDINALS) | set(_MULTIPLES) | _VAGUE

_TOKEN = re.compile(r"(?P<date>(?<!\d)\d{4}-\d{2}-\d{2}(?!\d))|(?P<num>\d+(?:[.,]\d+)*)|(?P<word>[^\W\d_]+)"
                    r"|(?P<pct>%)|(?P<space>\s+)|(?P<hyphen>-)|(?P<other>.)", re.S)
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


class Stated(NamedTuple):
    """A figure as a text states it: kind "number", "percent", "date" or "vague" ("thousands of",
    which no fact grounds); its value; and the words as written."""

    kind: str
    value: float | str
    text: str

    @property
    def key(self) -> Figure:
        return (self.kind, self.value)


def fold(text: str) -> str:
    """Text reduced to what a reader sees: compatibility forms unified (NFKC: full-width "＠", "１"),
    accents and other combining marks, format characters (zero-width, bidi) dropped, look-alike
    dots, slashes, colons, percent signs and common Cyrillic and Greek look-alike letters mapped to
    ASCII, casefolded."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Mn", "Me", "Cf", "Cs"))
    return unicodedata.normalize("NFKC", text).translate(_LOOKALIKES).casefold()


_LOOKALIKES = str.maketrans({
    **dict.fromkeys("\u3002\uff61\u00b7\u2022\u2219\u22c5\u30fb\u2027\ua4f8\u0702\u06d4\u2e33\u2e31", "."),
    **dict.fromkeys("\u2044\u2215\u29f8\u2571\u29f6", "/"),
    **dict.fromkeys("\ua789\u2236\u02d0\u02f8\u0589\u05c3\u16ec\ufe13\ufe55", ":"),
    **dict.fromkeys("\u066a\u2052", "%"),
    # Cyrillic and Greek letters that read as Latin ones ("twо million" with a Cyrillic о)
    **dict(zip("аеорсухіјѕԁһӏԛԝοαερυχικντ", "aeopcyxijsdhlqwoaepuxikvt", strict=True)),
    **dict(zip("АВЕКМНОРСТХІЈЅΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "abekmhopctxijsabezhikmnoptyx", strict=True)),
})


def figures_in(text: str) -> list[Stated]:
    """The figures a text states, in digits or in words: "10,000" → 10000, "152%" and "152 percent"
    → 152 percent, "2025-06-01" a date, "two million" → 2e6, "three hundred percent" → 300 percent,
    "a dozen" → 12, "10k" → 10000, "third" → 3, "twice" → 2, "half" → 0.5, "thousands" vague.

    Not figures: "first" and "second" (ordinary prose: "first use", "a second look"), and a lone
    "one" ("one of the", "no one", "one-tap") — but "one hundred", "twenty-one" and "one percent" are.
    Every digit in the text belongs to some figure ("1,2" is 1 and 2; "Q2" states 2).
    """
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(fold(text))]
    out: list[Stated] = []
    i = 0
    while i < len(tokens):
        kind, tok = tokens[i]
        if kind == "date":
            try:
                out.append(Stated("date", date.fromisoformat(tok).isoformat(), tok))
                i += 1
                continue
            except ValueError:
                # not a date ("2024-13-45"): its parts are numbers
                tokens[i:i + 1] = [("num", p) if p.isdigit() else ("hyphen", p) for p in re.split(r"(-)", tok)]
                continue
        if kind == "num":
            values = _digits(tok)
            j, scale = i + 1, 1.0
            if j < len(tokens) and tokens[j][0] == "word" and tokens[j][1] in _SUFFIXES:
                scale, j = _SUFFIXES[tokens[j][1]], j + 1
            else:
                k = _skip_space(tokens, j)
                if k < len(tokens) and tokens[k][0] == "word" and tokens[k][1] in ("hundred", "dozen", *_SCALES):
                    word = tokens[k][1]
                    scale, j = (100 if word == "hundred" else 12 if word == "dozen" else _SCALES[word]), k + 1
            j, percent = _percent(tokens, j)
            written = "".join(t for _, t in tokens[i:j]).strip()
            for n, v in enumerate(values):
                last = n == len(values) - 1
                out.append(Stated("percent" if percent and last else "number",
                                  _round(v * scale if last else v), written))
            i = j
            continue
        if kind == "word" and tok in NUMBER_WORDS or (kind == "word" and tok == "a" and _next_word(tokens, i) in
                                                      ("hundred", "dozen", *_SCALES)):
            if tok in _VAGUE:
                out.append(Stated("vague", tok, tok))
                i += 1
                continue
            if tok in _ORDINALS or tok in _MULTIPLES:
                value = _ORDINALS[tok] if tok in _ORDINALS else _MULTIPLES[tok]
                j, percent = _percent(tokens, i + 1)
                out.append(Stated("percent" if percent else "number", _round(value),
                                  "".join(t for _, t in tokens[i:j]).strip()))
                i = j
                continue
            value, j, words = _word_run(tokens, i)
            j, percent = _percent(tokens, j)
            if words == ["one"] and not percent:
                i = j
                continue
            out.append(Stated("percent" if percent else "number", _round(value),
                              "".join(t for _, t in tokens[i:j]).strip()))
            i = j
            continue
        if kind == "word" and tok.endswith("fold") and tok[:-4] in _UNITS | _TENS:   # "tenfold"
            out.append(Stated("number", _round((_UNITS | _TENS)[tok[:-4]]), tok))
        i += 1
    return out


def _digits(tok: str) -> list[float]:
    """"10,450" → [10450]; "37.5" → [37.5]; "1,2" → [1, 2]; "1.2.3" → [1, 2, 3]."""
    if _THOUSANDS.fullmatch(tok):
        return [float(tok.replace(",", ""))]
    return [float(p) for p in re.split(r"[.,]", tok) if p]


def _round(value: float) -> float:
    return round(float(value), 6)


def _skip_space(tokens: Sequence[Token], j: int) -> int:
    while j < len(tokens) and tokens[j][0] == "space":
        j += 1
    return j


def _next_word(tokens: Sequence[Token], i: int) -> str | None:
    k = _skip_space(tokens, i + 1)
    return tokens[k][1] if k < len(tokens) and tokens[k][0] == "word" else None


def _percent(tokens: Sequence[Token], j: int) -> tuple[int, bool]:
    """After a figure: "%", "percent", "per cent", "pct", "percentage (points)"."""
    k = _skip_space(tokens, j)
    if k < len(tokens) and tokens[k][0] == "pct":
        return k + 1, True
    if k < len(tokens) and tokens[k][0] == "word":
        if tokens[k][1] in ("percent", "pct", "percentage", "percentages"):
            return k + 1, True
        if tokens[k][1] == "per" and _next_word(tokens, k) == "cent":
            return _skip_space(tokens, k + 1) + 1, True
    return j, False


def _word_run(tokens: Sequence[Token], i: int) -> tuple[float, int, list[str]]:
    """A number in words from tokens[i]: words joined by spaces, hyphens or "and" ("three hundred
    and twenty-five"). A unit after a unit, or a tens word after a unit or tens word, starts the
    next number ("two three" is two figures)."""
    total, current = 0.0, 0.0
    words: list[str] = []
    last: str | None = None
    j = end = i
    while j < len(tokens):
        kind, tok = tokens[j]
        if kind != "word":
            if kind in ("space", "hyphen"):
                j += 1
                continue
            break
        if tok == "and" and words:
            if _next_word(tokens, j) in (*_UNITS, *_TENS):
                j += 1
                continue
            break
        if tok == "a" and not words:
            j += 1
            end = j
            continue
        if tok not in _IN_RUN:
            break
        cls = "unit" if tok in _UNITS else "tens" if tok in _TENS else tok
        if (cls == "unit" and last in ("unit",)) or (cls == "tens" and last in ("unit", "tens")) \
                or (cls == "hundred" and last == "hundred"):
            break
        if tok in _UNITS:
            current += _UNITS[tok]
        elif tok in _TENS:
            current += _TENS[tok]
        elif tok == "hundred":
            current = (current or 1) * 100
        elif tok == "dozen":
            current = (current or 1) * 12
        else:
            total += (current or 1) * _SCALES[tok]
            current = 0
        words.append(tok)
        last = cls
        j += 1
        end = j
    return total + current, end, words


def numbers_in(text: str) -> list[float]:
    """The numeric values a text states (dates as their year, month and day; vague magnitudes left out)."""
    out: list[float] = []
    for s in figures_in(text):
        if s.kind == "vague":
            continue
        if isinstance(s.value, str):  # a date, "2024-06-01" (every other figure's value is a number)
            out += [float(p) for p in s.value.split("-")]
        else:
            out.append(s.value)
    return out


def _stated(figure: str) -> tuple[Figure, ...]:
    """The figures of a figure the compiler wrote itself (numbers and dates, no CRM text); a date
    also grounds its year ("since 2024")."""
    keys: list[Figure] = []
    for s in figures_in(figure):
        keys.append(s.key)
        if s.kind == "date" and isinstance(s.value, str):  # a date's value is its ISO text
            keys.append(("number", float(s.value[:4])))
    return tuple(dict.fromkeys(keys))


# --- compiling ---------------------------------------------------------------------------------

def is_executive(role: str) -> bool:
    role = str(role).lower().replace(" ", "_").replace("-", "_")
    return any(r == role or role.startswith(r + "_") or role.endswith("_" + r) for r in EXECUTIVE_ROLES)


def compile_context(account_id: str, milestones: list[Milestone], profile_row: ProfileRow | None,
                    usage_row: UsageRow | None, rules: Rules, now: datetime) -> Context:
    """Build the context from the detector's table rows (agents/detector/crm.py's `ProfileRow` and
    usage.py's `UsageRow`; None: the account has none yet).

    Never raises on the rows' values: an unreadable one is left out and, where the CSM should know,
    named in `data_notes`."""
    profile_row = profile_row if profile_row is not None else ProfileRow()
    usage_row = usage_row if usage_row is not None else UsageRow()
    p = profile_row.fields
    notes: list[str] = []

    def crm_fact(label: str, field: str, figure: str, numbers: tuple[Figure, ...] | None = None) -> Fact:
        source, record, when = _provenance(profile_row.provenance(field), account_id, now)
        return Fact(label=label, figure=figure, source=source,
                    record=f"{record} field {clean_text(field, LABEL_LIMIT)}", as_of=when,
                    numbers=_stated(figure) if numbers is None else numbers)

    facts = [f for m in milestones for f in _milestone_facts(m)]
    contacts = _contacts(profile_row.contacts, notes)
    industry = clean_text(p.get("industry"), LABEL_LIMIT) or None
    lifetime: dict[str, Fact] = {}
    first_use: list[float] = []     # first event time of each metric in the summary
    for metric, total in sorted(usage_row.totals.items(), key=lambda kv: str(kv[0])):
        figure = format_number(total)
        if figure is None:
            notes.append(f"usage: unreadable lifetime total {_shown(total)} for {clean_text(metric, LABEL_LIMIT)!r}")
            continue
        label = (rules.usage[metric].label if metric in rules.usage and rules.usage[metric].label
                 else str(metric).replace("_", " "))
        first_last = _span(usage_row.first_last(metric))
        began = _epoch(first_last[0]) if first_last else None
        counted_from = f" from {began.date().isoformat()}" if began else ""
        fact = Fact(label=f"lifetime {clean_text(label, LABEL_LIMIT)}", figure=figure,
                    source=f"{DETECTOR} usage table",
                    record=f"sum of telemetry.events for account {clean_text(account_id, ACCOUNT_LIMIT)}, "
                           f"metric {clean_text(metric, LABEL_LIMIT)}{counted_from}",
                    as_of=_epoch(first_last[1]) if first_last else now, numbers=_stated(figure),
                    said=f"{figure} {metric_words(metric, industry, rules)}", key=f"lifetime:{metric}")
        facts.append(fact)
        if metric in rules.usage and isinstance(total, (int, float)) and total > 0:
            lifetime[metric] = fact
            if first_last:
                first_use.append(first_last[0])
    for metric, start, measure in sorted(usage_row.window_measures(), key=lambda w: str(w[0])):
        figure, start = format_number(measure), _epoch(start)
        if figure is None or start is None:
            continue
        facts.append(Fact(label=f"{clean_text(str(metric).replace('_', ' '), LABEL_LIMIT)} this window", figure=figure,
                          source=f"{DETECTOR} usage table",
                          record=f"telemetry.events for account {clean_text(account_id, ACCOUNT_LIMIT)}, "
                                 f"metric {clean_text(metric, LABEL_LIMIT)}, window from {start.date().isoformat()}",
                          as_of=now, numbers=_stated(figure)))
    flags = sorted(f for f, v in p.items() if isinstance(f, str) and f.startswith("adoption.") and v is True)
    modules = sorted(dict.fromkeys(n for n in (clean_text(f.split(".", 1)[1].replace("_", " "), LABEL_LIMIT)
                                               for f in flags) if n))
    if modules:
        facts.append(crm_fact("modules adopted", flags[0], f"{len(modules)} ({', '.join(modules)})",
                              numbers=(("number", float(len(modules))),)))
    roi, roi_fact = p.get("roi_percent"), None
    period = read_period(p.get("roi_period"))
    if p.get("roi_period") not in (None, "") and period is None:
        notes.append(f"ROI period: unreadable roi_period {_shown(p.get('roi_period'))} in CRM — "
                     "the note states the ROI without a period")
    if roi is not None:
        figure = format_number(roi, percent=True) if _plausible(roi, 1e6) else None
        if figure:
            roi_fact = crm_fact("reported ROI", "roi_percent", figure).model_copy(update={
                "said": f"{figure} ROI" + (f" in {period}" if period else ""), "key": "roi"})
            facts.append(roi_fact)
            if period:
                facts.append(crm_fact("reported ROI period", "roi_period", period).model_copy(
                    update={"said": f"in {period}", "key": "roi_period"}))
        else:
            notes.append(f"reported ROI: unreadable value {_shown(roi)} in CRM")
    since = _date(p.get("contract_start"), now)
    since_fact = None
    if since:
        since_fact = crm_fact("customer since", "contract_start", since.isoformat()).model_copy(
            update={"said": month_year(since), "key": "customer_since"})
        facts.append(since_fact)
    elif p.get("contract_start") not in (None, ""):
        notes.append(f"customer since: unreadable contract_start {_shown(p.get('contract_start'))} in CRM")
    summary_since = _summary_since(account_id, since_fact, since, first_use, now)
    if summary_since is not None and summary_since is not since_fact:
        facts.append(summary_since)
    lifetime = {m: lifetime[m] for m in rules.usage if m in lifetime}   # the rules' order
    past_year = _past_year(account_id, lifetime, usage_row, industry, rules, now) \
        if any(m.kind == "anniversary" for m in milestones) else []
    facts += past_year
    pace = _pace(account_id, milestones, usage_row, rules)
    if pace:
        facts.append(pace)
    name = clean_text(p.get("name"), ACCOUNT_LIMIT)
    if not name:
        notes.append("account name: missing or unreadable in CRM — the draft uses the account id")
        name = clean_text(account_id, ACCOUNT_LIMIT) or "your organisation"
    health = p.get("health")
    if health is not None and not isinstance(health, str):
        notes.append(f"health: unreadable value {_shown(health)} in CRM")
    escalations = _count(p.get("open_escalations"))
    if escalations is None:
        notes.append(f"open escalations: unreadable value {_shown(p.get('open_escalations'))} in CRM — "
                     "check the account before sending")
    return Context(account_id=account_id, account_name=name, industry=industry,
                   top_use_case=clean_text(p.get("top_use_case"), TEXT_LIMIT) or None,
                   csm_name=clean_text(p.get("csm_name"), NAME_LIMIT) or None,
                   csm_email=p.get("csm_email") if isinstance(p.get("csm_email"), str) and p.get("csm_email") else None,
                   contacts=contacts, milestones=milestones, facts=facts, modules_adopted=modules,
                   customer_since=since, pace=pace,
                   health=clean_text(health, LABEL_LIMIT) or None if isinstance(health, str) else None,
                   open_escalations=escalations, data_notes=notes,
                   lifetime=list(lifetime.values()), past_year=past_year,
                   since=summary_since, roi=roi_fact, roi_period=period if roi_fact else None)


def _summary_since(account_id: str, since_fact: Fact | None, since: date | None, first_use: list[float],
                   now: datetime) -> Fact | None:
    """What the value summary counts from: the customer's start (`customer_since`) when usage was
    counted from within SINCE_START_DAYS of it; else the month counting began (`usage_since`) when
    that is at least SINCE_SHOWN_DAYS ago; else nothing (the note says "so far"). Why: lifetime totals
    are sums of the telemetry this system has seen, so "since you joined" is claimed only when the
    telemetry goes back that far."""
    first = _epoch(min(first_use)) if first_use else None
    if first is None:
        return since_fact
    if since_fact is not None and since is not None and (first.date() - since).days <= SINCE_START_DAYS:
        return since_fact
    if (now - first).days < SINCE_SHOWN_DAYS:
        return None
    day = first.date().isoformat()
    return Fact(label="usage counted since", figure=day, source=f"{DETECTOR} usage table",
                record=f"first telemetry.events of account {clean_text(account_id, ACCOUNT_LIMIT)} in the summary",
                as_of=first, numbers=_stated(day), said=month_year(first.date()), key="usage_since")


def _past_year(account_id: str, lifetime: dict[str, Fact], usage_row: UsageRow, industry: str | None,
               rules: Rules, now: datetime) -> list[Fact]:
    """The past year's total of each metric in the lifetime summary (for anniversaries): the sum of
    the usage row's monthly totals for the twelve UTC months ending with the current one (a little
    under a year: never more than the year). Left out when it equals the lifetime total (all usage
    fell within the year: the summary would say the same twice) or when the row has no monthly
    totals (rows written before they were kept)."""
    this_month = now.year * 12 + now.month - 1
    months = [f"{n // 12:04d}-{n % 12 + 1:02d}" for n in range(this_month - 11, this_month + 1)]
    out = []
    for metric, total_fact in lifetime.items():
        monthly = usage_row.monthly(metric)
        total = sum(v for k, v in monthly.items() if k in months)
        figure = format_number(total)
        if not monthly or figure is None or total <= 0 or figure == total_fact.figure:
            continue
        out.append(Fact(label=f"{total_fact.label.removeprefix('lifetime ')} in the past year", figure=figure,
                        source=f"{DETECTOR} usage table",
                        record=f"monthly totals of telemetry.events for account "
                               f"{clean_text(account_id, ACCOUNT_LIMIT)}, metric {clean_text(metric, LABEL_LIMIT)}, "
                               f"{months[0]} to {months[-1]}",
                        as_of=total_fact.as_of, numbers=_stated(figure),
                        said=f"{figure} {metric_words(metric, industry, rules)}", key=f"past_year:{metric}"))
    return out


def milestone_title(m: Milestone) -> str:
    """A milestone's title as the note, its citation and the CSM's notification write it (cleaned;
    the kind when the title is blank)."""
    return clean_text(m.title, TITLE_LIMIT) or m.kind.replace("_", " ")


def milestone_source(m: Milestone) -> tuple[str, str, datetime]:
    """Where a milestone came from: its first evidence's source system, record and time; the
    detector, the account and the time reached when it carries none."""
    e = m.evidence[0] if m.evidence else None
    return (e.source, e.record, e.occurred_at) if e else (DETECTOR, m.account_id, m.reached_at)


def _milestone_facts(m: Milestone) -> list[Fact]:
    """The milestone as fired (its title), and the value reached when it differs from the tier.

    A title's figures count only where the detector wrote the whole title (`FORMATTED_TITLES`); for
    other kinds only the threshold, the value and a dated kind's date do, not digits in a feature's
    or programme's name."""
    source, record, as_of = milestone_source(m)
    cite = dict(source=source, record=f"{record} (milestone {m.milestone_id[:12]})", as_of=as_of)
    title = milestone_title(m)
    if m.kind in FORMATTED_TITLES:
        numbers = _stated(title)
    else:
        numbers = tuple(("number", _round(v)) for v in (m.threshold, m.value)
                        if v is not None and format_number(v) is not None)
        dated = re.search(r" on (\d{4}-\d{2}-\d{2})$", title) if m.kind in DATED_KINDS else None
        numbers += _stated(dated.group(1)) if dated else ()
    facts = [Fact(label=MILESTONE, figure=title, numbers=numbers, **cite)]
    value = format_number(m.value, percent=m.kind == "roi_threshold")
    if value is not None and m.value != m.threshold:
        facts.append(Fact(label=f"value reached for: {title}", figure=value, numbers=_stated(value), **cite))
    return facts


def _pace(account_id: str, milestones: list[Milestone], usage_row: UsageRow, rules: Rules) -> Fact | None:
    """Months to the next tier at the average rate since the metric's first event (≥ 1 day of history,
    at most 100 years away)."""
    for m in milestones:
        if m.kind != "usage_threshold" or m.metric not in rules.usage:
            continue
        total, first_last = usage_row.total(m.metric), _span(usage_row.first_last(m.metric))
        if total is None or format_number(total) is None or first_last is None:
            continue
        first, last = first_last
        since, as_of = _epoch(first), _epoch(last)  # both readable: _span checked them
        if since is None or as_of is None:
            continue
        nxt = next((t for t in rules.usage[m.metric].tiers if t > total), None)
        if nxt is None or last - first < 86400 or total <= 0:
            continue
        per_day = total / ((last - first) / 86400)
        months = max(1, round((nxt - total) / per_day / 30.44))
        if months > 1200:
            continue
        figure = f"{nxt:,.0f} in about {months} month{'s' if months > 1 else ''}"
        return Fact(label=f"pace to the next {m.metric.replace('_', ' ')} tier", figure=figure,
                    source=f"{DETECTOR} (computed)",
                    record=f"average daily {m.metric} of account {clean_text(account_id, ACCOUNT_LIMIT)} "
                           f"since {since.date().isoformat()}",
                    as_of=as_of, numbers=_stated(figure))
    return None


def _contacts(raw: object, notes: list[str]) -> list[Contact]:
    """The account's contacts, executive sponsor first, names cleaned; an unreadable entry is skipped."""
    out: list[Contact] = []
    for n, c in enumerate(raw if isinstance(raw, list) else []):
        try:
            contact = Contact.model_validate({k: c.get(k) for k in ("name", "email", "role")})
        except (AttributeError, ValidationError):
            notes.append(f"contact {n + 1}: unreadable entry in CRM, left out")
            continue
        out.append(contact.model_copy(update={"name": clean_text(contact.name, NAME_LIMIT)}))
    return sorted(out, key=lambda c: not is_executive(c.role))


def _provenance(entry: Provenance | None, account_id: str, now: datetime) -> tuple[str, str, datetime]:
    """(source, record, as-of) of a CRM field, or the CRM, the account and now when unreadable."""
    if entry is None:
        return "crm", clean_text(account_id, ACCOUNT_LIMIT), now
    when = entry.as_of
    return (clean_text(entry.source, LABEL_LIMIT) or "crm", clean_text(entry.record, LABEL_LIMIT) or account_id,
            when if when.tzinfo else when.replace(tzinfo=UTC))


def _plausible(value: object, limit: float) -> bool:
    return format_number(value) is not None and isinstance(value, (int, float)) and abs(value) <= limit


def _count(value: object) -> int | None:
    """A count from the CRM: 0 when absent; None when not a whole number from 0 to 1,000,000."""
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _plausible(value, 1e6):
        return None
    return int(value) if value >= 0 and value == int(value) else None


def _span(first_last: tuple[float, float] | None) -> tuple[float, float] | None:
    """A metric's (first, last) event times, if both are readable epoch seconds and in order."""
    if first_last is None:
        return None
    first, last = first_last
    return first_last if _epoch(first) and _epoch(last) and first <= last else None


def _epoch(ts: object) -> datetime | None:
    if not isinstance(ts, (int, float, str)):  # nothing else a stored row's JSON holds is a float (None, a list, …)
        return None
    try:
        return datetime.fromtimestamp(float(ts), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _date(raw: object, now: datetime) -> date | None:
    """An ISO date from 1900 up to today, else None."""
    if not isinstance(raw, str) or not raw:
        return None
    day = iso_date(raw)
    return day if day is not None and date(1900, 1, 1) <= day <= now.date() else None


def _shown(value: object) -> str:
    """An unreadable value as a review note quotes it: short, one line, no markup meaning added."""
    return repr(clean_text(value if isinstance(value, str) else repr(value)[:200], SHOWN_LIMIT))
