"""Fuzzing the landing parser (lakehouse/bronze/landing.py) with hypothesis: for any bytes, in
every source's format, it returns records, each good or bad with a reason, and never raises; a
JSON lines file has one record per non-blank line; a file gzipped, or read in lines as bronze
reads a plain file, gives the same records as the file read whole.

`make test` runs a small share (the `default` profile); `make fuzz` runs the `fuzz` profile
(many more examples per property, no deadline) and prints hypothesis's statistics. A failing
example hypothesis finds is kept in its database and becomes a regression test below
(`REGRESSIONS`)."""

from __future__ import annotations

import codecs
import gzip
import io
import os
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lakehouse.bronze.landing import LandedRecord, parse_landed_file, parse_landed_lines
from lakehouse.core.specs import landing_sources, load_tables

SOURCES = landing_sources(load_tables())
DAY = "2024-01-01"

settings.register_profile("default", max_examples=150, deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# One source of each format: CDC JSON lines, plain JSON lines, CSV, CSV delivered as snapshots.
FORMATS = ("orders", "clickstream", "payments", "products")


def _header(source: str) -> bytes:
    return ",".join(SOURCES[source].required_columns).encode()


# Pieces that make the parser's branches likely: JSON and CSV syntax, line endings, byte order
# marks, bytes that are not UTF-8, NUL, a key used twice, a CSV header.
TOKENS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b'\\"',
    b":",
    b",",
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xe2\x80\xa8",
    codecs.BOM_UTF8,
    codecs.BOM_UTF16_LE,
    b'"lsn"',
    b'"op":"c"',
    b"12",
    b"-1",
    b"true",
    b"null",
    b"x",
    b'{"event_id":"e1"}',
    b'{"a":1,"a":2}',
    *(_header(s) for s in FORMATS),
]
contents = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join),
)


def _parse(source: str, content: bytes, name: str = "part-0001") -> list[LandedRecord]:
    return list(parse_landed_file(source, SOURCES[source], name, DAY, content))


def _lines(content: bytes) -> list[bytes]:
    """The file as bronze reads a plain one: split on \\n, each line given back its \\n."""
    pieces = content.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    return [p + b"\n" for p in pieces]


def _assert_well_formed(records: list[LandedRecord]) -> None:
    for rec in records:
        assert re.fullmatch(r"[0-9a-f]{64}", rec.record_id), rec
        assert isinstance(rec.raw, str)
        if rec.reason is None:
            assert rec.line >= 1
        else:
            assert rec.reason.strip() and rec.fields is None
    lines = [r.line for r in records if r.line > 0]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)


def _non_blank_lines(content: bytes) -> int:
    """Lines a JSON lines file holds records on: every line (split on \\n) that is not blank
    once decoded, the byte order mark of the first dropped."""
    count = 0
    for n, line in enumerate(content.split(b"\n")):
        text = line.decode("utf-8", "surrogateescape")
        if n == 0 and text.startswith("\ufeff"):
            text = text[1:]
        count += bool(text.strip())
    return count


def _wide(content: bytes) -> bool:
    """A file the parser takes for UTF-16/UTF-32 (one record for the whole file)."""
    first = content.split(b"\n", 1)[0]
    starts = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    return first.startswith(starts) or (len(first) >= 8 and first.count(0) * 3 >= len(first))


@pytest.mark.parametrize("source", FORMATS)
@given(content=contents)
@example(content=b'{"a":1}\n\xff\xfe{"b":2}\n')
@example(content=codecs.BOM_UTF16_LE + "a,b\n".encode("utf-16-le"))
def test_any_bytes_give_records_each_good_or_bad_with_a_reason(source: str, content: bytes) -> None:
    records = _parse(source, content)

    _assert_well_formed(records)
    if SOURCES[source].format != "csv" and not _wide(content):
        assert len(records) == _non_blank_lines(content)


@pytest.mark.parametrize("source", FORMATS)
@given(content=contents)
def test_a_gzipped_file_gives_the_records_of_the_file(source: str, content: bytes) -> None:
    assert _parse(source, gzip.compress(content), "f.gz") == _parse(source, content, "f")


@pytest.mark.parametrize("source", FORMATS)
@given(content=contents)
def test_a_file_read_in_lines_gives_the_records_of_the_file_read_whole(
    source: str, content: bytes
) -> None:
    spec = SOURCES[source]
    whole = list(parse_landed_lines(source, spec, DAY, io.BytesIO(content)))

    assert list(parse_landed_lines(source, spec, DAY, _lines(content))) == whole


@pytest.mark.parametrize("source", FORMATS)
@given(content=st.binary(min_size=1, max_size=200))
def test_any_bytes_named_gz_are_records_or_one_bad_record_for_the_file(
    source: str, content: bytes
) -> None:
    records = _parse(source, content, "f.gz")

    _assert_well_formed(records)
