"""docs/notes.md shows the notes `milestones up` drafts from its sample data; this keeps it current.

Why a test: the page is what a new user reads before trying the product; if the template's words
change, the page must change with them (regenerate it: python -m milestone_stream.dev.notes --write
docs/notes.md)."""
import asyncio
from pathlib import Path

from milestone_stream.agents.drafter.template import SUBJECT_LIMIT
from milestone_stream.dev.notes import page, sample_notes

PAGE = Path(__file__).resolve().parents[2] / "docs" / "notes.md"


def test_docs_notes_md_is_what_the_code_drafts_from_the_sample():
    notes = asyncio.run(sample_notes())
    assert PAGE.read_text(encoding="utf-8") == page(notes), \
        "docs/notes.md is stale: python -m milestone_stream.dev.notes --write docs/notes.md"


def test_the_sample_gives_one_first_note_and_one_anniversary_note_per_account():
    notes = asyncio.run(sample_notes())
    assert [(a, w) for a, w, _ in notes] == [("acme", "first note"), ("hope", "first note"), ("globex", "first note"),
                                             ("acme", "when the cooldown ends"), ("hope", "when the cooldown ends"),
                                             ("globex", "when the cooldown ends")]
    by = {(a, w): n for a, w, n in notes}
    globex = by[("globex", "first note")]
    subject = globex.splitlines()[0].removeprefix("Subject: ")
    assert subject == "Celebrating 50,000 emails sent" and len(subject) <= SUBJECT_LIMIT
    # one lead, the rest in one short "and also"; no ISO dates
    assert "your team has just passed 50,000 emails sent. And also: reaching 210% ROI and your first use of " \
           "automation sequences." in globex
    assert "2025-11-25" not in globex and "momentum" not in globex
    assert "10,000 touchpoints with clients" in by[("acme", "first note")]             # financial services
    assert "1,000 communications with donors" in by[("hope", "first note")]           # nonprofit
    assert "It has been one year since you started working with us, in November 2025." \
        in by[("globex", "when the cooldown ends")]


def test_the_readme_shows_the_sample_s_first_notes_as_drafted():
    readme = (PAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    for account, when, note in asyncio.run(sample_notes()):
        if when == "first note":
            assert f"**{account}** (first note):\n\n```text\n{note}" in readme, \
                f"README.md's snapshot of {account}'s first note is stale (copy it from docs/notes.md)"
