"""The warehouse: serving tables `fintrack.<asset_key>` in DuckDB (embedded) or PostgreSQL.

Both back-ends share one contract: a partitioned write deletes the partition window and
bulk-inserts the frame in one transaction (COPY on PostgreSQL); an unpartitioned write
replaces the table in one transaction; the schema and tables are created on demand and new
columns are added. Identifiers are quoted, values are bound, never formatted into SQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import queue
import re
import secrets
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import polars as pl
import psycopg
import pyarrow as pa
from dagster import AssetKey
from polars.io.plugins import register_io_source
from psycopg import sql
from pydantic import Field
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from fintrack_assets.core.calendar import require_within_window
from fintrack_assets.io_managers.context import (
    FrameStream,
    NotMaterialised,
    Rows,
    TableIOManager,
    Window,
)
from fintrack_assets.settings import redact_url

SCHEMA = "fintrack"
PARTITION_SCHEMA = "fintrack_partitions"
_MIN_SLICE_ROWS = 200_000  # below this a slice is not worth a connection of its own
_LOWER_BOUND = re.compile(r"FROM \('(\d{4}-\d{2}-\d{2})")
LOAD_PREFIX = "load_"
"""Staging tables of a PostgreSQL window write: `load_<owner pid>_<token>_<yyyymmdd>` in
`fintrack_partitions`, the owner being the backend of the write's lease connection."""
_LOAD_OWNER = re.compile(rf"{LOAD_PREFIX}(?:(\d+)_)?[0-9a-f]{{8}}_\d{{8}}")

_SQL_TYPES: dict[type[pl.DataType], tuple[str, str]] = {
    # polars type: (DuckDB, PostgreSQL)
    pl.String: ("VARCHAR", "TEXT"),
    pl.Categorical: ("VARCHAR", "TEXT"),
    pl.Int64: ("BIGINT", "BIGINT"),
    pl.Int32: ("INTEGER", "INTEGER"),
    pl.Int16: ("SMALLINT", "SMALLINT"),
    pl.Int8: ("SMALLINT", "SMALLINT"),
    pl.UInt32: ("BIGINT", "BIGINT"),
    pl.Float64: ("DOUBLE", "DOUBLE PRECISION"),
    pl.Float32: ("FLOAT", "REAL"),
    pl.Boolean: ("BOOLEAN", "BOOLEAN"),
    pl.Date: ("DATE", "DATE"),
}


_PG_TYPES: dict[int, pl.DataType] = {
    # PostgreSQL type OID: polars type, for reading back what the writer created.
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    25: pl.String(),
    700: pl.Float32(),
    701: pl.Float64(),
    1043: pl.String(),
    1082: pl.Date(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
}


def partition_name(table: str, day: dt.date) -> str:
    """`<table>__YYYYMMDD`, shortened with a digest to fit PostgreSQL's 63-byte names."""
    name = f"{table}__{day:%Y%m%d}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(table.encode()).hexdigest()[:8]
    head = table.encode()[:40].decode(errors="ignore")
    return f"{head}_{digest}__{day:%Y%m%d}"


def _day_bounds(day: dt.date) -> dict[str, sql.Composable]:
    """[day, day + 1) as literals: partition DDL takes no bound parameters."""
    return {"lo": sql.Literal(day), "hi": sql.Literal(day + dt.timedelta(days=1))}


def sql_type(dtype: pl.DataType, backend: str) -> str:
    which = 0 if backend == "duckdb" else 1
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    for polars_type, names in _SQL_TYPES.items():
        if isinstance(dtype, polars_type):
            return names[which]
    raise TypeError(f"no warehouse column type for polars {dtype}")


READ_BATCH_ROWS = 50_000
"""Rows a streamed read (PostgreSQL's server-side cursor, a scan) holds at a time."""


def _polars(data: pa.Table | pa.RecordBatch) -> pl.DataFrame:
    frame = pl.from_arrow(data)
    assert isinstance(frame, pl.DataFrame)
    return frame


class Warehouse(ABC):
    """One back-end of the warehouse. Windows are [start, end) on a date column."""

    backend: str

    def replace_window(
        self, table: str, frame: pl.DataFrame, column: str, start: dt.date, end: dt.date
    ) -> None:
        """Replaces the rows with start <= `column` < end by `frame`, atomically."""
        self.replace_window_stream(table, [frame], column, start, end, frame.schema)

    @abstractmethod
    def replace_window_stream(
        self,
        table: str,
        frames: Iterable[pl.DataFrame],
        column: str,
        start: dt.date,
        end: dt.date,
        schema: Mapping[str, pl.DataType],
    ) -> None:
        """`replace_window` with the new rows as a stream of frames of `schema`, each written
        as it comes: memory holds a few of them, never the window. Atomic all the same:
        readers see the old window until the last frame is in, and a stream that fails (or a
        process killed) part-way leaves the old window as it was."""

    @abstractmethod
    def replace_table(self, table: str, frame: pl.DataFrame) -> None: ...

    def read(
        self,
        table: str,
        column: str | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        """The rows with start <= `column` < end (every row without a column), `columns` only
        (every column without)."""
        window = None if column is None or start is None or end is None else (start, end)
        return self.select(table, Rows(column or "date", window, columns))

    def select(self, table: str, rows: Rows) -> pl.DataFrame:
        """Raises NotMaterialised when the table does not exist; a window the table holds
        no rows of (a trailing window reaching before the first partition) reads empty."""
        with _materialised(table, *(rows.window or (None, None))):
            return self._fetch(table, rows)

    def scan(self, table: str, rows: Rows) -> pl.LazyFrame:
        """`select` as a LazyFrame. The window and the columns the plan needs go into the SQL;
        the plan's other filters apply to each batch as the rows stream in, so memory holds
        the rows that pass and one batch. The table is checked here, the rows read at
        `collect`. (Polars calls its IO plugins unstable; the tests run this path.)"""
        window = rows.window or (None, None)
        with _materialised(table, *window), closing(self._batches(table, rows)) as batches:
            schema = next(batches).schema

        def source(
            with_columns: list[str] | None,
            predicate: pl.Expr | None,
            n_rows: int | None,
            _batch_size: int | None,
        ) -> Iterator[pl.DataFrame]:
            wanted = replace(rows, columns=with_columns or rows.columns)
            left = n_rows
            with _materialised(table, *window), closing(self._batches(table, wanted)) as batches:
                for batch in batches:
                    kept = batch if predicate is None else batch.filter(predicate)
                    if left is not None:
                        kept = kept.head(left)
                        left -= kept.height
                    yield kept
                    if left == 0:
                        return

        return register_io_source(source, schema=schema)

    @abstractmethod
    def _fetch(self, table: str, rows: Rows) -> pl.DataFrame: ...

    @abstractmethod
    def _batches(self, table: str, rows: Rows) -> Iterator[pl.DataFrame]:
        """The rows in batches, the first one empty: the result's schema."""

    @abstractmethod
    def count(self, table: str) -> int: ...

    def _columns_ddl(self, frame: pl.DataFrame) -> list[tuple[str, str]]:
        return [(name, sql_type(dtype, self.backend)) for name, dtype in frame.schema.items()]


def _q(identifier: str) -> str:
    """A quoted identifier for DuckDB (same rules as the SQL standard)."""
    return '"' + identifier.replace('"', '""') + '"'


@contextmanager
def _materialised(
    table: str, start: dt.date | None = None, end: dt.date | None = None
) -> Iterator[None]:
    """A missing table or schema, in either back-end, is an asset not materialised yet."""
    try:
        yield
    except (duckdb.CatalogException, psycopg.errors.UndefinedTable):
        raise NotMaterialised.reading(table, start, end) from None


STREAM_MEMORY_LIMIT = "512MB"
"""DuckDB's memory limit while a stream is written (replace_window_stream) and while the fraud
features read the look-back (payment_history): its buffer pool otherwise grows to 80 % of RAM."""
LOCK_WAIT_SECONDS = 300.0
"""How long a step waits for another process's DuckDB connection to close."""


def _locked(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def _connect_when_free(path: str) -> duckdb.DuckDBPyConnection:
    """DuckDB lets one process at a time open a database file. Steps of one run execute in
    parallel processes (the UI's multiprocess executor) and each holds the file only for one
    read or write, so a step that finds it locked waits its turn instead of failing."""
    retrying = Retrying(
        retry=retry_if_exception(_locked),
        wait=wait_random_exponential(multiplier=0.05, max=2.0),
        stop=stop_after_delay(LOCK_WAIT_SECONDS),
        reraise=True,
    )
    return retrying(duckdb.connect, path)


class DuckDBWarehouse(Warehouse):
    backend = "duckdb"

    def __init__(self, path: str) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = _connect_when_free(self.path)
        try:
            yield con
        finally:
            con.close()

    def _prepare(self, con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> str:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(SCHEMA)}")
        name = f"{_q(SCHEMA)}.{_q(table)}"
        columns = ", ".join(f"{_q(c)} {t}" for c, t in self._columns_ddl(frame))
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
        existing = {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [SCHEMA, table],
            ).fetchall()
        }
        for column, column_type in self._columns_ddl(frame):
            if column not in existing:
                con.execute(f"ALTER TABLE {name} ADD COLUMN {_q(column)} {column_type}")
        return name

    def _insert(self, con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        arrow_frame = frame.to_arrow()  # noqa: F841 - read by name in the SQL below
        columns = ", ".join(_q(c) for c in frame.columns)
        con.execute(f"INSERT INTO {name} ({columns}) SELECT {columns} FROM arrow_frame")

    def replace_window_stream(
        self,
        table: str,
        frames: Iterable[pl.DataFrame],
        column: str,
        start: dt.date,
        end: dt.date,
        schema: Mapping[str, pl.DataType],
    ) -> None:
        with self._connect() as con:
            # DuckDB's buffer pool otherwise grows to most of the machine's memory while a
            # day's uncommitted rows go in (docs/decisions.md, "Payments at volume").
            con.execute(f"SET memory_limit = '{STREAM_MEMORY_LIMIT}'")
            con.execute("BEGIN TRANSACTION")
            try:
                name = self._prepare(con, table, pl.DataFrame(schema=schema))
                con.execute(
                    f"DELETE FROM {name} WHERE {_q(column)} >= ? AND {_q(column)} < ?",
                    [start, end],
                )
                for frame in frames:
                    require_within_window(frame, column, start, end, f"{SCHEMA}.{table}")
                    self._insert(con, name, frame)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"DROP TABLE IF EXISTS {_q(SCHEMA)}.{_q(table)}")
                name = self._prepare(con, table, frame)
                self._insert(con, name, frame)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _query(self, table: str, rows: Rows) -> tuple[str, list[dt.date]]:
        selected = ", ".join(_q(c) for c in rows.columns) if rows.columns else "*"
        query = f"SELECT {selected} FROM {_q(SCHEMA)}.{_q(table)}"
        if rows.window is None:
            return query, []
        column = _q(rows.column)
        return f"{query} WHERE {column} >= ? AND {column} < ?", list(rows.window)

    def _fetch(self, table: str, rows: Rows) -> pl.DataFrame:
        query, params = self._query(table, rows)
        with self._connect() as con:
            return _polars(con.sql(query, params=params).to_arrow_table())

    def _batches(self, table: str, rows: Rows) -> Iterator[pl.DataFrame]:
        query, params = self._query(table, rows)
        with self._connect() as con:
            reader = con.sql(query, params=params).to_arrow_reader(READ_BATCH_ROWS)
            yield _polars(reader.schema.empty_table())
            for batch in reader:
                yield _polars(batch)

    def count(self, table: str) -> int:
        with self._connect() as con, _materialised(table):
            row = con.execute(f"SELECT count(*) FROM {_q(SCHEMA)}.{_q(table)}").fetchone()
        assert row is not None
        return int(row[0])


class PostgresWarehouse(Warehouse):
    """PostgreSQL: a partitioned asset's table is range-partitioned by day.

    A window write COPYs the new rows into fresh tables, one per day, on several connections
    at once (the server parses COPY on one core per connection), then a single short
    transaction detaches and drops the window's old day partitions and attaches the new ones.
    Readers see the old window or the new one, never a mix, and nothing is deleted row by row.
    Day partitions live in the schema `fintrack_partitions`, out of analysts' way.
    """

    backend = "postgresql"

    def __init__(
        self, url: str, writers: int | None = None, min_slice_rows: int = _MIN_SLICE_ROWS
    ) -> None:
        self.url = url
        self.writers = max(1, writers or min(4, os.cpu_count() or 1))
        self.min_slice_rows = max(1, min_slice_rows)

    def _connect(self, autocommit: bool = False) -> psycopg.Connection:
        """Use as `with`: commits on success, rolls back on error, then closes."""
        try:
            return psycopg.connect(self.url, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            # psycopg's message can carry the DSN; say where without the password.
            raise ConnectionError(
                f"cannot connect to the PostgreSQL warehouse at {redact_url(self.url)}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None

    def _table(self, table: str, schema: str = SCHEMA) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))

    def _prepare(
        self,
        con: psycopg.Connection,
        table: str,
        frame: pl.DataFrame,
        partition_column: str | None = None,
    ) -> None:
        con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
            for c, t in self._columns_ddl(frame)
        )
        partitioning = (
            sql.SQL(" PARTITION BY RANGE ({})").format(sql.Identifier(partition_column))
            if partition_column
            else sql.SQL("")
        )
        con.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}){}").format(
                self._table(table), columns, partitioning
            )
        )
        existing = {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (SCHEMA, table),
            ).fetchall()
        }
        for column, column_type in self._columns_ddl(frame):
            if column not in existing:
                con.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        self._table(table), sql.Identifier(column), sql.SQL(column_type)
                    )
                )

    def _copy(self, con: psycopg.Connection, target: sql.Composable, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, NULL '\\N')").format(
            target, sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
        )
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=False, null_value="\\N", datetime_format=None)
        with con.cursor() as cur, cur.copy(statement) as copy:
            view = buffer.getbuffer()
            for offset in range(0, len(view), 1 << 22):
                copy.write(view[offset : offset + (1 << 22)])

    def _is_partitioned(self, con: psycopg.Connection, table: str) -> bool:
        row = con.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (SCHEMA, table),
        ).fetchone()
        return row is not None and row[0] == "p"

    def replace_window_stream(
        self,
        table: str,
        frames: Iterable[pl.DataFrame],
        column: str,
        start: dt.date,
        end: dt.date,
        schema: Mapping[str, pl.DataType],
    ) -> None:
        where = f"{SCHEMA}.{table}"
        if schema[column] != pl.Date:
            raise TypeError(
                f"partition column {column!r} of {where} must be a date, not {schema[column]}"
            )

        def checked() -> Iterator[pl.DataFrame]:
            for frame in frames:
                require_within_window(frame, column, start, end, where)
                yield frame

        with self._connect() as con:
            self._prepare(con, table, pl.DataFrame(schema=schema), partition_column=column)
            partitioned = self._is_partitioned(con, table)
            if not partitioned:
                # A table created unpartitioned (an asset that gained partitions later): the
                # same contract, by DELETE and COPY in this one transaction.
                con.execute(
                    sql.SQL("DELETE FROM {} WHERE {} >= %s AND {} < %s").format(
                        self._table(table), sql.Identifier(column), sql.Identifier(column)
                    ),
                    (start, end),
                )
                for frame in checked():
                    self._copy(con, self._table(table), frame)
        if partitioned:
            self._swap_window(table, checked(), column, start, end)

    def _swap_window(
        self, table: str, frames: Iterable[pl.DataFrame], column: str, start: dt.date, end: dt.date
    ) -> None:
        token = secrets.token_hex(4)
        loads: dict[dt.date, str] = {}
        try:
            # The lease: open until the swap is done, its backend pid names the load tables.
            with self._connect(autocommit=True) as lease:
                owner = lease.info.backend_pid
                lease.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(PARTITION_SCHEMA)
                    )
                )
                self._drop_dead_loads(lease)

                def load_of(day: dt.date) -> str:
                    if day not in loads:
                        load = f"{LOAD_PREFIX}{owner}_{token}_{day:%Y%m%d}"
                        lease.execute(
                            self._day_sql(
                                "CREATE TABLE {load} (LIKE {parent});"
                                "ALTER TABLE {load} ALTER COLUMN {col} SET NOT NULL, "
                                "ADD CONSTRAINT {check} CHECK ({col} >= {lo} AND {col} < {hi})",
                                table,
                                load,
                                day,
                                col=sql.Identifier(column),
                                check=sql.Identifier(f"{load}_day"),
                            )
                        )
                        loads[day] = load
                    return loads[day]

                self._copy_parallel(frames, column, load_of)
                # Statistics before the day is visible: a fresh table has none, and without
                # them the planner takes a day of a million rows for a few and picks nested
                # loops (the fraud features' pairs join ran for minutes). Autovacuum may be
                # off, and is late after a bulk load anyway. ANALYZE samples ~30,000 rows.
                for load in loads.values():
                    lease.execute(sql.SQL("ANALYZE {}").format(self._table(load, PARTITION_SCHEMA)))
                with self._connect() as con:
                    con.execute(
                        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(self._table(table))
                    )
                    for old, day in self._day_partitions(con, table):
                        if start <= day < end:
                            con.execute(
                                sql.SQL("ALTER TABLE {} DETACH PARTITION {}; DROP TABLE {}").format(
                                    self._table(table), old, old
                                )
                            )
                    for day, load in loads.items():
                        name = partition_name(table, day)
                        con.execute(
                            self._day_sql(
                                "ALTER TABLE {load} RENAME TO {name};"
                                "ALTER TABLE {parent} ATTACH PARTITION {partition} "
                                "FOR VALUES FROM ({lo}) TO ({hi})",
                                table,
                                load,
                                day,
                                name=sql.Identifier(name),
                                partition=self._table(name, PARTITION_SCHEMA),
                            )
                        )
                loads.clear()  # committed: they are partitions now
        finally:
            if loads:
                self._drop_quietly(loads.values())

    def _day_sql(
        self, statement: str, table: str, load: str, day: dt.date, **names: sql.Composable
    ) -> sql.Composed:
        """`statement` on the day's load table: {parent} is `table`, {load} the load table,
        {lo} and {hi} the day's bounds, the rest `names`."""
        return sql.SQL(statement).format(
            parent=self._table(table),
            load=self._table(load, PARTITION_SCHEMA),
            **_day_bounds(day),
            **names,
        )

    def _copy_parallel(
        self, frames: Iterable[pl.DataFrame], column: str, load_of: Callable[[dt.date], str]
    ) -> None:
        """COPYs each day's rows into its load table (`load_of(day)`, called on this thread),
        in slices of at least min_slice_rows spread over the writers' connections as the
        frames come; at most `writers` slices wait or load at once, so memory holds those and
        the frame being sliced."""
        idle: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()
        opened: list[psycopg.Connection] = []
        lock = threading.Lock()

        def copy(load: str, rows: pl.DataFrame) -> None:
            try:
                con = idle.get_nowait()
            except queue.Empty:
                con = self._connect()
                with lock:
                    opened.append(con)
            try:
                self._copy(con, self._table(load, PARTITION_SCHEMA), rows)
                con.commit()
            finally:
                idle.put(con)

        try:
            with ThreadPoolExecutor(max_workers=self.writers) as pool:
                pending: deque[Future[None]] = deque()
                for frame in frames:
                    per_slice = max(self.min_slice_rows, -(-frame.height // self.writers))
                    parts = frame.partition_by(column, as_dict=True, maintain_order=True)
                    for (day,), rows in parts.items():
                        load = load_of(day)
                        for offset in range(0, rows.height, per_slice):
                            while len(pending) >= self.writers:
                                pending.popleft().result()
                            pending.append(pool.submit(copy, load, rows.slice(offset, per_slice)))
                    del parts
                while pending:
                    pending.popleft().result()
        finally:
            for con in opened:
                con.close()

    def _day_partitions(
        self, con: psycopg.Connection, table: str
    ) -> list[tuple[sql.Composed, dt.date]]:
        rows = con.execute(
            "SELECT n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE i.inhparent = %s::regclass",
            (f"{_q(SCHEMA)}.{_q(table)}",),
        ).fetchall()
        found = []
        for schema, name, bound in rows:
            match = _LOWER_BOUND.search(bound or "")
            if match is None:
                raise RuntimeError(f"unexpected partition {name!r} of {SCHEMA}.{table}: {bound}")
            found.append((self._table(name, schema), dt.date.fromisoformat(match.group(1))))
        return found

    def _drop_dead_loads(self, con: psycopg.Connection) -> list[str]:
        """Drops the load tables of writes killed before they could (a killed process runs no
        `finally`), so they do not pile up. A load is dead when the backend its name carries
        is gone: a live write's lease is still connected, so its tables stay. Names without
        an owner predate the lease; at worst dropping one fails a write still running an
        older version, which then keeps its old window and can be rerun."""
        live = {row[0] for row in con.execute("SELECT pid FROM pg_stat_activity").fetchall()}
        names = con.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND starts_with(c.relname, %s)",
            (PARTITION_SCHEMA, LOAD_PREFIX),
        ).fetchall()
        dead = []
        for (name,) in names:
            match = _LOAD_OWNER.fullmatch(name)
            if match is not None and (match.group(1) is None or int(match.group(1)) not in live):
                dead.append(name)
        for name in dead:
            con.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(name, PARTITION_SCHEMA))
            )
        return dead

    def _drop_quietly(self, loads: Iterable[str]) -> None:
        """Drops the load tables of a write that failed; the window keeps its old rows."""
        try:
            with self._connect(autocommit=True) as con:
                for load in loads:
                    con.execute(
                        sql.SQL("DROP TABLE IF EXISTS {}").format(
                            self._table(load, PARTITION_SCHEMA)
                        )
                    )
        except (psycopg.Error, ConnectionError):
            pass  # the write's own error is the one to report

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        with self._connect() as con:
            con.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(table)))
            self._prepare(con, table, frame)
            self._copy(con, self._table(table), frame)

    def _fetch(self, table: str, rows: Rows) -> pl.DataFrame:
        return pl.concat(self._batches(table, rows), rechunk=True)

    def _batches(self, table: str, rows: Rows) -> Iterator[pl.DataFrame]:
        selected = (
            sql.SQL(", ").join(sql.Identifier(c) for c in rows.columns)
            if rows.columns
            else sql.SQL("*")
        )
        query = sql.SQL("SELECT {} FROM {}").format(selected, self._table(table))
        if rows.window is not None:
            column = sql.Identifier(rows.column)
            query = sql.SQL("{} WHERE {} >= %s AND {} < %s").format(query, column, column)
        # A server-side cursor read in batches: a million rows as Python tuples at once would
        # cost ~1 GB, on top of libpq holding the whole result.
        with self._connect() as con, con.cursor(name="fintrack_read") as cur:
            cur.execute(query, rows.window or ())
            schema = {
                d.name: _PG_TYPES.get(d.type_code, pl.String()) for d in cur.description or []
            }
            yield pl.DataFrame(schema=schema)
            while batch := cur.fetchmany(READ_BATCH_ROWS):
                yield pl.DataFrame(batch, schema=schema, orient="row")

    def count(self, table: str) -> int:
        with _materialised(table), self._connect() as con:
            row = con.execute(
                sql.SQL("SELECT count(*) FROM {}").format(self._table(table))
            ).fetchone()
        assert row is not None
        return int(row[0])


def warehouse_for(url: str) -> Warehouse:
    if url.startswith("duckdb:///"):
        return DuckDBWarehouse(url.removeprefix("duckdb:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresWarehouse(url)
    raise ValueError(f"unsupported warehouse URL {redact_url(url)!r}")


class WarehouseIOManager(TableIOManager):
    """Stores polars frames as tables `fintrack.<asset_key>` in DuckDB or PostgreSQL.

    Partitioned assets name their date column with the definition metadata `partition_expr`
    (default `date`)."""

    kind: ClassVar[str] = "warehouse"
    url: str = Field(
        repr=False,
        description="duckdb:///path/file.duckdb or postgresql://user:pass@host:port/db "
        "(FINTRACK_WAREHOUSE_URL).",
    )

    @property
    def warehouse(self) -> Warehouse:
        return warehouse_for(self.url)

    def location(self, key: AssetKey) -> str:
        return f"{SCHEMA}.{_table_name(key)}"

    def store(
        self, key: AssetKey, frame: pl.DataFrame, column: str, window: Window | None
    ) -> dict[str, Any]:
        if window is None:
            self.warehouse.replace_table(_table_name(key), frame)
        else:
            self.warehouse.replace_window(_table_name(key), frame, column, *window)
        return {"warehouse_table": self.location(key), "warehouse": redact_url(self.url)}

    def store_stream(
        self, key: AssetKey, stream: FrameStream, column: str, window: Window
    ) -> dict[str, Any]:
        self.warehouse.replace_window_stream(
            _table_name(key), stream.frames, column, *window, stream.schema
        )
        return {"warehouse_table": self.location(key), "warehouse": redact_url(self.url)}

    def read(self, key: AssetKey, rows: Rows) -> pl.DataFrame:
        return self.warehouse.select(_table_name(key), rows)

    def scan(self, key: AssetKey, rows: Rows) -> pl.LazyFrame:
        return self.warehouse.scan(_table_name(key), rows)

    def previous(self, table: str) -> pl.DataFrame | None:
        """The table as last written, or None before its first write (for self-caching)."""
        try:
            return self.warehouse.read(table)
        except NotMaterialised:
            return None


def _table_name(key: AssetKey) -> str:
    return "__".join(key.path)
