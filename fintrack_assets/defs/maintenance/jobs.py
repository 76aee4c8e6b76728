"""The `lake_maintenance` job: Delta Lake's own consolidation of the lake, daily at 06:00 UTC.

Per lake table: z-order on `symbol` of the year partitions written since their last optimize
(per-symbol reads then skip most of the data), then vacuum of the files no version within the
retention window still needs and of the untracked files older than the window (parquet a killed
writer wrote but never committed). It is an op job, not an asset: it changes files, never rows, and
reports on each table it maintained with an AssetObservation.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import polars as pl
from dagster import (
    AssetObservation,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    job,
    op,
)
from pydantic import Field

from fintrack_assets.core.silver import INTERVALS
from fintrack_assets.io_managers.lake import (
    DEFAULT_RETENTION_HOURS,
    LakeIOManager,
    LakeTable,
    OptimizeStats,
    VacuumStats,
)
from fintrack_assets.metadata import markdown_table

LAKE_TABLES: tuple[str, ...] = (
    "raw_ohlcv",
    "bronze_ohlcv",
    "bronze_ohlcv_rejects",
    *(f"silver_ohlcv_{n}d" for n in INTERVALS),
)
"""Every Delta table of the lake, in the order the job maintains them."""

LakeTableName = StrEnum("LakeTableName", {name: name for name in LAKE_TABLES})
"""The lake's tables as the launchpad's choices for `tables`."""

LISTED_PATHS = 50
"""Vacuumed paths shown per table in the metadata; the count is always complete."""


class LakeMaintenanceConfig(Config):
    retention_hours: int = Field(
        default=DEFAULT_RETENTION_HOURS,
        description="Vacuum keeps the files any version of the last N hours needs and the "
        "untracked files younger than N hours (a write in progress). Below 168 "
        "(Delta's default), readers of older versions (time travel, a long query) lose their "
        "files.",
    )
    dry_run: bool = Field(
        default=False,
        description="Change nothing: skip optimize, list what vacuum would delete and which "
        "years are due for optimize.",
    )
    tables: list[LakeTableName] | None = Field(
        default=None, description="Lake tables to maintain; unset: all of them, in order."
    )


@dataclass(frozen=True)
class TableResult:
    """One table's outcome: maintained (with stats), skipped (no table yet) or failed."""

    table: str
    status: str
    optimize: OptimizeStats | None = None
    vacuum: VacuumStats | None = None
    pending: list[int] | None = None
    seconds: float = 0.0
    version: int | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        o, v = self.optimize, self.vacuum
        return {
            "table": self.table,
            "status": self.status,
            "partitions_optimized": _years(o.partitions_optimized) if o else "",
            "files_compacted": o.files_compacted if o else 0,
            "files_added": o.files_added if o else 0,
            "files_removed": v.files_removed if v else 0,
            "files_to_remove": len(v.files) if v and v.dry_run else 0,
            "bytes_before": o.bytes_before if o else 0,
            "bytes_after": o.bytes_after if o else 0,
            "seconds": round(self.seconds, 3),
        }


def _years(years: list[int]) -> str:
    return ", ".join(str(y) for y in years)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"


def maintain_table(table: LakeTable, retention_hours: int, dry_run: bool) -> TableResult:
    """Optimize then vacuum one table; a dry run only looks. A missing table is skipped."""
    name = table.uri.rstrip("/").rsplit("/", 1)[-1]
    started = time.perf_counter()
    if not table.exists():
        return TableResult(name, "skipped")
    try:
        if dry_run:
            files = table.active_files()
            size = int(files["size_bytes"].sum())
            version = table.version()
            assert version is not None
            optimize = OptimizeStats([], 0, 0, size, size, 0.0, version)
            pending = table.pending_partitions()
        else:
            optimize = table.optimize()
            pending = []
        vacuum = table.vacuum(retention_hours, dry_run=dry_run)
        version = table.version()  # vacuum commits too
    except FileNotFoundError:  # dropped between the check and the work
        return TableResult(name, "skipped")
    return TableResult(
        name, "maintained", optimize, vacuum, pending, time.perf_counter() - started, version
    )


def _observation(result: TableResult, dry_run: bool) -> AssetObservation:
    optimize, vacuum = result.optimize, result.vacuum
    assert optimize is not None and vacuum is not None
    metadata: dict[str, Any] = {
        "files_compacted": optimize.files_compacted,
        "files_added": optimize.files_added,
        "files_removed": vacuum.files_removed,
        "bytes_before": optimize.bytes_before,
        "bytes_after": optimize.bytes_after,
        "seconds": round(result.seconds, 3),
        "optimize_seconds": round(optimize.seconds, 3),
        "vacuum_seconds": round(vacuum.seconds, 3),
        "partitions_optimized": MetadataValue.json(optimize.partitions_optimized),
        "dry_run": dry_run,
        "delta_version": result.version,
        "vacuum_files": MetadataValue.json(vacuum.files[:LISTED_PATHS]),
    }
    if dry_run:
        metadata["files_to_remove"] = len(vacuum.files)
        metadata["partitions_pending"] = MetadataValue.json(result.pending or [])
    return AssetObservation(asset_key=result.table, metadata=metadata)


def _progress(index: int, total: int, result: TableResult, dry_run: bool) -> str:
    head = f"[{index}/{total}] {result.table}:"
    if result.status == "skipped":
        return f"{head} skipped, no table yet"
    if result.status == "failed":
        return f"{head} FAILED: {result.error}"
    optimize, vacuum = result.optimize, result.vacuum
    assert optimize is not None and vacuum is not None
    if dry_run:
        return (
            f"{head} dry run, years due for optimize [{_years(result.pending or [])}], "
            f"vacuum would delete {len(vacuum.files)} files, {result.seconds:.1f} s"
        )
    if optimize.partitions_optimized:
        done = (
            f"z-ordered years [{_years(optimize.partitions_optimized)}] "
            f"({optimize.files_compacted} -> {optimize.files_added} files, "
            f"{_size(optimize.bytes_before)} -> {_size(optimize.bytes_after)})"
        )
    else:
        done = f"nothing to optimize ({_size(optimize.bytes_before)})"
    return f"{head} {done}, vacuum deleted {vacuum.files_removed} files, {result.seconds:.1f} s"


def _summary(results: list[TableResult], seconds: float, dry_run: bool) -> dict[str, Any]:
    rows = [r.row() for r in results]
    frame = pl.DataFrame(rows)
    totals = {
        "files_compacted": int(frame["files_compacted"].sum()),
        "files_added": int(frame["files_added"].sum()),
        "files_removed": int(frame["files_removed"].sum()),
        "files_to_remove": int(frame["files_to_remove"].sum()),
        "bytes_before": int(frame["bytes_before"].sum()),
        "bytes_after": int(frame["bytes_after"].sum()),
    }
    total_row = {
        "table": "total",
        "status": "",
        "partitions_optimized": "",
        **totals,
        "seconds": round(seconds, 3),
    }
    table = pl.DataFrame([*rows, total_row], schema=frame.schema)
    return {
        "summary": MetadataValue.md(markdown_table(table, rows=table.height)),
        **totals,
        "tables_maintained": sum(r.status == "maintained" for r in results),
        "tables_skipped": MetadataValue.json([r.table for r in results if r.status == "skipped"]),
        "tables_failed": MetadataValue.json([r.table for r in results if r.status == "failed"]),
        "dry_run": dry_run,
        "seconds": round(seconds, 3),
    }


@op(
    required_resource_keys={"lake"},
    out=Out(list, description="One summary row per table (as in the `summary` metadata)."),
    tags={"dagster/kind/deltalake": ""},
    description="Optimize (z-order on symbol) and vacuum every lake table; dry run lists only.",
)
def maintain_lake_tables(
    context: OpExecutionContext, config: LakeMaintenanceConfig
) -> Iterator[AssetObservation | Output[list[dict[str, Any]]]]:
    """One table after another (z-order already runs several years at once, OPTIMIZE_TASKS). A
    generator, so each table's observation is emitted as soon as it is done and survives a
    later failure; a failing table is reported, the others still run, then the op fails
    naming it."""
    started = time.perf_counter()
    names = list(LAKE_TABLES) if config.tables is None else list(dict.fromkeys(config.tables))
    if config.retention_hours < 0:
        raise Failure(description=f"retention_hours must be >= 0, got {config.retention_hours}")
    if config.retention_hours < DEFAULT_RETENTION_HOURS:
        context.log.warning(
            f"vacuum retention {config.retention_hours} h is below Delta's default of "
            f"{DEFAULT_RETENTION_HOURS} h: readers of versions older than that (time travel, "
            "a query running across the vacuum) will find their files gone"
        )
    lake: LakeIOManager = context.resources.lake
    results: list[TableResult] = []
    for index, name in enumerate(names, start=1):
        table = lake.table([name])
        try:
            result = maintain_table(table, config.retention_hours, config.dry_run)
        except Exception as error:
            context.log.exception(f"lake maintenance of {name} ({table.uri}) failed")
            result = TableResult(name, "failed", error=f"{type(error).__name__}: {error}")
        results.append(result)
        context.log.info(_progress(index, len(names), result, config.dry_run))
        if result.status == "maintained":
            yield _observation(result, config.dry_run)
    metadata = _summary(results, time.perf_counter() - started, config.dry_run)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise Failure(
            description="lake maintenance failed for "
            + "; ".join(f"{r.table} ({r.error})" for r in failed),
            metadata=metadata,
        )
    yield Output([r.row() for r in results], metadata=metadata)


@job(
    description=(
        "Delta consolidation of the lake: z-order on symbol of the years written since the "
        "last run, then vacuum (retention 168 h by default; dry_run lists only)."
    ),
)
def lake_maintenance() -> None:
    maintain_lake_tables()
