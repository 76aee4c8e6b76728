"""Portfolio risk analytics: returns, rolling risk, correlations, sector exposure.

Conventions (empyrical's, see DESIGN `portfolio_risk`):

- Returns are simple daily total returns. A symbol's return follows the holdings engine's
  order of corporate actions: a split on D multiplies the shares carried from D-1, then D's
  dividend is paid per post-split share, so one share held from D-1 is worth
  split_ratio_D * (close_D + dividend_D) on D.
- A portfolio's return excludes external flows (deposits, withdrawals), which count as
  arriving at the start of their day: r_D = V_D / (V_{D-1} + F_D) - 1, as in holdings_monthly.
  Fees and dividends are not flows: they are part of the return.
- Windows are the trailing N sessions ending at D, D included, on the frame's date grid (every
  date on which the input has a row; with holdings_daily that is every session from the
  portfolio's first cash movement). A window uses the returns it holds (missing or null ones
  are skipped) if there are at least MIN_OBSERVATIONS (20), else the statistic is null: a
  window shorter than N uses what there is from 20 up.
- Sample std (ddof=1), annualised with sqrt(252). Historical VaR is the linearly interpolated
  return percentile (numpy's default method); negative is a loss. CVaR is the mean of the
  floor((n-1)q)+1 smallest returns, i.e. those at or below the VaR (empyrical's
  conditional_value_at_risk). Beta is cov/var against SPY over the dates both have a return.
- ir_beta is the same least-squares slope over the same 90-session window, against the daily
  change of the 10-year Treasury yield in percentage points (the previous session's yield to
  this one's; a session without both yields has no change and is dropped pairwise), times 100:
  the portfolio's return in % for a +100 bp move. Yields up 1 pp and the portfolio down 7 %
  give ir_beta = -7.0.
- A statistic whose denominator is zero (no dispersion, no downside) is null, never inf.
- Determinism: every value is computed from its own window alone with row-wise numpy
  reductions, so a date gives bit-identical results whether it is computed in a range or
  alone, whatever history precedes its window (as long as the window's data is the same).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from fintrack_assets.core.calendar import with_session_index
from fintrack_assets.core.fundamentals import fundamentals_as_of
from fintrack_assets.core.holdings import CASH

TRADING_DAYS = 252
MIN_OBSERVATIONS = 20
BENCHMARK = "SPY"
VOLATILITY_WINDOWS = (21, 63, 252)
BETA_WINDOW = 90
TAIL_WINDOW = 252
"""Sharpe, Sortino, max drawdown, VaR and CVaR: one year of sessions."""
DIVERSIFICATION_WINDOW = 63
CORRELATION_WINDOW = 63
VAR_LEVELS = (95, 99)
IR_YIELD = "yield_10y"
"""The Treasury yield ir_beta regresses on (treasury_yields' column, in percent)."""
CHUNK_ELEMENTS = 2_000_000
"""Window rows are processed in chunks of about this many floats, to bound memory."""
RISK_CHUNK_ELEMENTS = 40_000
"""portfolio_risk's chunks: its many small steps run fastest on arrays that stay in cache."""

RETURNS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "portfolio_id": pl.String(),
    "market_value": pl.Float64(),
    "net_flow": pl.Float64(),
    "daily_return": pl.Float64(),
    "benchmark_return": pl.Float64(),
}

_TAIL_COLUMNS = [f"{kind}_{level}_1d" for kind in ("var", "cvar") for level in VAR_LEVELS]
RISK_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "portfolio_id": pl.String(),
    "market_value": pl.Float64(),
    **{f"volatility_{n}d": pl.Float64() for n in VOLATILITY_WINDOWS},
    f"beta_{BETA_WINDOW}d": pl.Float64(),
    f"alpha_{BETA_WINDOW}d": pl.Float64(),
    "ir_beta": pl.Float64(),
    f"sharpe_{TAIL_WINDOW}d": pl.Float64(),
    f"sortino_{TAIL_WINDOW}d": pl.Float64(),
    f"max_drawdown_{TAIL_WINDOW}d": pl.Float64(),
    **{c: pl.Float64() for c in _TAIL_COLUMNS},
    **{f"{c}_usd": pl.Float64() for c in _TAIL_COLUMNS},
    f"diversification_ratio_{DIVERSIFICATION_WINDOW}d": pl.Float64(),
}
"""portfolio_risk's columns: one row per (date, portfolio_id) of its input."""


# --------------------------------------------------------------------------------------------
# Returns


def symbol_returns(bars: pl.DataFrame) -> pl.DataFrame:
    """(date, symbol, return): the daily total return of one share held from the previous bar,
    from bronze bars as traded: split_ratio_D * (close_D + dividend_D) / close_{D-1} - 1.

    Null on a symbol's first bar or when the previous close is missing or not positive. A
    missing bar is not filled: the next bar's return spans the gap."""
    split = pl.col("split_ratio").cast(pl.Float64).fill_null(1.0)
    dividend = pl.col("dividend").cast(pl.Float64).fill_null(0.0)
    previous = pl.col("close").cast(pl.Float64).shift(1).over("symbol", order_by="date")
    value = split * (pl.col("close").cast(pl.Float64) + dividend)
    return (
        bars.select(
            pl.col("date").cast(pl.Date),
            pl.col("symbol").cast(pl.String),
            pl.when(previous > 0).then(value / previous - 1.0).otherwise(None).alias("return"),
        )
        .sort("symbol", "date")
        .select("date", "symbol", "return")
    )


def portfolio_returns(
    holdings_daily: pl.DataFrame,
    flows: pl.DataFrame,
    benchmark_returns: pl.DataFrame,
    benchmark: str = BENCHMARK,
) -> pl.DataFrame:
    """Per (date, portfolio_id) of the holdings: `market_value` (all rows, CASH included),
    `net_flow` (deposits - withdrawals that day, 0 when none), `daily_return` (flows excluded,
    see the module docstring) and `benchmark_return` (the benchmark's return that day).

    `flows` is `external_flows(trades)` (or `daily_cash_flows`); `benchmark_returns` is
    `symbol_returns` output (filtered to `benchmark`) or a (date, return) frame. The first date
    of each portfolio in `holdings_daily` has a null return, so give one session before the
    dates you need."""
    value = (
        holdings_daily.sort("date", "portfolio_id", "symbol")
        .group_by("date", "portfolio_id", maintain_order=True)
        .agg(pl.col("market_value").cast(pl.Float64).sum())
    )
    net = flows.group_by("date", "portfolio_id").agg(
        (pl.col("deposits") - pl.col("withdrawals")).cast(pl.Float64).sum().alias("net_flow")
    )
    bench = benchmark_returns
    if "symbol" in bench.columns:
        bench = bench.filter(pl.col("symbol") == benchmark)
    bench = bench.select(
        pl.col("date").cast(pl.Date), pl.col("return").cast(pl.Float64).alias("benchmark_return")
    ).unique("date", keep="first")
    prior = pl.col("market_value").shift(1).over("portfolio_id", order_by="date")
    base = prior + pl.col("net_flow")
    return (
        value.join(net, on=["date", "portfolio_id"], how="left")
        .with_columns(pl.col("net_flow").fill_null(0.0))
        .with_columns(
            pl.when(prior.is_not_null() & (base > 0))
            .then(pl.col("market_value") / base - 1.0)
            .otherwise(None)
            .alias("daily_return")
        )
        .join(bench, on="date", how="left")
        .select(pl.col(c).cast(t) for c, t in RETURNS_SCHEMA.items())
        .sort("portfolio_id", "date")
    )


# --------------------------------------------------------------------------------------------
# Panels and windows: a long frame as a dense (entity x date) matrix, and trailing windows of it


class _Panel:
    """A long frame's values as dense (entity, date) matrices (NaN where absent), with the
    (entity, date) position of every input row. `keys` and `dates` add entities and dates
    that have no row (all NaN)."""

    def __init__(
        self,
        frame: pl.DataFrame,
        key: str,
        keys: pl.Series | None = None,
        dates: pl.Series | None = None,
    ) -> None:
        extra_keys = [] if keys is None else [keys.cast(pl.String)]
        extra_dates = [] if dates is None else [dates.cast(pl.Date)]
        self.keys = pl.concat([frame[key].cast(pl.String), *extra_keys]).unique().sort()
        self.dates = pl.concat([frame["date"].cast(pl.Date), *extra_dates]).unique().sort()
        self.entity = self.codes(frame[key])
        self.date = self.date_codes(frame["date"])
        self._frame = frame

    def codes(self, keys: pl.Series) -> np.ndarray:
        """Positions of `keys` (all known) among the panel's entities."""
        index = pl.Series(np.arange(self.keys.len(), dtype=np.int64))
        codes = keys.cast(pl.String).replace_strict(self.keys, index, return_dtype=pl.Int64)
        return codes.to_numpy().astype(np.int64, copy=False)

    def date_codes(self, dates: pl.Series) -> np.ndarray:
        return np.searchsorted(self.dates.to_numpy(), dates.cast(pl.Date).to_numpy())

    def matrix(self, column: str) -> np.ndarray:
        out = np.full((self.keys.len(), self.dates.len()), np.nan)
        values = self._frame[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
        out[self.entity, self.date] = values
        return out


def _windows(matrix: np.ndarray, width: int) -> np.ndarray:
    """A (rows, dates, width) view: the `width` values ending at each date, oldest first, NaN
    before the first date."""
    pad = np.full((matrix.shape[0], width - 1), np.nan)
    return sliding_window_view(np.concatenate([pad, matrix], axis=1), width, axis=1)


def _chunks(n: int, per_row: int, budget: int = CHUNK_ELEMENTS) -> Iterator[slice]:
    step = max(1, budget // max(per_row, 1))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _moments(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row over the valid entries: count, mean, deviations (0 where not valid)."""
    return _deviations(np.where(valid, x, 0.0), valid)


def _deviations(x0: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_moments for values already 0 where not valid."""
    n = np.count_nonzero(valid, axis=-1)
    mean = x0.sum(axis=-1) / n
    dev = x0 - mean[..., None]
    dev *= valid
    return n, mean, dev


def _sum_of_squares(dev: np.ndarray) -> np.ndarray:
    """Row sums of squares; overwrites `dev`."""
    return np.square(dev, out=dev).sum(axis=-1)


def _enough(n: np.ndarray, value: np.ndarray, min_obs: int) -> np.ndarray:
    return np.where((n >= min_obs) & np.isfinite(value), value, np.nan)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own interpolation in np.percentile, to match it to the last bit."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _tail(
    x: np.ndarray, n: np.ndarray, levels: tuple[int, ...]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per row and level: (VaR, CVaR) of the `n` non-NaN values of each row. VaR is
    np.percentile(x, 100 - level) ('linear'), CVaR the mean of the floor((n-1)q)+1 smallest."""
    quantiles = {level: (100 - level) / 100 for level in levels}
    keep = min(x.shape[-1], int(np.floor((x.shape[-1] - 1) * max(quantiles.values()))) + 2)
    # Only the smallest values matter: partition them to the front, NaN sort last.
    smallest = np.sort(np.partition(x, keep - 1, axis=-1)[..., :keep], axis=-1)
    running = np.cumsum(np.nan_to_num(smallest), axis=-1)
    rows = np.arange(x.shape[0])
    out = {}
    for level, q in quantiles.items():
        virtual = (n - 1) * q
        lo = np.clip(np.floor(virtual).astype(np.int64), 0, keep - 1)
        hi = np.clip(np.minimum(lo + 1, n - 1), 0, keep - 1)
        var = _lerp(smallest[rows, lo], smallest[rows, hi], virtual - lo)
        cvar = running[rows, lo] / (lo + 1)
        out[level] = (var, cvar)
    return out


# --------------------------------------------------------------------------------------------
# Rolling risk


def _risk_chunk(r: np.ndarray, b: np.ndarray, rf: float, min_obs: int) -> dict[str, np.ndarray]:
    """Every rolling statistic for rows of trailing windows of the portfolio's returns `r`
    ((rows, TAIL_WINDOW)) and the benchmark's `b` ((rows, BETA_WINDOW)), NaN where absent.
    Shorter windows are the last columns of the longer ones."""
    out: dict[str, np.ndarray] = {}
    annual = np.sqrt(TRADING_DAYS)
    valid = ~np.isnan(r)
    r0 = np.where(valid, r, 0.0)
    for window in VOLATILITY_WINDOWS:
        n, _, dev = _deviations(r0[:, -window:], valid[:, -window:])
        std = np.sqrt(_sum_of_squares(dev) / (n - 1))
        out[f"volatility_{window}d"] = _enough(n, std * annual, min_obs)

    both = valid[:, -BETA_WINDOW:] & ~np.isnan(b)
    n, _, dev_r = _deviations(np.where(both, r0[:, -BETA_WINDOW:], 0.0), both)
    _, _, dev_b = _moments(b, both)
    covariance = (dev_r * dev_b).sum(axis=-1)
    variance = _sum_of_squares(dev_b)
    beta = np.where(variance > 0, covariance / variance, np.nan)
    excess = (r0[:, -BETA_WINDOW:] - rf) - beta[:, None] * (np.where(both, b, 0.0) - rf)
    excess *= both
    alpha_daily = excess.sum(axis=-1) / n
    out[f"beta_{BETA_WINDOW}d"] = _enough(n, beta, min_obs)
    out[f"alpha_{BETA_WINDOW}d"] = _enough(n, (1.0 + alpha_daily) ** TRADING_DAYS - 1.0, min_obs)

    # std(r - rf) is std(r).
    n, mean, dev = _deviations(r0, valid)
    std = np.sqrt(_sum_of_squares(dev) / (n - 1))
    excess_mean = mean - rf
    sharpe = np.where(std > 0, excess_mean / std * annual, np.nan)
    out[f"sharpe_{TAIL_WINDOW}d"] = _enough(n, sharpe, min_obs)
    shortfall = np.minimum(r0 - rf, 0.0)
    if rf != 0.0:
        shortfall *= valid
    downside = np.sqrt(_sum_of_squares(shortfall) / n) * annual
    sortino = np.where(downside > 0, excess_mean * TRADING_DAYS / downside, np.nan)
    out[f"sortino_{TAIL_WINDOW}d"] = _enough(n, sortino, min_obs)

    wealth = np.cumprod(r0 + 1.0, axis=-1)
    peak = np.maximum.accumulate(wealth, axis=-1)
    np.maximum(peak, 1.0, out=peak)
    out[f"max_drawdown_{TAIL_WINDOW}d"] = _enough(n, (wealth / peak).min(axis=-1) - 1.0, min_obs)

    for level, (var, cvar) in _tail(r, n, VAR_LEVELS).items():
        out[f"var_{level}_1d"] = _enough(n, var, min_obs)
        out[f"cvar_{level}_1d"] = _enough(n, cvar, min_obs)
    return out


def yield_changes(yields: pl.DataFrame, column: str = IR_YIELD) -> pl.DataFrame:
    """(date, yield_change): on each NYSE session of `yields` (date, `column` in percent), the
    change from the previous session's yield, in percentage points (4.25 -> 4.40 is 0.15).
    Null when the previous session has no yield (a missing session, a null value): a change
    never spans a gap, so it always lines up with a one-session return. Dates that are no
    session are left out."""
    rows = (
        yields.select(pl.col("date").cast(pl.Date), pl.col(column).cast(pl.Float64).alias("_y"))
        .filter(pl.col("_y").is_not_null() & pl.col("_y").is_finite())
        .sort("date")
        .unique("date", keep="first", maintain_order=True)
    )
    rows = with_session_index(rows).filter(pl.col("session_index").is_not_null())
    consecutive = pl.col("session_index").diff() == 1
    return rows.select(
        "date",
        pl.when(consecutive).then(pl.col("_y").diff()).otherwise(None).alias("yield_change"),
    )


def _slope(y: np.ndarray, x: np.ndarray, min_obs: int) -> np.ndarray:
    """Per row: the least-squares slope cov(y, x) / var(x) over the entries where both are
    known (null with fewer than `min_obs` of them or no dispersion in x)."""
    both = ~np.isnan(y) & ~np.isnan(x)
    n, _, dev_y = _moments(y, both)
    _, _, dev_x = _moments(x, both)
    covariance = (dev_y * dev_x).sum(axis=-1)
    variance = _sum_of_squares(dev_x)
    return _enough(n, np.where(variance > 0, covariance / variance, np.nan), min_obs)


def _on_grid(changes: pl.DataFrame, panel: _Panel) -> np.ndarray:
    """A (1, dates) row of `changes` (date, yield_change) on the panel's dates, NaN where none."""
    row = np.full((1, panel.dates.len()), np.nan)
    known = changes.filter(
        pl.col("date").is_in(panel.dates.implode()) & pl.col("yield_change").is_not_null()
    )
    row[0, panel.date_codes(known["date"])] = known["yield_change"].to_numpy()
    return row


def portfolio_risk(
    returns: pl.DataFrame,
    rf: float = 0.0,
    value: str = "market_value",
    holdings_daily: pl.DataFrame | None = None,
    symbol_returns: pl.DataFrame | None = None,
    since: dt.date | None = None,
    min_observations: int = MIN_OBSERVATIONS,
    yields: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """RISK_SCHEMA per (date, portfolio_id) of `returns` (`portfolio_returns` output) from
    `since` on; earlier rows are history for the trailing windows (give 252 sessions + 1).

    - volatility_{21,63,252}d: std(r) * sqrt(252).
    - beta_90d = cov(r, b) / var(b); alpha_90d = (1 + mean(r - rf - beta (b - rf)))^252 - 1,
      empyrical's alpha: the daily Jensen alpha compounded over a year.
    - sharpe_252d = mean(r - rf) / std(r - rf) * sqrt(252); sortino_252d = mean(r - rf) * 252
      / (sqrt(mean(min(r - rf, 0)^2)) * sqrt(252)), the mean over all the window's returns.
    - max_drawdown_252d: the deepest fall of the window's compounded returns below their
      running peak, the window's starting value included as a peak (<= 0).
    - var_{95,99}_1d, cvar_{95,99}_1d over 252 sessions, as returns and, `_usd`, times the
      day's `value` column (negative = loss).
    - diversification_ratio_63d: see `diversification_ratio` (null without holdings).
    - ir_beta: 100 x the slope of r on the 10-year yield's daily change in percentage points
      (`yield_changes` of `yields`: date, yield_10y in percent), over the beta's 90 sessions
      and its minimum of pairs: % return per +100 bp. Null without `yields`.

    `rf` is the risk-free rate per day (e.g. 0.04 / 252), subtracted from every return."""
    rows = returns.select(
        pl.col("date").cast(pl.Date),
        pl.col("portfolio_id").cast(pl.String),
        pl.col("daily_return").cast(pl.Float64),
        pl.col("benchmark_return").cast(pl.Float64),
        pl.col(value).cast(pl.Float64).alias("market_value"),
    ).sort("date", "portfolio_id")
    if since is not None:
        if rows.filter(pl.col("date") >= since).is_empty():
            return pl.DataFrame(schema=RISK_SCHEMA)
    elif rows.is_empty():
        return pl.DataFrame(schema=RISK_SCHEMA)
    panel = _Panel(rows, "portfolio_id")
    width = TAIL_WINDOW
    r_windows = _windows(panel.matrix("daily_return"), width)
    b_windows = _windows(panel.matrix("benchmark_return"), BETA_WINDOW)
    y_windows = None
    if yields is not None:
        y_windows = _windows(_on_grid(yield_changes(yields), panel), BETA_WINDOW)
    target = np.ones(rows.height, dtype=bool)
    if since is not None:
        target = (rows["date"] >= since).to_numpy()
    entity, date = panel.entity[target], panel.date[target]
    parts: list[dict[str, np.ndarray]] = []
    with np.errstate(all="ignore"):
        for part in _chunks(len(entity), width + BETA_WINDOW, RISK_CHUNK_ELEMENTS):
            r = r_windows[entity[part], date[part]]
            b = b_windows[entity[part], date[part]]
            part_stats = _risk_chunk(r, b, rf, min_observations)
            if y_windows is None:
                part_stats["ir_beta"] = np.full(len(r), np.nan)
            else:
                dy = y_windows[0, date[part]]
                part_stats["ir_beta"] = 100.0 * _slope(r[:, -BETA_WINDOW:], dy, min_observations)
            parts.append(part_stats)
    out = rows.filter(pl.Series(target)).select("date", "portfolio_id", "market_value")
    out = out.with_columns(
        pl.Series(name, np.concatenate([p[name] for p in parts]), nan_to_null=True)
        for name in parts[0]
    ).with_columns((pl.col(c) * pl.col("market_value")).alias(f"{c}_usd") for c in _TAIL_COLUMNS)
    ratio = f"diversification_ratio_{DIVERSIFICATION_WINDOW}d"
    if holdings_daily is not None and symbol_returns is not None:
        diversification = diversification_ratio(
            holdings_daily, symbol_returns, since=since, min_observations=min_observations
        )
        out = out.join(diversification, on=["date", "portfolio_id"], how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.Float64).alias(ratio))
    return out.select(pl.col(c).cast(t) for c, t in RISK_SCHEMA.items()).sort(
        "portfolio_id", "date"
    )


# --------------------------------------------------------------------------------------------
# Holdings-based: diversification, correlations, sectors


def _held(holdings_daily: pl.DataFrame, since: dt.date | None) -> pl.DataFrame:
    """The non-cash positions with shares and value, sorted (date, portfolio_id, symbol)."""
    held = holdings_daily.filter(
        (pl.col("symbol") != CASH) & (pl.col("quantity") > 0) & (pl.col("market_value") > 0)
    )
    if since is not None:
        held = held.filter(pl.col("date") >= since)
    return held.select(
        pl.col("date").cast(pl.Date),
        pl.col("portfolio_id").cast(pl.String),
        pl.col("symbol").cast(pl.String),
        pl.col("market_value").cast(pl.Float64),
    ).sort("date", "portfolio_id", "symbol")


def _symbol_windows(
    symbol_returns: pl.DataFrame, held: pl.DataFrame, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trailing windows of every held symbol's returns on the grid of the dates of both
    frames, and each held row's (symbol, date) position in them."""
    known = symbol_returns.select(
        pl.col("date").cast(pl.Date),
        pl.col("symbol").cast(pl.String),
        pl.col("return").cast(pl.Float64),
    ).filter(pl.col("symbol").is_in(held["symbol"].unique().implode()))
    panel = _Panel(known, "symbol", keys=held["symbol"], dates=held["date"])
    windows = _windows(panel.matrix("return"), width)
    return windows, panel.codes(held["symbol"]), panel.date_codes(held["date"])


def _groups(held: pl.DataFrame) -> np.ndarray:
    """Row index where each (date, portfolio_id) group of sorted `held` starts."""
    group = held.select(pl.struct("date", "portfolio_id").rle_id().alias("group"))["group"]
    group = group.to_numpy().astype(np.int64)
    return np.flatnonzero(np.diff(group, prepend=-1))


def _group_chunks(starts: np.ndarray, n: int, per_row: int) -> Iterator[tuple[int, int]]:
    """Ranges [first, last) of group numbers whose rows hold about CHUNK_ELEMENTS floats."""
    bounds = np.append(starts, n)
    step = max(1, CHUNK_ELEMENTS // max(per_row, 1))
    first = 0
    while first < len(starts):
        last = max(first + 1, int(np.searchsorted(bounds, bounds[first] + step, "right")) - 1)
        yield first, last
        first = last


def diversification_ratio(
    holdings_daily: pl.DataFrame,
    symbol_returns: pl.DataFrame,
    window: int = DIVERSIFICATION_WINDOW,
    since: dt.date | None = None,
    min_observations: int = MIN_OBSERVATIONS,
) -> pl.DataFrame:
    """(date, portfolio_id, diversification_ratio_{window}d) = sum_i w_i sigma_i / sigma_p for
    each portfolio holding shares on D, over the trailing `window` sessions ending at D.

    w are D's market values of the non-cash holdings; the ratio does not depend on their
    scale, so weights of the whole portfolio and weights renormalised to the invested part
    give the same value. sigma_i is holding i's daily return std, sigma_p the std of the
    invested part's return with D's weights held fixed over the window (sum_i w_i r_i, t):
    sqrt(w' Sigma w) for the window's sample covariance Sigma. All use the same dates: those on
    which every holding has a return (at least `min_observations`, else null), so the ratio
    is >= 1 and exactly 1 for a single holding or perfectly correlated ones."""
    name = f"diversification_ratio_{window}d"
    held = _held(holdings_daily, since)
    if held.is_empty():
        return pl.DataFrame(schema={"date": pl.Date, "portfolio_id": pl.String, name: pl.Float64})
    windows, symbol, date = _symbol_windows(symbol_returns, held, window)
    weight = held["market_value"].to_numpy()
    starts = _groups(held)
    ratios: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for first, last in _group_chunks(starts, held.height, window):
            lo = starts[first]
            hi = starts[last] if last < len(starts) else held.height
            local = starts[first:last] - lo
            x = windows[symbol[lo:hi], date[lo:hi]]
            common = np.logical_and.reduceat(~np.isnan(x), local, axis=0)
            mask = np.repeat(common, np.diff(np.append(local, hi - lo)), axis=0)
            n, _, dev = _moments(x, mask)
            sigma = np.sqrt((dev * dev).sum(axis=-1) / (n - 1))
            w = weight[lo:hi]
            series = np.add.reduceat(np.where(mask, x, 0.0) * w[:, None], local, axis=0)
            n_p, _, dev_p = _moments(series, common)
            sigma_p = np.sqrt((dev_p * dev_p).sum(axis=-1) / (n_p - 1))
            ratio = np.add.reduceat(w * sigma, local) / sigma_p
            ratios.append(_enough(n_p, np.where(sigma_p > 0, ratio, np.nan), min_observations))
    return held[starts].select(
        "date",
        "portfolio_id",
        pl.Series(name, np.concatenate(ratios), dtype=pl.Float64, nan_to_null=True),
    )


def holding_correlations(
    holdings_daily: pl.DataFrame,
    symbol_returns: pl.DataFrame,
    window: int = CORRELATION_WINDOW,
    since: dt.date | None = None,
    min_observations: int = MIN_OBSERVATIONS,
) -> pl.DataFrame:
    """(date, portfolio_id, symbol_a, symbol_b, correlation) for every pair a < b of the
    symbols a portfolio holds on D: Pearson's correlation of the two symbols' daily returns
    over the trailing `window` sessions ending at D, on the dates both have a return. Fewer
    than `min_observations` such dates, or a constant series, give a null correlation (the
    pair is still listed). A pair's value is computed once per date and shared by every
    portfolio that holds it."""
    schema = {
        "date": pl.Date,
        "portfolio_id": pl.String,
        "symbol_a": pl.String,
        "symbol_b": pl.String,
        "correlation": pl.Float64,
    }
    held = _held(holdings_daily, since)
    if held.is_empty():
        return pl.DataFrame(schema=schema)
    windows, symbol, date = _symbol_windows(symbol_returns, held, window)
    starts = _groups(held)
    sizes = np.diff(np.append(starts, held.height))
    position = np.arange(held.height) - np.repeat(starts, sizes)
    later = np.repeat(sizes, sizes) - 1 - position
    first = np.repeat(np.arange(held.height), later)
    step = np.arange(len(first)) - np.repeat(np.cumsum(later) - later, later) + 1
    second = first + step
    if len(first) == 0:
        return pl.DataFrame(schema=schema)
    n_symbols = windows.shape[0]
    key = (date[first].astype(np.int64) * n_symbols + symbol[first]) * n_symbols + symbol[second]
    unique, inverse = np.unique(key, return_inverse=True)
    pair_date = unique // (n_symbols * n_symbols)
    pair_a = (unique // n_symbols) % n_symbols
    pair_b = unique % n_symbols
    values: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for part in _chunks(len(unique), 2 * window):
            a = windows[pair_a[part], pair_date[part]]
            b = windows[pair_b[part], pair_date[part]]
            both = ~np.isnan(a) & ~np.isnan(b)
            n, _, dev_a = _moments(a, both)
            _, _, dev_b = _moments(b, both)
            scale = np.sqrt((dev_a * dev_a).sum(axis=-1) * (dev_b * dev_b).sum(axis=-1))
            corr = np.where(scale > 0, (dev_a * dev_b).sum(axis=-1) / scale, np.nan)
            values.append(_enough(n, corr, min_observations))
    correlation = np.concatenate(values)[inverse.ravel()]
    return pl.DataFrame(
        {
            "date": held["date"].gather(first),
            "portfolio_id": held["portfolio_id"].gather(first),
            "symbol_a": held["symbol"].gather(first),
            "symbol_b": held["symbol"].gather(second),
            "correlation": pl.Series(correlation, dtype=pl.Float64, nan_to_null=True),
        },
        schema=schema,
    )


SECTOR_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "portfolio_id": pl.String(),
    "sector": pl.String(),
    "market_value": pl.Float64(),
    "weight": pl.Float64(),
    "pe_ratio": pl.Float64(),
    "market_cap": pl.Float64(),
    "valuation_coverage": pl.Float64(),
}
"""sector_exposure's columns: one row per (date, portfolio_id, sector)."""


def sector_exposure(
    holdings_daily: pl.DataFrame,
    universe: pl.DataFrame,
    fundamentals: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """SECTOR_SCHEMA: (date, portfolio_id, sector, market_value, weight) are the holdings
    summed by sector, with weight = the sector's share of the portfolio's whole value (cash
    included, so the weights of a portfolio sum to 1; null when the portfolio is worth 0).
    CASH is sector "Cash"; a symbol the universe gives no sector is "Unknown". Positions
    closed that day (no shares) are left out; the Cash row always shows.

    Valuation, from `fundamentals` (company_fundamentals) known on D, over the sector's
    *covered* holdings: those with a positive price (holdings_daily's close) and, known on D
    (core.fundamentals.fundamentals_as_of: filed on or before D), both EPS over the last four
    quarters (eps_ttm) and shares outstanding. With w the holdings' market values:

    - pe_ratio = sum(w) / sum(w x eps_ttm / price): the value-weighted harmonic mean of the
      holdings' P/E, i.e. the value held over the earnings it owns. Null when the covered
      earnings are not positive (a P/E of a loss means nothing).
    - market_cap = sum(w x price x shares_outstanding) / sum(w): the value-weighted mean market
      capitalisation, in USD.
    - valuation_coverage: the covered holdings' share of the sector's value (0 when none is
      covered, and then both figures are null; null for Cash and for a sector worth 0).

    Without `fundamentals` the coverage is 0 and the figures null."""
    sectors = universe.select(
        pl.col("symbol").cast(pl.String), pl.col("sector").cast(pl.String)
    ).unique("symbol", keep="first", maintain_order=True)
    # holdings_daily values a position at its close: market_value = quantity x close.
    price = (
        pl.col("close")
        if "close" in holdings_daily.columns
        else pl.col("market_value") / pl.col("quantity")
    )
    rows = (
        holdings_daily.filter((pl.col("symbol") == CASH) | (pl.col("quantity") > 0))
        .select(
            pl.col("date").cast(pl.Date),
            pl.col("portfolio_id").cast(pl.String),
            pl.col("symbol").cast(pl.String),
            pl.col("market_value").cast(pl.Float64),
            price.cast(pl.Float64).alias("close"),
        )
        .join(sectors, on="symbol", how="left")
        .with_columns(
            pl.when(pl.col("symbol") == CASH)
            .then(pl.lit("Cash"))
            .otherwise(pl.col("sector").fill_null("Unknown"))
            .alias("sector")
        )
        .sort("date", "portfolio_id", "sector", "symbol")
    )
    rows = _with_fundamentals(rows, fundamentals)
    covered = (
        (pl.col("symbol") != CASH)
        & (pl.col("close") > 0)
        & pl.col("eps_ttm").is_not_null()
        & (pl.col("shares_outstanding") > 0)
    )
    w = pl.when(covered).then(pl.col("market_value"))
    total = pl.col("market_value").sum().over("date", "portfolio_id")
    grouped = rows.group_by("date", "portfolio_id", "sector", maintain_order=True).agg(
        pl.col("market_value").sum(),
        w.sum().alias("_covered"),
        (w * pl.col("eps_ttm") / pl.col("close")).sum().alias("_earnings"),
        (w * pl.col("close") * pl.col("shares_outstanding")).sum().alias("_cap"),
    )
    some = pl.col("_covered") > 0
    return grouped.with_columns(
        pl.when(total != 0).then(pl.col("market_value") / total).otherwise(None).alias("weight"),
        pl.when(some & (pl.col("_earnings") > 0))
        .then(pl.col("_covered") / pl.col("_earnings"))
        .alias("pe_ratio"),
        pl.when(some).then(pl.col("_cap") / pl.col("_covered")).alias("market_cap"),
        pl.when((pl.col("sector") != "Cash") & (pl.col("market_value") > 0))
        .then(pl.col("_covered") / pl.col("market_value"))
        .alias("valuation_coverage"),
    ).select(pl.col(c).cast(t) for c, t in SECTOR_SCHEMA.items())


def _with_fundamentals(rows: pl.DataFrame, fundamentals: pl.DataFrame | None) -> pl.DataFrame:
    """`rows` with each holding's eps_ttm and shares_outstanding known on its date."""
    if fundamentals is None:
        return rows.with_columns(
            pl.lit(None, pl.Float64).alias("eps_ttm"),
            pl.lit(None, pl.Float64).alias("shares_outstanding"),
        )
    held = rows.filter(pl.col("symbol") != CASH).select("symbol", "date").unique()
    known = fundamentals_as_of(fundamentals, held).select(
        "symbol", "date", "eps_ttm", "shares_outstanding"
    )
    return rows.join(known, on=["symbol", "date"], how="left", maintain_order="left")
