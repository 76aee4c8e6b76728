import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from fintrack_assets.core.calendar import is_session, session_for_index, session_index
from fintrack_assets.partitions import (
    closed_part,
    latest_closed_session,
    session_months,
    trading_days,
    unclosed_sessions,
    window_dates,
)

NY = ZoneInfo("America/New_York")
D = dt.date


@pytest.mark.parametrize(
    ("day", "index"),
    [
        # Worked by hand: Jan 3-7 2000 are 0-4, Jan 10-14 are 5-9, Jan 17 is MLK day.
        (D(2000, 1, 3), 0),
        (D(2000, 1, 4), 1),
        (D(2000, 1, 10), 5),
        (D(2000, 1, 18), 10),
    ],
)
def test_session_index_counts_sessions_from_the_epoch(day, index):
    assert session_index(day) == index
    assert session_for_index(index) == day


def test_session_index_refuses_a_holiday():
    with pytest.raises(ValueError, match="not an NYSE session"):
        session_index(D(2000, 1, 17))


def test_a_year_of_sessions_matches_a_reference_count():
    # 2019: 261 weekdays minus 9 NYSE holidays = 252 sessions.
    assert session_index(D(2020, 1, 2)) - session_index(D(2019, 1, 2)) == 252


@pytest.mark.parametrize(
    ("day", "session"),
    [
        (D(2025, 7, 3), True),
        (D(2025, 7, 4), False),  # Independence Day
        (D(2025, 4, 18), False),  # Good Friday
        (D(2025, 1, 9), False),  # national day of mourning for President Carter
        (D(2025, 3, 15), False),  # Saturday
        (D(2012, 10, 29), False),  # Hurricane Sandy
    ],
)
def test_trading_days_are_exactly_the_sessions(day, session):
    keys = set(trading_days.get_partition_keys(current_time=dt.datetime(2025, 12, 31, tzinfo=NY)))
    assert is_session(day) is session
    if day >= D(2020, 1, 2):
        assert (day.isoformat() in keys) is session


def test_a_partition_window_covers_its_session_up_to_the_next():
    window = trading_days.time_window_for_partition_key("2025-07-03")
    assert window_dates(window) == (D(2025, 7, 3), D(2025, 7, 4))
    friday = trading_days.time_window_for_partition_key("2025-03-14")
    assert window_dates(friday) == (D(2025, 3, 14), D(2025, 3, 17))


@pytest.mark.parametrize(
    ("now", "latest"),
    [
        (dt.datetime(2025, 3, 14, 16, 4, tzinfo=NY), "2025-03-13"),
        (dt.datetime(2025, 3, 14, 16, 5, tzinfo=NY), "2025-03-14"),
        (dt.datetime(2025, 3, 16, 12, 0, tzinfo=NY), "2025-03-14"),
        (dt.datetime(2025, 7, 4, 17, 0, tzinfo=NY), "2025-07-03"),
    ],
)
def test_a_session_opens_at_1605_new_york(now, latest):
    assert latest_closed_session(now) == latest


@pytest.mark.parametrize(
    ("now", "end"),
    [
        # Friday 14 March before the close: the month's window ends after Thursday 13.
        (dt.datetime(2025, 3, 14, 15, 0, tzinfo=NY), D(2025, 3, 14)),
        (dt.datetime(2025, 3, 14, 16, 5, tzinfo=NY), D(2025, 3, 15)),
        # Saturday 1 March: February's last session is Friday 28, before the window.
        (dt.datetime(2025, 3, 1, 12, 0, tzinfo=NY), D(2025, 3, 1)),
        # A month that has ended keeps its whole window.
        (dt.datetime(2025, 4, 2, 9, 0, tzinfo=NY), D(2025, 4, 1)),
    ],
)
def test_the_month_in_progress_ends_after_its_last_closed_session(now, end):
    march = session_months.time_window_for_partition_key("2025-03-01")
    assert window_dates(march) == (D(2025, 3, 1), D(2025, 4, 1))
    assert closed_part(*window_dates(march), now) == (D(2025, 3, 1), end)


def test_session_months_hold_the_month_in_progress():
    now = dt.datetime.now(NY)
    assert session_months.get_last_partition_key() == now.date().replace(day=1).isoformat()


def test_unclosed_sessions_are_refused_before_1605():
    now = dt.datetime(2025, 3, 14, 15, 0, tzinfo=NY)
    assert unclosed_sessions([D(2025, 3, 13), D(2025, 3, 14)], now) == [D(2025, 3, 14)]
