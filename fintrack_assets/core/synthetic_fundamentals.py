"""Deterministic synthetic fundamentals and treasury yields, the offline default.

Like core/synthetic.py, every number is a hash of (symbol or series, index, stream): a quarter's
figures depend on the symbol and the quarter alone, a session's yields on the session alone,
so any window gives the same value for the same quarter or day.

Yields: each tenor is a smooth transform of a hash-seeded random walk on the session index from
the epoch (2000-01-03), the 3-month bounded in (0, 5.5) %, each longer tenor a bounded spread
above the one before, so the curve is mostly upward sloping and every yield positive.
Fundamentals: quarterly revenue grows along a per-symbol trend with noise and a seasonal swing;
a margin with noise gives net income; shares drift down slowly (buybacks); eps is net income
over shares; the filing comes 30 to 60 days after the quarter ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from fintrack_assets.core.calendar import session_index
from fintrack_assets.core.fundamentals import FIGURES, TENORS, calendar_quarter, empty_yields
from fintrack_assets.core.synthetic import normal_draws, symbol_hash, uniform_draws, unit_draws

_U64 = np.uint64
_WALK, _REVENUE, _MARGIN, _CASH, _FILING = 41, 42, 43, 44, 45
_EPOCH_YEAR = 2000
_REFERENCE_QUARTER = 96  # 2024Q1

_CURVE = (
    # (column, centre, half-range, steps of the walk per unit inside tanh)
    ("yield_3m", 2.75, 2.70, 60.0),
    ("yield_5y", 0.90, 0.85, 40.0),
    ("yield_10y", 0.40, 0.35, 30.0),
    ("yield_30y", 0.30, 0.25, 30.0),
)
"""The 3-month level, then each tenor's spread over the previous one: centre + half-range x
tanh(walk / steps). A walk of unit normal steps is ~80 after 25 years, so the tanh rarely
saturates and the 10-year moves a few basis points a day."""


def synthetic_yields(sessions: Sequence[dt.date]) -> pl.DataFrame:
    """One row per session (percent, three decimals, as Yahoo quotes), source not set."""
    if not sessions:
        return empty_yields().drop("source")
    index = np.array([session_index(day) for day in sessions], dtype=np.int64)
    walks = np.cumsum(
        normal_draws(
            symbol_hash([f"yield:{c[0]}" for c in _CURVE]), np.arange(index.max() + 1), _WALK
        ),
        axis=1,
    )[:, index]
    level = np.zeros(len(index))
    columns: dict[str, np.ndarray] = {}
    for row, (column, centre, half_range, steps) in enumerate(_CURVE):
        level = level + centre + half_range * np.tanh(walks[row] / steps)
        columns[column] = np.round(level, 3)
    return pl.DataFrame(
        {"date": pl.Series(list(sessions), dtype=pl.Date), **{c: columns[c] for c in TENORS}}
    )


def _quarter_end(q: int) -> dt.date:
    """The last day of quarter q counted from 2000Q1 (q = 0)."""
    year, quarter = _EPOCH_YEAR + q // 4, q % 4 + 1
    month_after = dt.date(year + quarter // 4, quarter % 4 * 3 + 1, 1)
    return month_after - dt.timedelta(days=1)


def _quarter_of(day: dt.date) -> int:
    return (day.year - _EPOCH_YEAR) * 4 + (day.month - 1) // 3


def synthetic_fundamentals(symbols: Sequence[str], since: dt.date, as_of: dt.date) -> pl.DataFrame:
    """Quarters ending on or after `since` whose filing date is on or before `as_of`, for every
    symbol: rows before `source` and `fetched_at`."""
    schema = {
        "symbol": pl.String,
        "fiscal_period": pl.String,
        "period_end": pl.Date,
        "filing_date": pl.Date,
    }
    first, last = max(_quarter_of(since), 0), _quarter_of(as_of)
    if not symbols or last < first:
        return _frame([], [], [], [], {}, schema)
    quarters = np.arange(first, last + 1)
    if _quarter_end(first) < since:
        quarters = quarters[1:]
    h = symbol_hash(list(symbols))
    k, n = len(symbols), len(quarters)
    growth = 0.005 + 0.015 * unit_draws(h, 22)  # per quarter
    revenue = np.exp(
        np.log(2e8)
        + 5.0 * unit_draws(h, 21)[:, None]
        + growth[:, None] * quarters[None, :]
        + 0.04 * normal_draws(h, quarters, _REVENUE)
        + 0.03 * np.sin(np.pi / 2 * quarters[None, :] + 6.28 * unit_draws(h, 28)[:, None])
    )
    typical_margin = 0.04 + 0.2 * unit_draws(h, 23)
    margin = typical_margin[:, None] + 0.015 * normal_draws(h, quarters, _MARGIN)
    net_income = np.round(revenue * margin)
    # Shares such that the trend's earnings of 2024Q1 price the symbol at a P/E of 12 to 32 at
    # $80 (synthetic prices split when they run above $150), bought back slowly: a quarter's
    # count depends on the symbol and the quarter alone, never on the window.
    pe = 12.0 + 20.0 * unit_draws(h, 24)
    reference_revenue = np.exp(np.log(2e8) + 5.0 * unit_draws(h, 21) + growth * _REFERENCE_QUARTER)
    shares = np.round(
        (reference_revenue * typical_margin * 4.0 * pe / 80.0)[:, None]
        * np.exp(-0.004 * unit_draws(h, 25)[:, None] * (quarters - _REFERENCE_QUARTER)[None, :])
    )
    assets = np.round(revenue * (2.0 + 4.0 * unit_draws(h, 26))[:, None])
    liabilities = np.round(assets * (0.3 + 0.4 * unit_draws(h, 27))[:, None])
    cash = np.round(net_income + revenue * 0.05 * (1.0 + normal_draws(h, quarters, _CASH)))
    lag = 30 + np.floor(31 * uniform_draws(h, quarters, _FILING)).astype(np.int64)
    ends = [_quarter_end(int(q)) for q in quarters]
    filed = [[ends[j] + dt.timedelta(days=int(lag[i, j])) for j in range(n)] for i in range(k)]
    known = np.array([[day <= as_of for day in row] for row in filed]).ravel()
    figures = {
        "revenue": np.round(revenue).ravel(),
        "net_income": net_income.ravel(),
        "eps": np.round(net_income / shares, 4).ravel(),
        "shares_outstanding": shares.ravel(),
        "total_assets": assets.ravel(),
        "total_liabilities": liabilities.ravel(),
        "operating_cash_flow": cash.ravel(),
    }
    return _frame(
        [s for s in symbols for _ in range(n)],
        [calendar_quarter(end) for _ in range(k) for end in ends],
        ends * k,
        [day for row in filed for day in row],
        figures,
        schema,
    ).filter(pl.Series(known))


def _frame(
    symbols: list[str],
    periods: list[str],
    ends: list[dt.date],
    filed: list[dt.date],
    figures: dict[str, np.ndarray],
    schema: dict[str, type[pl.DataType]],
) -> pl.DataFrame:
    columns = {
        "symbol": symbols,
        "fiscal_period": periods,
        "period_end": ends,
        "filing_date": filed,
    }
    return pl.DataFrame(
        {
            **{name: pl.Series(values, dtype=schema[name]) for name, values in columns.items()},
            **{f: pl.Series(figures.get(f, []), dtype=pl.Float64) for f in FIGURES},
        }
    )
