"""Chat's pure rules: a room's live stream put back in seq order, rate buckets, mentions,
bodies and the key of a 1:1 room."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.chat.domain import (
    InvalidInput,
    Sequencer,
    TokenBucket,
    check_body,
    direct_key,
    mentioned_usernames,
)

# Sequencer


@st.composite
def live_streams(draw):
    """A room's seqs start..end, and what a gateway sees of them: live arrivals in any order,
    some twice, some never; reads of history asked for (`ask`) and answered (`answer`) at any
    point, answers arriving after more live messages came."""
    start = draw(st.integers(1, 1000))
    seqs = list(range(start, start + draw(st.integers(1, 40))))
    events = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("offer"), st.sampled_from(seqs)),
                st.tuples(st.just("ask"), st.none()),
                st.tuples(st.just("answer"), st.none()),
            ),
            max_size=120,
        )
    )
    return seqs, events


def run(sequencer: Sequencer, events, history: dict[int, str]) -> list[object]:
    """Plays the events, then does what a gateway does at rest: answer what it asked, and
    read history for what `missing()` says until nothing is."""
    delivered: list[object] = []
    asked: list[tuple[int, int]] = []

    def answer(first: int, last: int) -> None:
        found = [(seq, history[seq]) for seq in range(first, last + 1) if seq in history]
        delivered.extend(sequencer.fill(found, asked=(first, last)))

    for kind, seq in events:
        if kind == "offer":
            delivered.extend(sequencer.offer(seq, history.get(seq, f"live {seq}")))
        elif kind == "ask" and (gap := sequencer.missing()) is not None:
            asked.append(gap)
        elif kind == "answer" and asked:
            answer(*asked.pop(0))
    for gap in asked:
        answer(*gap)
    while (gap := sequencer.missing()) is not None:
        answer(*gap)
    return delivered


@settings(max_examples=200, deadline=None)
@given(live_streams())
def test_history_read_at_once_for_the_hole_in_front_needs_no_asked_range(stream):
    seqs, events = stream
    history = {seq: f"message {seq}" for seq in seqs}
    sequencer = Sequencer()
    sequencer.skip_to(seqs[0] - 1)
    delivered: list[object] = []
    for kind, seq in events:
        if kind == "offer":
            delivered += sequencer.offer(seq, history[seq])
        elif (gap := sequencer.missing()) is not None:
            delivered += sequencer.fill([(s, history[s]) for s in range(gap[0], gap[1] + 1)])
    offered = [seq for kind, seq in events if kind == "offer"]
    while (gap := sequencer.missing()) is not None:
        delivered += sequencer.fill([(s, history[s]) for s in range(gap[0], gap[1] + 1)])
    last = max(offered, default=seqs[0] - 1)
    assert [seq_of(item) for item in delivered] == list(range(seqs[0], last + 1))


def seq_of(item: object) -> int:
    assert isinstance(item, str)
    return int(item.split()[-1])


@settings(max_examples=300, deadline=None)
@given(live_streams())
def test_every_seq_is_delivered_once_in_order_whatever_the_live_stream_did(stream):
    seqs, events = stream
    history = {seq: f"message {seq}" for seq in seqs}
    sequencer = Sequencer()
    sequencer.skip_to(seqs[0] - 1)  # joined with the room at seq start - 1
    delivered = run(sequencer, events, history)
    offered = [seq for kind, seq in events if kind == "offer"]
    # Each seq up to the latest that arrived, once, in order, duplicates dropped.
    last = max(offered, default=seqs[0] - 1)
    assert [seq_of(item) for item in delivered] == list(range(seqs[0], last + 1))


@settings(max_examples=300, deadline=None)
@given(live_streams(), st.integers(0, 40))
def test_seqs_history_no_longer_has_are_skipped_and_the_rest_stays_in_order(stream, pruned):
    seqs, events = stream
    # Retention pruned the oldest: history starts later; live copies of them still arrive.
    history = {seq: f"message {seq}" for seq in seqs[pruned:]}
    sequencer = Sequencer()
    sequencer.skip_to(seqs[0] - 1)
    delivered = [seq_of(item) for item in run(sequencer, events, history)]
    assert delivered == sorted(set(delivered))
    offered = [seq for kind, seq in events if kind == "offer"]
    last = max(offered, default=seqs[0] - 1)
    assert set(range(seqs[0] + pruned, last + 1)) <= set(delivered)


@settings(max_examples=200, deadline=None)
@given(live_streams())
def test_without_a_start_the_first_seq_offered_starts_the_stream(stream):
    seqs, events = stream
    offered = [seq for kind, seq in events if kind == "offer"]
    history = {seq: f"message {seq}" for seq in seqs}
    delivered = [seq_of(item) for item in run(Sequencer(), events, history)]
    if offered:
        assert delivered == list(range(offered[0], max(offered) + 1))
    else:
        assert delivered == []


def test_a_later_seq_waits_for_the_ones_before_it_and_duplicates_are_dropped():
    sequencer = Sequencer()
    sequencer.skip_to(4)
    assert sequencer.offer(7, "m7") == []
    assert sequencer.offer(6, "m6") == []
    assert sequencer.missing() == (5, 5)
    assert sequencer.offer(5, "m5") == ["m5", "m6", "m7"]
    assert sequencer.missing() is None
    assert sequencer.offer(6, "again") == []
    assert sequencer.offer(9, "m9") == []
    assert sequencer.offer(9, "again") == []
    assert sequencer.missing() == (8, 8)
    assert sequencer.fill([(8, "m8"), (9, "m9 from history")]) == ["m8", "m9"]


def test_fill_skips_only_the_seqs_asked_for_that_history_lacks():
    sequencer = Sequencer()
    sequencer.skip_to(4)
    sequencer.offer(7, "m7")
    sequencer.offer(10, "m10")
    assert sequencer.missing() == (5, 6)
    # 5 was pruned; 8 and 9 were not asked for, so they are waited for, not skipped.
    assert sequencer.fill([(6, "m6")], asked=(5, 6)) == ["m6", "m7"]
    assert sequencer.missing() == (8, 9)
    assert sequencer.offer(8, "m8") == ["m8"]
    assert sequencer.fill([(9, "m9")]) == ["m9", "m10"]


def test_a_late_answer_for_a_range_already_delivered_skips_nothing():
    sequencer = Sequencer()
    sequencer.skip_to(4)
    sequencer.offer(7, "m7")
    asked = sequencer.missing()
    assert asked == (5, 6)
    assert sequencer.offer(6, "m6") == []
    assert sequencer.offer(5, "m5") == ["m5", "m6", "m7"]
    sequencer.offer(10, "m10")
    assert sequencer.fill([(5, "m5"), (6, "m6")], asked=asked) == []
    assert sequencer.missing() == (8, 9)


def test_fill_without_asked_assumes_the_hole_in_front_and_skips_what_history_lacks():
    sequencer = Sequencer()
    sequencer.skip_to(0)
    sequencer.offer(4, "m4")
    assert sequencer.fill([]) == ["m4"]  # 1 to 3 are gone from history
    assert sequencer.offer(3, "late") == []


def test_fill_before_anything_was_offered_starts_the_stream_at_history():
    sequencer = Sequencer()
    assert sequencer.fill([]) == []
    assert sequencer.fill([(3, "m3"), (5, "m5")]) == ["m3"]
    assert sequencer.missing() == (4, 4)
    assert sequencer.offer(4, "m4") == ["m4", "m5"]


def test_skip_to_moves_the_stream_on_and_delivers_what_then_follows():
    sequencer = Sequencer()
    assert sequencer.skip_to(10) == []
    assert sequencer.offer(10, "old") == []
    assert sequencer.offer(13, "m13") == []
    assert sequencer.offer(12, "m12") == []
    # The room is known to be at 11: 11 is delivered by whoever asked, 12 and 13 now.
    assert sequencer.skip_to(11) == ["m12", "m13"]
    assert sequencer.missing() is None
    assert sequencer.skip_to(5) == []  # never backwards
    assert sequencer.offer(14, "m14") == ["m14"]


# TokenBucket


def test_token_bucket_gives_the_burst_at_once_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.4) is False  # 0.8 of a token
    assert bucket.take(100.5) is True
    assert bucket.take(100.5) is False
    # Idle time refills up to the burst, never past it.
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_costs_and_a_bucket_first_used_late():
    bucket = TokenBucket(rate=1.0, burst=5.0)
    assert bucket.take(5000.0, cost=5) is True  # full on first use, whenever that is
    assert bucket.take(5000.0) is False
    assert bucket.take(5003.0, cost=3) is True
    assert bucket.take(5003.0, cost=6) is False


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.5, 50),
    st.integers(1, 20),
    st.lists(st.floats(0, 0.5), min_size=1, max_size=200),
)
def test_token_bucket_never_allows_more_than_burst_plus_rate_times_time(rate, burst, gaps):
    bucket = TokenBucket(rate=rate, burst=burst)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= burst + rate * now + 1e-9


# mentioned_usernames


def test_mentions_are_each_username_once_case_folded_in_order():
    body = "@Bob hi @ann, see @bob and @ANN and @carl_9!"
    assert mentioned_usernames(body) == ["bob", "ann", "carl_9"]
    assert mentioned_usernames("no mentions, not even @ alone or @") == []


def test_email_addresses_are_not_mentions():
    body = "write to bob@example.com or ann.lee@mail.example.org, first.last-@x.io; cc @dan"
    assert mentioned_usernames(body) == ["dan"]


def test_mentions_take_every_character_a_username_may_have():
    # Usernames are 3 to 32 of a-z, 0-9, '_', '.', '-' (identity).
    assert mentioned_usernames("hi @mary-jane and @j.doe.") == ["mary-jane", "j.doe"]
    assert mentioned_usernames("(@ann) @bob: @carl; @dan... @eve-") == [
        "ann",
        "bob",
        "carl",
        "dan",
        "eve-",  # a username may end with '-'; only dots end a sentence
    ]
    assert mentioned_usernames("@" + "a" * 32) == ["a" * 32]
    assert mentioned_usernames("@" + "a" * 33) == []  # no such user; not a prefix of it


# check_body


def test_check_body_accepts_text_up_to_the_limit():
    assert check_body("hello", 5) == "hello"
    assert check_body("  padded  ", 10) == "  padded  "
    assert check_body("caf\u00e9 \U0001f600", 6) == "caf\u00e9 \U0001f600"


@pytest.mark.parametrize(
    ("body", "says", "code"),
    [
        ("", "empty", "invalid"),
        (" \n\t ", "empty", "invalid"),
        ("x" * 11, "longer than 10", "body_too_long"),
        ("a\x00b", "NUL", "invalid"),
    ],
)
def test_check_body_refuses_empty_long_and_nul_bodies(body, says, code):
    with pytest.raises(InvalidInput, match=says) as refused:
        check_body(body, 10)
    assert (refused.value.field, refused.value.frame_code) == ("body", code)
    assert refused.value.code == "validation-error"  # a 422 problem over HTTP


# direct_key


@given(st.text(min_size=1), st.text(min_size=1))
def test_direct_key_is_the_same_whoever_asks_first(a, b):
    assert direct_key(a, b) == direct_key(b, a)


def test_direct_keys_of_different_pairs_differ():
    assert direct_key("u1", "u2") == "u1:u2"
    assert direct_key("u1", "u2") != direct_key("u1", "u3")
    assert direct_key("u1", "u1") == "u1:u1"
