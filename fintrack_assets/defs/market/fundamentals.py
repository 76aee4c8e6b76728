"""Fundamentals and rates: `treasury_yields` (daily, per session, in the lake) and
`company_fundamentals` (quarterly figures per symbol, point in time, in the warehouse)."""

import datetime as dt
import time
from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    BackfillPolicy,
    Config,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    Output,
    ResourceParam,
    ScheduleDefinition,
    asset,
    define_asset_job,
)
from pydantic import Field

from fintrack_assets.core.calendar import TIMEZONE
from fintrack_assets.core.display import rate
from fintrack_assets.core.fundamentals import (
    FUNDAMENTALS_SCHEMA,
    YIELDS_SCHEMA,
    missing_sessions,
    refreshed,
    reporting_symbols,
    stamped,
)
from fintrack_assets.defs.market.assets import FETCH_RETRY, MARKET_DATA_POOL, closed_window
from fintrack_assets.io_managers.warehouse import WarehouseIOManager
from fintrack_assets.metadata import (
    WAREHOUSE_POOL,
    add_partition_metadata,
    contract_check,
    contract_spec,
    frame_metadata,
    markdown_table,
    share_threshold,
    symbol_failures_check,
)
from fintrack_assets.partitions import trading_days
from fintrack_assets.resources.fundamentals import YieldsUnavailable
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets.schemas import CompanyFundamentals, TreasuryYields
from fintrack_assets.settings import get_settings

HISTORY_DAYS = 550
"""Quarters ending up to this long before FINTRACK_START_DATE are fetched, so four quarters
(and `eps_ttm`) are known from the first partition on: four quarters span ~275 days and the
last is filed up to ~60 days after its end; 550 days leaves room for late filers."""


@asset(
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="lake",
    metadata={"partition_expr": "date"},
    kinds={"polars"},
    pool=MARKET_DATA_POOL,
    retry_policy=FETCH_RETRY,
    group_name="market",
    description="Daily treasury yields in percent: 3-month bill, 5-, 10- and 30-year; one row "
    "per session the provider has.",
    check_specs=[
        contract_spec(TreasuryYields, "treasury_yields"),
        AssetCheckSpec(
            "sessions_covered",
            asset="treasury_yields",
            description="Every session of the materialised partitions has a row (warns: a "
            "session the provider has no yields for is missing, never invented).",
        ),
    ],
)
def treasury_yields(
    context: AssetExecutionContext, market_data: MarketDataResource
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    _, _, sessions = closed_window(context)
    source = market_data.fundamentals_source()
    started = time.perf_counter()
    try:
        fetched = source.yields(sessions, context.log.info)
    except YieldsUnavailable as exc:
        # The source has retried already (with backoff, Retry-After): not retried again.
        raise Failure(
            f"treasury yields unavailable from {source.name}: {exc}", allow_retries=False
        ) from None
    seconds = time.perf_counter() - started
    yields = (
        fetched.rows.with_columns(pl.lit(source.name).alias("source"))
        .select(list(YIELDS_SCHEMA))
        .cast(dict(YIELDS_SCHEMA))
        .sort("date")
    )
    missing = missing_sessions(yields, sessions)
    if missing:
        context.log.warning(
            f"{len(missing)} session(s) without yields from {source.name}: "
            + ", ".join(day.isoformat() for day in missing[:10])
        )
    add_partition_metadata(
        context,
        "treasury_yields",
        yields,
        "date",
        run={
            "compute_seconds": round(seconds, 3),
            "sessions": len(sessions),
            "sessions_missing": len(missing),
            "requests": fetched.requests,
            "failed_tenors": ", ".join(
                f"{tenor} ({error})" for tenor, error in sorted(fetched.failed_tenors.items())
            ),
        },
    )
    yield Output(yields, metadata={"source": source.name})
    yield contract_check(TreasuryYields, yields, "treasury_yields")
    yield AssetCheckResult(
        check_name="sessions_covered",
        asset_key="treasury_yields",
        passed=not missing,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "sessions": len(sessions),
            "sessions_missing": len(missing),
            "missing": ", ".join(day.isoformat() for day in missing[:50]),
        },
    )


class FundamentalsConfig(Config):
    since: str | None = Field(
        default=None,
        description="First quarter end to fetch, YYYY-MM-DD. Unset: 550 days before "
        "FINTRACK_START_DATE, so trailing four quarters are known from the first partition. "
        "yfinance serves only its last four to six quarters whatever this says.",
    )
    max_failed_share: float = share_threshold(
        0.05,
        "The symbol_failures check fails when more than this share of the reporting symbols "
        "failed to fetch",
    )


@asset(
    io_manager_key="warehouse",
    pool=WAREHOUSE_POOL,
    kinds={"polars"},
    group_name="market",
    retry_policy=FETCH_RETRY,
    description="Quarterly key figures per symbol (revenue, net income, EPS, shares, assets, "
    "liabilities, operating cash flow), point in time: known from filing_date.",
    check_specs=[
        AssetCheckSpec(
            "symbol_failures",
            asset="company_fundamentals",
            description="No more of the reporting symbols than max_failed_share (5 % unless "
            "configured) failed to fetch; a failed symbol keeps its stored quarters.",
        ),
        contract_spec(CompanyFundamentals, "company_fundamentals"),
    ],
)
def company_fundamentals(
    context: AssetExecutionContext,
    config: FundamentalsConfig,
    market_data: MarketDataResource,
    symbol_universe: pl.DataFrame,
    warehouse: ResourceParam[WarehouseIOManager],
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    since = (
        dt.date.fromisoformat(config.since)
        if config.since
        else get_settings().start_date - dt.timedelta(days=HISTORY_DAYS)
    )
    symbols, skipped = reporting_symbols(symbol_universe)
    source = market_data.fundamentals_source()
    context.log.info(
        f"fundamentals of {len(symbols)} symbols since {since} from {source.name} "
        f"({len(skipped)} ETFs, indices or FX skipped: they file no company reports)"
    )
    started = time.perf_counter()
    fetched = source.fundamentals(symbols, since, context.log.info)
    seconds = time.perf_counter() - started
    rows = stamped(fetched.rows, source.name, dt.datetime.now(dt.UTC))
    previous = warehouse.previous("company_fundamentals")
    table = refreshed(rows, previous, symbol_universe["symbol"].to_list(), source.name)
    failed = sorted(set(fetched.failures["symbol"].to_list()))
    kept = table.filter(pl.col("symbol").is_in(failed)).height
    if failed:
        context.log.warning(
            f"fundamentals of {len(failed)} symbol(s) unavailable from {source.name}; "
            f"{kept} stored quarter(s) of theirs kept"
        )
    yield Output(
        table.select(list(FUNDAMENTALS_SCHEMA)),
        metadata={
            **frame_metadata(table, seconds),
            "source": source.name,
            "since": since.isoformat(),
            "symbols_requested": len(symbols),
            "symbols_skipped": len(skipped),
            "symbols_succeeded": len(symbols) - len(failed),
            "symbols_failed": len(failed),
            "failures": MetadataValue.md(markdown_table(fetched.failures, rows=50)),
            "quarters_fetched": rows.height,
            "quarters_kept_for_failed": kept,
            "records_unreadable": fetched.malformed,
            "requests": fetched.requests,
            "throughput": rate(rows.height, seconds),
        },
    )
    yield symbol_failures_check(
        "company_fundamentals", failed, len(symbols), config.max_failed_share
    )
    yield contract_check(CompanyFundamentals, table, "company_fundamentals")


company_fundamentals_job = define_asset_job(
    "company_fundamentals_job",
    selection=AssetSelection.assets("company_fundamentals"),
    description="company_fundamentals: every reporting symbol's quarters, refreshed.",
)

company_fundamentals_schedule = ScheduleDefinition(
    name="company_fundamentals_schedule",
    job=company_fundamentals_job,
    cron_schedule="0 6 * * 6",
    execution_timezone=TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
    description="company_fundamentals_job at 06:00 New York every Saturday: the week's filings.",
)
