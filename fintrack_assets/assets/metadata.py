"""What every materialisation shows in the UI: row count, column schema, a preview, timing."""

from __future__ import annotations

from typing import Any

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema
from tabulate import tabulate


def markdown_table(frame: pl.DataFrame, rows: int = 5) -> str:
    head = frame.head(rows)
    return tabulate(head.rows(), headers=head.columns, tablefmt="github")


def frame_metadata(frame: pl.DataFrame, seconds: float | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": frame.height,
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
        ),
        "preview": MetadataValue.md(markdown_table(frame)),
    }
    if seconds is not None:
        metadata["compute_seconds"] = round(seconds, 3)
    return metadata
