"""Stress tests: what a shock or a replayed crisis would do to each portfolio on D.

Scenarios, per (date, portfolio_id); pnl_usd = pnl_pct x the portfolio's value on D:

- `equity_-10%`, `equity_-20%`, `equity_-30%`: the market falls by that much; pnl_pct =
  beta to the `market` factor (SPY) x shock (method `factor`).
- `rates_+100bp`: rates rise 100 bp. Where the portfolio has an `ir_beta` on D (portfolio_risk:
  % return per +100 bp of the 10-year yield, regressed on the yield itself over 90 sessions;
  null when treasury_yields do not cover the window), pnl_pct = ir_beta x (shock_bp / 100) /
  100 (method `ir_beta`). Otherwise through TLT: it moves by about -duration x 1%; with TLT's
  duration taken as TLT_DURATION (17 years, a parameter) the shock is TLT -17%, and pnl_pct =
  beta to the `rates` factor x that move (method `factor`).
- `sector_<sector>_-15%`, one per sector the portfolio holds (Cash excluded; "Unknown"
  included): that sector's holdings lose 15%, pnl_pct = sector weight x -15% (method
  `weight`); no cross-sector effect.
- Historical replays (HISTORICAL_SCENARIOS): `covid_crash_2020` from the close of 2020-02-19
  (SPY's peak) to the close of 2020-03-23 (its trough), `rates_2022` from the close of
  2022-01-03 to the close of 2022-10-14 (the 2022 bond and equity sell-off to mid-October).
  The portfolio's holdings on D are revalued with each symbol's cumulative total return over
  the period (the product of its daily `symbol_returns`; cash earns nothing), method
  `holdings`. A symbol counts as covered when it has a return on every NYSE session of the
  period; if any holding is not covered (it did not trade then, or the data does not reach
  back), the replay falls back to the market beta x SPY's return over the period (method
  `market_beta`).

Betas are the univariate `beta` of core/factors.py by default (`exposure="ridge_coef"` uses
the multi-factor fit instead). A scenario that cannot be computed (no beta yet, no data for
the fallback) is listed with null P&L and method.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.holdings import CASH
from fintrack_assets.core.risk import BENCHMARK

EQUITY_SHOCKS = (-0.10, -0.20, -0.30)
RATES_SHOCK_BP = 100
TLT_DURATION = 17.0
"""Assumed modified duration of TLT (20+ year Treasuries), in years."""
SECTOR_SHOCK = -0.15
HISTORICAL_SCENARIOS: dict[str, tuple[dt.date, dt.date]] = {
    "covid_crash_2020": (dt.date(2020, 2, 19), dt.date(2020, 3, 23)),
    "rates_2022": (dt.date(2022, 1, 3), dt.date(2022, 10, 14)),
}
"""Scenario -> (start, end): the move from the close of start to the close of end."""

STRESS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "portfolio_id": pl.String(),
    "scenario": pl.String(),
    "pnl_usd": pl.Float64(),
    "pnl_pct": pl.Float64(),
    "method": pl.String(),
}


_COLUMNS = ["date", "portfolio_id", "scenario", "pnl_pct", "method", "_value"]


def _percent(shock: float) -> str:
    return f"{shock * 100:+g}%".replace("+", "" if shock < 0 else "+")


def period_returns(
    history: pl.DataFrame, scenarios: dict[str, tuple[dt.date, dt.date]]
) -> pl.DataFrame:
    """(scenario, symbol, period_return) for the symbols of `history` (symbol_returns) with a
    return on every session of the scenario's period (after start, up to end included)."""
    frames = []
    for scenario, (start, end) in scenarios.items():
        sessions = sessions_between(start + dt.timedelta(days=1), end + dt.timedelta(days=1))
        frames.append(
            history.filter(
                pl.col("date").is_in(pl.Series(sessions, dtype=pl.Date).implode())
                & pl.col("return").is_not_null()
            )
            .group_by("symbol")
            .agg(
                ((1.0 + pl.col("return")).product() - 1.0).alias("period_return"),
                pl.len().alias("_days"),
            )
            .filter(pl.col("_days") == len(sessions))
            .select(pl.lit(scenario).alias("scenario"), "symbol", "period_return")
        )
    schema = {"scenario": pl.String, "symbol": pl.String, "period_return": pl.Float64}
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat([f.select(pl.col(c).cast(t) for c, t in schema.items()) for f in frames])


def stress_tests(
    exposures: pl.DataFrame,
    portfolio_values: pl.DataFrame,
    sector_exposure: pl.DataFrame,
    history: pl.DataFrame | None = None,
    holdings: pl.DataFrame | None = None,
    ir_betas: pl.DataFrame | None = None,
    *,
    exposure: str = "beta",
    duration: float = TLT_DURATION,
    equity_shocks: tuple[float, ...] = EQUITY_SHOCKS,
    rates_shock_bp: float = RATES_SHOCK_BP,
    sector_shock: float = SECTOR_SHOCK,
    scenarios: dict[str, tuple[dt.date, dt.date]] | None = None,
) -> pl.DataFrame:
    """STRESS_SCHEMA rows per (date, portfolio_id) of `portfolio_values` (date, portfolio_id,
    market_value: e.g. portfolio_returns).

    `exposures` is factor_exposures output (its `market` and `rates` factors are used),
    `sector_exposure` the sector_exposure output. The historical replays need `history`
    (symbol_returns covering the periods, SPY included for the fallback) and `holdings`
    (holdings_daily of the dates); without them they are left out. `ir_betas` (date,
    portfolio_id, ir_beta: portfolio_risk) values the rates shock where ir_beta is known."""
    scenarios = HISTORICAL_SCENARIOS if scenarios is None else scenarios
    values = portfolio_values.select(
        pl.col("date").cast(pl.Date),
        pl.col("portfolio_id").cast(pl.String),
        pl.col("market_value").cast(pl.Float64).alias("_value"),
    )
    betas = exposures.filter(pl.col("factor").is_in(["market", "rates"])).pivot(
        on="factor", index=["date", "portfolio_id"], values=exposure
    )
    for factor in ("market", "rates"):
        if factor not in betas.columns:
            betas = betas.with_columns(pl.lit(None, pl.Float64).alias(factor))
    based = values.join(
        betas.select(
            pl.col("date").cast(pl.Date),
            pl.col("portfolio_id").cast(pl.String),
            pl.col("market").cast(pl.Float64).alias("_market"),
            pl.col("rates").cast(pl.Float64).alias("_rates"),
        ),
        on=["date", "portfolio_id"],
        how="left",
    )
    if ir_betas is None:
        based = based.with_columns(pl.lit(None, pl.Float64).alias("_ir_beta"))
    else:
        based = based.join(
            ir_betas.select(
                pl.col("date").cast(pl.Date),
                pl.col("portfolio_id").cast(pl.String),
                pl.col("ir_beta").cast(pl.Float64).alias("_ir_beta"),
            ).unique(["date", "portfolio_id"], keep="first"),
            on=["date", "portfolio_id"],
            how="left",
        )
    tlt_move = -duration * rates_shock_bp / 10_000
    by_ir_beta = pl.col("_ir_beta").is_not_null()
    rates = (
        pl.when(by_ir_beta)
        .then(pl.col("_ir_beta") * (rates_shock_bp / 100) / 100)
        .otherwise(pl.col("_rates") * tlt_move)
    )
    rates_method = (
        pl.when(by_ir_beta).then(pl.lit("ir_beta")).when(rates.is_not_null()).then(pl.lit("factor"))
    )
    factor_scenarios = [
        (f"equity_{_percent(s)}", pl.col("_market") * s, None) for s in equity_shocks
    ]
    factor_scenarios.append((f"rates_{rates_shock_bp:+g}bp", rates, rates_method))
    frames = [
        based.select(
            "date",
            "portfolio_id",
            pl.lit(name).alias("scenario"),
            pct.alias("pnl_pct"),
            (pl.when(pct.is_not_null()).then(pl.lit("factor")) if method is None else method).alias(
                "method"
            ),
            "_value",
        )
        for name, pct, method in factor_scenarios
    ]
    sectors = sector_exposure.filter(pl.col("sector") != "Cash").join(
        values, on=["date", "portfolio_id"], how="inner"
    )
    frames.append(
        sectors.select(
            "date",
            "portfolio_id",
            pl.format("sector_{}_{}", "sector", pl.lit(_percent(sector_shock))).alias("scenario"),
            (pl.col("weight") * sector_shock).alias("pnl_pct"),
            pl.when(pl.col("weight").is_not_null()).then(pl.lit("weight")).alias("method"),
            "_value",
        )
    )
    if history is not None and holdings is not None and scenarios:
        frames.append(_replays(based, history, holdings, scenarios))
    return (
        pl.concat([f.select(_COLUMNS) for f in frames])
        .with_columns((pl.col("pnl_pct") * pl.col("_value")).alias("pnl_usd"))
        .select(pl.col(c).cast(t) for c, t in STRESS_SCHEMA.items())
        .sort("date", "portfolio_id", "scenario")
    )


def _replays(
    based: pl.DataFrame,
    history: pl.DataFrame,
    holdings: pl.DataFrame,
    scenarios: dict[str, tuple[dt.date, dt.date]],
) -> pl.DataFrame:
    """The historical scenarios: holdings revalued where every holding is covered, else the
    market beta x SPY's move."""
    history = history.select(
        pl.col("date").cast(pl.Date),
        pl.col("symbol").cast(pl.String),
        pl.col("return").cast(pl.Float64),
    )
    moves = period_returns(history, scenarios)
    held = holdings.filter(
        (pl.col("symbol") != CASH) & (pl.col("quantity") > 0) & (pl.col("market_value") != 0)
    ).select(
        pl.col("date").cast(pl.Date),
        pl.col("portfolio_id").cast(pl.String),
        pl.col("symbol").cast(pl.String),
        pl.col("market_value").cast(pl.Float64),
    )
    names = pl.DataFrame({"scenario": list(scenarios)}, schema={"scenario": pl.String})
    revalued = (
        held.join(names, how="cross")
        .join(moves, on=["scenario", "symbol"], how="left")
        .group_by("date", "portfolio_id", "scenario")
        .agg(
            (pl.col("market_value") * pl.col("period_return")).sum().alias("_pnl"),
            pl.col("period_return").is_null().any().alias("_uncovered"),
        )
    )
    spy = moves.filter(pl.col("symbol") == BENCHMARK).select(
        "scenario", pl.col("period_return").alias("_spy")
    )
    replay = (
        based.join(names, how="cross")
        .join(revalued, on=["date", "portfolio_id", "scenario"], how="left")
        .join(spy, on="scenario", how="left")
        .with_columns(
            # A portfolio of cash alone has nothing to revalue: covered, P&L 0.
            pl.col("_uncovered").fill_null(False),
            pl.col("_pnl").fill_null(0.0),
        )
    )
    by_holdings = pl.when(pl.col("_value") != 0).then(pl.col("_pnl") / pl.col("_value"))
    return replay.select(
        "date",
        "portfolio_id",
        "scenario",
        pl.when(~pl.col("_uncovered"))
        .then(by_holdings)
        .otherwise(pl.col("_market") * pl.col("_spy"))
        .alias("pnl_pct"),
        pl.when(~pl.col("_uncovered") & (pl.col("_value") != 0))
        .then(pl.lit("holdings"))
        .when(pl.col("_uncovered") & (pl.col("_market") * pl.col("_spy")).is_not_null())
        .then(pl.lit("market_beta"))
        .alias("method"),
        "_value",
    )
