"""The grounding guard as a security reviewer reads it: every rejection README lists, with the prose
that must still pass beside it. Pure functions over a compiled context; no broker."""
import pytest

from milestone_stream.agents.drafter.context import clean_text, compile_context, figures_in, fold
from milestone_stream.agents.drafter.guard import find_link, guard
from milestone_stream.agents.drafter.template import Note, render, template_note
from milestone_stream.ids import milestone_id
from milestone_stream.rules import Drafting, Rules
from milestone_stream.schemas.records import Evidence, Milestone

from support.drafting import NOW, rows, usage_milestone


def ctx_of(milestones=None, **profile):
    return compile_context("acme", milestones or [usage_milestone()], *rows(**profile), Rules(), NOW)


def verdict(text, ctx=None):
    return guard(Note(subject="Congratulations", paragraphs=[text]), ctx or ctx_of())


# --- links, addresses and host names, in any spelling --------------------------------------------

LINKS = [
    "See https://evil.example/x", "see http://evil.example", "ftp://files.evil.example/a", "FTP://X",
    "mailto:boss@evil.example", "mailto:boss", "mailto: boss", "data:text/html;base64,PHNjcmlwdD4=",
    "javascript:alert(1)", "JavaScript:alert(1)", "tel:+15551234567", "file:///etc/passwd", "sms:+1555",
    "webcal://evil.example/cal", "anything-new://x",
    "www.evil.example", "visit www dot evil", "WWW．EVIL．EXAMPLE",
    "rewards-evil.example/claim", "claim at rewards-evil.example", "evil.example", "sub.evil.co.uk/path",
    "пример.рф", "evil.xn--p1ai", "Evil.Example", "evil . example",
    "hxxps://evil[.]example", "hxxp://evil", "h**p://evil", "hxxp", "evil[.]example", "evil(.)example",
    "evil{.}example", "evil[dot]example", "evil (dot) example", "evil dot example", "boss[at]evil",
    "boss (at) evil", "boss at evil dot example", "https[:]//evil",
    "192.168.0.1", "10.0.0.1/admin", "localhost:8080",
    "boss@evil.example", "write to boss@evil", "@evilhandle",
    # look-alikes: full-width and small commercial at, ideographic and other dots, zero-width, accents
    "boss＠evil.example", "boss﹫evil", "evil。example", "evil｡example", "evil．example", "evil·example",
    "e\u200bvil.example", "evil\u200b.example", "ev\u202eil.example", "evi\u0301l.example", "ｈｔｔｐｓ://evil",
    "evil\u2024example", "p\u0430yp\u0430l.com",
]


@pytest.mark.parametrize("text", LINKS)
def test_every_spelling_of_a_link_or_address_is_rejected(text):
    assert find_link(text), f"not caught: {text!r}"
    reason = verdict(f"Thank you! {text} for more.")
    assert reason and reason.startswith("the draft contains a link or address")


PROSE = [
    "e.g. the automation sequences", "i.e., your team", "as in Q2.", "We counted 10,000.", "up 5.5%",
    "your U.S. office", "Acme Inc. is growing", "Acme Inc.", "Ph.D. holders", "at your current pace",
    "Note: thanks", "the data: strong", "since 2024-06-01", "v2.5", "approx. 10", "St. Louis", "10 a.m. today",
    "a polka-dot tie", "one of the first teams", "no one does it better", "reach out at any time",
    "the 24/7 team", "U.S.A.", "etc.)", "Mr. Doe",
]


@pytest.mark.parametrize("text", PROSE)
def test_ordinary_prose_is_not_mistaken_for_a_link(text):
    assert find_link(text) is None


def test_prose_with_grounded_figures_passes_the_whole_guard():
    ok = ("E.g. your U.S. office and Acme Inc. reached 10,000 touchpoints with clients. Since 2024-06-01 "
          "you have seen 152% ROI — one of the first teams to do so, second to none, with 10,450 emails.")
    assert verdict(ok) is None
    assert verdict(ok + " Q3 next.") == "the draft states 3, not in the compiled context"


# --- figures: digits and words, each one a cited fact states ---------------------------------------

INVENTED = [
    ("ROI grew 37.5% this quarter.", "37.5%"),
    ("two million emails, up three hundred percent", "two million, three hundred percent"),
    ("you sent one hundred emails", "one hundred"),
    ("twenty-one teams", "twenty-one"),
    ("three hundred and twenty-five users", "three hundred and twenty-five"),
    ("a dozen new teams", "a dozen"),
    ("a million thanks", "a million"),
    ("thousands of emails", "thousands"),
    ("tens of thousands of messages", "tens, thousands"),
    ("your third year", "third"),
    ("usage doubled", "doubled"),
    ("half of your team", "half"),
    ("tenfold growth", "tenfold"),
    ("one percent better", "one percent"),
    ("up 300 percent", "300 percent"),
    ("up 300 per cent", "300 per cent"),
    ("up 300%", "300%"),
    ("up 300 ％", "300 %"),
    ("10,000% growth", "10,000%"),                 # 10,000 is a count in the facts, not a percentage
    ("152 new teams", "152"),                      # 152 is a percentage in the facts, not a count
    ("2 million emails", "2 million"),
    ("1.5m emails", "1.5m"),
    ("in Q3", "3"),
    ("since 2023-06-01", "2023-06-01"),
    ("since 2024-06-02", "2024-06-02"),
    ("１２ teams", "12"),                           # full-width digits
    ("\u0661\u0662 teams", "١٢"),                  # Arabic-Indic digits
    ("1,2,3", "1,2,3"),
    ("tw\u043e m\u0456llion emails", "two million"),   # Cyrillic о and і
    ("two\u200b million", "two million"),
]


@pytest.mark.parametrize("text,shown", INVENTED)
def test_a_figure_no_fact_states_is_rejected_in_digits_or_words(text, shown):
    assert verdict(text) == f"the draft states {shown}, not in the compiled context"


GROUNDED = [
    "10,000 touchpoints with clients", "10,450 emails sent", "152% ROI", "an ROI of 152 percent",
    "a customer since 2024-06-01", "since 2024", "50,000 in about 37 months", "10k emails",
    "one of the first", "the first use", "second to none", "no one else", "a one-tap approval",
    "1 module",
]


@pytest.mark.parametrize("text", GROUNDED)
def test_figures_the_facts_state_and_ordinary_number_words_pass(text):
    assert verdict(text) is None


def test_figures_in_reads_digits_words_percentages_and_dates():
    kinds = [(s.kind, s.value) for s in figures_in(
        "10,450 sent; 152% and 5.5 percent; 2024-06-01; two million, three hundred percent, a dozen, "
        "twenty-one, one of them, 10k, 1,2, thousands, third, twice, 2024-13-45")]
    assert kinds == [("number", 10450), ("percent", 152), ("percent", 5.5), ("date", "2024-06-01"),
                     ("number", 2e6), ("percent", 300), ("number", 12), ("number", 21), ("number", 1e4),
                     ("number", 1), ("number", 2), ("vague", "thousands"), ("number", 3), ("number", 2),
                     ("number", 2024), ("number", 13), ("number", 45)]


def test_a_figure_planted_in_the_account_name_grounds_nothing():
    ctx = ctx_of(name="Acme 9999999")
    assert all("9999999" not in str(v) for _, v in ctx.allowed_figures())
    assert verdict("Acme 9999999 grew by 9,999,999 percent", ctx) == \
        "the draft states 9,999,999 percent, not in the compiled context"
    assert verdict("You grew by 9999999 percent.", ctx) == \
        "the draft states 9999999 percent, not in the compiled context"
    assert verdict("You sent 9999999 emails.", ctx) == "the draft states 9999999, not in the compiled context"
    assert verdict("Acme 9999999 percent up", ctx) is not None   # the name, then a percentage: a figure
    assert verdict("Congratulations, Acme 9999999, on 10,000 emails!", ctx) is None   # the name as a name
    assert guard(template_note(ctx, Rules()), ctx) is None


@pytest.mark.parametrize("name", ["9999999", "Two Million"])
def test_a_name_that_is_only_a_number_is_never_masked(name):
    ctx = ctx_of(name=name)
    assert verdict(f"we sent {name} emails", ctx) is not None


def test_figures_in_labels_modules_and_other_text_ground_nothing():
    profile_row, usage_row = rows(**{"adoption.sso_v7": True, "industry": "retail 8888", "top_use_case": "grew 7777%"})
    usage_row.totals["emails_6666"] = 5.0            # a metric name from telemetry: free text in a label
    ctx = compile_context("acme", [usage_milestone()], profile_row, usage_row, Rules(), NOW)
    labels = " ".join(f.label for f in ctx.facts)
    assert "6666" in labels and "sso v7" in " ".join(f.figure for f in ctx.facts)
    for planted in ("6666", "7777", "8888", "7"):
        assert verdict(f"you reached {planted} of them", ctx) is not None, planted
    assert verdict("you adopted sso v7 and 5 more", ctx) is None   # the module named, 5 is a lifetime total
    assert verdict("grew 7777%", ctx) is not None


def test_text_is_folded_before_it_is_read():
    assert fold("Ｂｏｓｓ＠ＥＶＩＬ\u200b。ｅｘａｍｐｌｅ") == "boss@evil.example"
    assert fold("e\u0301vil") == "evil" and fold("\u202eabc") == "abc"


# --- the template passes its own guard for ordinary data -----------------------------------------

def milestone(kind, title, metric=None, threshold=None, value=None):
    return Milestone(milestone_id=milestone_id("acme", kind, metric, title), account_id="acme", kind=kind,
                     metric=metric, threshold=threshold, value=value, title=title, reached_at=NOW,
                     evidence=[Evidence(source="salesforce", record="001ACME", occurred_at=NOW)])


ORDINARY = [
    [usage_milestone()],
    [usage_milestone(tier=50000, value=50000.0)],
    [milestone("roi_threshold", "150% ROI achieved", "roi_percent", 150, 152.0)],
    [milestone("roi_threshold", "200% ROI achieved", "roi_percent", 200, 200.0)],
    [milestone("adoption_spike", "active users up 150% over the previous 7-day window", "active_users", 1.5, 345.0)],
    [milestone("anniversary", "3 years together", "contract_start", 3, 3)],
    [milestone("anniversary", "1 year together", "contract_start", 1, 1)],
    [milestone("certification", "12 certified in admin level 2", "certification.admin_level_2", None, 12)],
    [milestone("certification", "admin level 2 certification completed", "certification.admin_level_2")],
    [milestone("qbr_completed", "QBR completed on 2026-05-01", "qbr_completed_at")],
    [milestone("renewal_signed", "Renewal signed on 2026-05-20", "renewal_signed_at")],
    [milestone("implementation_signed_off", "Implementation signed off", "implementation_signed_off_at")],
    [milestone("feature_adopted", "First use of sso v2", "sso_v2")],
    [usage_milestone(), milestone("roi_threshold", "150% ROI achieved", "roi_percent", 150, 152.0),
     milestone("feature_adopted", "First use of sso v2", "sso_v2")],
]


@pytest.mark.parametrize("milestones", ORDINARY, ids=lambda ms: "+".join(m.kind for m in ms))
@pytest.mark.parametrize("close_with", ["pace", "advocacy", "none"])
def test_the_template_draft_passes_the_guard_for_ordinary_data(milestones, close_with):
    rules = Rules(drafting=Drafting(close_with=close_with, advocacy_link="https://reviews.example/acme"))
    for profile in ({}, {"adoption.sso_v2": True, "adoption.reports_360": True, "adoption.api": True},
                    {"name": "3M"}, {"name": "U.S. Steel Inc."}, {"industry": "nonprofit"}):
        ctx = compile_context("acme", milestones, *rows(**profile), rules, NOW)
        note = template_note(ctx, rules)
        assert guard(note, ctx) is None, (profile, note)
        assert "https://reviews.example/acme" in render(note, ctx, rules, "Jane Doe").body_text \
            or close_with != "advocacy"


def test_the_template_with_many_modules_and_milestones_stays_within_limits():
    flags = {f"adoption.module_{n}": True for n in range(40)}
    many = [milestone("feature_adopted", f"First use of module {n}", f"module_{n}") for n in range(40)]
    ctx = compile_context("acme", many, *rows(**flags), Rules(), NOW)
    note = template_note(ctx, Rules())
    assert len(note.subject) <= 160 and all(len(p) <= 1500 for p in note.paragraphs)
    assert "you now use 41 of our modules." in note.paragraphs[1].lower() and note.paragraphs[0].endswith("and more.")
    assert guard(note, ctx) is None


def test_a_link_in_the_account_name_fails_the_template_and_is_flagged_not_sent():
    ctx = ctx_of(name="Claim at rewards-evil.example/claim")
    assert "domain name" in guard(template_note(ctx, Rules()), ctx)


def test_clean_text_is_one_short_line_without_controls():
    assert clean_text("Acme\r\nBcc: x\t\u202e\u200bCorp\x85\u2028end", 100) == "Acme Bcc: x Corp end"
    assert clean_text("x" * 2000, 120) == "x" * 119 + "…"
    assert len(clean_text("y" * 1_000_000, 100)) == 100
    assert [clean_text(v, 10) for v in (None, True, [1], {"a": 1}, float("nan"), 1e308, "  ", 12)] == \
        ["", "", "", "", "", "", "", "12"]
    assert clean_text("\ud800Acme", 10) == "Acme"
