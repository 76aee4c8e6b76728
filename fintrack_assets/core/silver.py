"""bronze -> silver: bars of N consecutive NYSE sessions, aligned on the session epoch.

Bucket b of interval N holds sessions b*N .. b*N+N-1 counted from the epoch (2000-01-03 is
session 0), so bars line up across symbols and never move when data arrives. A bar is on the
basis of its last session: a split inside the bucket scales the days before it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from fintrack_assets.core.bronze import BAR_VALUES_SCHEMA
from fintrack_assets.core.calendar import nyse_sessions

INTERVALS: tuple[int, ...] = (3, 5, 8, 13, 21, 34)
"""The Fibonacci bar lengths, in sessions."""

SILVER_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "interval_days": pl.Int32(),
    "bar_start": pl.Date(),
    "bar_end": pl.Date(),
    **BAR_VALUES_SCHEMA,
    "n_days": pl.Int32(),
    "split_ratio": pl.Float64(),
}
"""`split_ratio` (beyond the contract) is the product of the splits inside the bar: what a
consumer needs to put consecutive bars on one basis."""

PRICE_COLUMNS = ["open", "high", "low", "close", "adj_close", "volume", "split_ratio"]
BRONZE_COLUMNS = [
    "symbol",
    "date",
    "open",
    "high",
    "low",
    "close",
    "adj_close",
    "volume",
    "split_ratio",
]
"""The bronze columns a bar is made of (the rest is never read)."""


def _sessions() -> pl.Series:
    return pl.Series("session", nyse_sessions(), dtype=pl.Date)


def session_range(start: dt.date, end: dt.date) -> tuple[int, int]:
    """[lo, hi) session indices of the sessions with start <= session < end."""
    sessions = nyse_sessions()
    lo = int(np.searchsorted(sessions, np.datetime64(start, "D"), side="left"))
    hi = int(np.searchsorted(sessions, np.datetime64(end, "D"), side="left"))
    return lo, hi


def buckets_ending_in(interval: int, start: dt.date, end: dt.date) -> range:
    """The buckets whose last session falls in [start, end) (empty when none does)."""
    lo, hi = session_range(start, end)
    return range(lo // interval, hi // interval)


def bucket_bounds(interval: int, buckets: range) -> pl.DataFrame:
    """bucket -> (bar_start, bar_end): its first and last session."""
    index = np.arange(buckets.start, buckets.stop, dtype=np.int64)
    sessions = _sessions()
    return pl.DataFrame(
        {
            "bucket": index,
            "bar_start": sessions.gather(index * interval),
            "bar_end": sessions.gather(index * interval + interval - 1),
        }
    )


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=SILVER_SCHEMA)


@dataclass(frozen=True)
class Panel:
    """Bronze rows sorted by (symbol, session): every (symbol, bucket) of any interval is a
    contiguous run, so all six intervals share one sort."""

    symbols: pl.Series
    code: np.ndarray
    index: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    adj_close: np.ndarray
    volume: np.ndarray
    split_ratio: np.ndarray

    @classmethod
    def from_bronze(cls, bronze: pl.DataFrame) -> Panel:
        days = bronze["date"].cast(pl.Int32).to_numpy()
        index = _session_index(days)
        if np.any(index < 0):
            raise ValueError("bronze rows dated on a non-session: bronze must hold sessions only")
        symbols = bronze["symbol"].unique().sort()
        code = bronze["symbol"].cast(pl.Enum(symbols)).to_physical().to_numpy().astype(np.int64)
        order = _symbol_session_order(code, index)
        sorted_rows = (
            bronze.select(PRICE_COLUMNS)
            .with_columns(
                pl.Series("_code", code),
                pl.Series("_index", index),
                pl.col("adj_close").fill_null(np.nan),
            )
            .gather(pl.Series(order))
        )

        def column(name: str) -> np.ndarray:
            return sorted_rows[name].to_numpy()

        return cls(
            symbols=symbols,
            code=column("_code"),
            index=column("_index"),
            open=column("open"),
            high=column("high"),
            low=column("low"),
            close=column("close"),
            adj_close=column("adj_close"),
            volume=column("volume"),
            split_ratio=column("split_ratio"),
        )

    @property
    def rows(self) -> int:
        return len(self.index)

    def bars(self, interval: int, start: dt.date, end: dt.date) -> pl.DataFrame:
        """The bars of `interval` sessions whose bucket ends on a session in [start, end)."""
        buckets = buckets_ending_in(interval, start, end)
        if not buckets or len(self.index) == 0:
            return empty_bars()
        bucket = self.index // interval
        group = (self.code << 32) | bucket
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        ends = np.r_[starts[1:], len(group)]
        factor = _later_splits(self.split_ratio, starts, ends)
        volume = self.volume
        if np.any(factor != 1.0):
            volume = np.where(factor == 1.0, volume, np.rint(volume * factor)).astype(np.int64)
        bar = bucket[starts]
        keep = (bar >= buckets.start) & (bar < buckets.stop)
        if not keep.any():
            return empty_bars()
        bar, last = bar[keep], ends[keep] - 1
        sessions = _sessions()
        adj_close = self.adj_close[last]
        return pl.DataFrame(
            {
                "symbol": self.symbols.gather(self.code[starts[keep]]),
                "interval_days": np.full(len(bar), interval, dtype=np.int32),
                "bar_start": sessions.gather(bar * interval),
                "bar_end": sessions.gather(bar * interval + interval - 1),
                "open": (self.open / factor)[starts][keep],
                "high": np.maximum.reduceat(self.high / factor, starts)[keep],
                "low": np.minimum.reduceat(self.low / factor, starts)[keep],
                "close": self.close[last],
                "adj_close": pl.Series(adj_close, nan_to_null=True),
                "volume": np.add.reduceat(volume, starts)[keep],
                "n_days": (ends - starts)[keep].astype(np.int32),
                "split_ratio": np.multiply.reduceat(self.split_ratio, starts)[keep],
            },
            schema=SILVER_SCHEMA,
        )


def bronze_window(
    intervals: Iterable[int], start: dt.date, end: dt.date
) -> tuple[dt.date, dt.date]:
    """The [first, end) bronze dates that hold every bucket of `intervals` ending in [start,
    end): what a run over that window reads, once, for all of them."""
    sessions = nyse_sessions()
    first = min(
        (b.start * n for n in intervals if (b := buckets_ending_in(n, start, end))),
        default=None,
    )
    if first is None:
        return start, start
    return sessions[first].astype(dt.date), end


def resample(bronze: pl.DataFrame, interval: int, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The bars of `interval` sessions whose bucket ends on a session in [start, end).

    `bronze` must hold every bronze row of those buckets (it may hold more). Rows of a bucket
    ending outside the window are ignored, so a window's bars never depend on what else was
    loaded. Each day's volume is put on the bar's basis (rounded to whole shares) before it is
    summed."""
    return Panel.from_bronze(bronze).bars(interval, start, end)


def _symbol_session_order(code: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The row order by (symbol, session). Each pair owns one slot of a symbol-major grid;
    listing the occupied slots sorts without a comparison sort."""
    if len(index) == 0:
        return np.zeros(0, dtype=np.int64)
    first = int(index.min())
    width = int(index.max()) - first + 1
    grid = np.full((int(code.max()) + 1) * width, -1, dtype=np.int64)
    slot = code * width + (index - first)
    grid[slot] = np.arange(len(slot))
    order = grid[grid >= 0]
    if len(order) != len(slot):
        raise ValueError("bronze holds more than one row for a (symbol, date)")
    return order


def _session_index(days: np.ndarray) -> np.ndarray:
    """Session index of each day (days since 1970-01-01), -1 where the day is no session."""
    sessions = nyse_sessions().astype(np.int64)
    lookup = np.full(int(sessions[-1] - sessions[0]) + 1, -1, dtype=np.int64)
    lookup[sessions - sessions[0]] = np.arange(len(sessions))
    offset = days.astype(np.int64) - sessions[0]
    inside = (offset >= 0) & (offset < len(lookup))
    return np.where(inside, lookup[np.clip(offset, 0, len(lookup) - 1)], -1)


def _later_splits(split: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per row, the product of the splits after it in its run: its factor to the bar's basis.
    Splits are rare, so only the runs that hold one are walked."""
    factor = np.ones(len(split))
    run_of = np.repeat(np.arange(len(starts)), ends - starts)
    for row in np.flatnonzero(split != 1.0):
        first = starts[run_of[row]]
        factor[first:row] *= split[row]
    return factor


def misaligned_bars(
    bars: pl.DataFrame, interval: int, start: dt.date, end: dt.date
) -> pl.DataFrame:
    """Bars that are not where the bucket rule puts them: interval_days other than
    `interval`, or (bar_start, bar_end) not the first and last session of a bucket ending in
    [start, end)."""
    expected = bucket_bounds(interval, buckets_ending_in(interval, start, end)).drop("bucket")
    marked = bars.join(
        expected.with_columns(pl.lit(True).alias("_aligned")),
        on=["bar_start", "bar_end"],
        how="left",
    )
    return marked.filter(pl.col("_aligned").is_null() | (pl.col("interval_days") != interval)).drop(
        "_aligned"
    )


def nesting_mismatches(inner: pl.DataFrame, outer: pl.DataFrame) -> pl.DataFrame:
    """Outer bars that disagree with the inner bars nested in them (an interval dividing the
    outer one, so its buckets tile the outer bucket exactly): open, high, low, close, volume
    and n_days of the inner bars, put on the outer bar's basis, must give the outer bar.
    Returns one row per disagreeing outer bar with both versions side by side."""
    if outer.is_empty():
        return pl.DataFrame()
    # Each inner bar belongs to the first outer bar (of its symbol) ending on or after it.
    owners = outer.select(
        "symbol", pl.col("bar_start").alias("outer_start"), pl.col("bar_end").alias("outer_end")
    ).sort("outer_end")
    rows = (
        inner.sort("bar_end")
        .join_asof(
            owners,
            left_on="bar_end",
            right_on="outer_end",
            by="symbol",
            strategy="forward",
            check_sortedness=False,  # both sides are sorted on the key above
        )
        .filter(pl.col("outer_end").is_not_null() & (pl.col("bar_start") >= pl.col("outer_start")))
        .sort("symbol", "outer_end", "bar_end")
    )
    if rows.is_empty():
        nested = pl.DataFrame(
            schema={"symbol": pl.String, "bar_end": pl.Date}
            | {c: SILVER_SCHEMA[c] for c in ("open", "high", "low", "close", "volume", "n_days")}
        )
    else:
        new_owner = (pl.col("symbol") != pl.col("symbol").shift()) | (
            pl.col("outer_end") != pl.col("outer_end").shift()
        )
        starts = np.flatnonzero(rows.select(new_owner.fill_null(True)).to_series().to_numpy())
        ends = np.r_[starts[1:], rows.height]
        later = _later_splits(rows["split_ratio"].to_numpy(), starts, ends)
        nested = pl.DataFrame(
            {
                "symbol": rows["symbol"].gather(starts),
                "bar_end": rows["outer_end"].gather(starts),
                "open": rows["open"].to_numpy()[starts] / later[starts],
                "high": np.maximum.reduceat(rows["high"].to_numpy() / later, starts),
                "low": np.minimum.reduceat(rows["low"].to_numpy() / later, starts),
                "close": rows["close"].gather(ends - 1),
                "volume": np.add.reduceat(rows["volume"].to_numpy() * later, starts),
                "n_days": np.add.reduceat(rows["n_days"].to_numpy(), starts).astype(np.int32),
            }
        )
    both = outer.join(nested, on=["symbol", "bar_end"], how="left", suffix="_nested")

    def differs(column: str) -> pl.Expr:
        ours, theirs = pl.col(column), pl.col(f"{column}_nested")
        return theirs.is_null() | ((ours - theirs).abs() > 1e-9 * ours.abs())

    # Volumes are rounded to whole shares day by day, so a split may move them by a share a day.
    volume_off = (pl.col("volume") - pl.col("volume_nested")).abs() > pl.col("n_days")
    bad = (
        pl.any_horizontal(differs(c) for c in ("open", "high", "low", "close"))
        | volume_off.fill_null(True)
        | (pl.col("n_days") != pl.col("n_days_nested")).fill_null(True)
    )
    columns = ["open", "high", "low", "close", "volume", "n_days"]
    return both.filter(bad).select(
        "symbol",
        "bar_start",
        "bar_end",
        *[c for column in columns for c in (column, f"{column}_nested")],
    )
