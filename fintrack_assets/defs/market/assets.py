"""Market data: the symbol universe, raw provider bars, and validated bronze bars."""

import datetime as dt
import time
from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Backoff,
    Config,
    Failure,
    Jitter,
    MetadataValue,
    Output,
    ResourceParam,
    RetryPolicy,
    asset,
    multi_asset,
)
from pydantic import Field

from fintrack_assets.core.bronze import reject_counts, to_bronze
from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.display import rate
from fintrack_assets.core.market import normalise_raw
from fintrack_assets.core.universe import (
    load_universe,
    split_valid,
    stale_symbols,
    with_provider_metadata,
)
from fintrack_assets.io_managers.warehouse import WarehouseIOManager
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
    symbol_failures_check,
)
from fintrack_assets.partitions import trading_days, unclosed_sessions, window_dates
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets.schemas import BronzeOHLCV
from fintrack_assets.settings import get_settings
from fintrack_assets.subsets import companion, companion_outs, is_selected

FETCH_RETRY = RetryPolicy(
    max_retries=3, delay=5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
MARKET_DATA_POOL = "market_data_api"


class UniverseConfig(Config):
    universe: str | None = Field(
        default=None,
        description="Overrides FINTRACK_UNIVERSE for this run: sample, sp500, a comma list "
        "like AAPL,MSFT, a CSV path, or synthetic:N. Unset: FINTRACK_UNIVERSE.",
    )
    refresh_metadata: bool = Field(
        default=True,
        description="Ask the market-data provider for name, sector and industry of symbols "
        "whose metadata is older than metadata_max_age_days.",
    )
    metadata_max_age_days: int = Field(
        default=30, description="Days a symbol's provider metadata stays fresh."
    )


@asset(
    io_manager_key="warehouse",
    pool=WAREHOUSE_POOL,
    kinds={"polars"},
    group_name="market",
    description="The symbols the market assets fetch, with name, sector, industry and type.",
)
def symbol_universe(
    context: AssetExecutionContext,
    config: UniverseConfig,
    market_data: MarketDataResource,
    warehouse: ResourceParam[WarehouseIOManager],
) -> Output[pl.DataFrame]:
    spec = config.universe or get_settings().universe
    universe, rejected = split_valid(load_universe(spec))
    if not rejected.is_empty():
        context.log.warning(f"{rejected.height} universe row(s) rejected: bad or repeated symbol")
    provider = market_data.provider(universe)
    now = dt.datetime.now(dt.UTC)
    max_age = dt.timedelta(days=config.metadata_max_age_days)
    previous = warehouse.previous("symbol_universe")
    stale = stale_symbols(universe, previous, now, max_age)
    fetched, failures = provider.symbol_metadata(
        stale if config.refresh_metadata else [], context.log.info
    )
    if not failures.is_empty():
        context.log.warning(
            f"metadata for {failures.height} symbol(s) unavailable from {provider.name}; "
            "keeping what we had"
        )
    universe = with_provider_metadata(universe, previous, fetched, now, max_age)
    return Output(
        universe,
        metadata={
            **frame_metadata(universe),
            "universe": spec,
            "sectors": universe["sector"].n_unique(),
            "rejected_rows": rejected.height,
            "rejected": MetadataValue.md(markdown_table(rejected, rows=20)),
            "metadata_source": provider.name,
            "metadata_refreshed": fetched.height,
            "metadata_failed": failures.height,
            "metadata_failures": MetadataValue.md(markdown_table(failures, rows=20)),
        },
    )


def _window(context: AssetExecutionContext) -> tuple[dt.date, dt.date, list[dt.date]]:
    start, end = window_dates(context.partition_time_window)
    return start, end, sessions_between(start, end)


def closed_window(context: AssetExecutionContext) -> tuple[dt.date, dt.date, list[dt.date]]:
    """The run's [start, end) and its sessions; a session whose partition has not opened yet
    (before 16:05 New York) stops the run with a clear failure, not retried."""
    start, end, sessions = _window(context)
    pending = unclosed_sessions(sessions)
    if pending:
        raise Failure(
            f"session {pending[0]} has not closed yet: its partition opens at 16:05 New York time",
            allow_retries=False,
        )
    return start, end, sessions


class RawConfig(Config):
    max_failed_share: float = share_threshold(
        0.05,
        "The symbol_failures check fails when more than this share of the universe failed to fetch",
    )


@asset(
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="lake",
    kinds={"polars"},
    pool=MARKET_DATA_POOL,
    retry_policy=FETCH_RETRY,
    group_name="market",
    description="Daily bars as the provider returned them, normalised; one Delta table.",
    check_specs=[
        AssetCheckSpec(
            "symbol_failures",
            asset="raw_ohlcv",
            description="No more of the universe than max_failed_share (5 % unless "
            "configured) failed to fetch.",
        )
    ],
)
def raw_ohlcv(
    context: AssetExecutionContext,
    config: RawConfig,
    market_data: MarketDataResource,
    symbol_universe: pl.DataFrame,
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    start, end, sessions = closed_window(context)
    provider = market_data.provider(symbol_universe)
    symbols = symbol_universe["symbol"].to_list()
    context.log.info(
        f"fetching {len(symbols)} symbols x {len(sessions)} sessions [{start}, {end}) "
        f"from {provider.name}"
    )
    started = time.perf_counter()
    fetched = provider.fetch(symbols, sessions, context.log.info)
    raw, misplaced = normalise_raw(fetched.bars, provider.name, start, end, dt.datetime.now(dt.UTC))
    if not misplaced.is_empty():
        context.log.warning(
            f"{misplaced.height} bar(s) dated outside [{start}, {end}) or undated; "
            "listed in metadata, not stored in this partition"
        )
    seconds = time.perf_counter() - started
    context.log.info(
        f"fetched {raw.height:,} rows in {seconds:.2f} s: {fetched.symbols_succeeded} symbols "
        f"succeeded, {fetched.symbols_failed} failed in {len(fetched.batches)} batch(es)"
    )
    add_partition_metadata(
        context,
        "raw_ohlcv",
        raw,
        "date",
        run={
            "compute_seconds": round(seconds, 3),
            "sessions": len(sessions),
            "batches_total": len(fetched.batches),
            "batch_size": fetched.batch_size,
            "requests": fetched.requests,
            "symbols_requested": fetched.symbols_requested,
            "symbols_succeeded": fetched.symbols_succeeded,
            "symbols_failed": fetched.symbols_failed,
            "failures": MetadataValue.md(markdown_table(fetched.failures, rows=50)),
            "rows_outside_window": misplaced.height,
            "outside_window": MetadataValue.md(markdown_table(misplaced, rows=10)),
            "throughput": rate(raw.height, seconds),
        },
    )
    yield Output(raw, metadata={"source": provider.name})
    yield symbol_failures_check(
        "raw_ohlcv",
        fetched.failures["symbol"].unique().to_list(),
        len(symbols),
        config.max_failed_share,
    )


class BronzeConfig(Config):
    max_reject_share: float = share_threshold(
        0.01, "The reject_share check fails above this share of raw rows rejected"
    )


@multi_asset(
    outs=companion_outs(
        "lake",
        {
            "bronze_ohlcv": "Validated daily bars, one per (symbol, session), prices as traded.",
            "bronze_ohlcv_rejects": "raw_ohlcv rows that failed validation, with the reasons.",
        },
    ),
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="market",
    can_subset=True,
    check_specs=[
        reject_share_spec(
            "bronze_ohlcv",
            "No more of the raw rows than max_reject_share (1 % unless configured) were rejected.",
        ),
        contract_spec(BronzeOHLCV, "bronze_ohlcv", blocking=True),
    ],
)
def bronze_ohlcv(
    context: AssetExecutionContext, config: BronzeConfig, raw_ohlcv: pl.DataFrame
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    started = time.perf_counter()
    bronze, rejects = to_bronze(raw_ohlcv)
    seconds = time.perf_counter() - started
    counts = reject_counts(rejects)
    context.log.info(
        f"{bronze.height:,} valid rows, {rejects.height:,} rejected in {seconds:.2f} s"
        + (f": {counts}" if counts else "")
    )
    yield from companion(
        context,
        Output(rejects, output_name="bronze_ohlcv_rejects"),
        run=reason_metadata(counts),
    )
    if not is_selected(context, "bronze_ohlcv"):
        return
    add_partition_metadata(
        context,
        "bronze_ohlcv",
        bronze,
        "date",
        run={
            "compute_seconds": round(seconds, 3),
            "symbols": bronze["symbol"].n_unique(),
            "sessions": bronze["date"].n_unique(),
            "rejected_rows": rejects.height,
        },
    )
    yield Output(bronze, output_name="bronze_ohlcv")
    yield reject_share_check(
        "bronze_ohlcv",
        rejects.height,
        raw_ohlcv.height,
        threshold=config.max_reject_share,
        severity=AssetCheckSeverity.ERROR,
        counts=counts,
    )
    yield contract_check(BronzeOHLCV, bronze, "bronze_ohlcv")
