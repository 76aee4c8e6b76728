"""Portfolios: trades from the landing zone, daily and monthly holdings in the warehouse."""

import datetime as dt
import time
from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    BackfillPolicy,
    Config,
    MetadataValue,
    Output,
    ResourceParam,
    TimeWindowPartitionMapping,
    asset,
    multi_asset,
)
from pydantic import Field

from fintrack_assets.automation import follows_upstream_once
from fintrack_assets.core.display import money
from fintrack_assets.core.holdings import (
    CostMethod,
    external_flows,
    holdings,
    monthly,
    next_month,
    replay,
)
from fintrack_assets.core.trades import (
    REJECT_SCHEMA,
    TRADED_SCHEMA,
    parse_trades,
    reject_counts,
    validate_trades,
)
from fintrack_assets.io_managers.context import Rows
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.reader import UpstreamReader
from fintrack_assets.metadata import (
    WAREHOUSE_POOL,
    add_partition_metadata,
    contract_check,
    contract_spec,
    frame_metadata,
    markdown_table,
    reason_metadata,
    reject_share_check,
    reject_share_spec,
    share_threshold,
)
from fintrack_assets.partitions import months, trading_days, window_dates
from fintrack_assets.resources.landing import LandingZone
from fintrack_assets.schemas import HoldingsMonthly, PortfolioTrade
from fintrack_assets.subsets import companion, companion_outs, is_selected

TRADES = "portfolio_trades"
BRONZE = AssetKey("bronze_ohlcv")
PRICE_COLUMNS = ["symbol", "date", "close", "split_ratio", "dividend"]


class TradesConfig(Config):
    max_reject_share: float = share_threshold(
        0.01, "The reject_share check warns above this share of trade rows refused"
    )


@multi_asset(
    outs=companion_outs(
        "warehouse",
        {
            TRADES: "Every valid trade from <lake>/landing/portfolio_trades/*.csv.",
            "portfolio_trades_rejects": "Trade rows refused, with file, line and reason.",
        },
    ),
    group_name="portfolio",
    pool=WAREHOUSE_POOL,
    deps=["bronze_ohlcv"],
    can_subset=True,
    check_specs=[
        reject_share_spec(TRADES, "Few trade rows refused."),
        contract_spec(PortfolioTrade, TRADES, blocking=True),
    ],
)
def portfolio_trades(
    context: AssetExecutionContext,
    config: TradesConfig,
    symbol_universe: pl.DataFrame,
    lake: ResourceParam[LakeIOManager],
    upstream_reader: UpstreamReader,
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    """Reads every landing file each run (the history is small and a re-run must give the
    same table), validates, then replays the valid trades with bronze's splits to refuse any
    sell beyond the shares held: bronze from the first trade to the last, through the
    upstream reader (the trades, not the partitions, state that window)."""
    started = time.perf_counter()
    zone = LandingZone(lake.lake_url, lake.storage_options)
    files = zone.list_files(TRADES)
    parsed, rejected = [], []
    for file in files:
        rows, bad = parse_trades(zone.read_csv(file), file.name)
        parsed.append(rows)
        rejected.append(bad)
        context.log.info(f"{file.name}: {rows.height} rows, {bad.height} unreadable")
    raw = pl.concat(parsed, how="vertical") if parsed else pl.DataFrame(schema=TRADED_SCHEMA)
    valid, invalid = validate_trades(raw, symbol_universe["symbol"].to_list())
    if not valid.is_empty():
        first, last = valid["date"].min(), valid["date"].max()
        assert isinstance(first, dt.date) and isinstance(last, dt.date)
        traded = Rows(window=(first, last + dt.timedelta(days=1)), columns=PRICE_COLUMNS)
        _, _, oversold = replay(valid, upstream_reader.read(context, BRONZE, traded))
        if not oversold.is_empty():
            refused = valid.filter(pl.col("trade_id").is_in(oversold["trade_id"].implode()))
            valid = valid.filter(~pl.col("trade_id").is_in(oversold["trade_id"].implode()))
            invalid = pl.concat(
                [
                    invalid,
                    refused.select(
                        *(pl.col(c).cast(t) for c, t in REJECT_SCHEMA.items() if c != "reason"),
                        pl.lit("oversell").alias("reason"),
                    ),
                ]
            )
    rejects = pl.concat([*rejected, invalid], how="vertical")
    counts = reject_counts(rejects)
    seconds = time.perf_counter() - started
    context.log.info(
        f"{len(files)} file(s): {valid.height} trades, {rejects.height} refused"
        + (f" {counts}" if counts else "")
    )
    yield from companion(
        context,
        Output(
            rejects,
            output_name="portfolio_trades_rejects",
            metadata={**frame_metadata(rejects), **reason_metadata(counts)},
        ),
    )
    if not is_selected(context, TRADES):
        return
    yield Output(
        valid,
        output_name=TRADES,
        metadata={
            **frame_metadata(valid, seconds),
            "files": len(files),
            "portfolios": valid["portfolio_id"].n_unique(),
            "rejected_rows": rejects.height,
        },
    )
    yield reject_share_check(
        TRADES,
        rejects.height,
        valid.height + rejects.height,
        threshold=config.max_reject_share,
        severity=AssetCheckSeverity.WARN,
        counts=counts,
    )
    yield contract_check(PortfolioTrade, valid, TRADES)


_MONTH_AND_OPENING = TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
"""holdings_daily for holdings_monthly: the sessions whose partitions overlap the months. A
session's partition lasts until the next session's close, so the last session before a month
overlaps it too and brings the opening value (none before the first partition)."""


class HoldingsConfig(Config):
    method: CostMethod = Field(
        default="average",
        description="Cost method of realised P&L and cost basis: average (the contract's) "
        "or fifo (first lots sold first).",
    )


@asset(
    partitions_def=trading_days,
    automation_condition=follows_upstream_once(TRADES),
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="warehouse",
    pool=WAREHOUSE_POOL,
    kinds={"polars"},
    group_name="portfolio",
    deps=[BRONZE],
    ins={TRADES: AssetIn()},
    description="One row per (date, portfolio, symbol) plus CASH: quantity, average cost, "
    "value at the day's close, realised and unrealised P&L, dividends, weight.",
    check_specs=[
        AssetCheckSpec(
            "reconciliation",
            asset="holdings_daily",
            blocking=True,
            description="Every day, each portfolio's cash equals its deposits minus "
            "withdrawals, buys and fees plus sells and dividends, each position is valued at "
            "its quantity times the close, the portfolio's weights sum to 1, and no number "
            "is infinite or NaN.",
        )
    ],
)
def holdings_daily(
    context: AssetExecutionContext,
    config: HoldingsConfig,
    portfolio_trades: pl.DataFrame,
    upstream_reader: UpstreamReader,
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    """Replays every trade from the first: bronze's prices are read from the first trade's
    session (or the run's first, if earlier) through the upstream reader, a window no
    partition mapping states."""
    start, end = window_dates(context.partition_time_window)
    started = time.perf_counter()
    first = portfolio_trades["date"].min() if not portfolio_trades.is_empty() else start
    assert isinstance(first, dt.date)
    replayed = Rows(window=(min(first, start), end), columns=PRICE_COLUMNS)
    prices = upstream_reader.read(context, BRONZE, replayed)
    result = holdings(portfolio_trades, prices, start, end, config.method)
    seconds = time.perf_counter() - started
    daily = result.daily
    context.log.info(
        f"{daily.height:,} holdings rows for {daily['portfolio_id'].n_unique()} portfolios "
        f"[{start}, {end}) from {portfolio_trades.height:,} trades and {prices.height:,} "
        f"prices in {seconds:.2f} s"
    )
    add_partition_metadata(
        context,
        "holdings_daily",
        daily,
        "date",
        run={
            "compute_seconds": round(seconds, 3),
            "portfolios": daily["portfolio_id"].n_unique(),
            "prices_read": prices.height,
        },
        partitions=_daily_books(daily),
    )
    yield Output(daily, metadata={"method": config.method})
    yield _reconciliation(daily, result.cash_flows, portfolio_trades.filter(pl.col("date") < end))


def _daily_books(daily: pl.DataFrame) -> dict[str, dict[str, object]]:
    """Each session's own figures: portfolios held and their total value, cash included."""
    books = daily.group_by("date").agg(
        pl.col("portfolio_id").n_unique().alias("portfolios"),
        pl.col("market_value").sum().alias("market_value"),
    )
    return {
        day.isoformat(): {"portfolios": held, "market_value": money(value or 0.0)}
        for day, held, value in books.iter_rows()
    }


def _reconciliation(
    daily: pl.DataFrame, flows: pl.DataFrame, trades: pl.DataFrame
) -> AssetCheckResult:
    """Cash rebuilt from the trades themselves (not the engine's bookkeeping), plus the
    dividends the engine paid: deposits - withdrawals - buys + sells + dividends - fees. An
    inf or NaN in any column fails it too: the identities cover only some of the columns."""
    cash = daily.filter(pl.col("symbol") == "CASH").select("date", "portfolio_id", "quantity")
    gross = pl.col("quantity") * pl.col("price")
    signed = pl.when(pl.col("action").is_in(["DEPOSIT", "SELL"])).then(gross).otherwise(
        -gross
    ) - pl.col("fees")
    moves = pl.concat(
        [
            trades.select("date", "portfolio_id", signed.alias("amount")),
            flows.select("date", "portfolio_id", pl.col("dividends").alias("amount")),
        ]
    )
    expected = (
        moves.group_by("date", "portfolio_id")
        .agg(pl.col("amount").sum())
        .sort("date")
        .select(
            "date",
            "portfolio_id",
            pl.col("amount").cum_sum().over("portfolio_id").alias("expected"),
        )
    )
    cash_off = (
        cash.sort("date")
        .join_asof(expected, on="date", by="portfolio_id", check_sortedness=False)
        .filter((pl.col("quantity") - pl.col("expected")).abs() > 1e-6)
    )
    positions = daily.filter(pl.col("symbol") != "CASH")
    value_off = positions.filter(
        (pl.col("market_value") - pl.col("quantity") * pl.col("close")).abs() > 1e-6
    )
    weights_off = (
        daily.group_by("date", "portfolio_id")
        .agg(pl.col("weight").sum())
        .filter(pl.col("weight").is_not_null() & ((pl.col("weight") - 1.0).abs() > 1e-9))
    )
    not_finite = daily.filter(
        ~pl.all_horizontal(pl.lit(True), pl.col(pl.Float64).is_finite().fill_null(True))
    )
    return AssetCheckResult(
        check_name="reconciliation",
        asset_key="holdings_daily",
        passed=cash_off.is_empty()
        and value_off.is_empty()
        and weights_off.is_empty()
        and not_finite.is_empty(),
        metadata={
            "rows_not_finite": not_finite.height,
            "cash_days_off": cash_off.height,
            "positions_mis_valued": value_off.height,
            "portfolio_days_weights_off": weights_off.height,
            "examples": MetadataValue.md(markdown_table(cash_off, rows=10)),
        },
    )


@asset(
    partitions_def=months,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="warehouse",
    pool=WAREHOUSE_POOL,
    kinds={"polars"},
    group_name="portfolio",
    ins={"holdings_daily": AssetIn(partition_mapping=_MONTH_AND_OPENING), TRADES: AssetIn()},
    metadata={"partition_expr": "month"},
    description="Month-end snapshot with the month's realised P&L, dividends, fees, net "
    "external flows and time-weighted return.",
    check_specs=[contract_spec(HoldingsMonthly, "holdings_monthly")],
)
def holdings_monthly(
    context: AssetExecutionContext, holdings_daily: pl.DataFrame, portfolio_trades: pl.DataFrame
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    start, end = window_dates(context.partition_time_window)
    flows = external_flows(portfolio_trades)
    month = start
    frames = []
    while month < end:
        frames.append(monthly(holdings_daily, flows, month))
        month = next_month(month)
    result = pl.concat(frames)
    add_partition_metadata(context, "holdings_monthly", result, "month")
    yield Output(result)
    yield contract_check(HoldingsMonthly, result, "holdings_monthly")
