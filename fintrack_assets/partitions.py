"""The partitions every asset shares: one object per kind (separate objects split backfills).

The first partition is FINTRACK_START_DATE, a setting, and settings are read when definitions are
built, never on import. So asset modules declare their kind with the module-level templates below
(which start at DEFAULT_START_DATE), and `build_defs` swaps each template for the object of the
same kind built from the settings (`partitions_for`): still one object per kind in a code
location.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dagster import (
    AssetSpec,
    BetaWarning,
    DailyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    TimeWindow,
    TimeWindowPartitionsDefinition,
)

from fintrack_assets.core.calendar import (
    TIMEZONE,
    last_known_session,
    non_session_weekdays,
    sessions_between,
)
from fintrack_assets.settings import DEFAULT_START_DATE

# Two beta parameters this project relies on deliberately: `backfill_policy` (a range is one run)
# and `allow_nonexistent_upstream_partitions` (trailing windows that start before the data); and
# one Dagster passes to itself when a command selects `group:<name>` (`include_sources`). Their
# BetaWarning tells a user of the platform nothing they can act on; every other one shows.
warnings.filterwarnings(
    "ignore",
    message=r"Parameter `(backfill_policy|allow_nonexistent_upstream_partitions|include_sources)`",
    category=BetaWarning,
)

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


def _calendar_days(start: dt.date) -> DailyPartitionsDefinition:
    return DailyPartitionsDefinition(start_date=start.isoformat(), timezone=TIMEZONE, end_offset=1)


def _months(start: dt.date) -> MonthlyPartitionsDefinition:
    return MonthlyPartitionsDefinition(
        start_date=start.replace(day=1).isoformat(), timezone=TIMEZONE
    )


def _session_months(start: dt.date) -> MonthlyPartitionsDefinition:
    return MonthlyPartitionsDefinition(
        start_date=start.replace(day=1).isoformat(), timezone=TIMEZONE, end_offset=1
    )


@dataclass(frozen=True)
class Partitions:
    """The four kinds for one first day."""

    trading_days: TimeWindowPartitionsDefinition
    """One partition per NYSE session (exchange_calendars XNYS), key YYYY-MM-DD, New York
    time."""
    calendar_days: DailyPartitionsDefinition
    """Every day, for payment transactions (people pay on Sundays). Today is a partition too:
    files land during the day and each new file re-runs it."""
    months: MonthlyPartitionsDefinition
    """Months that have ended, for holdings_monthly."""
    session_months: MonthlyPartitionsDefinition
    """Calendar months of sessions, the month in progress included, for the silver bars:
    partition M holds the bars whose bucket ends on a session of M. A bucket ends every 3 to
    34 sessions, so a session partition would be empty most days and still cost a
    materialisation event per interval (docs/decisions.md, "Silver by month")."""

    def declared_by(self, spec: AssetSpec) -> AssetSpec:
        """`spec` with its template partitions (the kind it declares) replaced by these."""
        template = spec.partitions_def
        for kind in ("trading_days", "calendar_days", "months", "session_months"):
            if template is getattr(TEMPLATES, kind):
                return spec.replace_attributes(partitions_def=getattr(self, kind))
        return spec


@functools.cache
def partitions_for(start: dt.date) -> Partitions:
    """The partitions of a code location whose FINTRACK_START_DATE is `start`; cached, so every
    Definitions built for the same start shares the same objects."""
    if start == DEFAULT_START_DATE:
        return TEMPLATES
    return Partitions(
        _trading_days(start), _calendar_days(start), _months(start), _session_months(start)
    )


TEMPLATES = Partitions(
    _trading_days(DEFAULT_START_DATE),
    _calendar_days(DEFAULT_START_DATE),
    _months(DEFAULT_START_DATE),
    _session_months(DEFAULT_START_DATE),
)
trading_days = TEMPLATES.trading_days
"""The template the trading_days assets declare (see the module docstring)."""
calendar_days = TEMPLATES.calendar_days
months = TEMPLATES.months
session_months = TEMPLATES.session_months


def window_dates(window: TimeWindow) -> tuple[dt.date, dt.date]:
    """The [start, end) dates a partition window covers, in New York time."""
    return window.start.astimezone(_NEW_YORK).date(), window.end.astimezone(_NEW_YORK).date()


def latest_closed_session(now: dt.datetime | None = None) -> str:
    """The newest trading_days key whose session has closed (16:05 New York has passed)."""
    now = now or dt.datetime.now(_NEW_YORK)
    today = now.astimezone(_NEW_YORK).date()
    recent = sessions_between(today - dt.timedelta(days=14), today + dt.timedelta(days=1))
    for day in reversed(recent):
        if dt.datetime.combine(day, MARKET_CLOSE_PLUS, _NEW_YORK) <= now:
            return day.isoformat()
    raise ValueError(f"no session of trading_days has closed by {now.isoformat()}")


def closed_part(
    start: dt.date, end: dt.date, now: dt.datetime | None = None
) -> tuple[dt.date, dt.date]:
    """[start, end) cut after the newest session closed by `now`: of a month in progress,
    only the days up to its last closed session (an empty window before the first)."""
    closed = dt.date.fromisoformat(latest_closed_session(now)) + dt.timedelta(days=1)
    return start, max(start, min(end, closed))


def unclosed_sessions(days: list[dt.date], now: dt.datetime | None = None) -> list[dt.date]:
    """Sessions among `days` whose partition has not opened yet (before 16:05 New York)."""
    now = now or dt.datetime.now(_NEW_YORK)
    return [d for d in days if dt.datetime.combine(d, MARKET_CLOSE_PLUS, _NEW_YORK) > now]
