"""`milestones publish` CSV headers as spreadsheets write them: a byte-order mark before the first
column, and a column named twice (pure logic, no broker)."""
import io

from milestone_stream.ops.publish import Line, Refusal, guess_format, read

CRM = "change_id,account_id,occurred_at,source,name\nc1,acme,2026-11-25T08:00:00Z,salesforce,Acme\n"
TELEMETRY = ("event_id,account_id,metric,value,occurred_at,source\n"
             "e1,acme,emails_sent,5,2026-11-25T08:00:00Z,platform.mailer\n")


def items(data: bytes) -> list:
    return list(read(io.BytesIO(data), "csv", None)[1])


def test_a_byte_order_mark_does_not_rename_the_first_column():
    [crm] = items(b"\xef\xbb\xbf" + CRM.encode())
    assert isinstance(crm, Line)
    assert crm.record.change_id == "c1"  # not a derived id, with a profile field "\ufeffchange_id" = "c1"
    assert [(c.field, c.value) for c in crm.record.changes] == [("name", "Acme")]
    [event] = items(b"\xef\xbb\xbf" + TELEMETRY.encode())
    assert isinstance(event, Line) and event.record.event_id == "e1"


def test_json_lines_on_stdin_with_a_byte_order_mark_are_json_lines():
    assert guess_format("-", b'\xef\xbb\xbf{"event_id": "e1"}') == "jsonl"


def test_a_column_named_twice_refuses_the_file_instead_of_keeping_one_cell():
    out = items(b"change_id,account_id,occurred_at,source,name,name\n"
                b"c1,acme,2026-11-25T08:00:00Z,salesforce,Acme,Initech\n")
    assert len(out) == 1 and isinstance(out[0], Refusal)
    assert out[0].line == 1 and out[0].reason == "malformed_csv" and "'name'" in out[0].error


def test_a_quote_left_open_is_refused_where_it_starts_naming_the_lines_it_swallowed():
    rows = "".join(f"c{i},acme,2026-11-25T08:00:00Z,salesforce,ok\n" for i in range(3, 7))
    out = items((CRM.split("\n")[0] + "\n" + 'c2,acme,2026-11-25T08:00:00Z,salesforce,"oops\n' + rows).encode())
    assert len(out) == 1 and isinstance(out[0], Refusal)
    assert out[0].line == 2  # where the stray quote is, not the file's last line
    assert "line 6" in out[0].error and "4 lines were not read" in out[0].error
