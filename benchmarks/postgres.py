"""PostgreSQL partition write: `PostgresWarehouse.replace_window` against `executemany`.

Runs in a throwaway database `fintrack_bench_<random>`, created and dropped here. Import this
module only after `harness.configure_environment` (fintrack_assets reads settings on import).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from benchmarks.common import Outcome, Row, VerificationError, log, verdict
from fintrack_assets.core.universe import synthetic_universe
from fintrack_assets.io_managers.warehouse import PostgresWarehouse, sql_type

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NAME = "postgres_partition_write_1m"
TABLE = "portfolio_holdings"
BASELINE_TABLE = "baseline_holdings"
DAY = dt.date(2025, 10, 3)
POSITIONS_PER_PORTFOLIO = 50
TARGET_SECONDS = 3.0


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        return urlunsplit(parts._replace(path=f"/{database}"))
    return psycopg.conninfo.make_conninfo(url, dbname=database)


@contextmanager
def throwaway_database(base_url: str, workload: str = NAME) -> Iterator[str]:
    """A fresh database on the server of `base_url`; yields its URL, drops it afterwards
    (logged under `workload`)."""
    admin_url = with_database(base_url, "postgres")
    name = f"fintrack_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(base_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        log(f"{workload}: dropped database {name}")


def holdings_frame(rows: int, day: dt.date = DAY) -> pl.DataFrame:
    """Portfolio holdings on one date: 50 distinct symbols per portfolio, seeded."""
    rng = np.random.default_rng(20251003)
    symbols = synthetic_universe(5400)["symbol"]
    index = np.arange(rows)
    portfolio = index // POSITIONS_PER_PORTFOLIO
    # 101 * 50 < 5,400, so a portfolio's 50 offsets never collide.
    symbol_index = (portfolio * 7919 + (index % POSITIONS_PER_PORTFOLIO) * 101) % symbols.len()
    quantity = rng.integers(1, 2_000, rows).astype(np.float64)
    avg_cost = np.round(rng.uniform(5.0, 500.0, rows), 4)
    close = np.round(avg_cost * np.exp(rng.normal(0.0, 0.2, rows)), 2)
    return (
        pl.DataFrame(
            {
                "portfolio": portfolio,
                "symbol": symbols.gather(symbol_index),
                "quantity": quantity,
                "avg_cost": avg_cost,
                "close": close,
            }
        )
        .with_columns(
            pl.lit(day).alias("date"),
            pl.format("P{}", pl.col("portfolio").cast(pl.String).str.zfill(7)).alias(
                "portfolio_id"
            ),
            (pl.col("quantity") * pl.col("avg_cost")).alias("cost_basis"),
            (pl.col("quantity") * pl.col("close")).alias("market_value"),
        )
        .with_columns(
            (pl.col("market_value") - pl.col("cost_basis")).alias("unrealized_pnl"),
            (pl.col("market_value") / pl.col("market_value").sum().over("portfolio")).alias(
                "weight"
            ),
            pl.lit("USD").alias("currency"),
        )
        .select(
            "date",
            "portfolio_id",
            "symbol",
            "quantity",
            "avg_cost",
            "close",
            "cost_basis",
            "market_value",
            "unrealized_pnl",
            "weight",
            "currency",
        )
    )


def executemany_rows_per_second(url: str, sample: pl.DataFrame) -> tuple[float, float]:
    """(rows/s, seconds) of a row-by-row INSERT of `sample` into its own table, committed."""
    columns = [(name, sql_type(dtype, "postgresql")) for name, dtype in sample.schema.items()]
    table = sql.Identifier(BASELINE_TABLE)
    create = sql.SQL("CREATE TABLE {} ({})").format(
        table,
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns
        ),
    )
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        table,
        sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    rows = sample.rows()
    with psycopg.connect(url) as con:
        con.execute(create)
        con.commit()
        started = time.perf_counter()
        with con.cursor() as cur:
            cur.executemany(insert, rows)
        con.commit()
        seconds = time.perf_counter() - started
        count = con.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    if count is None or count[0] != len(rows):
        raise VerificationError(f"{NAME}: baseline table holds {count}, expected {len(rows):,}")
    return len(rows) / seconds, seconds


def csv_encode_seconds(frame: pl.DataFrame) -> tuple[float, int]:
    """(seconds, bytes) of the CSV encoding the writer does before COPY, alone."""
    buffer = io.BytesIO()
    started = time.perf_counter()
    frame.write_csv(buffer, include_header=False, null_value="\\N", datetime_format=None)
    return time.perf_counter() - started, buffer.tell()


def partition_write(quick: bool) -> Outcome:
    rows = 100_000 if quick else 1_000_000
    sample_rows = 2_000 if quick else 20_000
    base_url = os.environ.get("FINTRACK_TEST_POSTGRES_URL") or DEFAULT_URL
    frame = holdings_frame(rows)
    size = f"{rows:,} rows x {frame.width} cols (1 date)"
    results: list[tuple[str, float]] = []
    with throwaway_database(base_url) as url:
        log(f"{NAME}: baseline executemany of {sample_rows:,} rows ...")
        baseline_rate, baseline_seconds = executemany_rows_per_second(url, frame.head(sample_rows))
        log(f"{NAME}: baseline {baseline_rate:,.0f} rows/s ({baseline_seconds:.2f} s)")
        warehouse = PostgresWarehouse(url)
        for label in ("first write", "re-run, replaces the partition"):
            started = time.perf_counter()
            warehouse.replace_window(TABLE, frame, "date", DAY, DAY + dt.timedelta(days=1))
            seconds = time.perf_counter() - started
            count = warehouse.count(TABLE)
            log(f"{NAME} ({label}): {seconds:.2f} s, table holds {count:,} rows")
            if count != rows:
                raise VerificationError(
                    f"{NAME} ({label}): table holds {count:,} rows, expected {rows:,}"
                )
            results.append((label, seconds))
        single = PostgresWarehouse(url, writers=1)
        started = time.perf_counter()
        single.replace_window(TABLE, frame, "date", DAY, DAY + dt.timedelta(days=1))
        one_writer = time.perf_counter() - started
        log(f"{NAME} (one writer, for comparison): {one_writer:.2f} s")
    encoding, csv_bytes = csv_encode_seconds(frame)
    notes = [
        f"{NAME}: measured apart: CSV encoding {encoding:.2f} s ({csv_bytes / 1e6:,.0f} MB); "
        f"the same re-run on one connection instead of {warehouse.writers}: {one_writer:.2f} s",
        f"{NAME}: baseline executemany of {sample_rows:,} rows in {baseline_seconds:.2f} s, "
        f"~{rows / baseline_rate:.0f} s extrapolated to {rows:,}",
    ]
    baseline_cell = f"{baseline_rate:,.0f} rows/s (executemany, {sample_rows:,}-row sample)"
    table_rows = [
        Row(
            f"{NAME} ({label})",
            size,
            seconds,
            rows,
            baseline_cell,
            f"{rows / seconds / baseline_rate:.1f}x faster",
            f"<= {TARGET_SECONDS:g} s",
            verdict(seconds, TARGET_SECONDS),
        )
        for label, seconds in results
    ]
    return Outcome(table_rows, notes)
