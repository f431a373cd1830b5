"""Uploads' pure rules: the type is what the bytes are, names are safe to send back, ranges
are read as RFC 9110 says, cursors are only what was issued, and a scan's first result stands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from townhall.uploads.domain import (
    DEFAULT_ALLOWED,
    InvalidCursor,
    RangeNotSatisfiable,
    Status,
    UnsupportedType,
    Upload,
    Verdict,
    content_disposition,
    decide_type,
    decode_cursor,
    encode_cursor,
    parse_range,
    safe_filename,
    sniff,
)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"hello, world\n\ttabs and \xc3\xa9", "text/plain"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "application/octet-stream"),
        (b"text with a NUL \x00 byte", "application/octet-stream"),
        (b"caf\xc3", "text/plain"),  # a character cut at the end of the sniffed bytes
        (b"\xc3(not utf-8 at all", "application/octet-stream"),
    ],
)
def test_the_bytes_decide_the_type(head, kind):
    assert sniff(head) == kind


def test_a_declared_type_the_bytes_contradict_is_refused():
    with pytest.raises(UnsupportedType, match="image/png, not the declared application/pdf"):
        decide_type("application/pdf", PNG, DEFAULT_ALLOWED)


def test_octet_stream_and_no_type_declare_nothing():
    assert decide_type("application/octet-stream", PNG, DEFAULT_ALLOWED) == "image/png"
    assert decide_type(None, b"%PDF-1.4", DEFAULT_ALLOWED) == "application/pdf"


def test_aliases_parameters_and_text_subtypes_are_the_same_type():
    assert decide_type("image/JPG; q=1", b"\xff\xd8\xff", DEFAULT_ALLOWED) == "image/jpeg"
    assert decide_type("text/csv; charset=utf-8", b"a,b\n1,2\n", DEFAULT_ALLOWED) == "text/plain"


def test_a_type_outside_the_allowed_list_is_refused():
    with pytest.raises(UnsupportedType, match="application/pdf is not an allowed"):
        decide_type(None, b"%PDF-1.4", ["image/png"])


@pytest.mark.parametrize(
    ("given_name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.png", "photo.png"),
        ('bad"name\r\n.txt', "bad_name_.txt"),
        ("...", "upload"),
        (None, "upload"),
        ("  .hidden ", "hidden"),
        ("résumé.pdf", "résumé.pdf"),
    ],
)
def test_file_names_lose_directories_and_unsafe_characters(given_name, safe):
    assert safe_filename(given_name) == safe


def test_a_long_name_keeps_its_extension():
    name = safe_filename("a" * 400 + ".jpeg")
    assert len(name) == 255 and name.endswith(".jpeg")


def test_content_disposition_has_an_ascii_fallback_and_the_utf8_name():
    assert content_disposition("résumé.pdf") == (
        "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    )


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=10-", (10, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=95-500", (95, 99)),
        ("bytes=0-0", (0, 0)),
        ("bytes=5-1", None),  # malformed: the whole content
        ("bytes=0-1,5-6", None),  # several ranges: the whole content
        ("items=0-1", None),
        ("bytes=x-y", None),
    ],
)
def test_ranges(header, span):
    assert parse_range(header, 100) == span


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


@given(st.integers(1, 10_000), st.integers(0, 20_000), st.integers(0, 20_000))
def test_a_satisfiable_range_lies_inside_the_content(size, first, last):
    try:
        span = parse_range(f"bytes={first}-{last}", size)
    except RangeNotSatisfiable:
        assert first >= size
        return
    if span is not None:
        assert 0 <= span[0] <= span[1] < size


@given(st.uuids(version=4))
def test_cursors_round_trip(value):
    assert decode_cursor(encode_cursor(str(value))) == str(value)


@pytest.mark.parametrize(
    "cursor",
    ["", "abc", "!!!!", encode_cursor("01a2423c-9ebf-7116-aa30-a330c943a569") + "A"],
)
def test_cursors_that_were_never_issued_are_refused(cursor):
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


def test_the_first_scan_result_stands():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    upload = Upload("u", "o", "f", "text/plain", 1, "0" * 64, Status.PENDING_SCAN, at)
    infected = upload.scanned(Verdict.infected("EICAR"), at)
    assert (infected.status, infected.detection, infected.scanned_at) == (
        Status.INFECTED,
        "EICAR",
        at,
    )
    assert infected.scanned(Verdict.clean(), at) is infected
    with pytest.raises(ValueError, match="CLEAN, INFECTED or FAILED"):
        upload.scanned(Verdict(Status.PENDING_SCAN), at)
