"""What every materialisation shows in the UI: row count, column schema, a preview, timing;
and the checks several tables share (their contract, their share of rejected rows)."""

from __future__ import annotations

import datetime as dt
import inspect
import re
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
)
from pandera.polars import DataFrameModel
from pydantic import Field

from fintrack_assets.core.display import markdown_table, percent
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


def add_partition_metadata(
    context: AssetExecutionContext,
    asset_key: str,
    frame: pl.DataFrame,
    date_column: str,
    run: Mapping[str, Any] | None = None,
    partitions: Mapping[str, Mapping[str, Any]] | None = None,
    last: Mapping[str, Any] | None = None,
    counts: Mapping[dt.date, int] | None = None,
) -> None:
    """Each partition of a (range) run shows its own figures: its row count and `partitions`
    (by key). The run's figures go on the run's last partition only, labelled `run/...`, with
    the column schema, a preview and `last` (the last partition's own extras, a summary say).
    Asset metadata given to `Output` would repeat on every partition, beside that partition's
    own count, as if it were the partition's. `counts`: the rows per day of an output
    written as a stream, `frame` then being a sample of it (the schema and the preview)."""
    keys = context.partition_keys
    rows = frame.height if counts is None else sum(counts.values())
    if counts is None:
        counts = dict(frame.group_by(date_column).len().iter_rows())
    for key in keys:
        context.add_asset_metadata(
            {
                "dagster/row_count": counts.get(dt.date.fromisoformat(key), 0),
                **(partitions or {}).get(key, {}),
            },
            asset_key=asset_key,
            partition_key=key,
        )
    run_figures = {"partitions": len(keys), "rows": rows, **(run or {})}
    context.add_asset_metadata(
        {
            **(last or {}),
            **{f"run/{name}": value for name, value in run_figures.items()},
            "dagster/column_schema": table_schema(frame),
            "preview": MetadataValue.md(markdown_table(frame)),
        },
        asset_key=asset_key,
        partition_key=keys[-1],
    )
