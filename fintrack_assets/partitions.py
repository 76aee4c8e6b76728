"""The partitions every asset shares: one object per kind (separate objects split backfills)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import (
    AssetSelection,
    AutomationCondition,
    DailyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    TimeWindow,
    TimeWindowPartitionsDefinition,
)

from fintrack_assets.core.calendar import TIMEZONE, last_known_session, non_session_weekdays
from fintrack_assets.settings import get_settings

MARKET_CLOSE_PLUS = dt.time(16, 5)
"""A session's partition opens at 16:05 New York time, once the closing prints are in."""

_NEW_YORK = ZoneInfo(TIMEZONE)


def _trading_days(start: dt.date) -> TimeWindowPartitionsDefinition:
    closed = non_session_weekdays(start, last_known_session())
    return TimeWindowPartitionsDefinition(
        start=dt.datetime.combine(start, MARKET_CLOSE_PLUS),
        cron_schedule=f"{MARKET_CLOSE_PLUS.minute} {MARKET_CLOSE_PLUS.hour} * * 1-5",
        fmt="%Y-%m-%d",
        timezone=TIMEZONE,
        end_offset=1,
        exclusions=[dt.datetime.combine(day, MARKET_CLOSE_PLUS, _NEW_YORK) for day in closed],
    )


_settings = get_settings()

trading_days = _trading_days(_settings.start_date)
"""One partition per NYSE session (exchange_calendars XNYS), key YYYY-MM-DD, New York time."""

calendar_days = DailyPartitionsDefinition(
    start_date=_settings.start_date.isoformat(), timezone=TIMEZONE, end_offset=1
)
"""Every day, for payment transactions (people pay on Sundays). Today is a partition too:
files land during the day and each new file re-runs it."""

months = MonthlyPartitionsDefinition(
    start_date=_settings.start_date.replace(day=1).isoformat(), timezone=TIMEZONE
)


def window_dates(window: TimeWindow) -> tuple[dt.date, dt.date]:
    """The [start, end) dates a partition window covers, in New York time."""
    return window.start.astimezone(_NEW_YORK).date(), window.end.astimezone(_NEW_YORK).date()


def latest_closed_session(now: dt.datetime | None = None) -> str:
    """The newest trading_days key whose session has closed (16:05 New York has passed)."""
    now = now or dt.datetime.now(_NEW_YORK)
    keys = trading_days.get_partition_keys(current_time=now)
    for key in reversed(keys):
        session_ready = dt.datetime.combine(
            dt.date.fromisoformat(key), MARKET_CLOSE_PLUS, _NEW_YORK
        )
        if session_ready <= now:
            return key
    raise ValueError(f"no session of trading_days has closed by {now.isoformat()}")


def unclosed_sessions(days: list[dt.date], now: dt.datetime | None = None) -> list[dt.date]:
    """Sessions among `days` whose partition has not opened yet (before 16:05 New York)."""
    now = now or dt.datetime.now(_NEW_YORK)
    return [d for d in days if dt.datetime.combine(d, MARKET_CLOSE_PLUS, _NEW_YORK) > now]


FOLLOWS_UPSTREAM = (
    AutomationCondition.in_latest_time_window()
    & AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("follows_upstream")
"""Declarative automation for the layers after bronze: the latest session's partition is
requested once any of its upstream partitions is updated, when nothing upstream is still
running. Unlike `eager()` it does not wait for every mapped upstream partition to exist, so a
trailing window (silver's 34 sessions, risk's 253) that starts before the data does still
runs."""


def follows_upstream_once(*ready: str) -> AutomationCondition:
    """FOLLOWS_UPSTREAM, and only once each of `ready` (upstream asset keys mapped to the same
    partition) exists or is requested in the same tick: holdings wait for portfolio_trades,
    risk waits for holdings_daily."""
    absent = AutomationCondition.missing() & ~AutomationCondition.will_be_requested()
    waiting = AutomationCondition.any_deps_match(absent).allow(AssetSelection.assets(*ready))
    return (FOLLOWS_UPSTREAM & ~waiting).with_label(f"follows_upstream, needs {', '.join(ready)}")
