"""Silver: the six Fibonacci bar intervals, made by one factory from bronze."""

import datetime as dt
import time
from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    MetadataValue,
    Output,
    ResourceParam,
    TimeWindowPartitionMapping,
    multi_asset,
)

from fintrack_assets.automation import FOLLOWS_UPSTREAM
from fintrack_assets.core.silver import (
    BRONZE_COLUMNS,
    INTERVALS,
    Panel,
    bronze_window,
    misaligned_bars,
    nesting_mismatches,
)
from fintrack_assets.io_managers.context import PARTITION_EXPR, Rows
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.reader import UpstreamReader
from fintrack_assets.metadata import add_partition_metadata, markdown_table
from fintrack_assets.partitions import closed_part, session_months, window_dates
from fintrack_assets.schemas import SilverOHLCV, contract_failures

BRONZE = "bronze_ohlcv"
BAR_END = "bar_end"


def silver_key(interval: int) -> str:
    return f"silver_ohlcv_{interval}d"


BUCKET_MONTHS = 2
"""Months before a partition's month that its bars may start in: the widest bucket, 34
sessions, spans under seven weeks."""


def _spec(interval: int) -> AssetSpec:
    return AssetSpec(
        silver_key(interval),
        # One AssetsDefinition must map an upstream one way, so every interval declares the
        # widest bucket's reach; the asset itself reads only the buckets each selected interval
        # needs.
        deps=[
            AssetDep(
                BRONZE,
                partition_mapping=TimeWindowPartitionMapping(
                    start_offset=-BUCKET_MONTHS, allow_nonexistent_upstream_partitions=True
                ),
            )
        ],
        partitions_def=session_months,
        group_name="silver",
        kinds={"polars"},
        description=(
            f"Bars of {interval} consecutive NYSE sessions, aligned on the session epoch; "
            "partition M holds the bars whose bucket ends on a closed session of month M, each "
            "on its last session's price basis."
        ),
        metadata={PARTITION_EXPR: BAR_END},
        automation_condition=FOLLOWS_UPSTREAM,
    ).with_io_manager_key("lake")


def _bar_check(interval: int) -> AssetCheckSpec:
    # One check per interval: in a range run Dagster stores every planned check once per
    # partition before the run starts, so each extra check adds a row per session (its cost:
    # benchmarks/README.md).
    return AssetCheckSpec(
        "bar_contract",
        asset=silver_key(interval),
        description=f"Each bar's low is at most its open and close and its high at least "
        f"them, its volume is never negative, it spans 1 to {interval} sessions, there is one "
        "bar per symbol and bar_end, and bar_end is the last session of a bucket ending in the "
        "partition with bar_start its first.",
    )


def _nesting_spec(inner: int, outer: int) -> AssetCheckSpec:
    return AssetCheckSpec(
        nesting_check_name(inner),
        asset=silver_key(outer),
        additional_deps=[silver_key(inner)],
        description=f"Every {outer}-session bar equals the {outer // inner} {inner}-session "
        "bars it is made of as stored in the lake (open, extremes, close, volume, n_days).",
    )


def nesting_check_name(inner: int) -> str:
    return f"agrees_with_{silver_key(inner)}"


def nesting_pairs(intervals: tuple[int, ...]) -> list[tuple[int, int]]:
    """(inner, outer) pairs whose buckets tile exactly: the inner interval divides the outer."""
    return [(a, b) for a in intervals for b in intervals if b > a and b % a == 0]


def build_silver_assets(intervals: tuple[int, ...] = INTERVALS) -> AssetsDefinition:
    """One asset per interval, computed together: bronze is read once per run for every
    selected interval and sorted once; each interval is written in its own commit."""
    pairs = nesting_pairs(intervals)

    @multi_asset(
        name="silver_ohlcv",
        specs=[_spec(n) for n in intervals],
        check_specs=[
            *(_bar_check(n) for n in intervals),
            *(_nesting_spec(inner, outer) for inner, outer in pairs),
        ],
        can_subset=True,
        backfill_policy=BackfillPolicy.single_run(),
        description="Resamples bronze into every selected Fibonacci interval in one pass.",
    )
    def silver_ohlcv(
        context: AssetExecutionContext,
        lake: ResourceParam[LakeIOManager],
        upstream_reader: UpstreamReader,
    ) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
        """Bronze is read through the upstream reader: its window reaches back to the first
        selected interval's bucket start, which depends on the selection. The nesting checks
        read the intervals' own tables (siblings in this asset, not upstreams)."""
        # The month in progress: the bars of its closed sessions only.
        start, end = closed_part(*window_dates(context.partition_time_window))
        chosen = {key.to_user_string() for key in context.selected_asset_keys}
        selected = [n for n in intervals if silver_key(n) in chosen]
        checks = context.selected_asset_check_keys
        made: dict[int, pl.DataFrame] = {}
        run_metadata: dict[str, object] = {}
        if selected:
            first, last = bronze_window(selected, start, end)
            started = time.perf_counter()
            window = Rows(window=(first, last), columns=BRONZE_COLUMNS)
            bronze = upstream_reader.read(context, AssetKey(BRONZE), window)
            read_seconds = time.perf_counter() - started
            context.log.info(
                f"read {bronze.height:,} bronze rows [{first}, {last}) in {read_seconds:.2f} s "
                f"for intervals {', '.join(map(str, selected))}"
            )
            started = time.perf_counter()
            panel = Panel.from_bronze(bronze)
            sort_seconds = time.perf_counter() - started
            del bronze
            run_metadata = {
                "bronze_rows_read": panel.rows,
                "bronze_window": f"[{first}, {last})",
                "bronze_read_seconds": round(read_seconds, 3),
                "bronze_sort_seconds": round(sort_seconds, 3),
            }
        for interval in selected:
            key = silver_key(interval)
            started = time.perf_counter()
            bars = made[interval] = panel.bars(interval, start, end)
            seconds = time.perf_counter() - started
            partial = bars.filter(pl.col("n_days") < interval).height
            context.log.info(f"{key}: {bars.height:,} bars, {partial:,} partial, {seconds:.2f} s")
            started = time.perf_counter()
            check = None
            if AssetCheckKey(AssetKey(key), "bar_contract") in checks:
                check = _bar_check_result(bars, interval, start, end)
            check_seconds = time.perf_counter() - started
            add_partition_metadata(
                context,
                key,
                bars,
                BAR_END,
                run={
                    **run_metadata,
                    "compute_seconds": round(seconds, 3),
                    "check_seconds": round(check_seconds, 3),
                    "partial_bars": partial,
                    "symbols": bars["symbol"].n_unique(),
                },
                partitions=monthly_figures(bars),
            )
            yield Output(bars, output_name=key)
            if check is not None:
                yield check
        for inner, outer in pairs:
            check_key = AssetCheckKey(AssetKey(silver_key(outer)), nesting_check_name(inner))
            if check_key in checks:
                outer_bars = made.get(outer)
                if outer_bars is None:
                    outer_bars = lake.table([silver_key(outer)]).read_window(BAR_END, start, end)
                yield _nesting_result(lake, inner, outer, outer_bars, end)

    return silver_ohlcv


def monthly_figures(bars: pl.DataFrame) -> dict[str, dict[str, object]]:
    """Each month's newest bar_end, by partition key: how far the month in progress goes."""
    months = bars.group_by(pl.col(BAR_END).dt.truncate("1mo").alias("month")).agg(
        pl.col(BAR_END).max().alias("last")
    )
    return {
        month.isoformat(): {"last_bar_end": last.isoformat()} for month, last in months.iter_rows()
    }


def _nesting_result(
    lake: LakeIOManager, inner: int, outer: int, outer_bars: pl.DataFrame, end: dt.date
) -> AssetCheckResult:
    check_name, asset = nesting_check_name(inner), silver_key(outer)
    if outer_bars.is_empty():
        return AssetCheckResult(
            check_name=check_name, asset_key=asset, passed=True, metadata={"bars_compared": 0}
        )
    inner_table = lake.table([silver_key(inner)])
    if not inner_table.exists():
        return AssetCheckResult(
            check_name=check_name,
            asset_key=asset,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"{silver_key(inner)} has not been materialised: nothing to compare",
        )
    started = time.perf_counter()
    first = outer_bars["bar_start"].min()
    assert isinstance(first, dt.date)
    mismatches = nesting_mismatches(inner_table.read_window(BAR_END, first, end), outer_bars)
    return AssetCheckResult(
        check_name=check_name,
        asset_key=asset,
        passed=mismatches.is_empty(),
        metadata={
            "seconds": round(time.perf_counter() - started, 3),
            "bars_compared": outer_bars.height,
            "mismatches": mismatches.height,
            "examples": MetadataValue.md(markdown_table(mismatches, rows=10)),
        },
    )


def _bar_check_result(
    bars: pl.DataFrame, interval: int, start: dt.date, end: dt.date
) -> AssetCheckResult:
    problems: dict[str, object] = {}
    failures = contract_failures(SilverOHLCV, bars)
    if failures is not None:
        problems["contract_failures"] = MetadataValue.md(f"```\n{failures}\n```")
    misaligned = misaligned_bars(bars, interval, start, end)
    if not misaligned.is_empty():
        problems["misaligned_examples"] = MetadataValue.md(markdown_table(misaligned, rows=10))
    return AssetCheckResult(
        check_name="bar_contract",
        asset_key=silver_key(interval),
        passed=not problems,
        metadata={"bars": bars.height, "misaligned_bars": misaligned.height, **problems},
    )


silver_ohlcv = build_silver_assets()
