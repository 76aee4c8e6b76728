"""The lake (local and S3) and the warehouse (DuckDB and PostgreSQL) keep one contract."""

import datetime as dt

import polars as pl
import psycopg
import pytest

from fintrack_assets.io_managers import warehouse as warehouse_module
from fintrack_assets.io_managers.context import NotMaterialised, Rows
from fintrack_assets.io_managers.lake import LakeTable
from fintrack_assets.io_managers.warehouse import (
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    partition_name,
)

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
    with pytest.raises(NotMaterialised, match=r"^nothing has not been materialised yet: "):
        LakeTable(str(tmp_path / "nothing")).read_window()


def _ranked(days: list[dt.date], symbols: list[str]) -> pl.DataFrame:
    """close = the day of the month + 0.1 x the symbol's rank (1, 2, ...)."""
    return days_frame(days, symbols).with_columns(
        (pl.col("date").dt.day() + 0.1 * (pl.col("symbol").rank("dense"))).alias("close")
    )


def test_lake_scan_reads_the_window_through_the_filter_it_is_given(lake):
    lake.replace_window(_ranked(DEC + JAN, ["A", "B", "C"]), "date", D(2024, 12, 30), D(2025, 1, 8))
    scan = lake.scan("date", (D(2024, 12, 31), D(2025, 1, 6)), ["date", "symbol", "close"])
    kept = scan.filter(pl.col("symbol").is_in(["A", "C"])).collect().sort("date", "symbol")
    assert kept.columns == ["date", "symbol", "close"]
    assert kept.rows() == [
        (D(2024, 12, 31), "A", 31.1),
        (D(2024, 12, 31), "C", 31.3),
        (D(2025, 1, 2), "A", 2.1),
        (D(2025, 1, 2), "C", 2.3),
        (D(2025, 1, 3), "A", 3.1),
        (D(2025, 1, 3), "C", 3.3),
    ]
    assert "year" not in lake.scan("date", None, None).collect_schema().names()


def test_lake_scan_of_a_missing_table_fails_before_collect(tmp_path):
    with pytest.raises(NotMaterialised, match=r"--select nothing --partition 2025-01-03\)$"):
        LakeTable(str(tmp_path / "nothing")).scan("date", (D(2025, 1, 2), D(2025, 1, 4)), None)


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
    narrow = warehouse.read("holdings", "date", D(2025, 1, 6), D(2025, 1, 7), ["close", "symbol"])
    assert narrow.columns == ["close", "symbol"] and narrow.rows() == [(5.0, "A")]


def test_warehouse_scan_filters_each_batch_as_the_window_streams_in(warehouse, monkeypatch):
    monkeypatch.setattr(warehouse_module, "READ_BATCH_ROWS", 2)  # the window in five batches
    data = _ranked(JAN, ["A", "B", "C"])
    warehouse.replace_window("holdings", data, "date", D(2025, 1, 2), D(2025, 1, 8))
    scan = warehouse.scan("holdings", Rows("date", (D(2025, 1, 3), D(2025, 1, 7))))
    assert scan.collect_schema().names() == ["symbol", "date", "close", "note"]
    kept = scan.filter(pl.col("symbol") == "B").select("date", "close").collect()
    assert kept.sort("date").rows() == [(D(2025, 1, 3), 3.2), (D(2025, 1, 6), 6.2)]
    assert scan.collect().height == 6
    assert scan.head(3).collect().height == 3
    narrow = warehouse.scan("holdings", Rows(columns=["close"])).collect()
    assert narrow.columns == ["close"] and narrow.height == 12


def test_warehouse_scan_of_a_missing_table_fails_before_collect(warehouse):
    with pytest.raises(NotMaterialised, match=r"^nothing has not been materialised yet: "):
        warehouse.scan("nothing", Rows("date", (D(2025, 1, 2), D(2025, 1, 3))))


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


def test_warehouse_refuses_rows_outside_the_window(warehouse):
    warehouse.replace_window("t", days_frame(JAN, ["A"]), "date", D(2025, 1, 2), D(2025, 1, 8))
    stray = days_frame([D(2025, 1, 2), D(2025, 1, 9)], ["A"])
    with pytest.raises(ValueError, match=r"1 row\(s\) of fintrack.t fall outside"):
        warehouse.replace_window("t", stray, "date", D(2025, 1, 2), D(2025, 1, 8))
    assert warehouse.count("t") == 4


def test_warehouse_empty_window_clears_it(warehouse):
    warehouse.replace_window("t", days_frame(JAN, ["A"]), "date", D(2025, 1, 2), D(2025, 1, 8))
    warehouse.replace_window("t", days_frame([], ["A"]), "date", D(2025, 1, 3), D(2025, 1, 7))
    assert sorted(warehouse.read("t")["date"].to_list()) == [D(2025, 1, 2), D(2025, 1, 7)]


def test_warehouse_stream_writes_every_chunk_or_nothing(warehouse):
    schema = days_frame([], ["A"]).schema
    warehouse.replace_window("t", days_frame(JAN, ["A"]), "date", D(2025, 1, 2), D(2025, 1, 8))
    chunks = [days_frame(JAN[:2], ["B", "C"], 2.0), days_frame(JAN[1:3], ["D"], 3.0)]

    def failing():
        yield from chunks
        raise RuntimeError("killed mid-stream")

    with pytest.raises(RuntimeError, match="mid-stream"):
        warehouse.replace_window_stream("t", failing(), "date", JAN[0], D(2025, 1, 8), schema)
    assert warehouse.read("t").select("symbol", "close").rows() == [("A", 1.0)] * 4
    warehouse.replace_window_stream("t", iter(chunks), "date", JAN[0], D(2025, 1, 8), schema)
    back = sorted(warehouse.read("t").select("date", "symbol", "close").rows())
    assert back == [
        (JAN[0], "B", 2.0),
        (JAN[0], "C", 2.0),
        (JAN[1], "B", 2.0),
        (JAN[1], "C", 2.0),
        (JAN[1], "D", 3.0),
        (JAN[2], "D", 3.0),
    ]


# PostgreSQL specifics: day partitions swapped in one transaction, loaded on several connections.


def _partitions(url: str, table: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as con:
        return con.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY 1",
            (f"fintrack.{table}",),
        ).fetchall()


def _tables_in(url: str, schema: str) -> list[str]:
    with psycopg.connect(url) as con:
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
            (schema,),
        ).fetchall()
    return [row[0] for row in rows]


def test_postgres_window_is_one_partition_per_day(postgres_url):
    warehouse = PostgresWarehouse(postgres_url)
    warehouse.replace_window("h", days_frame(JAN, ["A", "B"]), "date", D(2025, 1, 2), D(2025, 1, 8))
    warehouse.replace_window(
        "h", days_frame([D(2025, 1, 3)], ["C"], 9.0), "date", D(2025, 1, 3), D(2025, 1, 4)
    )
    assert _partitions(postgres_url, "h") == [
        ("h__20250102", "FOR VALUES FROM ('2025-01-02') TO ('2025-01-03')"),
        ("h__20250103", "FOR VALUES FROM ('2025-01-03') TO ('2025-01-04')"),
        ("h__20250106", "FOR VALUES FROM ('2025-01-06') TO ('2025-01-07')"),
        ("h__20250107", "FOR VALUES FROM ('2025-01-07') TO ('2025-01-08')"),
    ]
    assert _tables_in(postgres_url, "fintrack") == ["h"]
    day = warehouse.read("h", "date", D(2025, 1, 3), D(2025, 1, 4))
    assert day.select("symbol", "close").rows() == [("C", 9.0)]
    assert warehouse.count("h") == 7


def test_postgres_day_partitions_arrive_with_statistics(postgres_url):
    # Without them the planner takes a fresh day for a few rows (autovacuum may be off).
    warehouse = PostgresWarehouse(postgres_url)
    symbols = [f"S{k:03d}" for k in range(150)]
    warehouse.replace_window("h", days_frame(JAN[:2], symbols), "date", JAN[0], JAN[2])
    with psycopg.connect(postgres_url) as con:
        analysed = con.execute(
            "SELECT c.relname, c.reltuples, s.last_analyze IS NOT NULL FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE i.inhparent = 'fintrack.h'::regclass ORDER BY 1"
        ).fetchall()
    assert analysed == [("h__20250102", 150.0, True), ("h__20250103", 150.0, True)]


def test_postgres_slices_spread_over_writers_load_every_row_once(postgres_url):
    frame = pl.DataFrame(
        {
            "date": [D(2025, 1, 2)] * 7 + [D(2025, 1, 3)] * 2,
            "symbol": [f"S{i}" for i in range(9)],
            "close": [float(i) for i in range(9)],
        }
    )
    warehouse = PostgresWarehouse(postgres_url, writers=3, min_slice_rows=2)
    for _ in range(2):
        warehouse.replace_window("w", frame, "date", D(2025, 1, 2), D(2025, 1, 6))
    back = warehouse.read("w").sort("symbol")
    assert back.rows() == [
        (D(2025, 1, 2) if i < 7 else D(2025, 1, 3), f"S{i}", float(i)) for i in range(9)
    ]
    assert _tables_in(postgres_url, "fintrack_partitions") == ["w__20250102", "w__20250103"]


def test_postgres_failed_slice_leaves_the_window_and_no_load_tables(postgres_url):
    warehouse = PostgresWarehouse(postgres_url, writers=2, min_slice_rows=1)
    warehouse.replace_window("t", days_frame(JAN, ["A"]), "date", D(2025, 1, 2), D(2025, 1, 8))
    bad = days_frame(JAN, ["A", "B"]).with_columns(
        pl.when(pl.col("symbol") == "B").then(pl.lit("oops")).otherwise(pl.lit("1")).alias("close")
    )
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        warehouse.replace_window("t", bad, "date", D(2025, 1, 2), D(2025, 1, 8))
    assert warehouse.read("t").select("symbol", "close").rows() == [("A", 1.0)] * 4
    assert all(
        not name.startswith("load_") for name in _tables_in(postgres_url, "fintrack_partitions")
    )


def test_postgres_table_created_unpartitioned_keeps_the_contract(postgres_url):
    warehouse = PostgresWarehouse(postgres_url)
    warehouse.replace_table("t", days_frame(JAN, ["A"]))
    warehouse.replace_window(
        "t", days_frame([D(2025, 1, 3)], ["B"]), "date", D(2025, 1, 3), D(2025, 1, 7)
    )
    assert sorted(warehouse.read("t").select("date", "symbol").rows()) == [
        (D(2025, 1, 2), "A"),
        (D(2025, 1, 3), "B"),
        (D(2025, 1, 7), "A"),
    ]


def test_partition_names_fit_postgres_and_stay_distinct():
    long_a, long_b = "a" * 70 + "_x", "a" * 70 + "_y"
    names = {partition_name(t, D(2025, 1, 2)) for t in (long_a, long_b)}
    assert len(names) == 2
    assert all(len(n.encode()) <= 63 and n.endswith("__20250102") for n in names)
    assert partition_name("holdings_daily", D(2025, 1, 2)) == "holdings_daily__20250102"


LOCK_HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
con.close()
print("released", flush=True)
sys.stdin.readline()
"""


def test_duckdb_waits_for_another_process_to_release_the_file(tmp_path, monkeypatch):
    """The UI runs steps in parallel processes; DuckDB allows one process per file."""
    import subprocess
    import sys
    import threading

    import duckdb

    from fintrack_assets.io_managers import warehouse as module
    from fintrack_assets.io_managers.warehouse import DuckDBWarehouse

    refused = threading.Event()
    real_connect = duckdb.connect

    def connect(*args, **kwargs):
        try:
            return real_connect(*args, **kwargs)
        except duckdb.IOException:
            refused.set()
            raise

    monkeypatch.setattr(module.duckdb, "connect", connect)

    path = str(tmp_path / "w.duckdb")
    warehouse = DuckDBWarehouse(path)
    warehouse.replace_table("t", pl.DataFrame({"x": [1, 2]}))
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    result: list[pl.DataFrame] = []
    reader = threading.Thread(target=lambda: result.append(warehouse.read("t")))
    reader.start()
    assert refused.wait(timeout=30)  # the read found the file locked, and waits
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    reader.join(timeout=60)
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=10)
    assert result and result[0]["x"].to_list() == [1, 2]
