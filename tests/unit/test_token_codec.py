"""Access tokens: what the edge accepts, including after a token has been seen before."""

import pytest

from townhall.platform import auth
from townhall.platform.auth import InvalidToken, Principal, TokenCodec
from townhall.platform.clock import FrozenClock

SECRET = "k" * 40


def test_a_verified_token_still_expires_on_time():
    clock = FrozenClock()
    codec = TokenCodec(SECRET, clock, access_ttl=60)
    token = codec.issue(Principal("u1", "ann", False))
    assert codec.verify(token) == Principal("u1", "ann", False)
    clock.advance(seconds=59)
    assert codec.verify(token).user_id == "u1"  # the remembered answer, still valid
    clock.advance(seconds=1)
    with pytest.raises(InvalidToken, match="expired"):
        codec.verify(token)


def test_a_tampered_token_is_refused_even_when_the_genuine_one_was_seen():
    codec = TokenCodec(SECRET, FrozenClock())
    token = codec.issue(Principal("u1", "ann", False))
    codec.verify(token)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(InvalidToken):
        codec.verify(forged)
    other = TokenCodec("z" * 40, FrozenClock()).issue(Principal("u1", "ann", True))
    with pytest.raises(InvalidToken):
        codec.verify(other)


def test_the_memory_of_verified_tokens_is_bounded(monkeypatch):
    monkeypatch.setattr(auth, "VERIFIED_CACHE_SIZE", 3)
    clock = FrozenClock()
    codec = TokenCodec(SECRET, clock)
    tokens = [codec.issue(Principal(f"u{n}", f"user{n}", False)) for n in range(5)]
    for token in tokens:
        codec.verify(token)
    assert len(codec._verified) == 3
    # Forgotten tokens are verified again from scratch, not refused.
    assert codec.verify(tokens[0]).user_id == "u0"
