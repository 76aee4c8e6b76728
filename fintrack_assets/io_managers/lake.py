"""The lake: one Delta table per asset at <lake_url>/<asset_key>, on a local path or S3.

Range-aware: a run over a partition range replaces exactly those partitions in one atomic
commit (predicate overwrite on the partition column), and a load reads exactly the window the
consumer asked for, including the wider windows partition mappings ask for. Tables are
physically partitioned by `year` only, never a folder per day.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl
import pyarrow as pa
from dagster import AssetKey, get_dagster_logger
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from pydantic import Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from fintrack_assets.core.calendar import require_within_window
from fintrack_assets.io_managers.context import (
    MergeRows,
    NotMaterialised,
    Rows,
    TableIOManager,
    Window,
)

if TYPE_CHECKING:
    import pyarrow.dataset as ds

YEAR = "year"

LOGGER = get_dagster_logger(__name__)
"""Commit-conflict retries show in the run's event log (and on stderr outside a run)."""

DEFAULT_RETENTION_HOURS = 168
"""Delta's default `delta.deletedFileRetentionDuration` (7 days). Vacuum refuses a shorter
window unless told to, because a reader still on an older version would lose its files."""

ZORDER_BY: tuple[str, ...] = ("symbol",)

ZORDER_ROW_GROUP_ROWS = 65_536
"""Rows per row group in z-ordered files. A year of bronze (5,400 symbols x ~252 sessions,
1.4M rows) becomes ~21 row groups of ~260 symbols and ~1.6 MB (zstd) each, so a per-symbol
read fetches one or two of them; with the writer's default of 1Mi rows it would read most of
the year. Much smaller groups would add footer and per-request overhead on S3 for little gain."""

OPTIMIZE_TARGET_BYTES = 128 * 1024**2
"""Target file size: a bronze year (~35 MB) stays one file, a bigger one splits into files
of contiguous symbol ranges."""

OPTIMIZE_TASKS = max(1, min(os.cpu_count() or 1, 4))
"""Year partitions z-ordered at once: one per core, at most 4, since each one holds its sort
in memory."""

OPTIMIZE_MEMORY_BYTES = 2 * 1024**3
"""DataFusion memory pool for z-order's sort, beyond which it spills to disk: a bronze year
needs ~300 MB, so this leaves room to grow without taking the machine's memory."""

OPTIMIZE_TAG = "fintrack.optimize"
"""Commit-info key of our z-order commits ({"zorder_by": [...], "years": [...]}, for people
reading the history) and prefix of the app ids that record, per year, the version of the
z-order commit that last rewrote it (see `LakeTable.pending_partitions`)."""


COMMIT_ATTEMPTS = 8
"""Tries of one write, optimize or table creation that loses a commit conflict (another run
or lake_maintenance committed between its read of the table and its commit)."""

COMMIT_BACKOFF_SECONDS = 0.5
"""Base of the jittered exponential wait between those tries (at most 30 s): ~1 min in all
before the conflict fails the step."""


def _log_conflict(state: RetryCallState) -> None:
    assert state.outcome is not None and state.next_action is not None
    LOGGER.warning(
        f"commit conflict ({state.outcome.exception()}): rereading the table and trying again "
        f"in {state.next_action.sleep:.1f} s ({state.attempt_number + 1}/{COMMIT_ATTEMPTS})"
    )


def on_commit_conflict() -> Retrying:
    """Reruns a whole Delta transaction, from a fresh snapshot, when its commit fails.

    delta-rs already retries a commit whose conflict check passes; a CommitFailedError means
    the check failed (the other commit touched what this one read), so only rereading the
    table and redoing the work is correct. Random waits keep two losers from colliding again."""
    return Retrying(
        retry=retry_if_exception_type(CommitFailedError),
        wait=wait_random_exponential(multiplier=COMMIT_BACKOFF_SECONDS, max=30),
        stop=stop_after_attempt(COMMIT_ATTEMPTS),
        before_sleep=_log_conflict,
        reraise=True,
    )


@dataclass(frozen=True)
class OptimizeStats:
    """What one `LakeTable.optimize` did; bytes are sums of the active files' sizes."""

    partitions_optimized: list[int]
    files_compacted: int
    files_added: int
    bytes_before: int
    bytes_after: int
    seconds: float
    version: int


@dataclass(frozen=True)
class VacuumStats:
    """What one `LakeTable.vacuum` deleted or, in a dry run, would delete (`files`)."""

    files: list[str]
    files_removed: int
    dry_run: bool
    seconds: float


class LakeTable:
    """A Delta table of dated rows; the partition window is a [start, end) date range."""

    def __init__(
        self, uri: str, storage_options: Mapping[str, str] | None = None, asset: str | None = None
    ) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self.asset = asset or uri.rstrip("/").rsplit("/", 1)[-1]
        """The asset the table stores, named when a read finds no table."""

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
        return on_commit_conflict()(self._overwrite, data.to_arrow(), predicate)

    def merge_window(
        self,
        frame: pl.DataFrame,
        date_column: str,
        start: dt.date,
        end: dt.date,
        keys: Sequence[str],
    ) -> tuple[int, int]:
        """Inserts the rows of `frame` whose `keys` the window does not hold yet, in one merge
        commit that rewrites no existing row; returns (version, rows inserted)."""
        require_within_window(frame, date_column, start, end, self.uri)
        data = frame.with_columns(pl.col(date_column).dt.year().cast(pl.Int32).alias(YEAR))
        return on_commit_conflict()(self._merge, data.to_arrow(), [YEAR, *keys])

    def _merge(self, data: pa.Table, keys: list[str]) -> tuple[int, int]:
        table = self._table() or self._create(data.schema)
        if data.num_rows == 0:
            return table.version(), 0
        predicate = " AND ".join(f"target.{key} = source.{key}" for key in keys)
        stats = (
            table.merge(data, predicate, source_alias="source", target_alias="target")
            .when_not_matched_insert_all()
            .execute()
        )
        return table.version(), int(stats.get("num_target_rows_inserted", 0))

    def replace_all(self, frame: pl.DataFrame) -> int:
        return on_commit_conflict()(self._overwrite, frame.to_arrow(), None)

    def _overwrite(self, data: pa.Table, predicate: str | None) -> int:
        """One attempt: replaces the rows matching `predicate` (all rows without one) from
        the table's current snapshot; returns the version it committed.

        A window's first write creates the empty table first, so it too is a predicated
        overwrite: an unpredicated one racing another run's first write would remove that
        run's rows."""
        table = self._table()
        if table is None and predicate is not None:
            table = self._create(data.schema)
        write_deltalake(
            self.uri if table is None else table,
            data,
            mode="overwrite",
            predicate=predicate,
            partition_by=None if predicate is None else [YEAR],
            storage_options=self.storage_options or None,
            schema_mode=None if predicate is None else "merge",
        )
        version = self.version() if table is None else table.version()
        assert version is not None
        return version

    def _create(self, schema: pa.Schema) -> DeltaTable:
        """The empty year-partitioned table. Its commit is never retried by delta-rs (which
        would otherwise commit a second CREATE over a racing writer's table): losing the race
        for version 0 raises CommitFailedError, and the retry finds the winner's table."""
        return DeltaTable.create(
            self.uri,
            schema,
            mode="ignore",
            partition_by=[YEAR],
            storage_options=self.storage_options or None,
            commit_properties=CommitProperties(max_commit_retries=0),
        )

    def read_window(
        self,
        date_column: str | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        """Raises NotMaterialised when there is no table; a window the table holds no rows of
        (a trailing window reaching before the first partition) reads empty."""
        dataset = self._dataset(start, end)
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

    def scan(
        self, date_column: str, window: Window | None, columns: list[str] | None
    ) -> pl.LazyFrame:
        """`read_window` as a LazyFrame over the table's current version. Polars hands the
        filters an asset adds before `collect` to the Parquet scan with the window's, so only
        the rows that pass are held."""
        frame = pl.scan_pyarrow_dataset(self._dataset(*(window or (None, None))))
        if window is not None:
            start, end = window
            frame = frame.filter(
                pl.col(YEAR) >= start.year,
                pl.col(YEAR) <= end.year,
                pl.col(date_column) >= start,
                pl.col(date_column) < end,
            )
        return frame.select(columns) if columns else frame.drop(YEAR, strict=False)

    def _dataset(self, start: dt.date | None, end: dt.date | None) -> ds.Dataset:
        table = self._table()
        if table is None:
            raise NotMaterialised.reading(self.asset, start, end)
        return table.to_pyarrow_dataset()

    def _existing(self) -> DeltaTable:
        table = self._table()
        if table is None:
            raise FileNotFoundError(f"no lake table at {self.uri}: materialise it first")
        return table

    def active_files(self) -> pl.DataFrame:
        """One row per file of the current version: path, year, size_bytes, num_records."""
        return _active_files(self._existing(), self.uri)

    def pending_partitions(self, zorder_by: Sequence[str] = ZORDER_BY) -> list[int]:
        """The years `optimize` would rewrite now (what a dry run reports)."""
        table = self._existing()
        return self._pending_years(table, _active_files(table, self.uri), zorder_by)

    def optimize(self, zorder_by: Sequence[str] = ZORDER_BY) -> OptimizeStats:
        """Z-orders, in one commit, the year partitions written since their last z-order.

        Incremental: an already consolidated year is left alone, so a daily run rewrites only
        the year the day's write went to. Rows never change, only their files and order. A
        z-order that loses a commit conflict to a run's write starts again from the new
        snapshot, with the years then pending."""
        return on_commit_conflict()(self._optimize, zorder_by, time.perf_counter())

    def _optimize(self, zorder_by: Sequence[str], started: float) -> OptimizeStats:
        table = self._existing()
        before = _active_files(table, self.uri)
        years = self._pending_years(table, before, zorder_by)
        bytes_before = int(before["size_bytes"].sum())
        if not years:
            return OptimizeStats(
                [], 0, 0, bytes_before, bytes_before, time.perf_counter() - started, table.version()
            )
        columns = list(zorder_by)
        metrics = table.optimize.z_order(
            columns,
            partition_filters=[(YEAR, "in", [str(year) for year in years])],
            target_size=OPTIMIZE_TARGET_BYTES,
            max_concurrent_tasks=OPTIMIZE_TASKS,
            max_spill_size=OPTIMIZE_MEMORY_BYTES,
            writer_properties=WriterProperties(
                max_row_group_size=ZORDER_ROW_GROUP_ROWS, compression="ZSTD"
            ),
            commit_properties=CommitProperties(
                custom_metadata={OPTIMIZE_TAG: {"zorder_by": columns, "years": years}}
            ),
        )
        optimized = table.version()
        table.create_write_transaction(
            [],
            mode="append",
            schema=table.schema(),
            partition_by=[YEAR],
            commit_properties=CommitProperties(
                app_transactions=[
                    Transaction(_optimize_app_id(columns, year), optimized) for year in years
                ]
            ),
        )
        after = self._existing()
        return OptimizeStats(
            partitions_optimized=years,
            files_compacted=int(metrics["numFilesRemoved"]),
            files_added=int(metrics["numFilesAdded"]),
            bytes_before=bytes_before,
            bytes_after=int(_active_files(after, self.uri)["size_bytes"].sum()),
            seconds=time.perf_counter() - started,
            version=after.version(),
        )

    def vacuum(
        self, retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False
    ) -> VacuumStats:
        """Deletes (a dry run only lists) the files no version of the last `retention_hours`
        needs: what optimize and window replacements left behind, and the untracked files
        older than the window that a killed writer left (parquet it wrote but never
        committed). A full vacuum, since the log alone never names those; the window keeps a
        live writer's not yet committed files. Below Delta's default of 168 h, readers of
        versions older than the window lose their files."""
        if retention_hours < 0:
            raise ValueError(f"retention_hours must be >= 0, got {retention_hours}")
        started = time.perf_counter()
        files = self._existing().vacuum(
            retention_hours=retention_hours,
            dry_run=dry_run,
            enforce_retention_duration=retention_hours >= DEFAULT_RETENTION_HOURS,
            full=True,
        )
        return VacuumStats(
            files=sorted(files),
            files_removed=0 if dry_run else len(files),
            dry_run=dry_run,
            seconds=time.perf_counter() - started,
        )

    def _pending_years(
        self, table: DeltaTable, files: pl.DataFrame, zorder_by: Sequence[str]
    ) -> list[int]:
        """Years holding an active file that their latest z-order did not write.

        deltalake 1.x no longer shows an add action's `dataChange` in `get_add_actions`, and
        `DeltaTable.history()` holds the GIL through its I/O (it deadlocks against an S3
        server in the same process), so each z-order is followed by an empty commit whose
        app transactions record, per year, the version v of the z-order commit. The files
        it wrote are those active at v and not at v - 1. Any doubt (no record, a version no
        longer in the log) makes the year pending: re-optimizing is safe, skipping is not."""
        written: dict[int, set[str]] = {}
        pending = []
        for (year,), paths in files.group_by(YEAR):
            version = table.transaction_version(_optimize_app_id(zorder_by, int(year)))
            if version is not None and version not in written:
                try:
                    written[version] = self._paths_at(version) - self._paths_at(version - 1)
                except DeltaError:
                    written[version] = set()
            done = written.get(version, set()) if version is not None else set()
            if not set(paths["path"]).issubset(done):
                pending.append(int(year))
        return sorted(pending)

    def _paths_at(self, version: int) -> set[str]:
        table = DeltaTable(self.uri, version=version, storage_options=self.storage_options or None)
        return set(_active_files(table, self.uri)["path"])


class LakeIOManager(TableIOManager):
    """Stores polars frames as Delta tables in the lake (local folder or s3://bucket/prefix).

    A partitioned asset names its date column with the definition metadata `partition_expr`
    (default `date`); an input may ask for a subset of columns with `columns`."""

    kind: ClassVar[str] = "lake"
    lake_url: str = Field(description="The lake's root: a local folder or s3://bucket/prefix.")
    storage_options: dict[str, str] = Field(
        description="deltalake's object-store options (AWS_ENDPOINT_URL, AWS_REGION, "
        "AWS_ALLOW_HTTP); S3 keys are read from the AWS_* environment variables."
    )

    def table_uri(self, asset_key_path: list[str]) -> str:
        return "/".join([self.lake_url.rstrip("/"), *asset_key_path])

    def table(self, asset_key_path: list[str]) -> LakeTable:
        return LakeTable(
            self.table_uri(asset_key_path), self.storage_options, "/".join(asset_key_path)
        )

    def location(self, key: AssetKey) -> str:
        return self.table_uri(list(key.path))

    def store(
        self, key: AssetKey, frame: pl.DataFrame, column: str, window: Window | None
    ) -> dict[str, Any]:
        """The window, or the whole table when unpartitioned, in one commit."""
        table = self.table(list(key.path))
        if window is None:
            return {"lake_table": table.uri, "delta_version": table.replace_all(frame)}
        return {
            "lake_table": table.uri,
            "delta_version": table.replace_window(frame, column, *window),
            "window": f"[{window[0]}, {window[1]})",
        }

    def merge(
        self, key: AssetKey, rows: MergeRows, column: str, window: Window | None
    ) -> dict[str, Any]:
        if window is None:
            raise ValueError(f"{key.to_user_string()}: merging needs a partition window")
        table = self.table(list(key.path))
        version, inserted = table.merge_window(rows.frame, column, *window, rows.keys)
        return {
            "lake_table": table.uri,
            "delta_version": version,
            "window": f"[{window[0]}, {window[1]})",
            "rows_merged": inserted,
        }

    def read(self, key: AssetKey, rows: Rows) -> pl.DataFrame:
        start, end = rows.window or (None, None)
        return self.table(list(key.path)).read_window(rows.column, start, end, rows.selected)

    def scan(self, key: AssetKey, rows: Rows) -> pl.LazyFrame:
        return self.table(list(key.path)).scan(rows.column, rows.window, rows.selected)


def _optimize_app_id(zorder_by: Sequence[str], year: int) -> str:
    return f"{OPTIMIZE_TAG}/{','.join(zorder_by)}/{YEAR}={year}"


def _active_files(table: DeltaTable, uri: str) -> pl.DataFrame:
    """The add actions of a year-partitioned table as path, year, size_bytes, num_records."""
    actions = pa.table(table.get_add_actions(flatten=True))
    column = f"partition.{YEAR}"
    if column not in actions.column_names:
        raise ValueError(f"{uri} is not partitioned by {YEAR}: lake maintenance needs that")
    frame = pl.from_arrow(actions.select(["path", column, "size_bytes", "num_records"]))
    assert isinstance(frame, pl.DataFrame)
    return frame.rename({column: YEAR})
