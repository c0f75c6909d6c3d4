"""Address headers on the wire, without a broker: each message is serialised as the sender hands it
to SMTP (policy SMTP) and parsed back as a receiver would (policy default). Why: display names are
CRM or CSM data, and Python's own header folder can turn a hostile name into addresses (or drop a
recipient), so the only proof that counts is what the bytes say."""
import email
from datetime import UTC, datetime
from email.policy import SMTP, default

import pytest

from milestone_stream.schemas.records import Contact
from milestone_stream.sinks.sender import mail
from milestone_stream.sinks.sender.mail import NAME_MAX, HeaderInjection, InvalidAddress

from support.stack import approval_request, decision

CSM = "sam.rivera@vendor.example"
LINKS = {"send": "http://ui/t/s", "edit": "http://ui/t/e", "dont_send": "http://ui/t/d"}

HOSTILE = {
    "angle address, non-ASCII": "Sämi <phish@attacker.example>",
    "address and comma": "Björn <evil@attacker.example>, ",
    "quoted name and address": '"a" <b@c>',
    "bare address": "x@evil.example",
    "encoded word of an address": "=?utf-8?q?x=3Cevil=40attacker.example=3E?=",
    "encoded word after non-ASCII": "Sämi =?utf-8?q?x=3Cevil=40attacker.example=3E?=",
    "encoded word, base64": "=?utf-8?b?PGV2aWxAYXR0YWNrZXIuZXhhbXBsZT4=?= Jane",
    "CR/LF header": "Jane\r\nBcc: everyone@attacker.example",
    "bare LF and NUL": "Jane\n\x00To: evil@attacker.example",
    "10,000 characters": "A" * 10_000,
    "10,000 non-ASCII with addresses": ("Ä <evil@attacker.example>, " * 400)[:10_000],
    "semicolon group syntax": "undisclosed:evil@attacker.example;",
    "comment and backslash": "Jane (x@evil.example) \\\" <evil@attacker.example>",
    "bidi override": "Jane \u202eelpmaxe.rekcatta@live",
}


def contact(name: str, email: str) -> Contact:
    """A contact as the contract carries it: its name is at most 256 characters there (csm_name is not
    bounded, so the 10,000-character names reach the builder whole through it)."""
    return Contact(name=name[:256], email=email, role="executive_sponsor")


def parsed(out: mail.Outgoing) -> email.message.EmailMessage:
    assert out.message.policy == SMTP
    return email.message_from_bytes(out.message.as_bytes(), policy=default)


def specs(header) -> list[str]:
    return [a.addr_spec for a in header.addresses]


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_csm_or_recipient_name_stays_a_display_name(name):
    req = approval_request(1)
    d = decision(req, csm_name=name, recipients=[contact(name, "jane@acme.example"),
                                                 contact(name, "ravi@acme.example")])
    out = mail.customer_email(d, name, "milestones.test", None)
    back = parsed(out)
    [sender] = back["From"].addresses
    assert sender.addr_spec == CSM
    assert specs(back["To"]) == ["jane@acme.example", "ravi@acme.example"]
    assert set(back.keys()) == {"Subject", "From", "To", "Message-ID", "Date", "MIME-Version", "Content-Type"}
    assert (out.sender, out.recipients) == (CSM, ["jane@acme.example", "ravi@acme.example"])
    for a in (*out.message["From"].addresses, *out.message["To"].addresses):  # the names as set, cleaned
        assert "\r" not in a.display_name and "\n" not in a.display_name and len(a.display_name) <= NAME_MAX


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_with_a_configured_sender_from_and_reply_to_are_one_address_each(name):
    d = decision(approval_request(2), recipients=[contact(name, "jane@acme.example")])
    out = mail.customer_email(d, name, "milestones.test", "milestones@vendor.example")
    back = parsed(out)
    assert specs(back["From"]) == ["milestones@vendor.example"] and specs(back["Reply-To"]) == [CSM]
    assert specs(back["To"]) == ["jane@acme.example"]
    assert (out.sender, out.recipients) == ("milestones@vendor.example", ["jane@acme.example"])


@pytest.mark.parametrize("name", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_csm_notification_goes_to_the_csm_only(name):
    req = approval_request(3, recipients=[contact(name, "jane@acme.example")], csm_name=name)
    out = mail.notification(req, LINKS, "milestones.test", None, datetime.now(UTC))
    back = parsed(out)
    assert specs(back["From"]) == [CSM] and specs(back["To"]) == [CSM]
    assert (out.sender, out.recipients) == (CSM, [CSM])


def test_ordinary_names_are_kept_exactly_and_hostile_ones_only_cleaned():
    names = ["Jane Doe", "Jürgen Müller", "Zoë Åberg", "Doe, Jane", "Dr. John O'Roe", "日本 太郎"]
    d = decision(approval_request(4), recipients=[Contact(name=n, email=f"r{i}@acme.example", role="x")
                                                  for i, n in enumerate(names)])
    back = parsed(mail.customer_email(d, "Samantha Rivera", "milestones.test", None))
    assert [a.display_name for a in back["To"].addresses] == names  # two non-ASCII names: no recipient dropped
    assert str(back["From"]) == "Samantha Rivera <sam.rivera@vendor.example>"
    assert mail.display_name("Jane\r\nBcc: x@y") == "Jane Bcc: x@y"
    assert mail.display_name("Sämi <phish@attacker.example>") == "Sämi <phish@attacker.example>"
    assert mail.display_name("=?utf-8?q?S=C3=A4mi?=") == "= ?utf-8?q?S=C3=A4mi?="  # never decoded by a receiver
    assert mail.display_name("A" * 10_000) == "A" * NAME_MAX
    assert mail.display_name("Jane\u202e\x00\x1b Doe") == "Jane Doe"


def test_the_same_recipient_twice_is_one_envelope_recipient():
    twice = [Contact(name="Jane", email="jane@acme.example", role="x"),
             Contact(name="J", email="Jane@acme.example", role="x")]
    out = mail.customer_email(decision(approval_request(5), recipients=twice), "Sam", "milestones.test", None)
    assert out.recipients == ["jane@acme.example"] and specs(parsed(out)["To"]) == ["jane@acme.example"]


BAD_ADDRESSES = ["jane@acme.example, evil@attacker.example", "Jane <jane@acme.example>", "<jane@acme.example>",
                 "jane@acme.example\r\nBcc: evil@attacker.example", "jane@acme.example\n", " jane@acme.example",
                 "", "jane", "jane@", "@acme.example", "a@b@acme.example", '"jane doe"@acme.example',
                 "jane(comment)@acme.example", "jäne@acme.example", "jane@acme..example", "jane@-acme.example",
                 "jane@[127.0.0.1]", "jane..doe@acme.example", "x" * 65 + "@acme.example", "jane;evil@acme.example"]


@pytest.mark.parametrize("bad", BAD_ADDRESSES)
def test_an_address_that_is_not_exactly_one_plain_addr_spec_is_refused(bad):
    with pytest.raises(InvalidAddress):
        mail.addr_spec(bad)
    d = decision(approval_request(6), recipients=[Contact(name="Jane", email=bad, role="x")])
    with pytest.raises(HeaderInjection):  # the sender records this as failed and dead-letters it
        mail.customer_email(d, "Sam", "milestones.test", None)
    with pytest.raises(HeaderInjection):
        mail.customer_email(decision(approval_request(6), csm_email=bad), "Sam", "milestones.test", None)
    with pytest.raises(HeaderInjection):
        mail.notification(approval_request(6, csm=bad), LINKS, "milestones.test", None, datetime.now(UTC))


def test_plain_addresses_are_accepted_unchanged():
    for good in ["jane@acme.example", "Jane.Doe+milestones@mail.acme-corp.example", "o'neil@acme.example",
                 "x@localhost"]:
        assert mail.addr_spec(good) == good


def test_encoded_words_in_a_subject_cannot_add_headers():
    """Python before 3.11.10 decodes an encoded word in a header and writes its CR/LF (CVE-2024-6923)."""
    req = approval_request(1)
    for subject in ["=?utf-8?q?Acme=0D=0ABcc:_x@evil.example?=",
                    "Well done =?utf-8?q?team=0D=0AReply-To:_a@evil.example=0D=0ACc:_c@evil.example?=",
                    "line\u2028separator\x0bvertical\x85next"]:
        out = mail.customer_email(decision(req, subject=subject), "Sam", "x.test", None)
        back = email.message_from_bytes(out.message.as_bytes(), policy=email.policy.default)
        assert sorted(back.keys()) == sorted(out.message.keys())
        assert not {"bcc", "cc", "reply-to"} & {k.lower() for k in back.keys()}
        assert "\n" not in str(back["Subject"]) and "=?" not in str(back["Subject"])
    hostile = approval_request(2, account_name="=?utf-8?q?Acme=0D=0ABcc:_x@evil.example?=")
    note = mail.notification(hostile, {"send": "s", "edit": "e", "dont_send": "d"}, "x.test", None, req.created_at)
    back = email.message_from_bytes(note.message.as_bytes(), policy=email.policy.default)
    assert "bcc" not in {k.lower() for k in back.keys()}
