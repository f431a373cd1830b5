"""The feed's pure rules: cursors (a position, opaque, and refused with a 422 when tampered
with), the merge of cached and read-time timelines, the relevance score and a post's time."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.feed.domain import (
    InvalidCursor,
    RankedPosition,
    created_at_of,
    decode_cursor,
    decode_ranked_cursor,
    encode_cursor,
    encode_ranked_cursor,
    merge_newest,
    relevance,
)
from townhall.platform.errors import Invalid
from townhall.platform.ids import new_id_str

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The last millisecond a datetime holds: 9999-12-31 23:59:59.999.
LAST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
MAX_MS = (LAST - EPOCH) // timedelta(milliseconds=1)


def uuid7(ms: int, counter: int, rand: int) -> str:
    """A UUIDv7 string laid out as platform.ids makes them."""
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return str(uuid.UUID(int=value))


milliseconds = st.integers(0, MAX_MS)
uuid7s = st.builds(uuid7, milliseconds, st.integers(0, 0xFFF), st.integers(0, (1 << 62) - 1))
# Ids close together, so merges see equal milliseconds and the same id in several lists.
near_ids = st.builds(
    uuid7,
    st.integers(1_700_000_000_000, 1_700_000_000_020),
    st.integers(0, 3),
    st.integers(0, 3),
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# Cursors


@settings(max_examples=300, deadline=None)
@given(uuid7s)
def test_a_cursor_decodes_to_the_position_it_was_made_from(post_id):
    cursor = encode_cursor(post_id)
    assert decode_cursor(cursor) == post_id
    # Opaque and safe in a URL: base64url without padding.
    assert len(cursor) == 22
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@settings(max_examples=200, deadline=None)
@given(uuid7s, uuid7s)
def test_cursors_keep_their_positions_apart(one, two):
    assert (encode_cursor(one) == encode_cursor(two)) == (one == two)


def test_a_real_post_id_round_trips():
    post_id = new_id_str()
    assert decode_cursor(encode_cursor(post_id)) == post_id


def refused(decode, cursor: str) -> None:
    with pytest.raises(InvalidCursor) as caught:
        decode(cursor)
    assert isinstance(caught.value, Invalid)  # the edge answers 422
    assert caught.value.field == "cursor"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_random_text_is_refused_unless_it_is_a_cursor_exactly(text):
    try:
        post_id = decode_cursor(text)
    except InvalidCursor as error:
        assert error.field == "cursor"
    else:
        assert encode_cursor(post_id) == text


@settings(max_examples=200, deadline=None)
@given(uuid7s, st.data())
def test_a_truncated_or_extended_cursor_is_refused(post_id, data):
    cursor = encode_cursor(post_id)
    cut = data.draw(st.integers(0, len(cursor) - 1))
    refused(decode_cursor, cursor[:cut])
    extra = data.draw(st.text(min_size=1, max_size=8))
    refused(decode_cursor, cursor + extra)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40).filter(lambda raw: len(raw) != 16))
def test_base64_of_the_wrong_length_is_refused(raw):
    refused(decode_cursor, b64(raw))
    refused(decode_cursor, base64.urlsafe_b64encode(raw).decode())  # padded too


@settings(max_examples=300, deadline=None)
@given(uuid7s, st.data())
def test_characters_outside_base64url_are_refused_wherever_they_are(post_id, data):
    cursor = encode_cursor(post_id)
    at = data.draw(st.integers(0, len(cursor)))
    junk = data.draw(st.sampled_from(["!", ".", "=", "==", " ", "\n", "+", "/", "%", "é", "\x00"]))
    refused(decode_cursor, cursor[:at] + junk + cursor[at:])
    if at < len(cursor):  # in place of a character, too
        refused(decode_cursor, cursor[:at] + junk + cursor[at + 1 :])


def test_the_spare_bits_of_the_last_character_must_be_zero():
    # 16 bytes fill 21 characters and 2 bits of the 22nd: another last character with the
    # same 2 bits decodes to the same bytes, but it is not a cursor the feed gave out.
    cursor = encode_cursor(uuid7(1_700_000_000_000, 1, 1))
    assert cursor[-1] == "Q"
    refused(decode_cursor, cursor[:-1] + "R")


@pytest.mark.parametrize(
    "cursor", ["", "=", "====", "A", "AAAA", "not a cursor", "ZZZZZZZZZZZZZZZZZZZZZ", "😀" * 22]
)
def test_examples_of_malformed_cursors(cursor):
    refused(decode_cursor, cursor)


ranked_positions = st.builds(
    RankedPosition,
    st.integers(0, 1 << 53),
    st.floats(allow_nan=False, allow_infinity=False),
    uuid7s,
)


@settings(max_examples=300, deadline=None)
@given(ranked_positions)
def test_a_ranked_cursor_decodes_to_the_position_it_was_made_from(position):
    cursor = encode_ranked_cursor(position)
    decoded = decode_ranked_cursor(cursor)
    assert decoded == position
    assert str(decoded.score) == str(position.score)  # -0.0 stays -0.0: the exact float
    assert "=" not in cursor


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_random_text_is_not_a_ranked_cursor_unless_it_is_one_exactly(text):
    try:
        position = decode_ranked_cursor(text)
    except InvalidCursor as error:
        assert error.field == "cursor"
    else:
        assert encode_ranked_cursor(position) == text


@settings(max_examples=200, deadline=None)
@given(ranked_positions, st.data())
def test_a_truncated_or_tampered_ranked_cursor_is_refused(position, data):
    cursor = encode_ranked_cursor(position)
    refused(decode_ranked_cursor, cursor[: data.draw(st.integers(0, len(cursor) - 1))])
    at = data.draw(st.integers(0, len(cursor)))
    junk = data.draw(st.sampled_from(["!", ".", "=", " ", "\n", "+", "é"]))
    refused(decode_ranked_cursor, cursor[:at] + junk + cursor[at:])
    # A plain cursor is not a ranked one.
    refused(decode_ranked_cursor, encode_cursor(position.post_id))


@pytest.mark.parametrize(
    "text",
    [
        "r2|1|1.0|{id}",  # another version
        "r1|1|1.0",  # a part missing
        "r1|1|1.0|{id}|x",  # one too many
        "r1|x|1.0|{id}",
        "r1|1|nan|{id}",
        "r1|1|inf|{id}",
        "r1|1|-inf|{id}",
        "r1|1|1.0|not-a-uuid",
        "r1|+1|1.0|{id}",  # parses, but no cursor was ever written like it
        "r1| 1|1.0|{id}",
        "r1|1|1.00|{id}",
        "r1|1|1.0|{upper}",
    ],
)
def test_examples_of_malformed_ranked_cursors(text):
    post_id = new_id_str()
    filled = text.format(id=post_id, upper=post_id.upper())
    refused(decode_ranked_cursor, b64(filled.encode()))


def test_a_ranked_cursor_that_is_not_utf8_is_refused():
    refused(decode_ranked_cursor, b64(b"r1|1|1.0|\xff\xfe"))


# The hybrid read


def newest_first(ids: list[str]) -> list[str]:
    return sorted(ids, reverse=True)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.lists(near_ids, max_size=20), max_size=6),
    st.integers(0, 30),
    st.one_of(st.none(), near_ids),
)
def test_merge_is_the_newest_of_the_union_below_the_position(lists, limit, before):
    sources = [newest_first(ids) for ids in lists]
    union = {post_id for ids in lists for post_id in ids}
    below = [p for p in union if before is None or p < before]
    expected = newest_first(below)[:limit]

    merged = merge_newest(sources, limit, before)
    assert merged == expected
    assert len(merged) == len(set(merged))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(near_ids, max_size=15), min_size=1, max_size=5), st.integers(1, 7))
def test_paging_a_merge_by_its_last_id_gives_every_id_once(lists, limit):
    sources = [newest_first(ids) for ids in lists]
    seen: list[str] = []
    before = None
    while page := merge_newest(sources, limit, before):
        seen += page
        before = page[-1]
    assert seen == newest_first(list({p for ids in lists for p in ids}))


def test_merge_of_nothing_is_empty():
    assert merge_newest([], 10) == []
    assert merge_newest([[], []], 10, before=new_id_str()) == []
    assert merge_newest([["b", "a"]], 0) == []


# Relevance

counts = st.integers(0, 100_000)
ages = st.floats(0, 10_000)
affinities = st.floats(0, 1_000_000)


@settings(max_examples=300, deadline=None)
@given(counts, counts, ages, affinities, st.floats(0.001, 10_000))
def test_relevance_decays_with_age(likes, comments, age, affinity, later):
    now = relevance(likes, comments, age, affinity)
    then = relevance(likes, comments, age + later, affinity)
    assert then <= now
    assert relevance(likes, comments, age + 1.0, affinity) < now


@settings(max_examples=300, deadline=None)
@given(counts, counts, ages, affinities, st.integers(1, 1000))
def test_relevance_grows_with_likes_and_comments(likes, comments, age, affinity, more):
    score = relevance(likes, comments, age, affinity)
    assert relevance(likes + more, comments, age, affinity) > score
    assert relevance(likes, comments + more, age, affinity) > score
    # A comment weighs more than a like.
    assert relevance(likes, comments + more, age, affinity) > relevance(
        likes + more, comments, age, affinity
    )


@settings(max_examples=300, deadline=None)
@given(counts, counts, ages, affinities, st.floats(0.01, 1000))
def test_relevance_grows_with_affinity(likes, comments, age, affinity, more):
    assert relevance(likes, comments, age, affinity + more) > relevance(
        likes, comments, age, affinity
    )


def test_relevance_examples():
    assert relevance(0, 0, 0, 0) == 1.0  # a new post with nothing yet still counts
    assert relevance(0, 0, 12, 0) == pytest.approx(0.5)  # one half-life
    assert relevance(0, 0, 24, 0) == pytest.approx(0.25)
    assert relevance(0, 0, 6, 0, half_life=6) == pytest.approx(0.5)
    assert relevance(2, 1, 0, 0) == 6.0
    # A clock a little behind does not make a post newer than new, nor affinity below none.
    assert relevance(3, 0, -5, -1) == relevance(3, 0, 0, 0)
    assert relevance(3, 0, 0, 0) > 0


# A post's time


@settings(max_examples=500, deadline=None)
@given(milliseconds, st.integers(0, 0xFFF), st.integers(0, (1 << 62) - 1))
def test_created_at_is_the_ids_millisecond(ms, counter, rand):
    created = created_at_of(uuid7(ms, counter, rand))
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    assert created == EPOCH + timedelta(milliseconds=ms)


def test_created_at_of_a_new_post_is_about_now():
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    created = created_at_of(new_id_str())
    assert before <= created <= datetime.now(UTC) + timedelta(seconds=1)
    assert created.microsecond % 1000 == 0
