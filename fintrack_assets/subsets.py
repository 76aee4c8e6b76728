"""Multi-assets that make a main table and its companion (rejects, failures) run for any
subset of the two: selecting the main asset alone still writes and records the companion."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetOut,
    MetadataValue,
    Output,
)

from fintrack_assets.io_managers.context import PARTITION_EXPR, TableIOManager
from fintrack_assets.metadata import (
    add_partition_metadata,
    markdown_table,
    partition_row_counts,
    table_schema,
)
from fintrack_assets.partitions import window_dates


def companion_outs(io_manager_key: str, descriptions: Mapping[str, str]) -> dict[str, AssetOut]:
    """The outs of a main table and its companion, by name with their descriptions: polars
    frames through `io_manager_key`, none required, so the multi-asset can run for any subset."""
    return {
        name: AssetOut(
            io_manager_key=io_manager_key,
            is_required=False,
            kinds={"polars"},
            description=description,
        )
        for name, description in descriptions.items()
    }


def is_selected(context: AssetExecutionContext, asset: str) -> bool:
    return AssetKey(asset) in context.selected_asset_keys


def companion(
    context: AssetExecutionContext,
    output: Output[pl.DataFrame],
    run: Mapping[str, Any] | None = None,
) -> Iterator[Output[pl.DataFrame]]:
    """Yields the companion `output` when the run selected it. When the run selected only the
    main asset, the rows still reach the companion's table, through its IO manager's own write,
    and each partition is recorded as materialised: a rejected row is never lost because a
    selection named the main asset alone. `run`: the run's figures, as add_partition_metadata
    shows them (on the last partition, `run/...`)."""
    name = output.output_name
    frame = output.value
    out = context.op_def.output_def_named(name)
    column = str((out.metadata or {}).get(PARTITION_EXPR, "date"))
    partitioned = context.assets_def.partitions_def is not None
    if is_selected(context, name):
        if partitioned:
            add_partition_metadata(context, name, frame, column, run=run)
        yield output
        return
    store = cast(TableIOManager, getattr(context.resources, out.io_manager_key))
    window = window_dates(context.partition_time_window) if partitioned else None
    beside = ", ".join(sorted(key.to_user_string() for key in context.selected_asset_keys))
    metadata = {
        **output.metadata,
        **store.write(AssetKey(name), frame, column, window),
        "written_with": MetadataValue.text(f"{beside} (selected without this asset)"),
    }
    if not partitioned:
        context.log_event(AssetMaterialization(name, metadata=metadata))
        return
    counts = partition_row_counts(context, frame, column)
    keys = context.partition_keys
    for key in keys:
        own: dict[str, Any] = {"dagster/row_count": counts[key]}
        if key == keys[-1]:
            own |= {
                **{f"run/{k}": v for k, v in {"rows": frame.height, **(run or {})}.items()},
                "dagster/column_schema": table_schema(frame),
                "preview": MetadataValue.md(markdown_table(frame)),
            }
        context.log_event(AssetMaterialization(name, partition=key, metadata=metadata | own))
