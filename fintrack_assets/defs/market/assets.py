"""Market data: the symbol universe, raw provider bars, and validated bronze bars."""

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

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
from fintrack_assets.core.fetch_plan import PAIR_SCHEMA, keep_wanted, missing_pairs, stage_key
from fintrack_assets.core.listings import LEFT_OUT_SCHEMA
from fintrack_assets.core.market import normalise_raw
from fintrack_assets.core.membership import MEMBER_SPELLS, expected_pairs, members_on, spells_frame
from fintrack_assets.core.universe import (
    LISTED_AT,
    LISTING_SOURCE,
    cached_listing,
    load_universe,
    parse_universe_spec,
    split_valid,
    stale_symbols,
    stamped_listing,
    with_provider_metadata,
    with_stored_columns,
)
from fintrack_assets.io_managers.context import MergeRows
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.stage import FetchStage
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
from fintrack_assets.partitions import (
    latest_closed_session,
    trading_days,
    unclosed_sessions,
    window_dates,
)
from fintrack_assets.resources.fetch_run import run_fetch
from fintrack_assets.resources.fetching import plan_batches
from fintrack_assets.resources.listings import ListingFailed
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
        description="Overrides FINTRACK_UNIVERSE for this run: sample, sp500, sp500_pit (the "
        "S&P 500 on each session since 1996), all (every listed US stock and ETF), a comma "
        "list like AAPL,MSFT, a CSV path, or synthetic:N. Unset: FINTRACK_UNIVERSE.",
    )
    refresh_metadata: bool = Field(
        default=True,
        description="Ask the market-data provider for name, sector and industry of symbols "
        "whose metadata is older than metadata_max_age_days (not for `all`: its listing "
        "names them).",
    )
    metadata_max_age_days: int = Field(
        default=30, description="Days a symbol's provider metadata stays fresh."
    )
    listing_max_age_days: float = Field(
        default=7,
        description="Days the `all` universe's listing stays fresh: a younger one in the "
        "previous table is reused instead of asking the provider again (0: always ask).",
    )
    listing_fallback_max_age_days: float = Field(
        default=30,
        description="When the provider's listing fails, a previous listing up to this old is "
        "used instead, with a warning; older or none, the run fails.",
    )


def _listed(
    context: AssetExecutionContext,
    config: UniverseConfig,
    market_data: MarketDataResource,
    previous: pl.DataFrame | None,
    now: dt.datetime,
) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """The `all` universe: the previous table's listing while fresh, else the provider's,
    else (it failed) a previous one not too old. (universe, left out, how it was had)."""
    lister = market_data.lister()
    left_out = pl.DataFrame(schema=LEFT_OUT_SCHEMA)
    fresh = dt.timedelta(days=config.listing_max_age_days)
    cached = cached_listing(previous, lister.name, now, fresh)
    if cached is not None:
        context.log.info(f"reusing the {lister.name} listing of {cached[LISTED_AT].min()}")
        return cached, left_out, "cached"
    try:
        listing, left_out = lister.listing(context.log.info)
    except ListingFailed as exc:
        fallback_age = dt.timedelta(days=config.listing_fallback_max_age_days)
        fallback = cached_listing(previous, lister.name, now, fallback_age)
        if fallback is None:
            raise Failure(
                f"the {lister.name} listing for the 'all' universe failed ({exc}) and no "
                f"previous {lister.name} listing younger than "
                f"{config.listing_fallback_max_age_days:g} days is there to fall back on",
                allow_retries=False,
            ) from None
        context.log.warning(
            f"the {lister.name} listing failed ({exc}); using the previous one of "
            f"{fallback[LISTED_AT].min()}"
        )
        return fallback, left_out, "fallback"
    return stamped_listing(listing, lister.name, now), left_out, "fetched"


def _universe_metadata(
    universe: pl.DataFrame, kind: str, listing: str | None, now: dt.datetime
) -> dict[str, object]:
    """What the UI shows beyond the frame: per kind, what the universe is made of."""
    metadata: dict[str, object] = {"members": universe.height}
    if kind == "sp500_pit":
        latest = dt.date.fromisoformat(latest_closed_session(now))
        spells = spells_frame(universe)
        metadata |= {
            "spells": spells.height,
            "latest_session": latest.isoformat(),
            "members_on_latest_session": len(members_on(universe, latest)),
        }
    if kind == "all" and not universe.is_empty():
        counts = universe.group_by("asset_type").len().sort("asset_type")
        metadata |= {
            "listing_source": universe[LISTING_SOURCE][0],
            "listed_at": str(universe[LISTED_AT].min()),
            "listing": listing or "",
            **{f"asset_type/{asset_type}": n for asset_type, n in counts.iter_rows()},
        }
    return metadata


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
    kind, _ = parse_universe_spec(spec)
    now = dt.datetime.now(dt.UTC)
    previous = warehouse.previous("symbol_universe")
    listing: str | None = None
    left_out = pl.DataFrame(schema=LEFT_OUT_SCHEMA)
    if kind == "all":
        loaded, left_out, listing = _listed(context, config, market_data, previous, now)
    else:
        loaded = load_universe(spec)
    universe, rejected = split_valid(loaded)
    rejected = pl.concat(
        [left_out, rejected.select("symbol", "name", "reason")], how="vertical_relaxed"
    )
    if not rejected.is_empty():
        context.log.warning(
            f"{rejected.height} universe row(s) left out: "
            + ", ".join(f"{n} {reason}" for reason, n in _by_reason(rejected))
        )
    provider = market_data.provider(universe)
    max_age = dt.timedelta(days=config.metadata_max_age_days)
    stale = stale_symbols(universe, previous, now, max_age)
    fetched, failures = provider.symbol_metadata(
        stale if config.refresh_metadata and kind != "all" else [], context.log.info
    )
    if not failures.is_empty():
        context.log.warning(
            f"metadata for {failures.height} symbol(s) unavailable from {provider.name}; "
            "keeping what we had"
        )
    universe = with_stored_columns(
        with_provider_metadata(universe, previous, fetched, now, max_age)
    )
    return Output(
        universe,
        metadata={
            **frame_metadata(universe),
            "universe": spec,
            **_universe_metadata(universe, kind, listing, now),
            "sectors": universe["sector"].n_unique(),
            "rejected_rows": rejected.height,
            "rejected": MetadataValue.md(markdown_table(rejected, rows=20)),
            "rejected_by_reason": MetadataValue.md(
                markdown_table(
                    pl.DataFrame(_by_reason(rejected), schema=["reason", "rows"], orient="row"),
                    rows=20,
                )
            ),
            "metadata_source": provider.name,
            "metadata_refreshed": fetched.height,
            "metadata_failed": failures.height,
            "metadata_failures": MetadataValue.md(markdown_table(failures, rows=20)),
        },
    )


def _by_reason(rejected: pl.DataFrame) -> list[tuple[str, int]]:
    """(reason, rows) most frequent first: thousands of warrants read as one line."""
    counts = rejected.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
    return [(str(reason), int(n)) for reason, n in counts.iter_rows()]


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
    mode: Literal["replace", "missing"] = Field(
        default="replace",
        description="replace: fetch the whole window and replace it. missing: fetch only the "
        "(symbol, session) pairs the window lacks (the symbols that failed last time among "
        "them) and merge them in, leaving stored rows as they are.",
    )
    resume: bool = Field(
        default=True,
        description="Reuse the batches an earlier attempt of the same fetch (same provider, "
        "symbols, sessions and mode) staged in the lake; false fetches everything again.",
    )
    stage_max_age_hours: float = Field(
        default=168.0,
        gt=0,
        description="A staged fetch older than this is discarded rather than resumed: the "
        "provider may have revised its data since.",
    )


@dataclass(frozen=True)
class _Request:
    """What a raw_ohlcv run asks the provider for."""

    symbols: list[str]
    sessions: list[dt.date]
    wanted: pl.DataFrame | None
    """The (symbol, session) pairs to keep; None keeps every bar of the window."""
    missing: int | None = None
    """Under `mode: missing`, the pairs the window lacked."""


def _request(
    config: RawConfig, universe: pl.DataFrame, sessions: list[dt.date], existing: pl.DataFrame
) -> _Request:
    """Members of a point-in-time universe are wanted on their member sessions only; under
    `mode: missing` only the pairs `existing` lacks, over the sessions that span them."""
    point_in_time = (
        MEMBER_SPELLS in universe.columns and universe[MEMBER_SPELLS].is_not_null().any()
    )
    if config.mode == "replace":
        wanted = expected_pairs(universe, sessions) if point_in_time else None
        symbols = universe["symbol"] if wanted is None else wanted["symbol"].unique()
        return _Request(symbols.sort().to_list(), sessions, wanted)
    wanted = missing_pairs(expected_pairs(universe, sessions), existing)
    if wanted.is_empty():
        return _Request([], [], wanted, 0)
    first, last = wanted["date"].min(), wanted["date"].max()
    span = [day for day in sessions if first <= day <= last]  # type: ignore[operator]
    return _Request(wanted["symbol"].unique().sort().to_list(), span, wanted, wanted.height)


def _stored_pairs(lake: LakeIOManager, start: dt.date, end: dt.date) -> pl.DataFrame:
    table = lake.table(["raw_ohlcv"])
    if not table.exists():
        return pl.DataFrame(schema=PAIR_SCHEMA)
    return table.read_window("date", start, end, ["symbol", "date"])


@asset(
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="lake",
    kinds={"polars"},
    pool=MARKET_DATA_POOL,
    retry_policy=FETCH_RETRY,
    group_name="market",
    description="Daily bars as the provider returned them, normalised; one Delta table. A "
    "range is fetched in batches staged in the lake, so a run that dies resumes.",
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
    lake: ResourceParam[LakeIOManager],
    symbol_universe: pl.DataFrame,
) -> Iterator[Output[Any] | AssetCheckResult]:
    start, end, sessions = closed_window(context)
    provider = market_data.provider(symbol_universe)
    stored = (
        _stored_pairs(lake, start, end)
        if config.mode == "missing"
        else pl.DataFrame(schema=PAIR_SCHEMA)
    )
    request = _request(config, symbol_universe, sessions, stored)
    plan = plan_batches(request.symbols, provider.batch_size_for(len(request.sessions)))
    key = stage_key(
        provider.name,
        plan,
        request.sessions,
        config.mode,
        request.wanted if config.mode == "missing" else None,
    )
    stage = (
        FetchStage(lake.lake_url, "raw_ohlcv", key, lake.storage_options)
        if config.resume and len(plan) > 1
        else None
    )
    ingested_at = dt.datetime.now(dt.UTC)

    def normalise(bars: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        inside, outside = normalise_raw(bars, provider.name, start, end, ingested_at)
        kept, dropped = keep_wanted(inside, request.wanted)
        return kept, outside, dropped

    context.log.info(
        f"fetching {len(request.symbols)} symbols x {len(request.sessions)} sessions "
        f"[{start}, {end}) from {provider.name} in {len(plan)} batch(es), "
        f"budget {provider.budget.description}"
        + (
            f"; {request.missing:,} (symbol, session) pairs missing"
            if config.mode == "missing"
            else ""
        )
    )
    outcome = run_fetch(
        provider,
        plan,
        request.sessions,
        normalise,
        stage,
        context.log.info,
        getattr(provider, "clock", time.perf_counter),
        dt.timedelta(hours=config.stage_max_age_hours),
    )
    raw, misplaced, failures = outcome.bars, outcome.outside, outcome.failures
    if not misplaced.is_empty():
        context.log.warning(
            f"{misplaced.height} bar(s) dated outside [{start}, {end}) or undated; "
            "listed in metadata, not stored in this partition"
        )
    failed_symbols = failures["symbol"].n_unique()
    context.log.info(
        f"fetched {raw.height:,} rows in {outcome.seconds:.2f} s: "
        f"{len(request.symbols) - failed_symbols} symbols succeeded, {failed_symbols} failed; "
        f"{outcome.batches_fetched} batch(es) fetched, {outcome.batches_resumed} resumed"
    )
    run: dict[str, Any] = {
        **outcome.progress.figures(outcome.seconds),
        "mode": config.mode,
        "compute_seconds": round(outcome.seconds, 3),
        "sessions": len(sessions),
        "batch_size": (plan and len(plan[0][1])) or 0,
        "batches_fetched": outcome.batches_fetched,
        "batches_resumed": outcome.batches_resumed,
        "staged": outcome.staged,
        "requests": outcome.requests,
        "symbols_requested": len(request.symbols),
        "symbols_succeeded": len(request.symbols) - failed_symbols,
        "failures": MetadataValue.md(markdown_table(failures, rows=50)),
        "rows_outside_window": misplaced.height,
        "outside_window": MetadataValue.md(markdown_table(misplaced, rows=10)),
        "rows_not_wanted": outcome.dropped,
        "throughput": rate(raw.height, outcome.seconds),
        **provider.budget.metadata(),
    }
    counted = raw
    if config.mode == "missing":
        still = missing_pairs(request.wanted, raw) if request.wanted is not None else raw.head(0)
        run |= {
            "pairs_missing": request.missing or 0,
            "pairs_fetched": raw.height,
            "pairs_still_missing": still.height,
            "still_missing": MetadataValue.md(markdown_table(still, rows=20)),
        }
        counted = pl.concat([stored, raw.select("symbol", "date")])
    add_partition_metadata(context, "raw_ohlcv", counted, "date", run=run)
    value = MergeRows(raw, ("symbol", "date")) if config.mode == "missing" else raw
    yield Output(value, metadata={"source": provider.name})
    if stage is not None:
        stage.discard()  # only now: the window is committed
    yield symbol_failures_check(
        "raw_ohlcv",
        failures["symbol"].unique().to_list(),
        len(request.symbols),
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
