"""The approval UI in a real headless browser (Playwright driving Debian's Chromium).

`./dev test` installs Chromium from Debian when it is missing; without it this test fails, it is
never skipped.
"""
import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from milestone_stream.kafka_io import wait_for
from milestone_stream.topics import ensure_topics

from support.helpers import publish
from support.stack import ApprovalStack, SmtpServer, approval_request, links_in, until_outcome

CHROMIUM = os.environ.get("MILESTONES_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("MILESTONES_SCREENSHOTS", "var/screenshots"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser():
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


async def test_csm_edits_a_draft_sends_it_and_uses_a_one_tap_link(kafka_bootstrap, topics, browser):
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    smtp = SmtpServer().start()
    edited = approval_request(11, account_name="Acme <b>Corp</b>")        # data with markup: must be escaped
    tapped = approval_request(12, recipients=())                          # no executive contact on record
    try:
        async with ApprovalStack(kafka_bootstrap, topics, smtp.port) as stack:
            await publish(kafka_bootstrap, topics.approval_requests, [edited, tapped])
            await wait_for(lambda: len(smtp.mailbox.notifications()) == 2, 60, what="both notifications")
            by_id = {m["Message-ID"]: links_in(m) for m in smtp.mailbox.notifications()}
            page = await browser.new_page()

            # 1. the inbox, then Edit draft → Send
            edit_link = by_id[f"<notify.{edited.approval_id}@milestones.test>"]["Edit draft"]
            await page.goto(edit_link)                                    # signs in, opens the editor
            await page.get_by_label("Subject").fill("Well done, Acme: 10,000 emails sent")
            await page.get_by_label("Body").fill("Dear Jane,\n\nTen thousand! 10,000 emails sent.\n\nSam")
            await page.get_by_role("button", name="Send edited email").click()
            await expect(page.locator("h1")).to_contain_text("Acme <b>Corp</b>")  # shown as text, not markup
            await until_outcome(kafka_bootstrap, topics, edited.approval_id, "sent")
            await page.goto(stack.url + "/")
            row = page.get_by_role("row", name="Acme <b>Corp</b>")
            await expect(row).to_contain_text("sent")
            await expect(page.get_by_role("row", name="Account 12")).to_contain_text("pending")

            # 2. the one-tap Send link of the request without an executive contact: the CSM must choose
            await page.goto(by_id[f"<notify.{tapped.approval_id}@milestones.test>"]["Send email"])
            await expect(page.get_by_text("no executive contact on record").first).to_be_visible()
            await expect(page.get_by_role("button", name="Confirm: send email")).to_have_count(0)
            await page.get_by_role("link", name="Edit draft").click()
            await page.get_by_label("Recipient name").fill("Ravi Patel")
            await page.get_by_label("Recipient email").fill("ravi@acme.example")
            await page.get_by_role("button", name="Send edited email").click()
            await until_outcome(kafka_bootstrap, topics, tapped.approval_id, "sent")
            await page.reload()
            await expect(page.locator("h1")).to_contain_text("sent")

            # 3. a second tap on a used link shows what was decided, and sends nothing
            response = await page.goto(by_id[f"<notify.{tapped.approval_id}@milestones.test>"]["Send email"])
            assert response.status == 409
            await expect(page.get_by_text("chose to send the email")).to_be_visible()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOTS / "approval-decided.png"))
    finally:
        smtp.stop()
    emails = {m["Message-ID"]: m for m in smtp.mailbox.customer_emails()}
    assert len(emails) == 2 and len(smtp.mailbox.customer_emails()) == 2
    first = emails[f"<{edited.approval_id}@milestones.test>"]
    assert first["Subject"] == "Well done, Acme: 10,000 emails sent"
    assert "Ten thousand!" in first.get_body(("plain",)).get_content()
    assert "<p>Dear Jane,</p>" in first.get_body(("html",)).get_content()
    second = emails[f"<{tapped.approval_id}@milestones.test>"]
    assert second["To"] == "Ravi Patel <ravi@acme.example>"  # chosen by the CSM: the request named nobody
