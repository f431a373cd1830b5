import random

from hypothesis import given
from hypothesis import strategies as st

from townhall.platform.messaging import Backoff, Retry

bases = st.floats(min_value=0.001, max_value=10)
caps = st.floats(min_value=0.001, max_value=3600)
attempts = st.integers(min_value=1, max_value=10_000)


@given(bases, caps, attempts, st.integers())
def test_a_delay_lies_between_half_the_ceiling_and_the_ceiling_and_never_passes_the_cap(
    base, cap, attempt, seed
):
    backoff = Backoff(base, cap)
    delay = backoff.delay(attempt, ValueError(), random.Random(seed))
    ceiling = backoff.ceiling(attempt)
    assert ceiling / 2 <= delay <= ceiling <= cap


@given(bases, caps, attempts)
def test_the_ceiling_grows_with_each_attempt_until_the_cap(base, cap, attempt):
    backoff = Backoff(base, cap)
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1)
    if attempt < 60 and base * 2.0 ** (attempt - 1) < cap:
        assert backoff.ceiling(attempt) == base * 2.0 ** (attempt - 1)


@given(bases, caps, attempts, st.floats(min_value=0, max_value=86_400))
def test_a_delay_the_handler_asks_for_is_taken_as_is(base, cap, attempt, after):
    assert Backoff(base, cap).delay(attempt, Retry(after=after)) == after


@given(st.floats(max_value=0, allow_nan=False))
def test_a_negative_retry_after_means_now(after):
    assert Retry(after=after).after == 0
