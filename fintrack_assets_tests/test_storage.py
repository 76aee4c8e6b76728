"""The lake (local and S3) and the warehouse (DuckDB and PostgreSQL) keep one contract."""

import datetime as dt

import polars as pl
import pytest

from fintrack_assets.io_managers.lake import LakeTable
from fintrack_assets.io_managers.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

D = dt.date


def days_frame(days: list[dt.date], symbols: list[str], value: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame(
        [{"symbol": s, "date": d, "close": value, "note": None} for d in days for s in symbols],
        schema={"symbol": pl.String, "date": pl.Date, "close": pl.Float64, "note": pl.String},
    )


JAN = [D(2025, 1, 2), D(2025, 1, 3), D(2025, 1, 6), D(2025, 1, 7)]
DEC = [D(2024, 12, 30), D(2024, 12, 31)]


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path) -> LakeTable:
    if request.param == "local":
        return LakeTable(str(tmp_path / "lake" / "raw_ohlcv"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return LakeTable(
        f"s3://{bucket}/lake/raw_ohlcv",
        {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"},
    )


def test_lake_replaces_exactly_the_window(lake):
    lake.replace_window(days_frame(DEC + JAN, ["A", "B"]), "date", D(2024, 12, 30), D(2025, 1, 8))
    lake.replace_window(
        days_frame([D(2025, 1, 3)], ["A"], 9.0), "date", D(2025, 1, 3), D(2025, 1, 4)
    )
    table = lake.read_window()
    assert table.height == 11
    by_day = dict(table.group_by("date").agg(pl.col("close").sum()).rows())
    assert by_day[D(2025, 1, 3)] == 9.0
    assert by_day[D(2025, 1, 2)] == 2.0 and by_day[D(2024, 12, 30)] == 2.0


def test_lake_rerun_never_duplicates_and_loads_exactly_the_range(lake):
    data = days_frame(DEC + JAN, ["A", "B", "C"])
    for _ in range(3):
        lake.replace_window(data, "date", D(2024, 12, 30), D(2025, 1, 8))
    assert lake.read_window().height == 18
    window = lake.read_window("date", D(2024, 12, 31), D(2025, 1, 6))
    assert sorted(window["date"].unique()) == [D(2024, 12, 31), D(2025, 1, 2), D(2025, 1, 3)]
    assert window.height == 9
    assert "year" not in window.columns


def test_lake_empty_window_clears_it(lake):
    lake.replace_window(days_frame(JAN, ["A"]), "date", D(2025, 1, 2), D(2025, 1, 8))
    lake.replace_window(days_frame([], ["A"]), "date", D(2025, 1, 3), D(2025, 1, 7))
    assert sorted(lake.read_window()["date"]) == [D(2025, 1, 2), D(2025, 1, 7)]


def test_lake_refuses_rows_outside_the_window(lake):
    with pytest.raises(ValueError, match="outside the partition window"):
        lake.replace_window(days_frame(JAN, ["A"]), "date", D(2025, 1, 2), D(2025, 1, 3))
    assert not lake.exists()


def test_lake_missing_table_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialise it first"):
        LakeTable(str(tmp_path / "nothing")).read_window()


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request, tmp_path) -> Warehouse:
    if request.param == "duckdb":
        return DuckDBWarehouse(str(tmp_path / "warehouse.duckdb"))
    return PostgresWarehouse(request.getfixturevalue("postgres_url"))


def test_warehouse_window_replace_and_rerun(warehouse):
    for _ in range(2):
        warehouse.replace_window(
            "holdings", days_frame(JAN, ["A", "B"]), "date", D(2025, 1, 2), D(2025, 1, 8)
        )
    warehouse.replace_window(
        "holdings", days_frame([D(2025, 1, 6)], ["A"], 5.0), "date", D(2025, 1, 6), D(2025, 1, 7)
    )
    assert warehouse.count("holdings") == 7
    window = warehouse.read("holdings", "date", D(2025, 1, 6), D(2025, 1, 7))
    assert window.select("symbol", "close").rows() == [("A", 5.0)]
    assert window.schema["date"] == pl.Date and window.schema["note"] == pl.String


def test_warehouse_unpartitioned_replaces_the_table(warehouse):
    warehouse.replace_table("symbol_universe", days_frame(JAN, ["A", "B"]))
    warehouse.replace_table("symbol_universe", days_frame(JAN[:1], ["C"]))
    assert warehouse.read("symbol_universe")["symbol"].to_list() == ["C"]


def test_warehouse_adds_new_columns(warehouse):
    warehouse.replace_window("t", days_frame(JAN[:1], ["A"]), "date", D(2025, 1, 2), D(2025, 1, 3))
    wider = days_frame(JAN[1:2], ["A"]).with_columns(pl.lit(3).cast(pl.Int64).alias("extra"))
    warehouse.replace_window("t", wider, "date", D(2025, 1, 3), D(2025, 1, 4))
    assert warehouse.read("t").sort("date")["extra"].to_list() == [None, 3]


def test_warehouse_values_are_bound_and_identifiers_quoted(warehouse):
    hostile = "x'); DROP TABLE fintrack.t; --"
    data = days_frame(JAN[:1], [hostile]).with_columns(pl.lit('quote " and \\ back').alias("note"))
    warehouse.replace_window('we"ird', data, "date", D(2025, 1, 2), D(2025, 1, 3))
    back = warehouse.read('we"ird')
    assert back.select("symbol", "note").rows() == [(hostile, 'quote " and \\ back')]


def test_warehouse_failed_write_leaves_the_partition_as_it_was(warehouse):
    warehouse.replace_window("t", days_frame(JAN, ["A"]), "date", D(2025, 1, 2), D(2025, 1, 8))
    bad = days_frame(JAN[:1], ["A"]).with_columns(pl.lit("not a number").alias("close"))
    with pytest.raises(Exception):  # noqa: B017 - either back-end's type error
        warehouse.replace_window("t", bad, "date", D(2025, 1, 2), D(2025, 1, 8))
    assert warehouse.count("t") == 4
