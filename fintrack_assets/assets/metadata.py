"""What every materialisation shows in the UI: row count, column schema, a preview, timing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
    TableColumn,
    TableSchema,
)
from pandera.polars import DataFrameModel
from tabulate import tabulate

from fintrack_assets.schemas import contract_failures

WAREHOUSE_POOL = "warehouse_writer"
"""The pool of every asset that writes to the warehouse: a DuckDB file takes one writer at a
time (the default pool limit in dagster.yaml); PostgreSQL deployments raise it."""


def markdown_table(frame: pl.DataFrame, rows: int = 5) -> str:
    head = frame.head(rows)
    return tabulate(head.rows(), headers=head.columns, tablefmt="github")


def frame_metadata(frame: pl.DataFrame, seconds: float | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": frame.height,
        "dagster/column_schema": table_schema(frame),
        "preview": MetadataValue.md(markdown_table(frame)),
    }
    if seconds is not None:
        metadata["compute_seconds"] = round(seconds, 3)
    return metadata


def contract_spec(model: type[DataFrameModel], asset_key: str) -> AssetCheckSpec:
    """The `contract` check of `asset_key`, which `contract_check` evaluates."""
    return AssetCheckSpec(
        "contract", asset=asset_key, description=f"schemas.{model.__name__} holds."
    )


def contract_check(
    model: type[DataFrameModel], frame: pl.DataFrame, asset_key: str, check_name: str = "contract"
) -> AssetCheckResult:
    """The asset check that `frame` satisfies its pandera contract, failures in metadata."""
    failures = contract_failures(model, frame)
    return AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=failures is None,
        metadata={}
        if failures is None
        else {"failures": MetadataValue.md(f"```\n{failures}\n```")},
    )


def table_schema(frame: pl.DataFrame) -> TableSchema:
    return TableSchema(
        columns=[TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
    )


def add_partition_metadata(
    context: AssetExecutionContext, asset_key: str, frame: pl.DataFrame, date_column: str
) -> None:
    """Each partition of a (range) run gets its own row count; the column schema and a preview
    go on the run's last partition only. A range run stores one event per partition, and
    repeating the run's whole-frame metadata on each would cost time and say nothing."""
    keys = context.partition_keys
    counts: dict[dt.date, int] = dict(frame.group_by(date_column).len().iter_rows())
    for key in keys:
        context.add_asset_metadata(
            {"dagster/row_count": counts.get(dt.date.fromisoformat(key), 0)},
            asset_key=asset_key,
            partition_key=key,
        )
    context.add_asset_metadata(
        {
            "dagster/column_schema": table_schema(frame),
            "preview": MetadataValue.md(markdown_table(frame)),
        },
        asset_key=asset_key,
        partition_key=keys[-1],
    )
