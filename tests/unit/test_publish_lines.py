"""`milestones publish` without a broker: lines to records, ids, CSV columns, refusals with their
line numbers, the progress bar (pure logic)."""
import io
import json

import pytest

from milestone_stream.ops import publish as pub
from milestone_stream.ops.progress import Progress
from milestone_stream.ops.publish import Line, Refusal, derived_id, guess_format, read

EVENT = {"account_id": "acme", "metric": "emails_sent", "value": 5, "occurred_at": "2026-11-24T12:00:00Z",
         "source": "platform.mailer"}


def items(text: str | bytes, fmt: str = "jsonl", kind: str | None = None) -> list:
    data = text.encode() if isinstance(text, str) else text
    return list(read(io.BytesIO(data), fmt, kind)[1])


def test_a_derived_id_is_the_content_so_a_reordered_or_respaced_line_keeps_it():
    same = [json.dumps(EVENT), json.dumps(dict(reversed(list(EVENT.items())))), json.dumps(EVENT, indent=None,
                                                                                         separators=(",", ":"))]
    ids = {item.record.event_id for text in same for item in items(text)}
    assert len(ids) == 1 and next(iter(ids)).startswith("pub:")
    assert derived_id({**EVENT, "value": 6}) != derived_id(EVENT)
    # a given id is kept, an empty one is derived like a missing one
    assert items(json.dumps({**EVENT, "event_id": "mine"}))[0].record.event_id == "mine"
    assert items(json.dumps({**EVENT, "event_id": ""}))[0].record.event_id == next(iter(ids))


def test_json_lines_are_numbered_blank_lines_skipped_and_each_bad_line_refused():
    text = "\n".join([json.dumps(EVENT), "", json.dumps({**EVENT, "value": -1}), "not json", "[1, 2]",
                      json.dumps({"account_id": "acme", "occurred_at": "2026-11-24T12:00:00Z"}),
                      json.dumps({**EVENT, "metric": "logins"})]) + "\n"
    got = items(text)
    assert [type(i).__name__ for i in got] == ["Line", "Refusal", "Refusal", "Refusal", "Refusal", "Line"]
    refused = {r.line: r.reason for r in got if isinstance(r, Refusal)}
    assert refused == {3: "invalid", 4: "malformed_json", 5: "malformed_json", 6: "unknown_kind"}
    assert got[-1].number == 7


def test_kind_is_inferred_per_line_or_given():
    change = {"account_id": "acme", "occurred_at": "2026-11-24T12:00:00Z", "source": "crm",
              "changes": [{"field": "plan", "value": "gold"}]}
    got = items(json.dumps(EVENT) + "\n" + json.dumps(change) + "\n")
    assert [i.kind for i in got] == ["telemetry", "crm"] and got[1].record.change_id.startswith("pub:")
    forced = items(json.dumps(EVENT) + "\n", kind="crm")  # told it is CRM: refused by the CRM contract
    assert isinstance(forced[0], Refusal) and "metric: Extra inputs are not permitted" in forced[0].error


def test_csv_telemetry_columns_and_typed_values():
    text = ("event_id,account_id,metric,value,occurred_at,source,attributes.campaign\n"
            "e1,acme,emails_sent,12.5,2026-11-24T12:00:00Z,mailer,q4\n"
            ",acme,emails_sent,7,2026-11-24T12:01:00Z,mailer,\n"
            "e3,acme,emails_sent,NaN,2026-11-24T12:02:00Z,mailer,q4\n"
            "e4,acme,emails_sent,1e400,2026-11-24T12:02:00Z,mailer,q4\n")
    got = items(text, "csv")
    first, second = got[0].record, got[1].record
    assert first.event_id == "e1" and first.value == 12.5 and first.attributes == {"campaign": "q4"}
    assert second.event_id.startswith("pub:") and second.attributes == {}
    assert [(r.line, r.reason) for r in got[2:]] == [(4, "invalid"), (5, "invalid")]
    assert "value: Input should be a valid number" in got[2].error


def test_csv_crm_columns_cells_as_json_literals_else_text():
    text = ('account_id,occurred_at,source,name,zip,roi_percent,adoption.sso,plan,code,contact.name,contact.email,'
            'contact.role\n'
            'acme,2026-11-24T12:00:00Z,hubspot,"Acme, Inc.",02134,152,true,null,"""123""",Jane,jane@acme.example,'
            'executive_sponsor\n')
    change = items(text, "csv")[0].record
    assert {c.field: c.value for c in change.changes} == {
        "name": "Acme, Inc.", "zip": "02134", "roi_percent": 152, "adoption.sso": True, "plan": None, "code": "123"}
    assert change.contacts[0].name == "Jane" and change.change_id.startswith("pub:")


def test_csv_rows_are_numbered_where_they_start_and_broken_rows_refused():
    text = ('account_id,metric,value,occurred_at,source,attributes.note\n'
            'acme,emails_sent,1,2026-11-24T12:00:00Z,mailer,"two\nlines"\n'
            'acme,emails_sent,2,2026-11-24T12:00:00Z\n'
            '\n'
            'acme,emails_sent,3,2026-11-24T12:00:00Z,mailer,ok\n')
    got = items(text, "csv")
    assert isinstance(got[0], Line) and got[0].number == 2 and got[0].record.attributes == {"note": "two\nlines"}
    assert isinstance(got[1], Refusal) and got[1].line == 4 and got[1].reason == "malformed_csv"
    assert isinstance(got[2], Line) and got[2].number == 6


def test_a_line_over_the_bound_is_refused_without_being_held_and_the_next_one_read(monkeypatch):
    monkeypatch.setattr(pub, "LINE_MAX", 300)
    long_line = json.dumps({**EVENT, "source": "x" * 2000})
    got = items(long_line + "\n" + json.dumps(EVENT) + "\n")
    assert isinstance(got[0], Refusal) and (got[0].line, got[0].reason) == (1, "too_large")
    assert isinstance(got[1], Line) and got[1].number == 2
    header = "account_id,metric,value,occurred_at,source\n"
    got = items(header + "acme,m," + "9" * 2000 + ",x,y\n" + "acme,emails_sent,1,2026-11-24T12:00:00Z,s\n", "csv")
    assert [(type(i).__name__, getattr(i, "line", None) or i.number) for i in got] == [("Refusal", 2), ("Line", 3)]


def test_text_that_is_not_utf8_is_refused_by_line():
    got = items(b'{"account_id": "ac\xffme"}\n' + json.dumps(EVENT).encode() + b"\n")
    assert isinstance(got[0], Refusal) and got[0].reason == "malformed_json" and isinstance(got[1], Line)
    got = items(b"account_id,metric,value,occurred_at,source\nac\xffme,m,1,2026-11-24T12:00:00Z,s\n", "csv")
    assert isinstance(got[0], Refusal) and got[0].reason == "malformed" and "UTF-8" in got[0].error


@pytest.mark.parametrize(("name", "head", "fmt"), [("a.csv", b"{", "csv"), ("a.jsonl", b"x", "jsonl"),
                                                   ("a.ndjson", b"", "jsonl"), ("-", b'  {"a"', "jsonl"),
                                                   ("-", b"account_id,", "csv"), ("data.txt", b"{", "jsonl")])
def test_the_format_comes_from_the_extension_else_the_first_byte(name, head, fmt):
    assert guess_format(name, head) == fmt


def test_the_summary_lists_refused_lines_up_to_a_bound():
    summary = pub.Summary()
    summary.sent["telemetry"] = 3
    summary.refused = [Refusal(i, "invalid", "x") for i in range(1, 151)]
    lines = summary.lines()
    assert lines[0] == "sent: 3 telemetry events; refused: 150 line(s)"
    assert lines[1] == "  line 1: invalid: x" and lines[-1] == "  … and 50 more refused line(s)"
    assert len(lines) == 1 + pub.SHOWN + 1


def test_the_progress_bar_draws_on_a_terminal_only():
    out = io.StringIO()
    bar = Progress(out, total=1000, enabled=True)
    bar.update(500, 50, force=True)
    assert out.getvalue().startswith("\r[############            ]  50%  50 lines") and "ETA 0:00:0" in out.getvalue()
    bar.close()
    assert out.getvalue().endswith("\r")
    quiet = io.StringIO()  # a StringIO is not a terminal
    bar = Progress(quiet, total=None)
    bar.update(500, 50, force=True)
    bar.close()
    assert quiet.getvalue() == ""


def test_retime_moves_every_time_by_one_shift_and_keeps_the_ids():
    from datetime import UTC, datetime, timedelta

    text = "\n".join(json.dumps({**EVENT, "occurred_at": t}) for t in
                     ("2026-01-01T10:00:00Z", "2026-01-01T12:00:00Z", "bad time")) + "\n"
    stream = io.BytesIO(text.encode())
    now = datetime(2027, 6, 1, 8, 30, 15, 600_000, tzinfo=UTC)
    shift = pub.retime_shift(stream, "jsonl", None, now)
    assert stream.tell() == 0  # rewound for the pass that sends
    assert shift == timedelta(seconds=round((now - timedelta(minutes=1)
                                             - datetime(2026, 1, 1, 12, tzinfo=UTC)).total_seconds()))
    plain = items(text)
    moved = list(pub._shifted(iter(plain), shift))
    shifts = [m.record.occurred_at - p.record.occurred_at for m, p in zip(moved[:2], plain[:2], strict=True)]
    assert shifts == [shift] * 2
    assert [m.record.event_id for m in moved[:2]] == [p.record.event_id for p in plain[:2]]
    assert moved[1].record.occurred_at == datetime(2027, 6, 1, 8, 29, 16, tzinfo=UTC)
    assert isinstance(moved[2], Refusal)
    assert pub.retime_shift(io.BytesIO(b"not json\n"), "jsonl", None, now) == timedelta(0)
