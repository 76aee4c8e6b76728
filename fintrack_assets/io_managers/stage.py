"""Durable staging of a long fetch: each completed batch is one append to a Delta table in
the lake, so a run that dies (kill -9, out of memory, a lost daemon) and runs again fetches
only the batches it had not staged.

One table per asset at `<lake>/_staging/<asset>`, partitioned by `stage_key` (a digest of
provider, batches, sessions and mode: `core.fetch_plan.stage_key`). A batch's rows (its
bars, the bars dated outside the window, its failed symbols) and its `done` marker land in
one commit, so a batch is either wholly staged or not at all. Once the run has committed the
asset's window, its key's partition is deleted (a metadata-only remove) and files no version
needs any more are vacuumed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from fintrack_assets.core.bronze import OHLCV_SCHEMA
from fintrack_assets.io_managers.lake import on_commit_conflict
from fintrack_assets.resources.fetching import FAILURE_SCHEMA

STAGE_ROOT = "_staging"
KEY = "stage_key"
KIND = "stage_kind"
"""`bar` (a bar of the window), `outside` (a bar dated outside it or undated), `failure`
(a failed symbol with its error) or `done` (the batch's marker, with its counters)."""

STAGE_SCHEMA: dict[str, pl.DataType] = {
    KEY: pl.String(),
    "batch": pl.Int32(),
    KIND: pl.String(),
    **OHLCV_SCHEMA,
    "error": pl.String(),
    "batch_symbols": pl.Int64(),
    "batch_rows": pl.Int64(),
    "batch_failed": pl.Int64(),
    "dropped": pl.Int64(),
    "requests": pl.Int64(),
    "seconds": pl.Float64(),
    "staged_at": pl.Datetime("us", "UTC"),
}

VACUUM_RETENTION_HOURS = 1
"""Files a version no longer references are vacuumed once this old; a batch file another run
is writing right now (not yet committed) is minutes old, so it is never taken."""


@dataclass(frozen=True)
class StagedBatch:
    """A batch's marker: what it counted when it was staged."""

    batch: int
    symbols: int
    rows: int
    failed: int
    dropped: int
    requests: int
    seconds: float
    staged_at: dt.datetime


@dataclass(frozen=True)
class Staged:
    """The rows staged under one key."""

    bars: pl.DataFrame
    outside: pl.DataFrame
    failures: pl.DataFrame


class FetchStage:
    """The staged batches of one fetch (one `stage_key`) of one asset."""

    def __init__(
        self, lake_url: str, asset: str, key: str, storage_options: Mapping[str, str] | None
    ) -> None:
        self.uri = "/".join([lake_url.rstrip("/"), STAGE_ROOT, asset])
        self.key = key
        self.storage_options = dict(storage_options or {}) or None

    def _table(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def completed(self, max_age: dt.timedelta, now: dt.datetime) -> dict[int, StagedBatch]:
        """The batches staged under this key; a stage whose newest batch is older than
        `max_age` is discarded first (the provider may have revised its data since)."""
        batches = self._batches()
        if batches and max(b.staged_at for b in batches.values()) < now - max_age:
            self.discard()
            return {}
        return batches

    def _batches(self) -> dict[int, StagedBatch]:
        markers = self._read(["done"]).select(
            "batch",
            pl.col("batch_symbols").alias("symbols"),
            pl.col("batch_rows").alias("rows"),
            pl.col("batch_failed").alias("failed"),
            "dropped",
            "requests",
            "seconds",
            "staged_at",
        )
        return {row["batch"]: StagedBatch(**row) for row in markers.iter_rows(named=True)}

    def append(
        self,
        number: int,
        symbols: int,
        bars: pl.DataFrame,
        outside: pl.DataFrame,
        failures: pl.DataFrame,
        dropped: int,
        requests: int,
        seconds: float,
        now: dt.datetime,
    ) -> None:
        """One batch, its marker with its counts included, in one commit."""
        marker = pl.DataFrame(
            {
                "batch_symbols": [symbols],
                "batch_rows": [bars.height],
                "batch_failed": [failures["symbol"].n_unique()],
                "dropped": [dropped],
                "requests": [requests],
                "seconds": [seconds],
            }
        )
        pieces = [
            bars.with_columns(pl.lit("bar").alias(KIND)),
            outside.with_columns(pl.lit("outside").alias(KIND)),
            failures.select("symbol", "error").with_columns(pl.lit("failure").alias(KIND)),
            marker.with_columns(pl.lit("done").alias(KIND)),
        ]
        frame = pl.concat([pl.DataFrame(schema=STAGE_SCHEMA), *pieces], how="diagonal_relaxed")
        frame = frame.with_columns(
            pl.lit(self.key).alias(KEY),
            pl.lit(number, pl.Int32).alias("batch"),
            pl.lit(now).dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias("staged_at"),
        ).select([pl.col(name).cast(dtype) for name, dtype in STAGE_SCHEMA.items()])
        on_commit_conflict()(self._append, frame)

    def _append(self, frame: pl.DataFrame) -> None:
        write_deltalake(
            self._table() or self.uri,
            frame.to_arrow(),
            mode="append",
            partition_by=[KEY],
            storage_options=self.storage_options,
        )

    def _read(self, kinds: list[str]) -> pl.DataFrame:
        table = self._table()
        if table is None:
            return pl.DataFrame(schema=STAGE_SCHEMA)
        condition = (ds.field(KEY) == self.key) & ds.field(KIND).isin(kinds)
        data = table.to_pyarrow_dataset().to_table(filter=condition)
        frame = pl.from_arrow(data)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def read(self) -> Staged:
        """The staged bars (raw_ohlcv's columns), outside bars and failures."""
        rows = self._read(["bar", "outside", "failure"])
        columns = list(OHLCV_SCHEMA)
        return Staged(
            bars=rows.filter(pl.col(KIND) == "bar").select(columns),
            outside=rows.filter(pl.col(KIND) == "outside").select(columns),
            failures=rows.filter(pl.col(KIND) == "failure")
            .select("symbol", "error", "batch")
            .cast(dict(FAILURE_SCHEMA)),
        )

    def discard(self) -> None:
        """Removes this key's partition and vacuums what no version needs any more."""
        table = self._table()
        if table is None:
            return
        on_commit_conflict()(self._delete)
        table = self._table()
        assert table is not None
        table.vacuum(
            retention_hours=VACUUM_RETENTION_HOURS,
            enforce_retention_duration=False,
            dry_run=False,
        )

    def _delete(self) -> None:
        table = self._table()
        if table is not None:
            table.delete(f"{KEY} = '{self.key}'")
