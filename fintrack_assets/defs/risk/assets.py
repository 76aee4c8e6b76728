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
    AssetKey,
    AssetObservation,
    BackfillPolicy,
    Config,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from fintrack_assets.automation import follows_upstream_once
from fintrack_assets.core import risk as risk_core
from fintrack_assets.core.calendar import nyse_sessions
from fintrack_assets.core.display import money, percent
from fintrack_assets.core.factors import FACTOR_SYMBOLS, factor_exposures, factor_returns
from fintrack_assets.core.holdings import external_flows
from fintrack_assets.core.risk import (
    BENCHMARK,
    BETA_WINDOW,
    CORRELATION_WINDOW,
    IR_YIELD,
    MIN_OBSERVATIONS,
    TAIL_WINDOW,
    symbol_returns,
)
from fintrack_assets.core.stress import HISTORICAL_SCENARIOS, stress_tests
from fintrack_assets.io_managers.context import COLUMNS, OPTIONAL, Rows
from fintrack_assets.io_managers.reader import UpstreamReader
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

BRONZE = AssetKey("bronze_ohlcv")
YIELDS = "treasury_yields"
FUNDAMENTALS = "company_fundamentals"
BAR_COLUMNS = ["symbol", "date", "close", "split_ratio", "dividend"]
HISTORY_SESSIONS = TAIL_WINDOW + 1
"""Sessions before a run's first one that its trailing windows reach (one more for the first
return)."""
GROUP = "risk"
KINDS = {"polars"}


def _trailing(sessions: int) -> TimeWindowPartitionMapping:
    """The run's sessions and the `sessions` before its first; before the first partition
    there are none to read, and the window starts later."""
    return TimeWindowPartitionMapping(
        start_offset=-sessions, allow_nonexistent_upstream_partitions=True
    )


def _bars(sessions: int) -> AssetIn:
    """bronze_ohlcv for symbol returns from `sessions` sessions before the run's first: one
    session more, whose close the first return starts from. The asset takes it as a
    `pl.LazyFrame` and reads the symbols it needs alone."""
    return AssetIn(partition_mapping=_trailing(sessions + 1), metadata={COLUMNS: BAR_COLUMNS})


_HISTORY = _trailing(HISTORY_SESSIONS)
_YIELDS = AssetIn(
    # ir_beta's 90 sessions ending at the run's first, and the session before them: the first
    # change starts from its yield.
    partition_mapping=_trailing(BETA_WINDOW),
    metadata={COLUMNS: ["date", IR_YIELD], OPTIONAL: True},
)
"""treasury_yields for ir_beta: optional, so risk runs (ir_beta null) before any yields exist."""
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


def _returns(bars: pl.LazyFrame, symbols: list[str]) -> pl.DataFrame:
    """symbol_returns of `symbols`, their bars alone read."""
    return symbol_returns(bars.filter(pl.col("symbol").is_in(symbols)).collect())


class RiskConfig(Config):
    risk_free_rate: float = Field(
        default=0.0,
        description="Annual risk-free rate for Sharpe, Sortino and alpha (0.04 = 4 %), "
        "applied per session as rate / 252.",
    )


@asset(
    **_RISK_ASSET,
    check_specs=[contract_spec(PortfolioReturn, "portfolio_returns")],
    ins={
        "holdings_daily": AssetIn(partition_mapping=_trailing(1)),
        "bronze_ohlcv": _bars(1),
        "portfolio_trades": AssetIn(),
    },
    description="Per (date, portfolio_id): market value, net external flow, the day's "
    "time-weighted return with flows excluded, and SPY's return the same day.",
)
def portfolio_returns(
    context: AssetExecutionContext,
    holdings_daily: pl.DataFrame,
    bronze_ohlcv: pl.LazyFrame,
    portfolio_trades: pl.DataFrame,
) -> Result:
    """Holdings from the session before the run's first: its value starts the first return."""
    start, _ = window_dates(context.partition_time_window)
    spy = _returns(bronze_ohlcv, [BENCHMARK])
    flows = external_flows(portfolio_trades)
    result = risk_core.portfolio_returns(holdings_daily, flows, spy).filter(pl.col("date") >= start)
    if spy.is_empty():
        context.log.warning(f"no {BENCHMARK} bars in bronze: benchmark returns are null")
    add_partition_metadata(context, "portfolio_returns", result, "date")
    yield Output(result)
    yield contract_check(PortfolioReturn, result, "portfolio_returns")


@asset(
    **_RISK_ASSET,
    check_specs=[contract_spec(PortfolioRisk, "portfolio_risk")],
    ins={
        "portfolio_returns": AssetIn(partition_mapping=_HISTORY),
        "holdings_daily": AssetIn(),
        "bronze_ohlcv": _bars(CORRELATION_WINDOW),
        YIELDS: _YIELDS,
    },
    description="Per (date, portfolio_id), over trailing windows of sessions ending at D: "
    "volatility (21/63/252), beta and alpha (90) against SPY, ir_beta (90: the % return for "
    "+100 bp of the 10-year Treasury yield, from treasury_yields; -7.0 = down 7 % when yields "
    "rise 1 pp), Sharpe, Sortino, max drawdown, VaR and CVaR (95/99, as returns and dollars), "
    "diversification ratio (63).",
)
def portfolio_risk(
    context: AssetExecutionContext,
    config: RiskConfig,
    portfolio_returns: pl.DataFrame,
    holdings_daily: pl.DataFrame,
    bronze_ohlcv: pl.LazyFrame,
    treasury_yields: pl.DataFrame | None,
) -> Result:
    started = time.perf_counter()
    start, _ = window_dates(context.partition_time_window)
    prices = _returns(bronze_ohlcv, holdings_daily["symbol"].unique().to_list())
    result = risk_core.portfolio_risk(
        portfolio_returns,
        rf=config.risk_free_rate / 252,
        holdings_daily=holdings_daily,
        symbol_returns=prices,
        since=start,
        yields=treasury_yields,
    )
    seconds = time.perf_counter() - started
    rates = _ir_beta_note(result, treasury_yields)
    if treasury_yields is None:
        context.log.warning(f"ir_beta is {rates}")
    last = result.filter(pl.col("date") == result["date"].max()) if result.height else result
    summary = {"summary": MetadataValue.md(_summary(last))}
    if last.height > SUMMARY_COLUMNS:
        summary["all_portfolios"] = MetadataValue.md(_all_portfolios(last))
    add_partition_metadata(
        context,
        "portfolio_risk",
        result,
        "date",
        run={"compute_seconds": round(seconds, 3), "ir_beta": rates},
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
            description=_chart(portfolio_returns, last),
            metadata={"chart": MetadataValue.text(CHART_TITLE)},
        )


def _ir_beta_note(result: pl.DataFrame, yields: pl.DataFrame | None) -> str:
    """Where ir_beta comes from, or why it is null, in a sentence for the run's metadata."""
    if yields is None:
        return (
            f"null: {YIELDS} has not been materialised yet (materialise it over the run's "
            f"sessions and the {BETA_WINDOW} before them)"
        )
    known = result.height - result["ir_beta"].null_count()
    return (
        f"{known:,} of {result.height:,} rows from {YIELDS} ({IR_YIELD}, {yields.height:,} "
        f"sessions read); null where {BETA_WINDOW} sessions hold fewer than {MIN_OBSERVATIONS} "
        "(return, yield change) pairs"
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
    "ir_beta": ("ir beta, % per +100 bp", "number"),
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
    # Not read: the upstream its automation condition follows, as every risk asset's.
    deps=[AssetDep("holdings_daily")],
    ins={
        "portfolio_returns": AssetIn(partition_mapping=_HISTORY),
        "bronze_ohlcv": _bars(HISTORY_SESSIONS),
    },
    description="Per (date, portfolio_id, factor) over 252 sessions: univariate beta to the "
    "market (SPY), rates (TLT) and each sector ETF, the ridge multi-factor coefficient and "
    "the fit's R².",
)
def portfolio_factor_exposures(
    context: AssetExecutionContext, portfolio_returns: pl.DataFrame, bronze_ohlcv: pl.LazyFrame
) -> Result:
    start, _ = window_dates(context.partition_time_window)
    factors = factor_returns(_returns(bronze_ohlcv, list(FACTOR_SYMBOLS.values())))
    if factors.is_empty():
        context.log.warning("no factor ETF (SPY, TLT, sector SPDRs) in bronze: no exposures")
    result = factor_exposures(portfolio_returns, factors, since=start)
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
    **_RISK_ASSET,
    check_specs=[contract_spec(SectorExposure, "sector_exposure")],
    ins={
        "holdings_daily": AssetIn(),
        "symbol_universe": AssetIn(),
        # Optional: sectors and weights do not wait for fundamentals; their columns stay null.
        FUNDAMENTALS: AssetIn(metadata={OPTIONAL: True}),
    },
    description="Per (date, portfolio_id, sector): market value and weight, sectors from "
    "symbol_universe (CASH is Cash, a symbol without one Unknown); from company_fundamentals "
    "known on the date, the value-weighted harmonic P/E (trailing four quarters' EPS), the "
    "value-weighted market cap, and the share of the sector's value they cover.",
)
def sector_exposure(
    context: AssetExecutionContext,
    holdings_daily: pl.DataFrame,
    symbol_universe: pl.DataFrame,
    company_fundamentals: pl.DataFrame | None,
) -> Result:
    result = risk_core.sector_exposure(holdings_daily, symbol_universe, company_fundamentals)
    if company_fundamentals is None:
        coverage = f"none: {FUNDAMENTALS} has not been materialised yet, valuations are null"
        context.log.warning(f"valuation coverage {coverage}")
    else:
        invested = result.filter(pl.col("valuation_coverage").is_not_null())
        value = invested["market_value"].sum()
        covered = (invested["market_value"] * invested["valuation_coverage"]).sum()
        coverage = percent(covered / value) if value else "n/a: nothing invested"
    add_partition_metadata(
        context, "sector_exposure", result, "date", run={"valuation_coverage": coverage}
    )
    yield Output(result)
    yield contract_check(SectorExposure, result, "sector_exposure")


@asset(
    **_RISK_ASSET,
    check_specs=[contract_spec(HoldingCorrelation, "holding_correlations")],
    ins={"holdings_daily": AssetIn(), "bronze_ohlcv": _bars(CORRELATION_WINDOW)},
    description="Per (date, portfolio_id, symbol_a, symbol_b): the 63-session correlation of "
    "the two holdings' daily returns, long format.",
)
def holding_correlations(
    context: AssetExecutionContext, holdings_daily: pl.DataFrame, bronze_ohlcv: pl.LazyFrame
) -> Result:
    start, _ = window_dates(context.partition_time_window)
    prices = _returns(bronze_ohlcv, holdings_daily["symbol"].unique().to_list())
    result = risk_core.holding_correlations(holdings_daily, prices, since=start)
    add_partition_metadata(context, "holding_correlations", result, "date")
    yield Output(result)
    yield contract_check(HoldingCorrelation, result, "holding_correlations")


@asset(
    **_RISK_ASSET,
    check_specs=[contract_spec(StressTest, "portfolio_stress_tests")],
    deps=[AssetDep(BRONZE)],
    ins={
        "portfolio_factor_exposures": AssetIn(),
        "sector_exposure": AssetIn(),
        "portfolio_returns": AssetIn(),
        "holdings_daily": AssetIn(),
        "portfolio_risk": AssetIn(metadata={COLUMNS: ["date", "portfolio_id", "ir_beta"]}),
    },
    description="Per (date, portfolio_id, scenario): P&L in dollars and percent for equity "
    "-10/-20/-30 % through the market beta, rates +100 bp through ir_beta where treasury "
    "yields cover its window (else the rates beta to TLT), each held sector -15 %, and the "
    "2020 crash and 2022 rates replays when bronze covers them.",
)
def portfolio_stress_tests(
    context: AssetExecutionContext,
    portfolio_factor_exposures: pl.DataFrame,
    sector_exposure: pl.DataFrame,
    portfolio_returns: pl.DataFrame,
    holdings_daily: pl.DataFrame,
    portfolio_risk: pl.DataFrame,
    upstream_reader: UpstreamReader,
) -> Result:
    """The replays read bronze over the scenarios' own periods, whatever the run's sessions:
    through the upstream reader, not an input."""
    replayed = [*holdings_daily["symbol"].unique().to_list(), BENCHMARK]
    history = pl.concat(
        [
            _replay(context, upstream_reader, first, last, replayed)
            for first, last in HISTORICAL_SCENARIOS.values()
        ]
    )
    result = stress_tests(
        portfolio_factor_exposures,
        portfolio_returns,
        sector_exposure,
        history=history,
        holdings=holdings_daily,
        ir_betas=portfolio_risk,
    )
    rates = result.filter(pl.col("scenario").str.starts_with("rates_+"))["method"]
    add_partition_metadata(
        context,
        "portfolio_stress_tests",
        result,
        "date",
        run={
            "scenarios": result["scenario"].n_unique(),
            "replay_history_rows": history.height,
            "rates_by_ir_beta": int((rates == "ir_beta").sum()),
            "rates_by_tlt_beta": int((rates == "factor").sum()),
        },
    )
    yield Output(result)
    yield contract_check(StressTest, result, "portfolio_stress_tests")


def _replay(
    context: AssetExecutionContext,
    reader: UpstreamReader,
    first: dt.date,
    last: dt.date,
    symbols: list[str],
) -> pl.DataFrame:
    """symbol_returns of `symbols` over a scenario's [first, last], from bronze read from the
    session before `first`, whose close the first return starts from."""
    window = (_sessions_before(first, 1), last + dt.timedelta(days=1))
    bars = reader.scan(context, BRONZE, Rows(window=window, columns=BAR_COLUMNS))
    return _returns(bars, symbols).filter(pl.col("date") >= first)


RISK_ASSETS = [
    portfolio_returns,
    portfolio_risk,
    portfolio_factor_exposures,
    sector_exposure,
    holding_correlations,
    portfolio_stress_tests,
]
RISK_ASSET_KEYS = tuple(key.to_user_string() for a in RISK_ASSETS for key in a.keys)
"""The six risk assets' keys, in dependency order."""
