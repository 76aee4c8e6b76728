"""Lake writers that race lose nothing: two runs' first writes into one new table keep both
ranges, and a write or an optimize that loses a commit conflict retries from a fresh snapshot
instead of failing the run (issue 18, items 1 and 5)."""

import datetime as dt
import multiprocessing
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable
from deltalake.table import TableOptimizer

from fintrack_assets.defs.maintenance.jobs import maintain_table
from fintrack_assets.io_managers import lake
from fintrack_assets.io_managers.lake import DEFAULT_RETENTION_HOURS, LakeTable

D = dt.date
SYMBOLS = 40
WINDOWS = [(D(2024, 1, 1), D(2024, 2, 1)), (D(2024, 3, 1), D(2024, 4, 1))]
"""Writer i's range: two months of one year, so both writers land in the same partition."""

TRIES = 30
"""The old first write lost a range in 3 to 8 of 20 tries: 30 leave it no chance to pass."""


def window_frame(start: dt.date, end: dt.date, writer: int) -> pl.DataFrame:
    """One row per calendar day and symbol, tagged with the writer that wrote it."""
    days = pl.date_range(start, end, closed="left", eager=True)
    symbols = pl.Series("symbol", [f"S{n:03d}" for n in range(SYMBOLS)])
    return (
        pl.DataFrame({"date": days})
        .join(symbols.to_frame(), how="cross")
        .with_columns(writer=pl.lit(writer, pl.Int32), close=pl.lit(100.0 + writer))
    )


def first_writes(writer: int, root: str, barrier: Barrier, results: Any) -> None:
    """A worker process: for every try, waits until the other writer is ready too, then writes
    its range into that try's new table and reports success or the error."""
    start, end = WINDOWS[writer]
    frame = window_frame(start, end, writer)
    for attempt in range(TRIES):
        barrier.wait(timeout=60)
        try:
            LakeTable(f"{root}/t{attempt}").replace_window(frame, "date", start, end)
            results.put((attempt, writer, "ok"))
        except Exception as error:
            results.put((attempt, writer, f"{type(error).__name__}: {error}"))


def rows_by_writer(uri: str) -> dict[int, int]:
    """The table's rows per writer, read with deltalake directly (not LakeTable)."""
    frame = pl.from_arrow(DeltaTable(uri).to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return dict(frame.group_by("writer").len().iter_rows())


def operations(uri: str) -> list[str]:
    return [commit["operation"] for commit in reversed(DeltaTable(uri).history())]


def test_two_first_writes_racing_into_a_new_table_keep_both_ranges(tmp_path: Path) -> None:
    """Two real processes, released together by a barrier, each write a different range into
    the same table that does not exist yet; every try keeps both ranges and both succeed (the
    writer that loses the creation or the commit retries)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=first_writes, args=(writer, str(tmp_path), barrier, results))
        for writer in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in range(2 * TRIES)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert [o for o in outcomes if o[2] != "ok"] == []
    expected = {0: 31 * SYMBOLS, 1: 31 * SYMBOLS}
    lost = {
        attempt: found
        for attempt in range(TRIES)
        if (found := rows_by_writer(str(tmp_path / f"t{attempt}"))) != expected
    }
    assert lost == {}
    for attempt in range(TRIES):
        assert operations(str(tmp_path / f"t{attempt}")).count("CREATE TABLE") == 1


def test_a_first_write_overtaken_by_another_first_write_keeps_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministically, what the race above hits now and then: writer 1 found no table, then
    writer 0's whole first write commits before writer 1's write does."""
    uri = str(tmp_path / "bronze_ohlcv")
    write = lake.write_deltalake
    overtaken: list[bool] = []

    def other_run_commits_first(target: str | DeltaTable, data: Any, **options: Any) -> None:
        if not overtaken:
            overtaken.append(True)
            LakeTable(uri).replace_window(window_frame(*WINDOWS[0], writer=0), "date", *WINDOWS[0])
        write(target, data, **options)

    monkeypatch.setattr(lake, "write_deltalake", other_run_commits_first)
    LakeTable(uri).replace_window(window_frame(*WINDOWS[1], writer=1), "date", *WINDOWS[1])
    assert overtaken == [True]
    assert rows_by_writer(uri) == {0: 31 * SYMBOLS, 1: 31 * SYMBOLS}


def two_month_table(uri: str) -> LakeTable:
    """January and February 2024 by writer 0, two files in the 2024 partition."""
    table = LakeTable(uri)
    for start, end in [(D(2024, 1, 1), D(2024, 2, 1)), (D(2024, 2, 1), D(2024, 3, 1))]:
        table.replace_window(window_frame(start, end, 0), "date", start, end)
    return table


FEBRUARY = (D(2024, 2, 1), D(2024, 3, 1))


def test_a_write_that_loses_to_maintenance_retries_and_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lake_maintenance's z-order commits between the write's read of the table and its
    commit (delta-rs raises CommitFailedError); the write retries and replaces February."""
    uri = str(tmp_path / "bronze_ohlcv")
    table = two_month_table(uri)
    write = lake.write_deltalake
    snapshots: list[int] = []

    def maintenance_commits_first(target: str | DeltaTable, data: Any, **options: Any) -> None:
        stale = target if isinstance(target, DeltaTable) else DeltaTable(target)
        snapshots.append(stale.version())
        if len(snapshots) == 1:
            assert LakeTable(uri).optimize().partitions_optimized == [2024]
        write(stale, data, **options)

    monkeypatch.setattr(lake, "write_deltalake", maintenance_commits_first)
    version = table.replace_window(window_frame(*FEBRUARY, writer=1), "date", *FEBRUARY)
    assert len(snapshots) == 2 and snapshots[1] > snapshots[0]
    assert version == DeltaTable(uri).version()
    assert rows_by_writer(uri) == {0: 31 * SYMBOLS, 1: 29 * SYMBOLS}
    assert operations(uri)[-1] == "WRITE" and "OPTIMIZE" in operations(uri)


def test_maintenance_that_loses_to_a_write_retries_the_year(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's write commits between the z-order's read of the table and its commit; the
    table is still maintained, the year z-ordered from the new snapshot, no row lost."""
    uri = str(tmp_path / "bronze_ohlcv")
    two_month_table(uri)
    z_order: Callable[..., dict[str, Any]] = TableOptimizer.z_order
    snapshots: list[int] = []

    def write_commits_first(optimizer: TableOptimizer, *args: Any, **kwargs: Any) -> Any:
        snapshots.append(optimizer.table.version())
        if len(snapshots) == 1:
            LakeTable(uri).replace_window(window_frame(*FEBRUARY, writer=1), "date", *FEBRUARY)
        return z_order(optimizer, *args, **kwargs)

    monkeypatch.setattr(TableOptimizer, "z_order", write_commits_first)
    result = maintain_table(LakeTable(uri), DEFAULT_RETENTION_HOURS, dry_run=False)
    assert result.status == "maintained"
    assert result.optimize is not None and result.optimize.partitions_optimized == [2024]
    assert len(snapshots) == 2 and snapshots[1] > snapshots[0]
    assert rows_by_writer(uri) == {0: 31 * SYMBOLS, 1: 29 * SYMBOLS}
    assert LakeTable(uri).pending_partitions() == []
