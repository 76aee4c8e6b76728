"""What a killed write leaves behind is cleared by what runs next: a killed lake writer's
parquet by lake_maintenance's vacuum (once older than the retention window), a killed
PostgreSQL load's staging tables by the next window write (never a live load's)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import psycopg
import pyarrow.parquet as pq
from polars.testing import assert_frame_equal

from fintrack_assets.core.synthetic import generate_ohlcv
from fintrack_assets.io_managers.warehouse import PostgresWarehouse
from fintrack_assets_tests.test_lake_maintenance import UNIVERSE, WINDOWS, Lake, observations

D = dt.date
HOUR = 3600


def test_lake_maintenance_removes_a_killed_writers_old_parquet_and_keeps_a_young_one(
    tmp_path: Path,
) -> None:
    lake = Lake(str(tmp_path / "lake"), {})
    lake.write("bronze_ohlcv", WINDOWS[:2])
    rows = lake.rows("bronze_ohlcv")
    year = Path(lake.uri("bronze_ohlcv")) / "year=2024"
    # As a killed writer leaves it: a whole part file in the year folder, never committed.
    stray = generate_ohlcv(UNIVERSE, D(2024, 11, 4), D(2024, 11, 18)).to_arrow()
    old = year / f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
    young = year / f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
    pq.write_table(stray, old)
    pq.write_table(stray, young)
    eight_days_ago = time.time() - (7 * 24 + 24) * HOUR
    os.utime(old, (eight_days_ago, eight_days_ago))
    within_retention = time.time() - (7 * 24 - 1) * HOUR
    os.utime(young, (within_retention, within_retention))

    dry = lake.run(tables=["bronze_ohlcv"], dry_run=True)

    assert dry.success
    listed = observations(dry)["bronze_ohlcv"]
    assert listed["vacuum_files"] == [f"year=2024/{old.name}"]
    assert listed["files_to_remove"] == 1 and listed["files_removed"] == 0
    assert old.exists() and young.exists()

    real = lake.run(tables=["bronze_ohlcv"])

    assert real.success
    done = observations(real)["bronze_ohlcv"]
    assert done["vacuum_files"] == [f"year=2024/{old.name}"]
    assert done["files_removed"] == 1
    assert not old.exists()
    assert young.exists()
    assert_frame_equal(lake.rows("bronze_ohlcv"), rows)


LOADER = """
import datetime as dt, sys
import polars as pl
from fintrack_assets.io_managers.warehouse import PostgresWarehouse
url, table, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
days = [dt.date(2024, 3, 4), dt.date(2024, 3, 5)]
frame = pl.DataFrame({"date": days, "value": [value, value]})
PostgresWarehouse(url).replace_window(table, frame, "date", days[0], dt.date(2024, 3, 6))
"""


def _frame(value: float) -> pl.DataFrame:
    days = [D(2024, 3, 4), D(2024, 3, 5)]
    return pl.DataFrame({"date": days, "value": [value, value]})


def _loads(url: str) -> set[str]:
    with psycopg.connect(url) as con:
        return {
            row[0]
            for row in con.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'fintrack_partitions' "
                "AND tablename LIKE 'load%'"
            )
        }


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _waiting_on(con: psycopg.Connection, table: str) -> int:
    row = con.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
        (f"fintrack.{table}",),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _other_backends(con: psycopg.Connection, blocker: psycopg.Connection) -> int:
    row = con.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid NOT IN (pg_backend_pid(), %s) AND backend_type = 'client backend'",
        (blocker.info.backend_pid,),
    ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def _loader(url: str, table: str, value: float) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", LOADER, url, table, str(value)])
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_write_drops_a_killed_loads_staging_tables_but_not_a_live_loads(
    postgres_url: str,
) -> None:
    warehouse = PostgresWarehouse(postgres_url)
    warehouse.replace_window("prices", _frame(1.0), "date", D(2024, 3, 4), D(2024, 3, 6))
    lock = "LOCK TABLE fintrack.prices IN ACCESS SHARE MODE"
    with (
        psycopg.connect(postgres_url) as blocker,
        psycopg.connect(postgres_url, autocommit=True) as watch,
    ):
        # Holding a lock on the table stops a loader at its swap, its load tables filled.
        blocker.execute(lock)
        with _loader(postgres_url, "prices", 2.0) as killed:
            _wait_for(lambda: _waiting_on(watch, "prices") == 1, "the killed load's swap")
            killed.send_signal(signal.SIGKILL)
            killed.wait()
        blocker.rollback()
        _wait_for(lambda: _other_backends(watch, blocker) == 0, "the killed load's backends")
        dead = _loads(postgres_url)
        assert len(dead) == 2  # one per day, left by the killed load

        blocker.execute(lock)
        with _loader(postgres_url, "prices", 3.0) as live:
            _wait_for(lambda: _waiting_on(watch, "prices") == 1, "the live load's swap")
            alive = _loads(postgres_url)
            assert len(alive) == 2 and alive.isdisjoint(dead)  # the live load dropped the dead's

            warehouse.replace_window("other", _frame(4.0), "date", D(2024, 3, 4), D(2024, 3, 6))

            assert _loads(postgres_url) == alive
            blocker.rollback()
            assert live.wait(timeout=60) == 0

    assert _loads(postgres_url) == set()
    assert_frame_equal(warehouse.read("prices").sort("date"), _frame(3.0))
    assert_frame_equal(warehouse.read("other").sort("date"), _frame(4.0))
