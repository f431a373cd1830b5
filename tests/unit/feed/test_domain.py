"""The feed's pure domain: cursors (plain and ranked), the newest-first merge, relevance."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
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


def uuid7(ms: int, rest: int) -> str:
    """A UUIDv7 string: 48 bits of milliseconds, version 7, then 74 bits (counter, random)."""
    counter, rand = rest >> 62, rest & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return str(uuid.UUID(int=value))


# Any millisecond up to the year 9999 (the last a datetime holds), any counter and random bits.
post_ids = st.builds(uuid7, st.integers(0, 253_402_300_799_000), st.integers(0, (1 << 74) - 1))
# Ids close together in time, so lists share and interleave ids often.
near_ids = st.builds(uuid7, st.integers(1_700_000_000_000, 1_700_000_000_050), st.integers(0, 7))


# Cursors -----------------------------------------------------------------------------------


@given(post_ids)
def test_a_cursor_decodes_to_the_position_it_was_made_from(post_id: str) -> None:
    cursor = encode_cursor(post_id)
    assert decode_cursor(cursor) == post_id
    assert cursor.isascii() and "=" not in cursor  # fits a query string as it is


@given(post_ids)
def test_the_creation_time_of_a_post_is_read_from_its_id(post_id: str) -> None:
    made = created_at_of(post_id)
    ms = uuid.UUID(post_id).int >> 80
    assert made.tzinfo is not None
    assert abs(made - datetime.fromtimestamp(0, UTC) - timedelta(milliseconds=ms)) <= timedelta(
        milliseconds=1
    )


@given(st.text(max_size=40))
def test_any_string_is_either_refused_or_the_exact_cursor_of_its_position(text: str) -> None:
    try:
        position = decode_cursor(text)
    except InvalidCursor:
        return
    assert encode_cursor(position) == text


@given(post_ids, st.integers(1, 21))
def test_a_truncated_cursor_is_refused(post_id: str, cut: int) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(encode_cursor(post_id)[:-cut])


@given(post_ids, st.text(alphabet="ABCxyz019-_", min_size=1, max_size=8))
def test_a_cursor_with_extra_characters_is_refused(post_id: str, extra: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(encode_cursor(post_id) + extra)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "=",
        "!!!!",
        "é",
        "\x00",
        base64.urlsafe_b64encode(b"x" * 15).decode(),
        base64.urlsafe_b64encode(b"x" * 17).decode(),
        base64.urlsafe_b64encode(b"x" * 16).decode(),  # padded: not as we gave it
        "AAAAAAAAAAAAAAAAAAAA!AA",  # a character outside the alphabet
        "!!AAAAAAAAAAAAAAAAAAAAAA==",  # ... which the decoder alone would skip
        "AAAAAAAAAAAAAAAAAAAAAB",  # the unused low bits set: not a cursor we made
    ],
)
def test_a_malformed_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


scores = st.floats(allow_nan=False, allow_infinity=False)


@given(st.integers(0, 2**63), scores, post_ids)
def test_a_ranked_cursor_decodes_to_its_position(as_of: int, score: float, post_id: str) -> None:
    position = RankedPosition(as_of, score, post_id)
    assert decode_ranked_cursor(encode_ranked_cursor(position)) == position


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


GOOD_ID = "01890a5d-ac96-7000-8000-000000000000"


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        _b64(f"r2|1|1.0|{GOOD_ID}"),  # an unknown version
        _b64("r1|1|1.0"),
        _b64(f"r1|1|1.0|{GOOD_ID}|x"),
        _b64(f"r1|x|1.0|{GOOD_ID}"),
        _b64(f"r1|1|nan|{GOOD_ID}"),
        _b64(f"r1|1|inf|{GOOD_ID}"),
        _b64("r1|1|1.0|not-an-id"),
        _b64(f"r1|1.5|1.0|{GOOD_ID}"),
        base64.urlsafe_b64encode(b"\xff\xfe|1|1.0").decode(),
        encode_cursor(GOOD_ID),  # a plain cursor is not a ranked one
    ],
)
def test_a_malformed_ranked_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_ranked_cursor(cursor)


@given(st.text(max_size=60))
def test_a_random_string_is_refused_or_a_ranked_position(text: str) -> None:
    try:
        position = decode_ranked_cursor(text)
    except InvalidCursor:
        return
    assert isinstance(position, RankedPosition)


# The merge ---------------------------------------------------------------------------------


@given(
    st.lists(st.lists(near_ids, max_size=20), max_size=5),
    st.integers(0, 30),
    st.none() | near_ids,
)
def test_merging_newest_first_lists_is_the_newest_of_their_union(
    lists: list[list[str]], limit: int, before: str | None
) -> None:
    sources = [sorted(set(ids), reverse=True) for ids in lists]
    union = sorted({post_id for ids in sources for post_id in ids}, reverse=True)
    expected = [post_id for post_id in union if before is None or post_id < before][:limit]
    assert merge_newest(sources, limit, before) == expected


@given(st.lists(st.lists(near_ids, max_size=10), max_size=4))
def test_a_merge_with_no_room_is_empty(lists: list[list[str]]) -> None:
    assume(any(lists))
    assert merge_newest([sorted(set(ids), reverse=True) for ids in lists], 0) == []


def test_a_merge_takes_each_source_lazily_and_repeats_no_id() -> None:
    a = ["05", "04", "02"]
    b = ["05", "03", "01"]
    assert merge_newest([a, b], 3) == ["05", "04", "03"]
    assert merge_newest([a, b], 10, before="04") == ["03", "02", "01"]
    assert merge_newest([], 5) == []


# Relevance ---------------------------------------------------------------------------------

counts = st.integers(0, 10_000)
ages = st.floats(0, 24 * 30)
affinities = st.floats(0, 1_000)


@given(counts, counts, ages, st.floats(0.01, 24 * 30), affinities)
def test_relevance_decays_with_age(
    likes: int, comments: int, age: float, later: float, affinity: float
) -> None:
    assert relevance(likes, comments, age + later, affinity) < relevance(
        likes, comments, age, affinity
    )


@given(counts, counts, ages, affinities, st.integers(1, 100))
def test_relevance_grows_with_likes_and_comments(
    likes: int, comments: int, age: float, affinity: float, more: int
) -> None:
    base = relevance(likes, comments, age, affinity)
    assert relevance(likes + more, comments, age, affinity) > base
    assert relevance(likes, comments + more, age, affinity) > base
    # a comment weighs more than a like
    assert relevance(likes, comments + 1, age, affinity) > relevance(
        likes + 1, comments, age, affinity
    )


@given(counts, counts, ages, affinities, st.floats(0.01, 100))
def test_relevance_grows_with_affinity(
    likes: int, comments: int, age: float, affinity: float, more: float
) -> None:
    assert relevance(likes, comments, age, affinity + more) > relevance(
        likes, comments, age, affinity
    )


def test_relevance_halves_every_half_life_and_a_new_post_counts() -> None:
    assert relevance(0, 0, 0.0, 0.0) == 1.0
    assert relevance(3, 0, 12.0, 0.0) == pytest.approx(2.0)
    assert relevance(0, 0, -5.0, 0.0) == relevance(0, 0, 0.0, 0.0)  # a clock a bit ahead
