"""What every materialisation shows in the UI: row count, column schema, a preview, timing;
and the checks several tables share (their contract, their share of rejected rows)."""

from __future__ import annotations

import datetime as dt
import inspect
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
    TableColumn,
    TableSchema,
    TimeWindowPartitionsDefinition,
)
from pandera.polars import DataFrameModel
from pydantic import Field

from fintrack_assets.core.display import markdown_table, percent
from fintrack_assets.partitions import window_dates
from fintrack_assets.schemas import contract_failures

__all__ = ["markdown_table"]

WAREHOUSE_POOL = "warehouse_writer"
"""The pool of every asset that writes to the warehouse: a DuckDB file takes one writer at a
time (the default pool limit in dagster.yaml); PostgreSQL deployments raise it."""


def frame_metadata(frame: pl.DataFrame, seconds: float | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": frame.height,
        "dagster/column_schema": table_schema(frame),
        "preview": MetadataValue.md(markdown_table(frame)),
    }
    if seconds is not None:
        metadata["compute_seconds"] = round(seconds, 3)
    return metadata


def contract_spec(
    model: type[DataFrameModel], asset_key: str, blocking: bool = False
) -> AssetCheckSpec:
    """The `contract` check of `asset_key`, which `contract_check` evaluates. A blocking one
    fails its step when the contract does not hold, so downstream steps of the run do not
    consume the data."""
    return AssetCheckSpec(
        "contract", asset=asset_key, blocking=blocking, description=contract_description(model)
    )


def contract_description(model: type[DataFrameModel]) -> str:
    """The contract in words, from the model's docstring (`asset`: what holds.)."""
    summary = " ".join((inspect.getdoc(model) or "").split("\n\n")[0].split())
    summary = re.sub(r"^`[^`]+`:\s*", "", summary).rstrip(".")
    return (
        f"The rows keep their data contract: {summary}."
        if summary
        else ("The rows keep their data contract.")
    )


def contract_check(
    model: type[DataFrameModel], frame: pl.DataFrame, asset_key: str, check_name: str = "contract"
) -> AssetCheckResult:
    """The asset check that `frame` satisfies its pandera contract, failures in metadata."""
    return contract_outcome(asset_key, contract_failures(model, frame), check_name)


def contract_outcome(
    asset_key: str, failures: str | None, check_name: str = "contract"
) -> AssetCheckResult:
    """The contract check from pandera's report (`contract_failures`), None when it held: for
    an output checked batch by batch as it was written."""
    return AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=failures is None,
        metadata={}
        if failures is None
        else {"failures": MetadataValue.md(f"```\n{failures}\n```")},
    )


def share_threshold(default: float, rule: str) -> Any:
    """A config field holding a check's threshold, a share: `rule` says what the check does
    above it; the description gives the default both as a share and in percent, from the one
    number."""
    return Field(default=default, description=f"{rule} ({default:g} = {default * 100:g} %).")


def reject_share_spec(asset_key: str, description: str) -> AssetCheckSpec:
    """The `reject_share` check of `asset_key`, which `reject_share_check` evaluates."""
    return AssetCheckSpec("reject_share", asset=asset_key, description=description)


def reject_share_check(
    asset_key: str,
    rejected: int,
    total: int,
    *,
    threshold: float,
    severity: AssetCheckSeverity,
    counts: Mapping[str, int],
    metadata: Mapping[str, Any] | None = None,
) -> AssetCheckResult:
    """Passes while `rejected` is at most `threshold` of `total` rows (none is no share);
    `severity` says whether a miss fails the check or warns. Its metadata: the share, the
    threshold, `metadata` and each reason's count."""
    share = rejected / total if total else 0.0
    return AssetCheckResult(
        check_name="reject_share",
        asset_key=asset_key,
        passed=share <= threshold,
        severity=severity,
        metadata={
            "reject_share": percent(share),
            "threshold": percent(threshold),
            **(metadata or {}),
            **reason_metadata(counts),
        },
    )


def symbol_failures_check(
    asset_key: str, failed: Sequence[str], total: int, threshold: float
) -> AssetCheckResult:
    """The `symbol_failures` check of a fetching asset: passes while the `failed` symbols are at
    most `threshold` of the `total` asked (none asked is no share); names the first 50."""
    share = len(failed) / total if total else 0.0
    return AssetCheckResult(
        check_name="symbol_failures",
        asset_key=asset_key,
        passed=share <= threshold,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "failed_share": percent(share),
            "threshold": percent(threshold),
            "symbols_failed": len(failed),
            "failed_symbols": ", ".join(sorted(failed)[:50]),
        },
    )


def reason_metadata(counts: Mapping[str, int]) -> dict[str, int]:
    """Rejected rows per reason, as `reason/<reason>` entries."""
    return {f"reason/{reason}": count for reason, count in counts.items()}


def table_schema(frame: pl.DataFrame) -> TableSchema:
    return TableSchema(
        columns=[TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
    )


def partition_row_counts(
    context: AssetExecutionContext, frame: pl.DataFrame, date_column: str
) -> dict[str, int]:
    """Rows of `frame` per partition key of the run, each row counted in the partition whose time
    window holds its `date_column` (New York dates): a session's window runs to the next cron
    tick (a Friday's over the weekend, a session before a holiday to the holiday), a month's to
    the next month's first day. A row in no partition's window (a holiday, outside the run)
    counts for none, as before when a daily row counted where its date equalled the key."""
    partitions_def = context.assets_def.partitions_def
    if not isinstance(partitions_def, TimeWindowPartitionsDefinition):
        raise TypeError(
            f"partition row counts need time-window partitions, not {type(partitions_def).__name__}"
        )
    keys = list(context.partition_keys)
    starts = pl.Series(
        [dt.datetime.strptime(key, partitions_def.fmt).date() for key in keys], dtype=pl.Date
    )
    days = frame.get_column(date_column)
    if days.dtype != pl.Date:
        days = days.dt.date()
    # The key whose window starts last on or before each row's day: its window holds the row
    # when the row is before that window's end. Most rows fall on their window's first day
    # (a session's bars), so a window's end is only looked up for the keys holding other days.
    index = (starts.search_sorted(days, side="right").cast(pl.Int64) - 1).alias("index")
    rows = pl.DataFrame({"day": days, "index": index}).filter(
        pl.col("day").is_not_null() & (pl.col("index") >= 0)
    )
    later = rows.filter(pl.col("day") != starts.gather(rows["index"]))
    ends = {
        i: window_dates(partitions_def.time_window_for_partition_key(keys[i]))[1]
        for i in later["index"].unique().to_list()
    }
    if ends:
        rows = rows.join(
            pl.DataFrame(
                {"index": list(ends), "end": list(ends.values())},
                schema={"index": pl.Int64, "end": pl.Date},
            ),
            on="index",
            how="left",
        ).filter(pl.col("end").is_null() | (pl.col("day") < pl.col("end")))
    counted = dict(rows.group_by("index").len().iter_rows())
    return {key: counted.get(i, 0) for i, key in enumerate(keys)}


def add_partition_metadata(
    context: AssetExecutionContext,
    asset_key: str,
    frame: pl.DataFrame,
    date_column: str,
    run: Mapping[str, Any] | None = None,
    partitions: Mapping[str, Mapping[str, Any]] | None = None,
    last: Mapping[str, Any] | None = None,
    daily_counts: Mapping[dt.date, int] | None = None,
) -> None:
    """Each partition of a (range) run shows its own figures: its row count (counted in its
    time window, `partition_row_counts`) and `partitions` (by key). The run's figures go on the
    run's last partition only, labelled `run/...`, with the column schema, a preview and `last`
    (the last partition's own extras, a summary say). Asset metadata given to `Output` would
    repeat on every partition, beside that partition's own count, as if it were the partition's.

    Dagster takes per-partition metadata one partition per call, and each call costs time in
    proportion to the partitions given metadata before it (it copies what it has gathered and
    lists the run's partition keys again). So the most common row count goes in one call for
    every partition of the run, and a partition gets its own call only when its figures differ:
    each partition's materialisation carries the same metadata as with a call per partition.

    `daily_counts`: the rows per day of an output written as a stream, `frame` then being a
    sample of it (the schema and the preview); for partitions keyed by day."""
    keys = context.partition_keys
    rows = frame.height if daily_counts is None else sum(daily_counts.values())
    if daily_counts is None:
        counts = partition_row_counts(context, frame, date_column)
    else:
        counts = {key: daily_counts.get(dt.date.fromisoformat(key), 0) for key in keys}
    common = Counter(counts.values()).most_common(1)[0][0]
    context.add_asset_metadata({"dagster/row_count": common}, asset_key=asset_key)
    for key in keys[:-1]:
        own = {"dagster/row_count": counts[key], **(partitions or {}).get(key, {})}
        if own != {"dagster/row_count": common}:
            context.add_asset_metadata(own, asset_key=asset_key, partition_key=key)
    run_figures = {"partitions": len(keys), "rows": rows, **(run or {})}
    context.add_asset_metadata(
        {
            "dagster/row_count": counts[keys[-1]],
            **(partitions or {}).get(keys[-1], {}),
            **(last or {}),
            **{f"run/{name}": value for name, value in run_figures.items()},
            "dagster/column_schema": table_schema(frame),
            "preview": MetadataValue.md(markdown_table(frame)),
        },
        asset_key=asset_key,
        partition_key=keys[-1],
    )
