"""Factor exposures of portfolios: univariate betas and a multi-factor ridge fit.

Factors are the daily total returns of ETFs (see FACTOR_SYMBOLS): `market` (SPY), `rates`
(TLT) and the sector SPDRs under their own symbol (XLK, XLF, ...), those present in the data.

Per (date D, portfolio), over the trailing `window` sessions ending at D (the windows of
core/risk.py: the date grid of the portfolio returns, D included):

- A factor *counts* on D when it has at least `min_observations` returns in the window. The
  window's observations are the dates on which the portfolio and every counting factor have
  a return; fewer than `min_observations` gives nulls. Every statistic of the window uses
  these same observations.
- `beta`: cov(r, f) / var(f), each factor alone (null for a factor that does not count).
- `ridge_coef`: all counting factors at once. The factors are standardised over the window
  (centred, unit sample variance) and the portfolio's return centred, so the intercept is
  not penalised; the fit solves (Z'Z / (n - 1) + ridge_alpha * I) b = Z'y / (n - 1), i.e. it
  adds ridge_alpha to the diagonal of the factors' correlation matrix, whatever the window's
  length. Coefficients are reported in raw units (b_f / sd_f: return per unit of factor
  return) so they compare with `beta`. ridge_alpha = 0 is ordinary least squares.
- `r_squared`: 1 - SSE / SST of that ridge fit, in sample, repeated on the portfolio's rows.

Sums over a window are raw cross-products centred afterwards (sum xy - mean_x sum y), exact
enough for daily returns. Each row is computed from its own window alone (row-wise numpy
reductions and one BLAS product of the same shape per row), so a date computed alone or in a
range gives bit-identical values.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from fintrack_assets.core.risk import (
    CHUNK_ELEMENTS,
    MIN_OBSERVATIONS,
    TRADING_DAYS,
    _Panel,
    _windows,
)

SECTOR_ETFS: dict[str, str] = {
    "XLK": "Information Technology",
    "XLF": "Financials",
    "XLV": "Health Care",
    "XLE": "Energy",
    "XLI": "Industrials",
    "XLY": "Consumer Discretionary",
    "XLP": "Consumer Staples",
    "XLU": "Utilities",
    "XLB": "Materials",
    "XLRE": "Real Estate",
    "XLC": "Communication Services",
}
"""The sector SPDR ETFs and the GICS sector each tracks."""

FACTOR_SYMBOLS: dict[str, str] = {
    "market": "SPY",
    "rates": "TLT",
    **{etf: etf for etf in SECTOR_ETFS},
}
"""Factor name -> the symbol whose total return is that factor's return."""

FACTOR_WINDOW = TRADING_DAYS
RIDGE_ALPHA = 0.1

EXPOSURES_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "portfolio_id": pl.String(),
    "factor": pl.String(),
    "beta": pl.Float64(),
    "ridge_coef": pl.Float64(),
    "r_squared": pl.Float64(),
}


def factor_returns(
    symbol_returns: pl.DataFrame, factors: dict[str, str] | None = None
) -> pl.DataFrame:
    """(date, factor, return) from `symbol_returns` output, for the factors whose symbol is
    present (FACTOR_SYMBOLS by default)."""
    factors = FACTOR_SYMBOLS if factors is None else factors
    names = pl.DataFrame(
        {"symbol": list(factors.values()), "factor": list(factors)},
        schema={"symbol": pl.String, "factor": pl.String},
    )
    return (
        symbol_returns.join(names, on="symbol", how="inner")
        .select(pl.col("date").cast(pl.Date), "factor", pl.col("return").cast(pl.Float64))
        .sort("factor", "date")
    )


def _factor_windows(
    factor_returns: pl.DataFrame, dates: pl.Series, slots: np.ndarray, window: int
) -> tuple[list[str], np.ndarray]:
    """The factor names and their trailing windows (slots, factors, window) ending at the
    grid dates `dates[slots]`, NaN where a factor has no return."""
    on_grid = factor_returns.filter(pl.col("date").is_in(dates.implode()))
    panel = _Panel(on_grid, "factor", keys=factor_returns["factor"], dates=dates)
    windows = _windows(panel.matrix("return"), window)[:, slots]
    return panel.keys.to_list(), np.ascontiguousarray(windows.transpose(1, 0, 2))


def factor_exposures(
    portfolio_returns: pl.DataFrame,
    factor_returns: pl.DataFrame,
    window: int = FACTOR_WINDOW,
    ridge_alpha: float = RIDGE_ALPHA,
    since: dt.date | None = None,
    min_observations: int = MIN_OBSERVATIONS,
) -> pl.DataFrame:
    """EXPOSURES_SCHEMA: one row per (date, portfolio_id, factor) for the rows of
    `portfolio_returns` (date, portfolio_id, daily_return) from `since` on (earlier rows are
    history), and every factor of `factor_returns` (date, factor, return). See the module
    docstring for the definitions."""
    rows = portfolio_returns.select(
        pl.col("date").cast(pl.Date),
        pl.col("portfolio_id").cast(pl.String),
        pl.col("daily_return").cast(pl.Float64),
    ).sort("date", "portfolio_id")
    factor_returns = factor_returns.select(
        pl.col("date").cast(pl.Date),
        pl.col("factor").cast(pl.String),
        pl.col("return").cast(pl.Float64),
    )
    target = np.ones(rows.height, dtype=bool)
    if since is not None:
        target = (rows["date"] >= since).to_numpy()
    names = factor_returns["factor"].unique().sort().to_list()
    if not target.any() or not names:
        return pl.DataFrame(schema=EXPOSURES_SCHEMA)

    panel = _Panel(rows, "portfolio_id")
    y_windows = _windows(panel.matrix("daily_return"), window)
    entity, date = panel.entity[target], panel.date[target]
    slots = np.unique(date)
    names, x = _factor_windows(factor_returns, panel.dates, slots, window)
    # Per target date: which factors count, and the dates on which all of those have a return.
    x_valid = ~np.isnan(x)
    counts = x_valid.sum(axis=-1) >= min_observations
    complete = (x_valid | ~counts[:, :, None]).all(axis=1)
    x0 = np.where(x_valid & complete[:, None, :] & counts[:, :, None], x, 0.0)
    slot = np.searchsorted(slots, date)
    beta, coef, r_squared = _blocks(
        y_windows, entity, slot, slots, x0, complete, counts, ridge_alpha, min_observations
    )
    n_factors = len(names)
    keys = rows.filter(pl.Series(target)).select("date", "portfolio_id")
    return (
        keys.select(pl.all().repeat_by(n_factors).explode())
        .with_columns(
            pl.Series("factor", names * keys.height, dtype=pl.String),
            pl.Series("beta", beta.ravel(), dtype=pl.Float64, nan_to_null=True),
            pl.Series("ridge_coef", coef.ravel(), dtype=pl.Float64, nan_to_null=True),
            pl.Series(
                "r_squared", np.repeat(r_squared, n_factors), dtype=pl.Float64, nan_to_null=True
            ),
        )
        .select(pl.col(c).cast(t) for c, t in EXPOSURES_SCHEMA.items())
    )


def _blocks(
    y_windows: np.ndarray,
    entity: np.ndarray,
    slot: np.ndarray,
    slots: np.ndarray,
    x0: np.ndarray,
    complete: np.ndarray,
    counts: np.ndarray,
    ridge_alpha: float,
    min_observations: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fits every target row (entity, slot), in blocks of portfolios x dates that bound memory.

    Within a block each portfolio's window meets its date's factor windows through a stack of
    (factors x window) @ (window) products, the factor side broadcast rather than copied per
    row. Every product is the same BLAS call on the same two vectors whatever the block, so
    a row's value never depends on the other rows computed with it."""
    n_rows, (n_dates, n_factors, window) = len(entity), x0.shape
    beta = np.full((n_rows, n_factors), np.nan)
    coef = np.full((n_rows, n_factors), np.nan)
    r_squared = np.full(n_rows, np.nan)
    # Target rows are sorted by date, then portfolio: each date's rows are contiguous.
    bounds = np.searchsorted(slot, np.arange(n_dates + 1))
    portfolios = y_windows.shape[0]
    per_block = max(1, CHUNK_ELEMENTS // (window * (n_factors + 2)))
    step_p = min(portfolios, per_block)
    with np.errstate(all="ignore"):
        for p0 in range(0, portfolios, step_p):
            p1 = min(portfolios, p0 + step_p)
            step_t = max(1, per_block // (p1 - p0))
            for s0 in range(0, n_dates, step_t):
                s1 = min(n_dates, s0 + step_t)
                lo, hi = bounds[s0], bounds[s1]
                rows = lo + np.flatnonzero((entity[lo:hi] >= p0) & (entity[lo:hi] < p1))
                if not len(rows):
                    continue
                y = y_windows[p0:p1, slots[s0:s1]]
                observed = ~np.isnan(y) & complete[None, s0:s1]
                y0 = np.where(observed, y, 0.0)
                cross = np.matmul(x0[None, s0:s1], y0[..., None])[..., 0]
                at = (entity[rows] - p0, slot[rows] - s0)
                fitted = _fit(y0[at], observed[at], cross[at], slot[rows], x0, counts, ridge_alpha)
                enough = observed[at].sum(axis=-1) >= min_observations
                beta[rows] = np.where(enough[:, None], fitted[0], np.nan)
                coef[rows] = np.where(enough[:, None], fitted[1], np.nan)
                r_squared[rows] = np.where(enough, fitted[2], np.nan)
    return beta, coef, r_squared


def _fit(
    y0: np.ndarray,
    observed: np.ndarray,
    sum_xy: np.ndarray,
    slot: np.ndarray,
    x0: np.ndarray,
    counts: np.ndarray,
    ridge_alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beta (rows, factors), ridge_coef (rows, factors), r_squared (rows,)) for rows of
    portfolio return windows `y0` (0 where not `observed`) with their cross-products
    `sum_xy` with their date's factor windows `x0[slot]`.

    The factor side (means, covariance, the ridge system) depends only on the date and on
    which dates of the window are observed, so it is solved once per distinct (date,
    pattern) and shared; only the sums that involve y are per row."""
    n = observed.sum(axis=-1)
    sum_y = y0.sum(axis=-1)
    sum_yy = (y0 * y0).sum(axis=-1)
    pattern = np.concatenate(
        [slot.astype(np.int64)[:, None].view(np.uint8), np.packbits(observed, axis=-1)], axis=1
    )
    _, first, group = np.unique(
        np.ascontiguousarray(pattern).view(np.dtype((np.void, pattern.shape[1]))).ravel(),
        return_index=True,
        return_inverse=True,
    )
    group = group.ravel()
    mean, cov, scale, use, inverse = _factor_side(
        x0[slot[first]], observed[first], counts[slot[first]], ridge_alpha
    )

    cross = sum_xy - mean[group] * sum_y[:, None]
    used = use[group]
    beta = np.where(used, cross / np.diagonal(cov, axis1=-2, axis2=-1)[group], np.nan)
    standardised = np.where(used, cross / scale[group] / (n[:, None] - 1), 0.0)
    fitted = (inverse[group] * standardised[:, None, :]).sum(axis=-1)
    coef = np.where(used, fitted / scale[group], 0.0)
    total = sum_yy - sum_y * sum_y / n
    explained = 2.0 * (coef * cross).sum(axis=-1)
    explained -= ((cov[group] * coef[:, None, :]).sum(axis=-1) * coef).sum(axis=-1)
    usable = (total > 0) & used.any(axis=-1)
    r_squared = np.where(usable, 1.0 - (total - explained) / total, np.nan)
    return beta, np.where(used, coef, np.nan), r_squared


def _factor_side(
    x0: np.ndarray, observed: np.ndarray, counts: np.ndarray, ridge_alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (date, pattern) group: factor means, centred cross-product matrix (sum, not /n),
    sample std, which factors enter the fit (counting and not constant), and the inverse of
    the ridge system on standardised factors (identity rows for the others)."""
    n = observed.sum(axis=-1)[:, None]
    x = np.where(observed[:, None, :], x0, 0.0)
    mean = x.sum(axis=-1) / n
    centred = np.where(observed[:, None, :], x - mean[..., None], 0.0)
    cov = (centred[:, :, None, :] * centred[:, None, :, :]).sum(axis=-1)
    variance = np.diagonal(cov, axis1=-2, axis2=-1)
    use = counts & (variance > 0)
    scale = np.sqrt(variance / (n - 1))
    both = use[:, :, None] & use[:, None, :]
    correlation = np.where(
        both, cov / (n[..., None] - 1) / (scale[:, :, None] * scale[:, None, :]), 0.0
    )
    eye = np.eye(x0.shape[1], dtype=bool)
    system = correlation + np.where(eye, np.where(use, ridge_alpha, 1.0)[:, :, None], 0.0)
    # pinv, not inv: with ridge_alpha = 0 and collinear factors the system is singular.
    return mean, cov, scale, use, np.linalg.pinv(system)
