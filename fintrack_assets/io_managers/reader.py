"""The upstream reader: an asset's read of a declared upstream over a window no partition mapping
can state (one that starts at the data's first trade, a fixed historical period, a look-back set
in the run's config), through the code the IO managers load inputs with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import polars as pl
from dagster import AssetExecutionContext, AssetKey, ConfigurableResource

from fintrack_assets.io_managers.context import (
    PARTITION_EXPR,
    NotMaterialised,
    Rows,
    TableIOManager,
    credentials_checked,
)
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.warehouse import WarehouseIOManager


class UpstreamReader(ConfigurableResource):
    """Reads an upstream's table where its own IO manager keeps it (the upstream's
    `io_manager_key` names one of the stores below), on its `partition_expr` column.

    The asset states the window at the call and keeps the upstream in its `deps` or `ins`, so
    the graph shows what it reads; reading anything else is refused. Every other read is a
    declared input, its window the input's partition mapping."""

    lake: LakeIOManager
    warehouse: WarehouseIOManager

    def read(self, context: AssetExecutionContext, upstream: AssetKey, rows: Rows) -> pl.DataFrame:
        """The upstream's `rows` (their window on its `partition_expr`); raises NotMaterialised
        when it has no table."""
        store, wanted = self._source(context, upstream, rows)
        with credentials_checked():
            return store.read(upstream, wanted)

    def scan(self, context: AssetExecutionContext, upstream: AssetKey, rows: Rows) -> pl.LazyFrame:
        """`read` as the IO managers' scan: filter it before collecting."""
        store, wanted = self._source(context, upstream, rows)
        with credentials_checked():
            return store.scan(upstream, wanted)

    def _source(
        self, context: AssetExecutionContext, upstream: AssetKey, rows: Rows
    ) -> tuple[TableIOManager, Rows]:
        reader = context.assets_def
        if upstream not in reader.dependency_keys:
            raise UndeclaredUpstream(upstream, reader.keys)
        node = context.job_def.asset_layer.get(upstream)
        store = getattr(self, node.io_manager_key, None)
        if not isinstance(store, TableIOManager):
            raise ValueError(
                f"{upstream.to_user_string()} is kept by the IO manager "
                f"{node.io_manager_key!r}, which the upstream reader does not read"
            )
        return store, replace(rows, column=str(node.metadata.get(PARTITION_EXPR, "date")))


class UndeclaredUpstream(ValueError):
    """An asset read a table it does not declare: the graph would not show the dependency."""

    def __init__(self, upstream: AssetKey, readers: Sequence[AssetKey] | set[AssetKey]) -> None:
        names = ", ".join(sorted(key.to_user_string() for key in readers))
        super().__init__(
            f"{names} read {upstream.to_user_string()} without declaring it: add it to the "
            "asset's deps or ins"
        )


__all__ = ["NotMaterialised", "UndeclaredUpstream", "UpstreamReader"]
