"""Reading landed files: from bytes as delivered to records, or to a reason they are bad.

This is pure Python (it runs inside Spark tasks, one landed file per call, given as its lines or
whole when gzipped; see `ingestion.parse_files`) so that every byte rule of the landing contract
is applied exactly and tested without Spark:

- `.gz` is decompressed; a file that is not valid gzip becomes one bad record for the whole file,
  whose `raw` is `file_summary` (size, SHA-256 and first bytes: enough to find and check it).
- A UTF-8 byte order mark is dropped; bytes that are not UTF-8 make that record bad. A file that
  starts with a UTF-16 or UTF-32 byte order mark (or whose first line is mostly NUL bytes, as
  UTF-16 text is) becomes one bad record saying the encoding is wrong, its `raw` the start of
  the file decoded as what it is.
- JSON lines: each non-blank line must be a JSON object, with no key twice in any object (which
  value counts would depend on the reader). Blank lines carry no record and are not counted (a
  trailing newline is not a record).
- CSV: RFC 4180 (quoted fields may hold commas, quotes and line breaks), one header line whose
  names may come in any order; extra columns are kept. A missing required column makes every
  row of that file bad; a row with a different number of fields than the header is bad.

Each record gets a `record_id`: a SHA-256 of its canonical content, so the same record delivered
again (a re-delivered file, a repeated event) has the same id wherever it lands. Snapshot sources
add the delivery day, because an unchanged row in tomorrow's snapshot is tomorrow's fact.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import itertools
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from lakehouse.core.specs import LandingSpec

INGEST_DATE_RE = re.compile(
    r"(?:^|/)(?P<source>[^/]+)/ingest_date=(?P<day>\d{4}-\d{2}-\d{2})/(?P<name>[^/]+)$"
)


@dataclass(frozen=True)
class LandedRecord:
    """One record of a landed file: good (`reason` is None) or bad input with a readable reason.

    `line` is the 1-based physical line where the record starts (a CSV header is line 1; 0 for a
    reason that concerns the whole file)."""

    line: int
    raw: str
    record_id: str
    fields: dict[str, str | None] | None = None
    reason: str | None = None


@dataclass(frozen=True)
class LandedPath:
    source: str
    ingest_date: str
    relative: str


MISPLACED = "file is not under <source>/ingest_date=YYYY-MM-DD/ as the landing contract says"


def _is_date(day: str) -> bool:
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def parse_landed_path(path: str) -> LandedPath | None:
    """`.../<source>/ingest_date=YYYY-MM-DD/<file>` → its parts; None if not laid out so (a
    folder such as `ingest_date=2024-13-45`, which is no calendar date, included)."""
    match = INGEST_DATE_RE.search(path)
    if match is None or not _is_date(match["day"]):
        return None
    source, day, name = match["source"], match["day"], match["name"]
    return LandedPath(source, day, f"{source}/ingest_date={day}/{name}")


def misplaced_reason(path: str) -> str:
    """Why `path` (for which `parse_landed_path` gave None) is not a landed file."""
    match = INGEST_DATE_RE.search(path)
    if match is not None:
        return f"folder ingest_date={match['day']} is not a calendar date YYYY-MM-DD"
    return MISPLACED


# How many first bytes of a bad file `file_summary` shows.
SUMMARY_HEAD_BYTES = 64


def file_summary(name: str, size: int, sha256: str, head: bytes) -> str:
    """The `raw` of a record that stands for a whole bad file: enough to find the file again and
    check it is the same bytes (`sha256sum`), and to see what it starts with."""
    return (
        f"<file {name}: {size} bytes, sha256 {sha256}, "
        f"first {min(size, SUMMARY_HEAD_BYTES)} bytes (hex) {head[:SUMMARY_HEAD_BYTES].hex()}>"
    )


def record_id(source: str, identity: str) -> str:
    return hashlib.sha256(f"{source}\x1f{identity}".encode("utf-8", "surrogateescape")).hexdigest()


def _bad(source: str, line: int, raw: str, reason: str) -> LandedRecord:
    return LandedRecord(line, raw, record_id(source, "bad\x1f" + raw), None, reason)


def _has_bad_bytes(text: str) -> bool:
    """Whether `text` holds bytes that were not UTF-8 (surrogates from `surrogateescape`, the only
    surrogates decoding can produce). Strict encoding finds them in C; a loop over the characters
    in Python cost a measurable share of bronze on every record."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _printable(text: str) -> str:
    """Text for storage: undecodable bytes shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decode_file(name: str, content: bytes) -> str:
    """Decompress (by `.gz` suffix) and decode as UTF-8, keeping undecodable bytes as surrogates.

    Raises ValueError with a readable reason when a `.gz` file is not valid gzip."""
    text = _decompress(name, content).decode("utf-8", "surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def _decompress(name: str, content: bytes) -> bytes:
    """The file's bytes, decompressed by `.gz` suffix; ValueError with a readable reason when a
    `.gz` file is not valid gzip."""
    if not name.endswith(".gz"):
        return content
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"not a valid gzip file: {exc}") from None


def _check_gzip(content: bytes) -> None:
    """Decompress `content` through to its end without keeping what comes out; ValueError with a
    readable reason when it is not valid gzip (checked before any record is taken from it)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(content)) as stream:
            while stream.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"not a valid gzip file: {exc}") from None


def _text_lines(lines: Iterable[bytes], universal: bool) -> Iterator[str]:
    """Decoded lines from the physical byte lines of a file, split on \n with the \n kept
    (as iterating a binary file gives them). `universal` (CSV) also splits on \r\n and a lone
    \r, keeping the endings; otherwise (JSON lines) only \n counts, because JSON strings may
    hold U+2028 and friends, which `str.splitlines()` would treat as line breaks. Undecodable
    bytes become surrogates, as in `decode_file`; a leading byte order mark is dropped. One line
    at a time: a landed file is never held whole."""
    first = True
    for raw in lines:
        text = raw.decode("utf-8", "surrogateescape")
        if first:
            first = False
            text = text[1:] if text.startswith("\ufeff") else text
        if universal and "\r" in text:
            yield from io.StringIO(text, newline="")
        else:
            yield text


def parse_landed_file(
    source: str, spec: LandingSpec, name: str, ingest_date: str, content: bytes
) -> Iterator[LandedRecord]:
    """Every record of one landed file given whole (`.gz` decompressed as a stream, after a
    check that it is valid gzip), in file order."""
    if name.endswith(".gz"):
        try:
            _check_gzip(content)
        except ValueError as exc:
            digest = hashlib.sha256(content).hexdigest()
            yield _bad(source, 0, file_summary(name, len(content), digest, content), str(exc))
            return
        with gzip.GzipFile(fileobj=io.BytesIO(content)) as stream:
            yield from parse_landed_lines(source, spec, ingest_date, stream)
    else:
        yield from parse_landed_lines(source, spec, ingest_date, io.BytesIO(content))


def parse_landed_lines(
    source: str, spec: LandingSpec, ingest_date: str, lines: Iterable[bytes]
) -> Iterator[LandedRecord]:
    """Every record of one landed file from its physical lines (bytes, in file order, each
    ending with its \n but perhaps the last), consumed one at a time."""
    stream = iter(lines)
    first = next(stream, None)
    if first is None:
        return
    encoding = _wide_encoding(first)
    if encoding is not None:
        yield _wrongly_encoded(source, encoding, first, stream)
        return
    lines = itertools.chain([first], stream)
    if spec.format == "csv":
        yield from _parse_csv(source, spec, ingest_date, _text_lines(lines, universal=True))
    else:
        yield from _parse_json_lines(source, _text_lines(lines, universal=False))


# Byte order marks of encodings other than UTF-8, longest first (UTF-32 LE starts like UTF-16 LE),
# with the codec that reads what follows them.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32LE"),
    (codecs.BOM_UTF32_BE, "UTF-32BE"),
    (codecs.BOM_UTF16_LE, "UTF-16LE"),
    (codecs.BOM_UTF16_BE, "UTF-16BE"),
)

# How much of a wrongly encoded file its bad record shows, decoded.
WRONG_ENCODING_SHOWN_BYTES = 4096


def _wide_encoding(first_line: bytes) -> str | None:
    """The encoding ("UTF-16LE", ...) when the file's first line says the file is not UTF-8: a
    byte order mark of UTF-16 or UTF-32, or NUL bytes in at least a third of a line of 8 or more
    bytes, as UTF-16 text without a mark has and UTF-8 text never has."""
    for bom, name in _WIDE_BOMS:
        if first_line.startswith(bom):
            return name
    line = first_line[:-1] if first_line.endswith(b"\n") else first_line
    if len(line) >= 8 and line.count(0) * 3 >= len(line):
        return "UTF-16BE" if line[0] == 0 else "UTF-16LE"
    return None


def _wrongly_encoded(
    source: str, encoding: str, first: bytes, rest: Iterator[bytes]
) -> LandedRecord:
    """The one bad record of a file in a wide encoding: its start decoded as that encoding (the
    rest of the file read through, not kept); its id from the digest of all of it, so the same
    file delivered again is the same record and two files that only start alike are two."""
    head = bytearray()
    digest = hashlib.sha256()
    pending = b""  # a line's \n, kept back until another line follows
    for line in itertools.chain([first], rest):
        body = line[:-1] if line.endswith(b"\n") else line
        for piece in (pending, body):
            digest.update(piece)
            if len(head) < WRONG_ENCODING_SHOWN_BYTES:
                head += piece
        pending = b"\n" if line.endswith(b"\n") else b""
    # Without the last \n: a file read in lines (bronze's plain files, each line given back its
    # \n) and the file read whole give the same record. Shown in whole characters, without the
    # line break it ends with.
    unit = 4 if encoding.startswith("UTF-32") else 2
    shown = bytes(head[:WRONG_ENCODING_SHOWN_BYTES])
    shown = shown[: len(shown) - len(shown) % unit]
    text = shown.decode(encoding, "replace").lstrip("\ufeff").rstrip("\r\n")
    reason = f"file is encoded as {encoding}, not UTF-8 as the landing contract says"
    identity = record_id(source, f"bad\x1f{encoding}\x1f{digest.hexdigest()}")
    return LandedRecord(0, text.replace("\x00", ""), identity, None, reason)


def _parse_json_lines(source: str, lines: Iterator[str]) -> Iterator[LandedRecord]:
    for number, line in enumerate(lines, start=1):
        raw = line.strip()
        if raw:
            yield _json_record(source, number, raw)


def _json_record(source: str, number: int, raw: str) -> LandedRecord:
    """One JSON object's record: its identity is its canonical content (keys sorted, no spaces),
    so the same event delivered by a file and by a stream is one record."""
    if _has_bad_bytes(raw):
        return _bad(source, number, _printable(raw), "not valid UTF-8")
    try:
        value = json.loads(raw, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        return _bad(source, number, raw, f"not valid JSON: {exc.msg} at {where}")
    except _DuplicateKey as exc:
        return _bad(source, number, raw, f"key {exc.key!r} appears twice in one JSON object")
    if not isinstance(value, dict):
        return _bad(source, number, raw, f"not a JSON object but a {type(value).__name__}")
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return LandedRecord(number, raw, record_id(source, canonical))


def parse_message(source: str, payload: bytes | None) -> LandedRecord:
    """One streamed message (a Kafka record's or a Kinesis record's data) as one record, read
    exactly as a JSON-lines file's line is: the same checks, reasons and identity. A message is
    one JSON object (line breaks between its tokens allowed); an empty one is bad input."""
    text = (payload or b"").decode("utf-8", "surrogateescape")
    text = (text[1:] if text.startswith("\ufeff") else text).strip()  # a BOM, as a file's
    if not text:
        return _bad(source, 1, "", "empty message: one message is one JSON object")
    return _json_record(source, 1, text)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object as a dict, refusing a key given twice: which of the values a reader keeps
    differs (Python keeps the last, Spark's parser the first), so the record's identity and its
    values could disagree."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


class _Taken:
    """Iterates `lines` and keeps what was taken since the last `take()`: the physical lines
    of the CSV record the reader just returned (or failed on)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._taken: list[str] = []

    def __iter__(self) -> _Taken:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def take(self) -> list[str]:
        taken, self._taken = self._taken, []
        return taken


def _parse_csv(
    source: str, spec: LandingSpec, ingest_date: str, lines: Iterator[str]
) -> Iterator[LandedRecord]:
    taken = _Taken(lines)
    reader = csv.reader(taken, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        first_line = taken.take()[0]
        yield _bad(
            source, 1, _printable(first_line.rstrip("\r\n")), f"unreadable CSV header: {exc}"
        )
        return
    taken.take()
    file_reason = None
    missing = [c for c in spec.required_columns if c not in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if missing:
        file_reason = "missing required column(s) in the header: " + ", ".join(missing)
    elif duplicated:
        file_reason = "duplicated column(s) in the header: " + ", ".join(duplicated)
    start = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raw = "".join(taken.take()).rstrip("\r\n")
            yield _bad(source, start + 1, _printable(raw), f"malformed CSV: {exc}")
            start = reader.line_num
            continue
        first, start = start + 1, reader.line_num
        raw = "".join(taken.take()).rstrip("\r\n")
        if not raw.strip():
            continue
        if _has_bad_bytes(raw):
            yield _bad(source, first, _printable(raw), "not valid UTF-8")
        elif file_reason is not None:
            yield _bad(source, first, raw, file_reason)
        elif len(row) != len(header):
            yield _bad(
                source,
                first,
                raw,
                f"expected {len(header)} fields as in the header, found {len(row)}",
            )
        else:
            fields: dict[str, str | None] = dict(zip(header, row, strict=True))
            # Identity is the contract's columns: a record repeated after a schema-drift column
            # appeared is still the same record.
            named = {k: v for k, v in fields.items() if k in spec.required_columns}
            canonical = json.dumps(named, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            identity = f"{ingest_date}\x1f{canonical}" if spec.snapshot else canonical
            yield LandedRecord(first, raw, record_id(source, identity), fields)
