"""A plain reference for silver bars: loops over bronze rows, sessions from exchange_calendars."""

import datetime as dt
import math
from collections import defaultdict

import exchange_calendars as xcals
import polars as pl

from fintrack_assets.core.silver import SILVER_SCHEMA

SESSIONS = [
    s.date()
    for s in xcals.get_calendar("XNYS", start="2000-01-03", end="2026-12-31").sessions_in_range(
        "2000-01-03", "2026-12-31"
    )
]
SESSION_INDEX = {day: i for i, day in enumerate(SESSIONS)}


def reference(rows: pl.DataFrame, interval: int, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Bars the plain way: loop over each symbol's bucket of sessions counted from 2000-01-03."""
    by_bucket: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows.iter_rows(named=True):
        by_bucket[(row["symbol"], SESSION_INDEX[row["date"]] // interval)].append(row)
    out = []
    for (symbol, bucket), days in by_bucket.items():
        first, last = SESSIONS[bucket * interval], SESSIONS[bucket * interval + interval - 1]
        if not start <= last < end:
            continue
        days.sort(key=lambda r: r["date"])
        factors = [
            math.prod(later["split_ratio"] for later in days[i + 1 :]) for i in range(len(days))
        ]
        out.append(
            {
                "symbol": symbol,
                "interval_days": interval,
                "bar_start": first,
                "bar_end": last,
                "open": days[0]["open"] / factors[0],
                "high": max(r["high"] / f for r, f in zip(days, factors, strict=True)),
                "low": min(r["low"] / f for r, f in zip(days, factors, strict=True)),
                "close": days[-1]["close"],
                "adj_close": days[-1]["adj_close"],
                "volume": sum(round(r["volume"] * f) for r, f in zip(days, factors, strict=True)),
                "n_days": len(days),
                "split_ratio": math.prod(r["split_ratio"] for r in days),
            }
        )
    return pl.DataFrame(out, schema=SILVER_SCHEMA).sort("symbol", "bar_end")
