"""Portfolio risk: returns, trailing risk, factor exposures, sectors, correlations and stress
tests, each a separate asset on trading_days, computed from the warehouse and the lake."""

import base64
import datetime as dt
import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
from dagster import (
    AssetCheckResult,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetObservation,
    BackfillPolicy,
    Config,
    MetadataValue,
    Output,
    ResourceParam,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from fintrack_assets.automation import follows_upstream_once
from fintrack_assets.core.calendar import nyse_sessions
from fintrack_assets.core.display import money, percent
from fintrack_assets.core.factors import FACTOR_SYMBOLS, factor_exposures, factor_returns
from fintrack_assets.core.holdings import external_flows
from fintrack_assets.core.risk import (
    BENCHMARK,
    CORRELATION_WINDOW,
    TAIL_WINDOW,
    holding_correlations,
    portfolio_returns,
    portfolio_risk,
    sector_exposure,
    symbol_returns,
)
from fintrack_assets.core.stress import HISTORICAL_SCENARIOS, stress_tests
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.warehouse import WarehouseIOManager
from fintrack_assets.metadata import (
    WAREHOUSE_POOL,
    add_partition_metadata,
    contract_check,
    contract_spec,
    markdown_table,
)
from fintrack_assets.partitions import trading_days, window_dates
from fintrack_assets.schemas import (
    FactorExposure,
    HoldingCorrelation,
    PortfolioReturn,
    PortfolioRisk,
    SectorExposure,
    StressTest,
)

BAR_COLUMNS = ["symbol", "date", "close", "split_ratio", "dividend"]
HISTORY_SESSIONS = TAIL_WINDOW + 1
"""Sessions before a run's first one that its trailing windows reach (one more for the first
return)."""
GROUP = "risk"
KINDS = {"polars"}
_TRAILING = TimeWindowPartitionMapping(
    start_offset=-HISTORY_SESSIONS, allow_nonexistent_upstream_partitions=True
)
_POLICY = BackfillPolicy.single_run()
AFTER_HOLDINGS = follows_upstream_once("holdings_daily")
_RISK_ASSET: dict[str, Any] = {
    "partitions_def": trading_days,
    "automation_condition": AFTER_HOLDINGS,
    "backfill_policy": _POLICY,
    "io_manager_key": "warehouse",
    "pool": WAREHOUSE_POOL,
    "kinds": KINDS,
    "group_name": GROUP,
}
"""What every risk asset shares: trading_days in single runs, warehouse, after holdings."""
Result = Iterator[Output[pl.DataFrame] | AssetCheckResult]


def _sessions_before(day: dt.date, sessions: int) -> dt.date:
    """The session `sessions` sessions before the first session on or after `day`."""
    calendar = nyse_sessions()
    first = int(np.searchsorted(calendar, np.datetime64(day, "D")))
    return calendar[max(first - sessions, 0)].astype(dt.date)


def _returns_of(
    lake: LakeIOManager, start: dt.date, end: dt.date, symbols: list[str] | None = None
) -> pl.DataFrame:
    """symbol_returns over [start, end) from bronze, read once (one extra session before start
    for the first return)."""
    bars = lake.table(["bronze_ohlcv"]).read_window(
        "date", _sessions_before(start, 1), end, BAR_COLUMNS
    )
    if symbols is not None:
        bars = bars.filter(pl.col("symbol").is_in(symbols))
    return symbol_returns(bars).filter(pl.col("date") >= start)


def _holdings(warehouse: WarehouseIOManager, start: dt.date, end: dt.date) -> pl.DataFrame:
    return warehouse.warehouse.read("holdings_daily", "date", start, end)


class RiskConfig(Config):
    risk_free_rate: float = Field(
        default=0.0,
        description="Annual risk-free rate for Sharpe, Sortino and alpha (0.04 = 4 %), "
        "applied per session as rate / 252.",
    )


@asset(
    name="portfolio_returns",
    **_RISK_ASSET,
    check_specs=[contract_spec(PortfolioReturn, "portfolio_returns")],
    deps=[AssetDep("holdings_daily"), AssetDep("bronze_ohlcv")],
    ins={"portfolio_trades": AssetIn()},
    description="Per (date, portfolio_id): market value, net external flow, the day's "
    "time-weighted return with flows excluded, and SPY's return the same day.",
)
def portfolio_returns_daily(
    context: AssetExecutionContext,
    portfolio_trades: pl.DataFrame,
    lake: ResourceParam[LakeIOManager],
    warehouse: ResourceParam[WarehouseIOManager],
) -> Result:
    start, end = window_dates(context.partition_time_window)
    before = _sessions_before(start, 1)
    holdings = _holdings(warehouse, before, end)
    spy = _returns_of(lake, before, end, [BENCHMARK])
    result = portfolio_returns(holdings, external_flows(portfolio_trades), spy).filter(
        pl.col("date") >= start
    )
    if spy.is_empty():
        context.log.warning(f"no {BENCHMARK} bars in bronze: benchmark returns are null")
    add_partition_metadata(context, "portfolio_returns", result, "date")
    yield Output(result)
    yield contract_check(PortfolioReturn, result, "portfolio_returns")


def _stored_returns(warehouse: WarehouseIOManager, start: dt.date, end: dt.date) -> pl.DataFrame:
    """portfolio_returns of [HISTORY_SESSIONS before start, end): the windows' history."""
    return warehouse.warehouse.read(
        "portfolio_returns", "date", _sessions_before(start, HISTORY_SESSIONS), end
    )


@asset(
    name="portfolio_risk",
    **_RISK_ASSET,
    check_specs=[contract_spec(PortfolioRisk, "portfolio_risk")],
    deps=[
        AssetDep("portfolio_returns", partition_mapping=_TRAILING),
        AssetDep("holdings_daily"),
        AssetDep("bronze_ohlcv"),
    ],
    description="Per (date, portfolio_id), over trailing windows of sessions ending at D: "
    "volatility (21/63/252), beta and alpha (90) against SPY, Sharpe, Sortino, max drawdown, "
    "VaR and CVaR (95/99, as returns and dollars), diversification ratio (63).",
)
def portfolio_risk_daily(
    context: AssetExecutionContext,
    config: RiskConfig,
    lake: ResourceParam[LakeIOManager],
    warehouse: ResourceParam[WarehouseIOManager],
) -> Result:
    started = time.perf_counter()
    start, end = window_dates(context.partition_time_window)
    returns = _stored_returns(warehouse, start, end)
    holdings = _holdings(warehouse, start, end)
    held = holdings["symbol"].unique().to_list()
    prices = _returns_of(lake, _sessions_before(start, CORRELATION_WINDOW), end, held)
    result = portfolio_risk(
        returns,
        rf=config.risk_free_rate / 252,
        holdings_daily=holdings,
        symbol_returns=prices,
        since=start,
    )
    seconds = time.perf_counter() - started
    last = result.filter(pl.col("date") == result["date"].max()) if result.height else result
    summary = {"summary": MetadataValue.md(_summary(last))}
    if last.height > SUMMARY_COLUMNS:
        summary["all_portfolios"] = MetadataValue.md(_all_portfolios(last))
    add_partition_metadata(
        context,
        "portfolio_risk",
        result,
        "date",
        run={"compute_seconds": round(seconds, 3)},
        last=summary,
    )
    yield Output(result)
    yield contract_check(PortfolioRisk, result, "portfolio_risk")
    if not last.is_empty():
        # An observation's description is the one place the UI shows a large image inline
        # (a markdown metadata value over 1,000 characters opens in a dialog).
        yield AssetObservation(
            asset_key="portfolio_risk",
            partition=context.partition_keys[-1],
            description=_chart(returns, last),
            metadata={"chart": MetadataValue.text(CHART_TITLE)},
        )


SUMMARY_ROWS = 50
SUMMARY_COLUMNS = 3
"""Portfolios side by side in the inline summary: a wider table runs off the UI's page."""
CHARTED = 3
CHART_TITLE = "cumulative return and drawdown against SPY: the chart is this event's description"
_MEASURES: dict[str, tuple[str, str]] = {
    "market_value": ("value", "money"),
    "volatility_63d": ("volatility 63d", "percent"),
    "max_drawdown_252d": ("max drawdown 252d", "percent"),
    "var_95_1d": ("VaR 95 % 1d", "percent"),
    "var_95_1d_usd": ("VaR 95 % 1d in USD", "money"),
    "cvar_95_1d": ("CVaR 95 % 1d", "percent"),
    "beta_90d": ("beta 90d", "number"),
    "sharpe_252d": ("Sharpe 252d", "number"),
    "diversification_ratio_63d": ("diversification 63d", "number"),
}
"""The summary's measures: label and how each reads."""


def _formatted(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    return {"money": money, "percent": percent}.get(kind, lambda v: f"{v:,.2f}")(value)


def _summary(last: pl.DataFrame) -> str:
    """The run's last session for its largest portfolios, one column each, a measure per row
    (narrow enough to read in place)."""
    if last.is_empty():
        return "no portfolios"
    largest = last.sort("market_value", descending=True).head(SUMMARY_COLUMNS)
    table = pl.DataFrame(
        {
            "measure": [label for label, _ in _MEASURES.values()],
            **{
                row["portfolio_id"]: [
                    _formatted(row[c], kind) for c, (_, kind) in _MEASURES.items()
                ]
                for row in largest.iter_rows(named=True)
            },
        }
    )
    others = last.height - largest.height
    note = f"\n\n{others} more portfolios under all_portfolios." if others else ""
    return f"**{last['date'][0]}**\n\n" + markdown_table(table, rows=len(_MEASURES)) + note


def _all_portfolios(last: pl.DataFrame) -> str:
    """Every portfolio (the largest SUMMARY_ROWS) a row: too wide and long to read in place,
    the UI opens it in a dialog that scrolls."""
    table = last.sort("market_value", descending=True).select(
        "portfolio_id",
        *(
            pl.col(c)
            .map_elements(lambda v, kind=kind: _formatted(v, kind), return_dtype=pl.String)
            .alias(label)
            for c, (label, kind) in _MEASURES.items()
        ),
    )
    note = (
        f"\n\n{table.height - SUMMARY_ROWS} more portfolios in the table."
        if table.height > SUMMARY_ROWS
        else ""
    )
    return markdown_table(table, rows=SUMMARY_ROWS) + note


def _chart(returns: pl.DataFrame, last: pl.DataFrame) -> str:
    """A PNG, inline: cumulative return and drawdown over the last 252 sessions of the largest
    portfolios against SPY."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if last.is_empty():
        return "no portfolios"
    end = last["date"][0]
    chosen = last.sort("market_value", descending=True)["portfolio_id"].head(CHARTED).to_list()
    window = returns.filter(
        (pl.col("date") <= end) & (pl.col("date") > _sessions_before(end, TAIL_WINDOW))
    ).sort("date")
    # Side by side and 272 px high: the UI shows a description up to 320 px before "Show more".
    figure, (top, bottom) = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True, dpi=80)
    series = {
        portfolio: window.filter(pl.col("portfolio_id") == portfolio).select(
            "date", pl.col("daily_return").fill_null(0.0).alias("r")
        )
        for portfolio in chosen
    }
    if chosen:
        benchmark = window.filter(pl.col("portfolio_id") == chosen[0]).select(
            "date", pl.col("benchmark_return").fill_null(0.0).alias("r")
        )
        series[BENCHMARK] = benchmark
    for name, frame in series.items():
        growth = (1 + frame["r"]).cum_prod()
        drawdown = growth / growth.cum_max() - 1
        style = {"color": "black", "linestyle": "--"} if name == BENCHMARK else {}
        top.plot(frame["date"].to_list(), ((growth - 1) * 100).to_list(), label=name, **style)
        bottom.plot(frame["date"].to_list(), (drawdown * 100).to_list(), **style)
    top.set_ylabel("cumulative return %")
    bottom.set_ylabel("drawdown %")
    top.legend(loc="upper left", fontsize="small")
    figure.suptitle(f"{window['date'].n_unique()} sessions to {end} (at most {TAIL_WINDOW})")
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"**{end}**: cumulative return and drawdown\n\n![chart](data:image/png;base64,{encoded})"


@asset(
    **_RISK_ASSET,
    check_specs=[contract_spec(FactorExposure, "portfolio_factor_exposures")],
    deps=[
        AssetDep("portfolio_returns", partition_mapping=_TRAILING),
        AssetDep("holdings_daily"),
        AssetDep("bronze_ohlcv"),
    ],
    description="Per (date, portfolio_id, factor) over 252 sessions: univariate beta to the "
    "market (SPY), rates (TLT) and each sector ETF, the ridge multi-factor coefficient and "
    "the fit's R².",
)
def portfolio_factor_exposures(
    context: AssetExecutionContext,
    lake: ResourceParam[LakeIOManager],
    warehouse: ResourceParam[WarehouseIOManager],
) -> Result:
    start, end = window_dates(context.partition_time_window)
    returns = _stored_returns(warehouse, start, end)
    factors = factor_returns(
        _returns_of(
            lake, _sessions_before(start, HISTORY_SESSIONS), end, list(FACTOR_SYMBOLS.values())
        )
    )
    if factors.is_empty():
        context.log.warning("no factor ETF (SPY, TLT, sector SPDRs) in bronze: no exposures")
    result = factor_exposures(returns, factors, since=start)
    add_partition_metadata(
        context,
        "portfolio_factor_exposures",
        result,
        "date",
        run={"factors": factors["factor"].n_unique()},
    )
    yield Output(result)
    yield contract_check(FactorExposure, result, "portfolio_factor_exposures")


@asset(
    name="sector_exposure",
    **_RISK_ASSET,
    check_specs=[contract_spec(SectorExposure, "sector_exposure")],
    deps=[AssetDep("holdings_daily")],
    ins={"symbol_universe": AssetIn()},
    description="Per (date, portfolio_id, sector): market value and weight, sectors from "
    "symbol_universe (CASH is Cash, a symbol without one Unknown).",
)
def sector_exposure_daily(
    context: AssetExecutionContext,
    symbol_universe: pl.DataFrame,
    warehouse: ResourceParam[WarehouseIOManager],
) -> Result:
    start, end = window_dates(context.partition_time_window)
    result = sector_exposure(_holdings(warehouse, start, end), symbol_universe)
    add_partition_metadata(context, "sector_exposure", result, "date")
    yield Output(result)
    yield contract_check(SectorExposure, result, "sector_exposure")


@asset(
    name="holding_correlations",
    **_RISK_ASSET,
    check_specs=[contract_spec(HoldingCorrelation, "holding_correlations")],
    deps=[AssetDep("holdings_daily"), AssetDep("bronze_ohlcv")],
    description="Per (date, portfolio_id, symbol_a, symbol_b): the 63-session correlation of "
    "the two holdings' daily returns, long format.",
)
def holding_correlations_daily(
    context: AssetExecutionContext,
    lake: ResourceParam[LakeIOManager],
    warehouse: ResourceParam[WarehouseIOManager],
) -> Result:
    start, end = window_dates(context.partition_time_window)
    holdings = _holdings(warehouse, start, end)
    held = holdings["symbol"].unique().to_list()
    prices = _returns_of(lake, _sessions_before(start, CORRELATION_WINDOW), end, held)
    result = holding_correlations(holdings, prices, since=start)
    add_partition_metadata(context, "holding_correlations", result, "date")
    yield Output(result)
    yield contract_check(HoldingCorrelation, result, "holding_correlations")


@asset(
    **_RISK_ASSET,
    check_specs=[contract_spec(StressTest, "portfolio_stress_tests")],
    deps=[
        AssetDep("portfolio_factor_exposures"),
        AssetDep("sector_exposure"),
        AssetDep("portfolio_returns"),
        AssetDep("holdings_daily"),
        AssetDep("bronze_ohlcv"),
    ],
    description="Per (date, portfolio_id, scenario): P&L in dollars and percent for equity "
    "-10/-20/-30 % through the market beta, rates +100 bp through the rates beta, each held "
    "sector -15 %, and the 2020 crash and 2022 rates replays when bronze covers them.",
)
def portfolio_stress_tests(
    context: AssetExecutionContext,
    lake: ResourceParam[LakeIOManager],
    warehouse: ResourceParam[WarehouseIOManager],
) -> Result:
    start, end = window_dates(context.partition_time_window)
    read = warehouse.warehouse.read
    exposures = read("portfolio_factor_exposures", "date", start, end)
    sectors = read("sector_exposure", "date", start, end)
    values = read("portfolio_returns", "date", start, end)
    holdings = _holdings(warehouse, start, end)
    replayed = [*holdings["symbol"].unique().to_list(), BENCHMARK]
    history = pl.concat(
        [
            _returns_of(lake, first, last + dt.timedelta(days=1), replayed)
            for first, last in HISTORICAL_SCENARIOS.values()
        ]
    )
    result = stress_tests(exposures, values, sectors, history=history, holdings=holdings)
    add_partition_metadata(
        context,
        "portfolio_stress_tests",
        result,
        "date",
        run={
            "scenarios": result["scenario"].n_unique(),
            "replay_history_rows": history.height,
        },
    )
    yield Output(result)
    yield contract_check(StressTest, result, "portfolio_stress_tests")


RISK_ASSETS = [
    portfolio_returns_daily,
    portfolio_risk_daily,
    portfolio_factor_exposures,
    sector_exposure_daily,
    holding_correlations_daily,
    portfolio_stress_tests,
]
RISK_ASSET_KEYS = tuple(key.to_user_string() for a in RISK_ASSETS for key in a.keys)
"""The six risk assets' keys, in dependency order."""
