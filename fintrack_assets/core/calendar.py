"""The NYSE session calendar and the session index that aligns silver buckets."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import polars as pl

EPOCH = dt.date(2000, 1, 3)
"""Session index 0. Bucket boundaries of every silver interval count from here."""

EXCHANGE = "XNYS"
TIMEZONE = "America/New_York"


@lru_cache(maxsize=1)
def nyse_sessions() -> np.ndarray:
    """Every NYSE session from the epoch to the end of the published calendar (datetime64[D])."""
    calendar = xcals.get_calendar(EXCHANGE, start=EPOCH.isoformat())
    return calendar.sessions.values.astype("datetime64[D]")


def last_known_session() -> dt.date:
    return nyse_sessions()[-1].astype(dt.date)


def sessions_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Sessions with start <= session < end."""
    sessions = nyse_sessions()
    lo = np.searchsorted(sessions, np.datetime64(start, "D"), side="left")
    hi = np.searchsorted(sessions, np.datetime64(end, "D"), side="left")
    return [d.astype(dt.date) for d in sessions[lo:hi]]


def is_session(day: dt.date) -> bool:
    sessions = nyse_sessions()
    target = np.datetime64(day, "D")
    i = np.searchsorted(sessions, target)
    return bool(i < len(sessions) and sessions[i] == target)


def session_index(day: dt.date) -> int:
    """Sessions counted from the epoch (2000-01-03 is 0). Raises for a non-session."""
    sessions = nyse_sessions()
    target = np.datetime64(day, "D")
    i = int(np.searchsorted(sessions, target))
    if i >= len(sessions) or sessions[i] != target:
        if day > last_known_session():
            raise ValueError(
                f"{day} is beyond the published NYSE calendar (last session "
                f"{last_known_session()}); upgrade exchange_calendars"
            )
        raise ValueError(f"{day} is not an NYSE session")
    return i


def session_for_index(index: int) -> dt.date:
    return nyse_sessions()[index].astype(dt.date)


def non_session_weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] on which NYSE is closed: holidays and special closures."""
    weekdays = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    weekdays = weekdays[np.is_busday(weekdays)]
    closed = weekdays[~np.isin(weekdays, nyse_sessions())]
    return [d.astype(dt.date) for d in closed]


def with_session_index(frame: pl.DataFrame, date_col: str = "date") -> pl.DataFrame:
    """Adds `session_index` (null where the date is not a session)."""
    sessions = pl.Series("date", nyse_sessions(), dtype=pl.Date)
    index = pl.DataFrame({date_col: sessions, "session_index": np.arange(len(sessions))})
    return frame.join(index, on=date_col, how="left")


def require_within_window(
    frame: pl.DataFrame, date_col: str, start: dt.date, end: dt.date, where: str
) -> None:
    """Refuses rows a window write would not own: a date outside [start, end), or none."""
    if date_col not in frame.columns:
        raise ValueError(f"{where} has no partition column {date_col!r}")
    outside = frame.filter(
        pl.col(date_col).is_null() | ~pl.col(date_col).is_between(start, end, closed="left")
    )
    if not outside.is_empty():
        raise ValueError(
            f"{outside.height} row(s) of {where} fall outside the partition window "
            f"[{start}, {end}), e.g. {outside.row(0, named=True)}"
        )


def session_due(now: dt.datetime, deadline: dt.time) -> dt.date:
    """The newest session whose data was due by `deadline` New York time on its day, as of
    `now` (timezone-aware): before 18:00 on a session it is the previous session, and on a
    holiday or weekend the last session before it."""
    local = now.astimezone(ZoneInfo(TIMEZONE))
    day = local.date() if local.time() >= deadline else local.date() - dt.timedelta(days=1)
    sessions = nyse_sessions()
    i = int(np.searchsorted(sessions, np.datetime64(day, "D"), side="right")) - 1
    if i < 0:
        raise ValueError(f"no NYSE session on or before {day}")
    return sessions[i].astype(dt.date)
