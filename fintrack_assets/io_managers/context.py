"""What an asset tells its IO manager through definition metadata."""

from __future__ import annotations

from dagster import InputContext, OutputContext

PARTITION_EXPR = "partition_expr"
"""The date column a partitioned asset's windows select on (default `date`)."""
COLUMNS = "columns"
"""On an input: load only these columns."""


def partition_column(context: OutputContext | InputContext, default: str = "date") -> str:
    if isinstance(context, OutputContext):
        metadata = context.definition_metadata or {}
    else:
        upstream = context.upstream_output
        metadata = (upstream.definition_metadata or {}) if upstream else {}
    return str(metadata.get(PARTITION_EXPR, default))


def input_columns(context: InputContext) -> list[str] | None:
    columns = (context.definition_metadata or {}).get(COLUMNS)
    return list(columns) if columns else None
