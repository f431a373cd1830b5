from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from townhall.identity.domain import (
    BadRefreshToken,
    RefreshToken,
    RefreshTokenReused,
    User,
    check_password,
    check_username,
)
from townhall.platform.errors import Invalid

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("name", ["abc", "a.b-c_9", "x" * 32])
def test_usernames_of_3_to_32_allowed_characters_are_accepted(name):
    assert check_username(name) == name


@pytest.mark.parametrize("name", ["ab", "x" * 33, "Alice", "al ice", "al@ice", "élan", ""])
def test_other_usernames_are_refused_naming_the_field(name):
    with pytest.raises(Invalid) as caught:
        check_username(name)
    assert caught.value.field == "username"


@given(st.text(max_size=40))
def test_username_rule_is_exactly_the_documented_pattern(name):
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789_.-")
    ok = 3 <= len(name) <= 32 and set(name) <= allowed
    try:
        check_username(name)
        assert ok
    except Invalid:
        assert not ok


def test_password_needs_ten_characters():
    assert check_password("0123456789") == "0123456789"
    with pytest.raises(Invalid) as caught:
        check_password("123456789")
    assert caught.value.field == "password"


def test_a_fresh_refresh_token_is_usable_until_it_expires():
    token = RefreshToken.issue("h", "fam", "u", NOW, timedelta(days=1))
    token.check_usable(NOW + timedelta(hours=23))
    with pytest.raises(BadRefreshToken):
        token.check_usable(NOW + timedelta(days=1))


def test_a_used_refresh_token_reports_reuse_of_its_family():
    token = RefreshToken.issue("h", "fam", "u", NOW, timedelta(days=1))
    used = RefreshToken(**{**token.__dict__, "used_at": NOW})
    with pytest.raises(RefreshTokenReused) as caught:
        used.check_usable(NOW)
    assert caught.value.family_id == "fam"


def test_profile_edits_validate_the_time_zone_and_refuse_other_fields():
    user = User("1", "alice", "hash", NOW)
    assert user.with_profile({"time_zone": "Europe/Paris"}).time_zone == "Europe/Paris"
    with pytest.raises(Invalid) as caught:
        user.with_profile({"time_zone": "Mars/Olympus"})
    assert caught.value.field == "time_zone"
    with pytest.raises(Invalid):
        user.with_profile({"username": "mallory"})
