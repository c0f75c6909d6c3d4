"""`milestones publish`: telemetry events or CRM changes from a JSON-lines or CSV file (or stdin) to
the product topics.

Why: a platform team's first integration is often a file — an export, a backfill after an
incident, a spreadsheet of account changes. Each line is validated exactly as the worker validates
JSON input (`schemas/json_input.py`, the same contract and bounds), refused lines are reported with
their number and reason, and the rest is sent as Avro, keyed by account_id. Ids make re-publishing
safe: an `event_id` / `change_id` in the line is kept; a line without one gets an id derived from its
content (`pub:` + a 128-bit hash of the canonical document), so publishing the same file twice counts
nothing twice — the detector's exact dedupe sees the same ids (`agents/detector/usage.py`).

CSV columns (header row required; an empty cell leaves the field out):
- telemetry: `event_id` (optional), `account_id`, `metric`, `value`, `occurred_at`, `source`, and
  `attributes.NAME` for each attribute;
- crm: `change_id` (optional), `account_id`, `occurred_at`, `source`, `source_record` (optional),
  `contact.name` / `contact.email` / `contact.role` (one key contact, optional), and every other column
  is a profile field changed to the cell's value: a JSON number is a number, `true`/`false` a
  boolean, `null` clears the field, anything else is text (a JSON string such as `"123"` forces text).
"""
from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Literal

from milestone_stream.kafka_io import producer
from milestone_stream.ops.progress import Progress
from milestone_stream.schemas import json_input
from milestone_stream.schemas.codec import CodecError
from milestone_stream.schemas.records import CrmChange, TelemetryEvent
from milestone_stream.topics import TopicNames

Kind = Literal["telemetry", "crm"]
Format = Literal["jsonl", "csv"]
RECORDS: dict[Kind, type[TelemetryEvent] | type[CrmChange]] = {"telemetry": TelemetryEvent, "crm": CrmChange}
ID_FIELD: dict[Kind, str] = {"telemetry": "event_id", "crm": "change_id"}
LINE_MAX = json_input.MAX_DOCUMENT_BYTES  # bytes of one line (a longer one is refused, not read whole)
IN_FLIGHT = 1_000  # sends awaited in groups of this many (bounded memory, still pipelined)
SHOWN = 100        # refused lines listed one by one (all are counted)


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str
    error: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.error}"


@dataclass
class Summary:
    sent: Counter[str] = field(default_factory=Counter)
    refused: list[Refusal] = field(default_factory=list)
    dry_run: bool = False
    acked: int = 0        # records the broker acknowledged so far
    acked_through: int = 0  # every line up to this one was acknowledged or refused (what an interrupt can promise)

    def lines(self) -> list[str]:
        verb = "valid (dry run, nothing sent)" if self.dry_run else "sent"
        counts = ", ".join(f"{n:,} {'telemetry events' if k == 'telemetry' else 'CRM changes'}"
                           for k, n in sorted(self.sent.items())) or "nothing"
        out = [f"{verb}: {counts}; refused: {len(self.refused):,} line(s)"]
        out += [f"  {r}" for r in self.refused[:SHOWN]]
        if len(self.refused) > SHOWN:
            out.append(f"  … and {len(self.refused) - SHOWN:,} more refused line(s)")
        return out


@dataclass(frozen=True)
class Line:
    """A valid record and where it came from."""

    number: int
    kind: Kind
    record: TelemetryEvent | CrmChange


class Reader:
    """Numbered physical lines of a binary stream, each read at most `LINE_MAX` bytes at a time: a
    longer line is skipped (recorded as refused) without holding it in memory. `consumed` is the
    bytes read so far (for the progress bar)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.consumed = 0
        self.number = 0
        self.too_long: list[int] = []

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        while True:
            raw = self.stream.readline(LINE_MAX + 2)
            if not raw:
                return
            self.consumed += len(raw)
            self.number += 1
            if len(raw) > LINE_MAX and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of it
                    raw = self.stream.readline(LINE_MAX)
                    self.consumed += len(raw)
                self.too_long.append(self.number)
                yield self.number, b""
                continue
            yield self.number, raw


def derived_id(document: dict[str, Any]) -> str:
    """The id of a line that has none: its canonical content (keys sorted, no spaces) hashed, so the
    same event published again — from the same file or another one — gets the same id."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "pub:" + hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def infer_kind(fields: Iterable[str]) -> Kind | None:
    names = set(fields)
    if "metric" in names:
        return "telemetry"
    if names & {"change_id", "changes", "contacts", "source_record"}:
        return "crm"
    return None


def validate(number: int, document: Any, kind: Kind | None) -> Line | Refusal:
    """One document as the worker would read it, with its id kept or derived."""
    if not isinstance(document, dict):
        return Refusal(number, "malformed_json", f"a line must be a JSON object, not {type(document).__name__}")
    kind = kind or infer_kind(document)
    if kind is None:
        return Refusal(number, "unknown_kind", "cannot tell a telemetry event (metric) from a CRM change "
                                               "(change_id, changes): give --kind")
    id_field = ID_FIELD[kind]
    if document.get(id_field) in (None, ""):
        document = {k: v for k, v in document.items() if k != id_field}
        document[id_field] = derived_id(document)
    try:
        data = json.dumps(document, ensure_ascii=False).encode("utf-8")
        record = json_input.decode(RECORDS[kind], data)
    except UnicodeEncodeError:
        return Refusal(number, "malformed", "text that is not UTF-8")
    except CodecError as exc:
        return Refusal(number, exc.reason, str(exc))
    return Line(number, kind, record)


def jsonl(reader: Reader, kind: Kind | None) -> Iterator[Line | Refusal]:
    for number, raw in reader:
        if not raw:
            yield Refusal(number, "too_large", f"the line is over {LINE_MAX:,} bytes")
            continue
        if not raw.strip():
            continue  # blank lines are allowed
        try:
            document = json_input.parse(raw, "line")
        except CodecError as exc:
            yield Refusal(number, exc.reason, str(exc))
            continue
        yield validate(number, document, kind)


def cell(text: str) -> Any:
    """A CSV cell as a JSON literal when it is one (number, true, false, null, "quoted text"), else text."""
    try:
        value = json_input.parse(text.strip(), "cell")
    except CodecError:
        return text
    return value if value is None or isinstance(value, bool | int | float | str) else text


def csv_rows(reader: Reader, kind: Kind | None) -> Iterator[Line | Refusal]:
    text = (raw.decode("utf-8", "surrogateescape") for _, raw in reader)  # bad bytes are refused per row
    rows = csv.reader(_without_bom(text), strict=True)
    try:
        header = [h.strip() for h in next(rows)]
    except StopIteration:
        return
    except csv.Error as exc:
        yield Refusal(1, "malformed_csv", f"unreadable header: {exc}")
        return
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:  # a row as a dict would keep the last cell and drop the others without a word
        yield Refusal(1, "malformed_csv", f"column {_show(twice[0])} appears more than once in the header "
                                          "(which cell counts would be a guess): nothing read")
        return
    kind = kind or ("telemetry" if "metric" in header else "crm")
    refused_long = 0
    while True:
        start = reader.number + 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            span = reader.number - start  # a quote left open takes every line after it into one cell
            yield Refusal(start, "malformed_csv", str(exc)[:300] + (
                f" (the row starting here runs on to line {reader.number:,}: those {span:,} lines were not read "
                "as rows; a quote left open?)" if span > 0 else ""))
            continue
        while refused_long < len(reader.too_long):
            yield Refusal(reader.too_long[refused_long], "too_large", f"the line is over {LINE_MAX:,} bytes")
            refused_long += 1
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            yield Refusal(start, "malformed_csv", f"{len(row)} cells for {len(header)} columns")
            continue
        yield validate(start, row_document(dict(zip(header, row, strict=True)), kind), kind)


def _without_bom(lines: Iterator[str]) -> Iterator[str]:
    """The text with a leading byte-order mark dropped (spreadsheets save "CSV UTF-8" with one), so the
    first column is `change_id`, not an unknown `\ufeffchange_id`."""
    first = next(lines, None)
    if first is None:
        return
    yield first.removeprefix("\ufeff")
    yield from lines


def _show(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:79] + "…")


def row_document(row: dict[str, str], kind: Kind) -> dict[str, Any]:
    """A CSV row as the record's JSON document (the columns of the module's docstring)."""
    doc: dict[str, Any] = {}
    if kind == "telemetry":
        for column, value in row.items():
            if value == "":
                continue
            if column.startswith("attributes."):
                doc.setdefault("attributes", {})[column.removeprefix("attributes.")] = value
            else:
                doc[column] = cell(value) if column == "value" else value
        return doc
    contact: dict[str, str] = {}
    changes = []
    for column, value in row.items():
        if value == "":
            continue
        if column in ("change_id", "account_id", "occurred_at", "source", "source_record"):
            doc[column] = value
        elif column.startswith("contact."):
            contact[column.removeprefix("contact.")] = value
        else:
            changes.append({"field": column, "value": cell(value)})
    doc["changes"] = changes
    if contact:
        doc["contacts"] = [contact]
    return doc


def read(stream: BinaryIO, fmt: Format, kind: Kind | None) -> tuple[Reader, Iterator[Line | Refusal]]:
    reader = Reader(stream)
    return reader, (jsonl(reader, kind) if fmt == "jsonl" else csv_rows(reader, kind))


def retime_shift(stream: BinaryIO, fmt: Format, kind: Kind | None, now: datetime) -> timedelta:
    """`--retime`: the one shift (whole seconds) that makes the latest valid line's time a minute before
    `now`, read in a first pass over the file (then rewound). Why: a sample or demo file keeps its
    shape whenever it is published, instead of ageing out of the dedupe horizon; the ids are those
    of the lines as written, so publishing it again later still counts nothing twice."""
    _, items = read(stream, fmt, kind)
    latest = max((i.record.occurred_at for i in items if isinstance(i, Line)), default=None)
    stream.seek(0)
    if latest is None:
        return timedelta(0)
    return timedelta(seconds=round((now - timedelta(minutes=1) - latest).total_seconds()))


def _shifted(items: Iterator[Line | Refusal], shift: timedelta) -> Iterator[Line | Refusal]:
    for item in items:
        if isinstance(item, Line) and shift:
            try:
                moved = item.record.occurred_at + shift
            except OverflowError:  # a line far from the latest one: the shift leaves years 1-9999
                yield Refusal(item.number, "invalid", f"occurred_at: --retime moves "
                                                      f"{item.record.occurred_at.isoformat()} off the calendar")
                continue
            item = Line(item.number, item.kind, item.record.model_copy(update={"occurred_at": moved}))
        yield item


async def publish(stream: BinaryIO, fmt: Format, kind: Kind | None, *, bootstrap: str | None, names: TopicNames,
                  progress: Progress, shift: timedelta = timedelta(0), summary: Summary | None = None) -> Summary:
    """Validate every line; send the valid ones unless `bootstrap` is None (a dry run), their times
    moved by `shift` (`--retime`). `summary` (filled as it goes) tells an interrupted caller how far it got."""
    summary = summary or Summary()
    summary.dry_run = bootstrap is None
    reader, lines = read(stream, fmt, kind)
    items = _shifted(lines, shift)
    topics: dict[Kind, str] = {"telemetry": names.telemetry, "crm": names.crm}
    if bootstrap is None:
        for item in items:
            _count(summary, item)
            progress.update(reader.consumed, reader.number)
    else:
        async with producer(bootstrap) as prod:
            pending = []
            for item in items:
                if isinstance(item, Line):
                    pending.append(await prod.send(topics[item.kind], key=item.record.account_id.encode(),
                                                   value=item.record.to_avro(),
                                                   timestamp_ms=int(item.record.occurred_at.timestamp() * 1000)))
                    if len(pending) >= IN_FLIGHT:
                        await _acked(summary, pending, reader.number)
                _count(summary, item)
                progress.update(reader.consumed, reader.number)
            await _acked(summary, pending, reader.number)
    progress.update(reader.consumed, reader.number, force=True)
    progress.close()
    return summary


async def _acked(summary: Summary, pending: list, through: int) -> None:
    """Await the in-flight sends; then every line up to `through` is acknowledged (or was refused)."""
    for ack in pending:
        await ack
        summary.acked += 1
    pending.clear()
    summary.acked_through = through


def _count(summary: Summary, item: Line | Refusal) -> None:
    if isinstance(item, Line):
        summary.sent[item.kind] += 1
    else:
        summary.refused.append(item)


def guess_format(name: str, head: bytes) -> Format:
    """By the file's extension, else (stdin) by its first byte: `{` is JSON lines, anything else CSV."""
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if json_input.is_json(head.removeprefix(b"\xef\xbb\xbf")) else "csv"

