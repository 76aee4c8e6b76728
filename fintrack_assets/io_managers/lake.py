"""The lake: one Delta table per asset at <lake_url>/<asset_key>, on a local path or S3.

Range-aware: a run over a partition range replaces exactly those partitions in one atomic
commit (predicate overwrite on the partition column), and a load reads exactly the window the
consumer asked for, including the wider windows partition mappings ask for. Tables are
physically partitioned by `year` only, never a folder per day.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import polars as pl
import pyarrow as pa
from dagster import ConfigurableIOManager, InputContext, OutputContext
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from fintrack_assets.core.calendar import require_within_window
from fintrack_assets.io_managers.context import input_columns, partition_column
from fintrack_assets.partitions import window_dates

YEAR = "year"


class LakeTable:
    """A Delta table of dated rows; the partition window is a [start, end) date range."""

    def __init__(self, uri: str, storage_options: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options or {})

    def _table(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def exists(self) -> bool:
        return self._table() is not None

    def version(self) -> int | None:
        table = self._table()
        return None if table is None else table.version()

    def replace_window(
        self, frame: pl.DataFrame, date_column: str, start: dt.date, end: dt.date
    ) -> int:
        """Replaces every row with start <= date < end by `frame`, in one commit."""
        require_within_window(frame, date_column, start, end, self.uri)
        data = frame.with_columns(pl.col(date_column).dt.year().cast(pl.Int32).alias(YEAR))
        predicate = (
            f"{YEAR} >= {start.year} AND {YEAR} <= {end.year} AND "
            f"{date_column} >= '{start.isoformat()}' AND {date_column} < '{end.isoformat()}'"
        )
        if self._table() is None:
            return self._write(data, mode="overwrite")
        return self._write(data, mode="overwrite", predicate=predicate)

    def replace_all(self, frame: pl.DataFrame) -> int:
        return self._write(frame, mode="overwrite", partitioned=False)

    def _write(
        self, data: pl.DataFrame, mode: str, predicate: str | None = None, partitioned: bool = True
    ) -> int:
        write_deltalake(
            self.uri,
            data.to_arrow(),
            mode=mode,  # type: ignore[arg-type]
            predicate=predicate,
            partition_by=[YEAR] if partitioned else None,
            storage_options=self.storage_options or None,
            schema_mode="merge" if predicate else None,
        )
        version = self.version()
        assert version is not None
        return version

    def read_window(
        self,
        date_column: str | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        table = self._table()
        if table is None:
            raise FileNotFoundError(f"no lake table at {self.uri}: materialise it first")
        dataset = table.to_pyarrow_dataset()
        if date_column is None or start is None or end is None:
            result = dataset.to_table(columns=columns)
        else:
            import pyarrow.compute as pc

            condition = (
                (pc.field(YEAR) >= start.year)
                & (pc.field(YEAR) <= end.year)
                & (pc.field(date_column) >= pa.scalar(start, pa.date32()))
                & (pc.field(date_column) < pa.scalar(end, pa.date32()))
            )
            result = dataset.to_table(columns=columns, filter=condition)
        frame = pl.from_arrow(result)
        assert isinstance(frame, pl.DataFrame)
        return frame.drop(YEAR, strict=False)


class LakeIOManager(ConfigurableIOManager):
    """Stores polars frames as Delta tables in the lake (local folder or s3://bucket/prefix).

    A partitioned asset names its date column with the definition metadata `partition_expr`
    (default `date`); an input may ask for a subset of columns with `columns`."""

    lake_url: str
    storage_options: dict[str, str]

    def table_uri(self, asset_key_path: list[str]) -> str:
        return "/".join([self.lake_url.rstrip("/"), *asset_key_path])

    def table(self, asset_key_path: list[str]) -> LakeTable:
        return LakeTable(self.table_uri(asset_key_path), self.storage_options)

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        table = self.table(list(context.asset_key.path))
        started = time.perf_counter()
        if context.has_asset_partitions:
            start, end = window_dates(context.asset_partitions_time_window)
            version = table.replace_window(obj, partition_column(context), start, end)
            window: dict[str, Any] = {"window": f"[{start}, {end})"}
        else:
            version = table.replace_all(obj)
            window = {}
        context.add_output_metadata(
            {
                "lake_table": table.uri,
                "delta_version": version,
                "lake_write_seconds": round(time.perf_counter() - started, 3),
                **window,
            }
        )

    def load_input(self, context: InputContext) -> pl.DataFrame:
        table = self.table(list(context.asset_key.path))
        columns = input_columns(context)
        if context.has_asset_partitions:
            start, end = window_dates(context.asset_partitions_time_window)
            frame = table.read_window(partition_column(context), start, end, columns)
        else:
            frame = table.read_window(columns=columns)
        context.log.info(f"loaded {frame.height:,} rows from {table.uri}")
        return frame
