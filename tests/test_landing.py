"""The landing parser (pure Python): landed bytes to records with lineage, or to a reason."""

from __future__ import annotations

import codecs
import gzip
import hashlib

import pytest

from lakehouse.bronze.landing import (
    LandedPath,
    LandedRecord,
    decode_file,
    parse_landed_file,
    parse_landed_path,
    record_id,
)
from lakehouse.core.specs import LandingSpec, landing_sources, load_tables

SOURCES = landing_sources(load_tables())
DAY = "2024-01-01"
FX_HEADER = "rate_date,currency,rate_to_usd"
FX_CSV = f"{FX_HEADER}\n2024-01-01,EUR,1.10\n"
PAYMENTS_HEADER = (
    "event_id,payment_id,order_id,event_ts,event_type,amount,currency,method,provider_ref"
)


def parse(
    source: str, content: bytes, name: str = "part-0001", day: str = DAY
) -> list[LandedRecord]:
    return list(parse_landed_file(source, SOURCES[source], name, day, content))


def bad_id(source: str, raw: str) -> str:
    return record_id(source, "bad\x1f" + raw)


def csv_id(source: str, canonical: str) -> str:
    return record_id(source, canonical)


# --- layout -------------------------------------------------------------------------------------


def test_landed_path_gives_source_ingest_date_and_path_relative_to_the_landing_root() -> None:
    assert parse_landed_path("s3://bucket/landing/orders/ingest_date=2024-01-02/o-1.jsonl.gz") == (
        LandedPath("orders", "2024-01-02", "orders/ingest_date=2024-01-02/o-1.jsonl.gz")
    )


@pytest.mark.parametrize(
    "path",
    [
        "/l/orders/o-1.jsonl",
        "/l/orders/ingest_date=2024-1-2/o-1.jsonl",
        "/l/orders/ingest_date=2024-01-02/",
        "/l/orders/ingest_date=2024-13-45/o-1.jsonl",
        "/l/orders/ingest_date=2023-02-29/o-1.jsonl",
    ],
)
def test_path_not_laid_out_as_the_contract_says_is_not_a_landed_path(path: str) -> None:
    assert parse_landed_path(path) is None


# --- JSON lines ---------------------------------------------------------------------------------


def test_good_json_line_gets_its_line_number_raw_text_and_a_content_id() -> None:
    [rec] = parse("clickstream", b'{"event_id": "e1", "event_type": "page_view"}\n')

    assert rec == LandedRecord(
        line=1,
        raw='{"event_id": "e1", "event_type": "page_view"}',
        record_id=record_id("clickstream", '{"event_id":"e1","event_type":"page_view"}'),
    )


def test_json_record_id_ignores_key_order_and_whitespace_but_not_values() -> None:
    [a] = parse("orders", b'{"op":"c","lsn":1,"after":{"order_id":"o1"}}\n')
    [b] = parse("orders", b'{ "after": {"order_id": "o1"}, "lsn": 1, "op": "c" }\n', name="other")
    [c] = parse("orders", b'{"op":"c","lsn":2,"after":{"order_id":"o1"}}\n')

    assert a.record_id == b.record_id
    assert a.record_id != c.record_id


def test_json_object_with_a_key_twice_is_bad_at_any_depth() -> None:
    lines = [
        '{"op":"c","lsn":1,"lsn":2,"after":{"order_id":"o1"}}',
        '{"op":"c","lsn":3,"after":{"order_id":"o1","status":"paid","status":"placed"}}',
    ]
    records = parse("orders", "\n".join(lines).encode())

    assert [(r.line, r.raw, r.reason) for r in records] == [
        (1, lines[0], "key 'lsn' appears twice in one JSON object"),
        (2, lines[1], "key 'status' appears twice in one JSON object"),
    ]


def test_same_json_content_in_two_sources_has_two_ids() -> None:
    [a] = parse("clickstream", b'{"event_id":"e1"}\n')
    [b] = parse("orders", b'{"event_id":"e1"}\n')

    assert a.record_id != b.record_id


def test_truncated_json_line_is_bad_and_does_not_stop_the_next_line() -> None:
    records = parse("clickstream", b'{"event_id":"e1","ip":"1.2\n{"event_id":"e2"}\n')

    assert records == [
        LandedRecord(
            1,
            '{"event_id":"e1","ip":"1.2',
            bad_id("clickstream", '{"event_id":"e1","ip":"1.2'),
            None,
            "not valid JSON: Unterminated string starting at at column 23",
        ),
        LandedRecord(2, '{"event_id":"e2"}', record_id("clickstream", '{"event_id":"e2"}')),
    ]


@pytest.mark.parametrize(
    ("line", "kind"), [("[1, 2]", "list"), ('"e1"', "str"), ("42", "int"), ("null", "NoneType")]
)
def test_json_line_that_is_not_an_object_is_bad(line: str, kind: str) -> None:
    [rec] = parse("clickstream", line.encode() + b"\n")

    assert rec.reason == f"not a JSON object but a {kind}"
    assert (rec.line, rec.raw, rec.record_id) == (1, line, bad_id("clickstream", line))


def test_json_line_with_bytes_that_are_not_utf8_is_bad_and_shown_with_replacement_chars() -> None:
    records = parse("clickstream", b'{"event_id":"e1"}\n{"event_id":"\xff\xfe"}\n')

    assert [(r.line, r.raw, r.reason) for r in records] == [
        (1, '{"event_id":"e1"}', None),
        (2, '{"event_id":"\ufffd\ufffd"}', "not valid UTF-8"),
    ]


def test_blank_lines_are_not_records_and_do_not_shift_line_numbers() -> None:
    records = parse("clickstream", b'\n{"event_id":"e1"}\n   \n\r\n{"event_id":"e2"}\n\n')

    assert [(r.line, r.raw) for r in records] == [
        (2, '{"event_id":"e1"}'),
        (5, '{"event_id":"e2"}'),
    ]


def test_crlf_json_lines_parse_like_lf() -> None:
    assert parse("clickstream", b'{"event_id":"e1"}\r\n{"event_id":"e2"}\r\n') == parse(
        "clickstream", b'{"event_id":"e1"}\n{"event_id":"e2"}\n'
    )


def test_json_string_holding_a_unicode_line_separator_is_one_good_record() -> None:
    content = '{"event_id":"e1","user_agent":"a\u2028b"}\n{"event_id":"e2"}\n'.encode()

    records = parse("clickstream", content)

    assert [(r.line, r.reason) for r in records] == [(1, None), (2, None)]


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_row_keeps_header_to_value_fields_and_line_counts_the_header_as_line_1() -> None:
    records = parse("fx_rates", f"{FX_HEADER}\n2024-01-01,EUR,1.10\n2024-01-01,GBP,1.27\n".encode())

    assert records == [
        LandedRecord(
            2,
            "2024-01-01,EUR,1.10",
            csv_id("fx_rates", '{"currency":"EUR","rate_date":"2024-01-01","rate_to_usd":"1.10"}'),
            {"rate_date": "2024-01-01", "currency": "EUR", "rate_to_usd": "1.10"},
        ),
        LandedRecord(
            3,
            "2024-01-01,GBP,1.27",
            csv_id("fx_rates", '{"currency":"GBP","rate_date":"2024-01-01","rate_to_usd":"1.27"}'),
            {"rate_date": "2024-01-01", "currency": "GBP", "rate_to_usd": "1.27"},
        ),
    ]


def test_csv_with_bom_parses_like_without() -> None:
    plain = f"{FX_HEADER}\n2024-01-01,EUR,1.10\n".encode()

    assert parse("fx_rates", b"\xef\xbb\xbf" + plain) == parse("fx_rates", plain)


def test_header_in_another_order_gives_the_same_fields_and_record_id() -> None:
    [normal] = parse("fx_rates", f"{FX_HEADER}\n2024-01-01,EUR,1.10\n".encode())
    [shuffled] = parse("fx_rates", b"rate_to_usd,rate_date,currency\n1.10,2024-01-01,EUR\n")

    assert shuffled.fields == normal.fields
    assert shuffled.record_id == normal.record_id


def test_quoted_field_with_comma_quote_and_newline_is_one_record_starting_on_its_line() -> None:
    content = (
        f"{PAYMENTS_HEADER}\n"
        'e1,p1,o1,2024-01-01T10:00:00Z,captured,10.00,USD,card,"ref, ""A""\nline two"\n'
        "e2,p2,o2,2024-01-01T11:00:00Z,captured,5.00,EUR,paypal,r2\n"
    ).encode()

    first, second = parse("payments", content)

    assert first.line == 2
    assert first.raw == (
        'e1,p1,o1,2024-01-01T10:00:00Z,captured,10.00,USD,card,"ref, ""A""\nline two"'
    )
    assert first.fields is not None
    assert first.fields["provider_ref"] == 'ref, "A"\nline two'
    assert first.reason is None
    assert (second.line, second.raw, second.reason) == (
        4,
        "e2,p2,o2,2024-01-01T11:00:00Z,captured,5.00,EUR,paypal,r2",
        None,
    )


@pytest.mark.parametrize(("row", "found"), [("2024-01-01,EUR", 2), ("2024-01-01,EUR,1.1,x", 4)])
def test_row_with_another_number_of_fields_than_the_header_is_bad(row: str, found: int) -> None:
    records = parse("fx_rates", f"{FX_HEADER}\n{row}\n2024-01-01,GBP,1.27\n".encode())

    assert [(r.line, r.raw, r.record_id, r.reason) for r in records] == [
        (2, row, bad_id("fx_rates", row), f"expected 3 fields as in the header, found {found}"),
        (3, "2024-01-01,GBP,1.27", records[1].record_id, None),
    ]


def test_unterminated_quote_is_bad_input_not_an_exception() -> None:
    records = parse("fx_rates", f'{FX_HEADER}\n2024-01-01,EUR,1.1\n"2024-01-02,EUR,1.2\n'.encode())

    assert [(r.line, r.reason) for r in records] == [
        (2, None),
        (3, "malformed CSV: unexpected end of data"),
    ]
    assert records[1].raw == '"2024-01-02,EUR,1.2'


def test_missing_required_column_makes_every_row_bad_naming_the_column() -> None:
    records = parse("fx_rates", b"rate_date,currency\n2024-01-01,EUR\n2024-01-01,GBP\n")

    reason = "missing required column(s) in the header: rate_to_usd"
    assert records == [
        LandedRecord(2, "2024-01-01,EUR", bad_id("fx_rates", "2024-01-01,EUR"), None, reason),
        LandedRecord(3, "2024-01-01,GBP", bad_id("fx_rates", "2024-01-01,GBP"), None, reason),
    ]


def test_a_header_naming_a_column_twice_makes_every_row_bad_naming_it() -> None:
    records = parse(
        "fx_rates", b"rate_date,currency,currency,rate_to_usd\n2024-01-01,EUR,GBP,1.1\n"
    )

    assert [(r.line, r.reason) for r in records] == [
        (2, "duplicated column(s) in the header: currency")
    ]


def test_a_nul_byte_inside_a_json_record_makes_that_record_bad_and_not_the_next() -> None:
    records = parse("clickstream", b'{"event_id":"e\x001","session_id":"s1"}\n{"event_id":"e2"}\n')

    assert [(r.line, r.reason) for r in records] == [
        (1, "not valid JSON: Invalid control character at at column 15"),
        (2, None),
    ]


def test_a_gzipped_file_not_named_gz_is_bad_input_not_garbage_records() -> None:
    records = parse("fx_rates", gzip.compress(FX_CSV.encode()), name="fx.csv")

    assert records and {r.reason for r in records} == {"not valid UTF-8"}


def test_extra_column_is_kept_in_fields() -> None:
    [rec] = parse("fx_rates", f"{FX_HEADER},source\n2024-01-01,EUR,1.10,ecb\n".encode())

    assert rec.reason is None
    assert rec.fields == {
        "rate_date": "2024-01-01",
        "currency": "EUR",
        "rate_to_usd": "1.10",
        "source": "ecb",
    }


def test_blank_csv_lines_are_not_records() -> None:
    records = parse("fx_rates", f"{FX_HEADER}\n\n2024-01-01,EUR,1.10\n\n".encode())

    assert [(r.line, r.raw) for r in records] == [(3, "2024-01-01,EUR,1.10")]


def test_snapshot_source_same_row_on_two_ingest_dates_is_two_records() -> None:
    header = "product_id,name,category,brand,list_price,currency,active,updated_at"
    content = f"{header}\nP1,Mug,kitchen,Acme,9.99,USD,true,2024-01-01T00:00:00Z\n".encode()
    assert SOURCES["products"] == LandingSpec(
        "csv", snapshot=True, required_columns=tuple(header.split(","))
    )

    [day1] = parse("products", content, day="2024-01-01")
    [day2] = parse("products", content, day="2024-01-02")

    assert day1.record_id != day2.record_id
    assert day1.fields == day2.fields


def test_non_snapshot_source_same_row_on_two_ingest_dates_is_one_record() -> None:
    row = "e1,p1,o1,2024-01-01T10:00:00Z,captured,10.00,USD,card,r1"
    content = f"{PAYMENTS_HEADER}\n{row}\n".encode()

    [day1] = parse("payments", content, name="a.csv", day="2024-01-01")
    [day2] = parse("payments", content, name="b.csv", day="2024-01-03")

    assert day1.record_id == day2.record_id


# --- compression, empty files -------------------------------------------------------------------


def test_gz_file_is_decompressed_before_parsing() -> None:
    plain = f"{FX_HEADER}\n2024-01-01,EUR,1.10\n".encode()

    assert parse("fx_rates", gzip.compress(plain), name="fx.csv.gz") == parse("fx_rates", plain)


def test_gz_with_bom_inside_is_decoded_without_the_bom() -> None:
    assert decode_file("x.jsonl.gz", gzip.compress(b'\xef\xbb\xbf{"a":1}\n')) == '{"a":1}\n'


def test_corrupt_gz_is_one_bad_record_for_the_whole_file_with_its_size_digest_and_start() -> None:
    content = b"\x1f\x8b\x08\x00garbage"
    [rec] = parse("clickstream", content, name="clicks/part-7.jsonl.gz")

    assert rec.line == 0
    assert rec.raw == (
        f"<file clicks/part-7.jsonl.gz: 11 bytes, sha256 {hashlib.sha256(content).hexdigest()}, "
        "first 11 bytes (hex) 1f8b080067617262616765>"
    )
    assert rec.record_id == bad_id("clickstream", rec.raw)
    assert rec.fields is None
    assert rec.reason is not None
    assert rec.reason.startswith("not a valid gzip file")


def test_truncated_gz_is_one_bad_record() -> None:
    whole = gzip.compress(b'{"event_id":"e1"}\n' * 50)

    [rec] = parse("clickstream", whole[: len(whole) // 2], name="c.jsonl.gz")

    assert rec.reason is not None
    assert rec.reason.startswith("not a valid gzip file")


def test_corrupt_gz_raises_a_readable_reason_from_decode_file() -> None:
    with pytest.raises(ValueError, match=r"^not a valid gzip file"):
        decode_file("x.csv.gz", b"plain text, not gzip")


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (codecs.BOM_UTF16_LE + FX_CSV.encode("utf-16-le"), "UTF-16LE"),
        (codecs.BOM_UTF16_BE + FX_CSV.encode("utf-16-be"), "UTF-16BE"),
        (FX_CSV.encode("utf-16-le"), "UTF-16LE"),
        (codecs.BOM_UTF32_LE + FX_CSV.encode("utf-32-le"), "UTF-32LE"),
    ],
)
def test_a_file_in_utf16_or_utf32_is_one_bad_record_saying_so(
    encoded: bytes, encoding: str
) -> None:
    for name, content in (("fx.csv", encoded), ("fx.csv.gz", gzip.compress(encoded))):
        [rec] = parse("fx_rates", content, name=name)

        assert (rec.line, rec.raw, rec.fields) == (0, FX_CSV.rstrip("\n"), None)
        assert (
            rec.reason == f"file is encoded as {encoding}, not UTF-8 as the landing contract says"
        )
    [other] = parse("fx_rates", encoded + "2024-01-02,EUR,1.11\n".encode(encoding.lower()))
    assert other.record_id != rec.record_id


@pytest.mark.parametrize(
    ("source", "name", "content"),
    [
        ("clickstream", "c.jsonl", b""),
        ("fx_rates", "f.csv", b""),
        ("clickstream", "c.jsonl", b"\n\n"),
        ("fx_rates", "f.csv.gz", gzip.compress(b"", mtime=0)),
        ("fx_rates", "f.csv", f"{FX_HEADER}\n".encode()),
    ],
)
def test_empty_file_yields_no_records(source: str, name: str, content: bytes) -> None:
    assert parse(source, content, name=name) == []
