"""lake_maintenance: Delta optimize (z-order on symbol) and vacuum never change a table's rows,
consolidate each year once (incrementally), and vacuum honours retention and dry run."""

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetObservation,
    DagsterInvalidConfigError,
    ExecuteInProcessResult,
    build_schedule_context,
)
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from fintrack_assets.core.synthetic import generate_ohlcv
from fintrack_assets.core.universe import synthetic_universe
from fintrack_assets.defs.maintenance.jobs import LAKE_TABLES, lake_maintenance
from fintrack_assets.defs.maintenance.schedules import lake_maintenance_schedule
from fintrack_assets.io_managers.lake import LakeIOManager, LakeTable

D = dt.date
OP = "maintain_lake_tables"
UNIVERSE = synthetic_universe(12)
# Five disjoint windows, one straddling new year: three files in 2024 and three in 2025.
WINDOWS = [
    (D(2024, 11, 4), D(2024, 11, 18)),
    (D(2024, 11, 18), D(2024, 12, 2)),
    (D(2024, 12, 2), D(2025, 1, 6)),
    (D(2025, 1, 6), D(2025, 1, 21)),
    (D(2025, 1, 21), D(2025, 2, 3)),
]


class Lake:
    """A lake of the test's own, read back through deltalake directly (not LakeTable)."""

    def __init__(self, url: str, options: dict[str, str]) -> None:
        self.url = url
        self.options = options

    def uri(self, table: str) -> str:
        return f"{self.url}/{table}"

    def write(self, table: str, windows: list[tuple[dt.date, dt.date]]) -> None:
        lake = LakeTable(self.uri(table), self.options)
        for start, end in windows:
            lake.replace_window(generate_ohlcv(UNIVERSE, start, end), "date", start, end)

    def delta(self, table: str, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.uri(table), version=version, storage_options=self.options or None)

    def rows(self, table: str) -> pl.DataFrame:
        frame = pl.from_arrow(self.delta(table).to_pyarrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame.sort("symbol", "date")

    def files(self, table: str, version: int | None = None) -> pl.DataFrame:
        actions = pa.table(self.delta(table, version).get_add_actions(flatten=True))
        frame = pl.from_arrow(actions.select(["path", "partition.year", "size_bytes"]))
        assert isinstance(frame, pl.DataFrame)
        return frame.rename({"partition.year": "year"})

    def files_per_year(self, table: str) -> dict[int, int]:
        return dict(self.files(table).group_by("year").len().rows())

    def optimize_commits(self, table: str) -> int:
        """Not on S3 here: `history()` holds the GIL and the S3 server shares the process."""
        return sum(c["operation"] == "OPTIMIZE" for c in self.delta(table).history())

    def run(self, **config: Any) -> ExecuteInProcessResult:
        return lake_maintenance.execute_in_process(
            resources={"lake": LakeIOManager(lake_url=self.url, storage_options=self.options)},
            run_config={"ops": {OP: {"config": config}}},
            raise_on_error=False,
        )


def observations(result: ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Each observed table's metadata as plain values."""
    found: dict[str, dict[str, Any]] = {}
    for event in result.asset_observations_for_node(OP):
        assert isinstance(event, AssetObservation)
        found[event.asset_key.to_user_string()] = {k: v.value for k, v in event.metadata.items()}
    return found


@pytest.fixture
def local_lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"), {})


@pytest.fixture(params=["local", "s3"])
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        return Lake(str(tmp_path / "lake"), {})
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return Lake(
        f"s3://{bucket}/lake",
        {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"},
    )


def test_maintenance_keeps_rows_consolidates_each_year_and_is_incremental(any_lake: Lake) -> None:
    lake = any_lake
    lake.write("bronze_ohlcv", WINDOWS)
    lake.write("raw_ohlcv", WINDOWS[:2])
    rows_before = {t: lake.rows(t) for t in ("bronze_ohlcv", "raw_ohlcv")}
    bronze_table = LakeTable(lake.uri("bronze_ohlcv"), lake.options)
    window = bronze_table.read_window("date", D(2024, 12, 20), D(2025, 1, 10))
    expected = rows_before["bronze_ohlcv"].filter(
        pl.col("date").is_between(D(2024, 12, 20), D(2025, 1, 10), closed="left")
    )
    assert_frame_equal(window.sort("symbol", "date"), expected.drop("year"))
    files_before = {t: lake.files(t) for t in ("bronze_ohlcv", "raw_ohlcv")}
    assert lake.files_per_year("bronze_ohlcv") == {2024: 3, 2025: 3}
    assert lake.files_per_year("raw_ohlcv") == {2024: 2}

    result = lake.run()

    assert result.success
    for table, before in rows_before.items():
        assert_frame_equal(lake.rows(table), before)
    after = bronze_table.read_window("date", D(2024, 12, 20), D(2025, 1, 10))
    assert_frame_equal(after.sort("symbol", "date"), window.sort("symbol", "date"))
    assert lake.files_per_year("bronze_ohlcv") == {2024: 1, 2025: 1}
    assert lake.files_per_year("raw_ohlcv") == {2024: 1}
    seen = observations(result)
    assert set(seen) == {"bronze_ohlcv", "raw_ohlcv"}  # the silver tables do not exist yet
    bronze = seen["bronze_ohlcv"]
    assert bronze["files_compacted"] == files_before["bronze_ohlcv"].height == 6
    assert bronze["files_added"] == 2
    assert bronze["partitions_optimized"] == [2024, 2025]
    assert bronze["bytes_before"] == files_before["bronze_ohlcv"]["size_bytes"].sum()
    assert bronze["bytes_after"] == lake.files("bronze_ohlcv")["size_bytes"].sum()
    assert bronze["files_removed"] == 0  # default retention: the replaced files are fresh
    assert bronze["dry_run"] is False
    assert bronze["delta_version"] == lake.delta("bronze_ohlcv").version()
    assert seen["raw_ohlcv"]["files_compacted"] == 2
    output = result.output_for_node(OP)
    assert [r["table"] for r in output] == list(LAKE_TABLES)
    assert {r["table"]: r["status"] for r in output}["silver_ohlcv_3d"] == "skipped"

    version = lake.delta("bronze_ohlcv").version()
    again = lake.run()
    assert again.success
    bronze = observations(again)["bronze_ohlcv"]
    assert bronze["files_compacted"] == bronze["files_added"] == 0
    assert bronze["partitions_optimized"] == []
    assert lake.delta("bronze_ohlcv").version() == version  # no commit at all
    assert_frame_equal(lake.rows("bronze_ohlcv"), rows_before["bronze_ohlcv"])


def test_a_new_write_makes_only_its_year_due(local_lake: Lake) -> None:
    lake = local_lake
    lake.write("bronze_ohlcv", WINDOWS)
    assert lake.run(tables=["bronze_ohlcv"]).success
    consolidated = dict(lake.files("bronze_ohlcv").select("year", "path").rows())
    lake.delta("bronze_ohlcv").create_checkpoint()  # what optimize recorded must survive one
    lake.write("bronze_ohlcv", [(D(2025, 2, 3), D(2025, 2, 8))])
    rows = lake.rows("bronze_ohlcv")

    result = lake.run(tables=["bronze_ohlcv"])

    assert result.success
    bronze = observations(result)["bronze_ohlcv"]
    assert bronze["partitions_optimized"] == [2025]
    assert bronze["files_compacted"] == 2  # the 2025 file and the new day's
    files = dict(lake.files("bronze_ohlcv").select("year", "path").rows())
    assert files[2024] == consolidated[2024]  # untouched
    assert files[2025] != consolidated[2025]
    assert lake.files_per_year("bronze_ohlcv") == {2024: 1, 2025: 1}
    assert_frame_equal(lake.rows("bronze_ohlcv"), rows)


def test_vacuum_dry_run_lists_replaced_files_then_vacuum_deletes_them(local_lake: Lake) -> None:
    lake = local_lake
    lake.write("bronze_ohlcv", WINDOWS)
    replaced = sorted(lake.files("bronze_ohlcv")["path"])
    assert lake.run(tables=["bronze_ohlcv"]).success
    rows = lake.rows("bronze_ohlcv")
    root = Path(lake.uri("bronze_ohlcv"))
    assert all((root / path).exists() for path in replaced)
    version = lake.delta("bronze_ohlcv").version()

    dry = lake.run(tables=["bronze_ohlcv"], retention_hours=0, dry_run=True)

    assert dry.success
    bronze = observations(dry)["bronze_ohlcv"]
    assert bronze["dry_run"] is True
    assert bronze["vacuum_files"] == replaced
    assert bronze["files_to_remove"] == len(replaced) == 6
    assert bronze["files_removed"] == 0
    assert all((root / path).exists() for path in replaced)
    assert lake.delta("bronze_ohlcv").version() == version

    real = lake.run(tables=["bronze_ohlcv"], retention_hours=0)

    assert real.success
    bronze = observations(real)["bronze_ohlcv"]
    assert bronze["files_removed"] == 6
    assert sorted(bronze["vacuum_files"]) == replaced
    assert not any((root / path).exists() for path in replaced)
    assert_frame_equal(lake.rows("bronze_ohlcv"), rows)
    with pytest.raises(Exception, match=r"(?i)not found|no such file"):
        lake.delta("bronze_ohlcv", version=1).to_pyarrow_table()  # 0 created it empty


def test_dry_run_changes_nothing_and_reports_the_years_due(local_lake: Lake) -> None:
    lake = local_lake
    lake.write("bronze_ohlcv", WINDOWS)
    files = sorted(lake.files("bronze_ohlcv")["path"])
    version = lake.delta("bronze_ohlcv").version()

    result = lake.run(dry_run=True, retention_hours=0)

    assert result.success
    bronze = observations(result)["bronze_ohlcv"]
    assert bronze["partitions_pending"] == [2024, 2025]
    assert bronze["partitions_optimized"] == []
    assert bronze["files_compacted"] == 0
    assert (
        bronze["bytes_before"]
        == bronze["bytes_after"]
        == lake.files("bronze_ohlcv")["size_bytes"].sum()
    )
    assert sorted(lake.files("bronze_ohlcv")["path"]) == files
    assert lake.delta("bronze_ohlcv").version() == version


def test_default_retention_removes_nothing_fresh(local_lake: Lake) -> None:
    lake = local_lake
    lake.write("bronze_ohlcv", WINDOWS)
    replaced = lake.files("bronze_ohlcv")["path"].to_list()
    for _ in range(2):
        result = lake.run(tables=["bronze_ohlcv"])
        assert result.success
        assert observations(result)["bronze_ohlcv"]["files_removed"] == 0
    root = Path(lake.uri("bronze_ohlcv"))
    assert all((root / path).exists() for path in replaced)
    stats = LakeTable(lake.uri("bronze_ohlcv")).vacuum(dry_run=True)
    assert stats.files == [] and stats.files_removed == 0


def test_missing_table_is_skipped_and_unknown_table_is_refused_at_launch(local_lake: Lake) -> None:
    lake = local_lake
    lake.write("bronze_ohlcv", WINDOWS[:1])

    skipped = lake.run(tables=["silver_ohlcv_3d", "bronze_ohlcv"])
    assert skipped.success
    assert not LakeTable(lake.uri("silver_ohlcv_3d")).exists()
    assert set(observations(skipped)) == {"bronze_ohlcv"}
    summary = skipped.output_for_node(OP)
    assert [(r["table"], r["status"]) for r in summary] == [
        ("silver_ohlcv_3d", "skipped"),
        ("bronze_ohlcv", "maintained"),
    ]

    # The launchpad offers the lake's tables; another name is refused before the run starts.
    with pytest.raises(DagsterInvalidConfigError, match=r"tables\[1\] not in enum type"):
        lake.run(tables=["bronze_ohlcv", "bronze"])
    assert lake.optimize_commits("bronze_ohlcv") == 1  # only the first run's


def test_one_failing_table_does_not_stop_the_others(local_lake: Lake) -> None:
    lake = local_lake
    # An unpartitioned table where the job expects year partitions: optimize refuses it.
    LakeTable(lake.uri("raw_ohlcv")).replace_all(generate_ohlcv(UNIVERSE, *WINDOWS[0]))
    lake.write("bronze_ohlcv", WINDOWS)

    result = lake.run(tables=["raw_ohlcv", "bronze_ohlcv"])

    assert not result.success
    assert set(observations(result)) == {"bronze_ohlcv"}
    assert lake.files_per_year("bronze_ohlcv") == {2024: 1, 2025: 1}
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and failure.description is not None
    assert "raw_ohlcv" in failure.description and "not partitioned by year" in failure.description
    assert "bronze_ohlcv" not in failure.description


def test_optimize_writes_symbol_ordered_row_groups_of_64k_rows(tmp_path: Path) -> None:
    table = LakeTable(str(tmp_path / "bronze_ohlcv"))
    universe = synthetic_universe(600)
    rows = 0
    for start, end in [(D(2024, 1, 2), D(2024, 4, 1)), (D(2024, 4, 1), D(2024, 7, 1))]:
        frame = generate_ohlcv(universe, start, end)
        table.replace_window(frame, "date", start, end)
        rows += frame.height

    stats = table.optimize()

    assert stats.partitions_optimized == [2024] and stats.files_added == 1
    (path,) = DeltaTable(table.uri).file_uris()
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_rows == rows > 65_536
    assert parquet.metadata.num_row_groups == -(-rows // 65_536)
    symbols = pl.from_arrow(parquet.read(columns=["symbol"]))
    assert isinstance(symbols, pl.DataFrame) and symbols["symbol"].is_sorted()


def test_lake_table_maintenance_needs_the_table(tmp_path: Path) -> None:
    table = LakeTable(str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="materialise it first"):
        table.optimize()
    with pytest.raises(FileNotFoundError, match="materialise it first"):
        table.vacuum(dry_run=True)


def test_schedule_runs_daily_at_six_utc_with_the_default_config() -> None:
    schedule = lake_maintenance_schedule
    assert schedule.name == "lake_maintenance_schedule"
    assert schedule.job_name == "lake_maintenance"
    assert schedule.cron_schedule == "0 6 * * *"  # minute 0, hour 6, every day
    assert schedule.execution_timezone == "UTC"
    when = dt.datetime(2025, 3, 9, 6, 0, tzinfo=dt.UTC)  # a DST switch day in New York
    tick = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=when))
    (request,) = tick.run_requests or []
    assert request.run_config == {}  # every table, retention 168 h, no dry run
    assert request.tags["dagster/schedule_name"] == "lake_maintenance_schedule"
