"""Quiet hours in the user's time zone, across zones, midnight and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.notifications.domain import QuietHours
from townhall.platform.time_zones import check_time_zone, is_iana_time_zone


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_window_across_midnight_holds_until_the_next_local_morning() -> None:
    quiet = QuietHours(time(22), time(7), "Europe/Paris")  # UTC+1 in January
    assert quiet.held_until(utc(2026, 1, 10, 21, 30)) == utc(2026, 1, 11, 6, 0)  # 22:30 local
    assert quiet.held_until(utc(2026, 1, 11, 2, 0)) == utc(2026, 1, 11, 6, 0)  # 03:00 local
    assert quiet.held_until(utc(2026, 1, 11, 6, 0)) is None  # 07:00 local: the end is open
    assert quiet.held_until(utc(2026, 1, 10, 20, 59)) is None  # 21:59 local


def test_same_utc_instant_is_quiet_in_one_zone_and_not_in_another() -> None:
    instant = utc(2026, 6, 1, 4, 0)
    tokyo = QuietHours(time(22), time(7), "Asia/Tokyo")  # 13:00 there
    new_york = QuietHours(time(22), time(7), "America/New_York")  # 00:00 there
    assert tokyo.held_until(instant) is None
    assert new_york.held_until(instant) == utc(2026, 6, 1, 11, 0)


def test_window_within_one_day_and_empty_window() -> None:
    siesta = QuietHours(time(13), time(15), "UTC")
    assert siesta.held_until(utc(2026, 5, 5, 14, 0)) == utc(2026, 5, 5, 15, 0)
    assert siesta.held_until(utc(2026, 5, 5, 15, 0)) is None
    assert QuietHours(time(9), time(9), "UTC").held_until(utc(2026, 5, 5, 9, 0)) is None


def test_spring_forward_night_ends_at_the_same_wall_clock_time_one_hour_sooner() -> None:
    # Europe/Paris springs forward on 2026-03-29 at 02:00 -> 03:00 (UTC+1 -> UTC+2).
    quiet = QuietHours(time(22), time(7), "Europe/Paris")
    assert quiet.held_until(utc(2026, 3, 28, 22, 0)) == utc(2026, 3, 29, 5, 0)  # 07:00 CEST


def test_end_inside_the_skipped_hour_releases_at_the_transition() -> None:
    quiet = QuietHours(time(23), time(2, 30), "Europe/Paris")  # 02:30 never shows that night
    assert quiet.held_until(utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST


def test_fall_back_night_ends_at_the_first_time_the_clock_reads_the_end() -> None:
    # America/New_York falls back on 2026-11-01 at 02:00 EDT -> 01:00 EST; 01:30 happens twice.
    quiet = QuietHours(time(22), time(1, 30), "America/New_York")
    assert quiet.held_until(utc(2026, 11, 1, 3, 0)) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    # during the second 01:00-02:00 the wall clock says 01:xx again: quiet until 01:30 EST
    assert quiet.held_until(utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 1, 6, 30)


def test_southern_hemisphere_dst_is_followed() -> None:
    # Australia/Sydney: UTC+11 in January (summer), UTC+10 in July
    quiet = QuietHours(time(21), time(8), "Australia/Sydney")
    assert quiet.held_until(utc(2026, 1, 15, 12, 0)) == utc(2026, 1, 15, 21, 0)
    assert quiet.held_until(utc(2026, 7, 15, 12, 0)) == utc(2026, 7, 15, 22, 0)


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


@settings(max_examples=300, deadline=None)
@given(
    now=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
    ),
    start=st.times(),
    end=st.times(),
    zone=st.sampled_from(ZONES),
)
def test_a_hold_ends_after_now_within_a_day_and_outside_quiet_hours(
    now: datetime, start: time, end: time, zone: str
) -> None:
    start, end = start.replace(microsecond=0), end.replace(microsecond=0)
    quiet = QuietHours(start, end, zone)
    until = quiet.held_until(now)
    if until is None:
        return
    assert now < until <= now + timedelta(hours=25)
    assert quiet.held_until(until) is None


def test_only_iana_time_zone_names_pass_the_shared_rule() -> None:
    for name in ("UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5"):
        assert is_iana_time_zone(name) and check_time_zone(name) == name
    # `localtime` loads with zoneinfo on many systems (the server's own zone): not a name.
    for name in ("localtime", "posixrules", "Factory", "europe/paris", "", "Mars/Olympus"):
        assert not is_iana_time_zone(name)
        with pytest.raises(ValueError, match="IANA time zone name"):
            check_time_zone(name)
