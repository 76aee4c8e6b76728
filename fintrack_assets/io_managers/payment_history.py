"""The reads the fraud features make of `payment_transactions`, answered by the warehouse in
compact form: a day's rows for one shard of accounts, per-account totals over many days, and
the (account, merchant) pairs of a day already seen before it. The look-back is never read
row by row (core/fraud_features.HistoryPlan says which days are).

Shards split accounts by a hash the warehouse computes (DuckDB `hash`, PostgreSQL
`hashtext`), so shard k of every read holds the same accounts, and a feature, which is per
account, never depends on the shard count. PostgreSQL answers through `COPY (query) TO
STDOUT` in CSV, which polars parses in C: a psycopg row fetch costs ~10 s per million rows.
Values are bound (DuckDB) or quoted by psycopg.sql.Literal (PostgreSQL's COPY takes no
parameters); they are dates and integers the code computed, never user text.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import polars as pl
import psycopg
from psycopg import sql

from fintrack_assets.core.fraud_features import (
    SUMMARY_SCHEMA,
    HistoryPlan,
    history_plan,
    summarised_features,
)
from fintrack_assets.core.payments import PAYMENT_SCHEMA
from fintrack_assets.io_managers.context import NotMaterialised
from fintrack_assets.io_managers.warehouse import (
    SCHEMA,
    STREAM_MEMORY_LIMIT,
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    _materialised,
    _polars,
    _q,
)

TABLE = "payment_transactions"
Shard = tuple[int, int]
"""(k, shards): the accounts whose hash is k modulo shards; (0, 1) is every account."""
HISTORY_COLUMNS = ("account_id", "ts", "amount", "merchant")
"""What the features read of the raw days."""
WORK_MEM = "256MB"
"""PostgreSQL's per-operation memory for the group-by and the pairs join (the default 4 MB
spills them to disk)."""
SPILL_ROWS = 500_000
"""Rows of a day read at a time when splitting it into shard files."""
SPILL_BYTES = 64 << 20
"""PostgreSQL's CSV stream is parsed this many bytes (cut at a line end) at a time."""
JIT_OFF = ("jit_inline_above_cost", "jit_optimize_above_cost")
"""PostgreSQL JIT-compiles these scans' expressions, which pays, but inlining and optimising
the code took ~7.5 s of a 19 s month aggregate (2026-12-07, docs/decisions.md)."""


class LookBack(NamedTuple):
    """What a day's features need of its look-back beyond the raw days, for its accounts."""

    summary: pl.DataFrame
    """SUMMARY_SCHEMA: per account, the totals over the plan's full days."""
    seen: pl.DataFrame
    """`account_id, merchant`: the day's pairs that occur in the plan's `merchants` days."""


class Spill:
    """A day's rows and its plan's raw days, split once into one folder of Parquet files per
    shard (PaymentHistory.split), so a shard reads its own files instead of the warehouse
    scanning the day again for each shard."""

    def __init__(self, directory: Path, shards: int) -> None:
        self.directory = directory
        self.shards = shards

    def read(self, part: str, shard: int, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
        """`part` ("today" or "raw") of shard `shard`, as `schema` (`ts` a UTC datetime)."""
        folder = self.directory / part / str(shard)
        files = sorted(folder.glob("*.parquet")) if folder.exists() else []
        wire = {c: pl.Int64() if c == "ts" else t for c, t in schema.items()}
        if not files:
            frame = pl.DataFrame(schema=wire)
        else:
            frame = pl.concat([pl.read_parquet(f, columns=list(schema)) for f in files])
        return frame.select(
            pl.col(c).cast(pl.Datetime("us", "UTC") if c == "ts" else t) for c, t in schema.items()
        )


class PaymentHistory:
    """Reads of a warehouse's `payment_transactions` for the fraud features."""

    def __init__(self, warehouse: Warehouse, table: str = TABLE) -> None:
        if not isinstance(warehouse, DuckDBWarehouse | PostgresWarehouse):
            raise TypeError(f"no payment history reads for {type(warehouse).__name__}")
        self.warehouse = warehouse
        self.table = table

    def look_back(self, day: dt.date, history_days: int) -> LookBack:
        """The totals and the pairs seen for every account of `day`: one scan of the
        look-back each, whatever the shard count. Their size is bounded by the accounts
        and the day's pairs, not by the rows behind them."""
        plan = history_plan(day, history_days)
        return LookBack(self.summary(plan), self.seen(plan))

    def features(
        self,
        day: dt.date,
        history_days: int,
        shard: Shard = (0, 1),
        look_back: LookBack | None = None,
        spill: Spill | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(the stored payments of `day` of the shard's accounts, their features): the day's
        rows, its plan's raw days (four columns), the totals and the pairs seen (`look_back`,
        read here when not given; accounts of other shards in it are ignored), and
        summarised_features over them. With `spill` (split for the same shard count) the
        rows come from its files, not from the warehouse."""
        plan = history_plan(day, history_days)
        raw_schema = {c: PAYMENT_SCHEMA[c] for c in HISTORY_COLUMNS}
        if spill is not None:
            if spill.shards != shard[1]:
                raise ValueError(f"the spill has {spill.shards} shards, not {shard[1]}")
            today = spill.read("today", shard[0], PAYMENT_SCHEMA)
            raw = spill.read("raw", shard[0], raw_schema)
        else:
            today = self.rows([day], PAYMENT_SCHEMA, shard)
            raw = self.rows(plan.raw_days, raw_schema, shard)
        if look_back is None:
            look_back = LookBack(self.summary(plan, shard), self.seen(plan, shard))
        elif shard[1] > 1:
            # The day's look-back of every shard (a 10M day: millions of pairs) would be
            # copied and hashed again by each shard's joins: only this shard's accounts.
            accounts = today["account_id"].unique().implode()
            look_back = LookBack(
                *(part.filter(pl.col("account_id").is_in(accounts)) for part in look_back)
            )
        return today, summarised_features(
            today, raw, look_back.summary, look_back.seen, history_days
        )

    def split(self, day: dt.date, history_days: int, shards: int, directory: Path) -> Spill:
        """Reads `day`'s rows and its plan's raw days once each, in batches, and writes them
        into `directory` as one folder of Parquet files per shard (the shard the warehouse's
        hash gives, as in `rows`): memory holds a batch, and a shard then reads only its
        files."""
        plan = history_plan(day, history_days)
        raw_schema = {c: PAYMENT_SCHEMA[c] for c in HISTORY_COLUMNS}
        for part, days, schema in (
            ("today", [day], PAYMENT_SCHEMA),
            ("raw", list(plan.raw_days), raw_schema),
        ):
            columns = ", ".join("{ts_us} AS ts" if c == "ts" else _q(c) for c in schema)
            query = f"SELECT {columns}, {{shard_of}} AS _shard FROM {{t}} WHERE {_days(days)}"  # noqa: S608
            wire = {c: pl.Int64() if c == "ts" else t for c, t in schema.items()}
            wire["_shard"] = pl.Int64()
            batches = self._batches(query, wire, _day_params(days), (0, shards))
            for n, batch in enumerate(batches):
                for (k,), piece in batch.partition_by("_shard", as_dict=True).items():
                    folder = directory / part / str(k)
                    folder.mkdir(parents=True, exist_ok=True)
                    piece.drop("_shard").write_parquet(folder / f"{n:06d}.parquet")
        return Spill(directory, shards)

    def day_counts(self, days: Sequence[dt.date]) -> dict[dt.date, int]:
        """Rows stored per day, for the days given (a day without rows is absent)."""
        # A template: its {names} are bound or Literal-quoted in _batches, never formatted here.
        query = f"SELECT date, count(*) AS n FROM {{t}} WHERE {_days(days)} GROUP BY date"  # noqa: S608
        schema = {"date": pl.Date(), "n": pl.Int64()}
        frame = _collect(self._batches(query, schema, _day_params(days)), schema)
        return dict(frame.iter_rows())

    def rows(
        self,
        days: Sequence[dt.date],
        schema: Mapping[str, pl.DataType],
        shard: Shard = (0, 1),
    ) -> pl.DataFrame:
        """The rows of `days` of the shard's accounts, the columns of `schema` (its `ts` a UTC
        datetime, read as epoch microseconds)."""
        columns = ", ".join("{ts_us} AS ts" if c == "ts" else _q(c) for c in schema)
        query = f"SELECT {columns} FROM {{t}} WHERE {_days(days)}{{shard}}"  # noqa: S608
        wire = {c: pl.Int64() if c == "ts" else t for c, t in schema.items()}
        frame = _collect(self._batches(query, wire, _day_params(days), shard), wire)
        if "ts" in schema:
            frame = frame.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
        return frame

    def summary(self, plan: HistoryPlan, shard: Shard = (0, 1)) -> pl.DataFrame:
        """SUMMARY_SCHEMA: each account's count and sum over `week`, and count, sum and sum of
        squares over `week` and `month` together; one row per account with rows there."""
        query = (
            "SELECT account_id, count(*) FILTER (WHERE {week}) AS n_week, "
            "coalesce(sum(amount) FILTER (WHERE {week}), 0) AS sum_week, "
            "count(*) AS n_month, sum(amount) AS sum_month, "
            "sum(amount * amount) AS sumsq_month "
            "FROM {t} WHERE (({week}) OR (date >= {m0} AND date < {m1})){shard} "
            "GROUP BY account_id"
        ).replace("{week}", "date >= {w0} AND date < {w1}")
        params = {"w0": plan.week[0], "w1": plan.week[1], "m0": plan.month[0], "m1": plan.month[1]}
        return _collect(self._batches(query, SUMMARY_SCHEMA, params, shard), SUMMARY_SCHEMA)

    def seen(self, plan: HistoryPlan, shard: Shard = (0, 1)) -> pl.DataFrame:
        """`account_id, merchant`: the pairs of `plan.day`'s payments (the shard's accounts)
        that occur in `plan.merchants`. A semi-join in the warehouse: the answer is at most
        the day's distinct pairs, whatever the look-back holds."""
        query = (
            "SELECT DISTINCT h.account_id, h.merchant FROM {t} h JOIN "
            "(SELECT DISTINCT account_id, merchant FROM {t} "
            "WHERE date = {day} AND merchant IS NOT NULL{shard}) q "
            "ON h.account_id = q.account_id AND h.merchant = q.merchant "
            "WHERE h.date >= {s0} AND h.date < {s1}{shard_h}"
        )
        params = {"day": plan.day, "s0": plan.merchants[0], "s1": plan.merchants[1]}
        schema = {"account_id": pl.String(), "merchant": pl.String()}
        return _collect(self._batches(query, schema, params, shard), schema)

    def _batches(
        self,
        query: str,
        schema: Mapping[str, pl.DataType],
        params: Mapping[str, object],
        shard: Shard = (0, 1),
    ) -> Iterator[pl.DataFrame]:
        """`query`'s rows as `schema`, in batches (DuckDB: SPILL_ROWS; PostgreSQL: SPILL_BYTES
        of CSV). In the query, {t} is the table, {ts_us} `ts` in epoch microseconds, {shard} /
        {shard_h} the shard's condition (on the bare / `h.` account), {shard_of} the account's
        shard number of `shard[1]`, every other {name} a value of `params`."""
        # A missing table is named with the calendar day the read is for (the params' last
        # date), so the sentence points at the partition to materialise.
        dates = [v for v in params.values() if isinstance(v, dt.date)]
        try:
            with _materialised(self.table):
                if isinstance(self.warehouse, DuckDBWarehouse):
                    batches = self._duckdb(query, params, shard)
                else:
                    batches = self._postgres(query, schema, params, shard)
                for batch in batches:
                    yield batch.select(pl.col(c).cast(t) for c, t in schema.items())
        except NotMaterialised:
            raise NotMaterialised(self.table, max(dates).isoformat() if dates else None) from None

    def _duckdb(
        self, query: str, params: Mapping[str, object], shard: Shard
    ) -> Iterator[pl.DataFrame]:
        k, shards = shard

        def condition(column: str) -> str:
            return "" if shards == 1 else f" AND hash({column}) % $shards = $shard"

        text = query.format(
            t=f"{_q(SCHEMA)}.{_q(self.table)}",
            ts_us="epoch_us(ts)",
            shard=condition("account_id"),
            shard_h=condition("h.account_id"),
            shard_of=f"hash(account_id) % {int(shards)}",
            **{name: f"${name}" for name in params},
        )
        values = dict(params) | ({"shards": shards, "shard": k} if shards > 1 else {})
        values = {name: value for name, value in values.items() if f"${name}" in text}
        assert isinstance(self.warehouse, DuckDBWarehouse)
        with self.warehouse._connect() as con:
            # The buffer pool would otherwise keep the look-back's blocks (80 % of RAM).
            con.execute(f"SET memory_limit = '{STREAM_MEMORY_LIMIT}'")
            for batch in con.sql(text, params=values).to_arrow_reader(SPILL_ROWS):
                yield _polars(batch)

    def _postgres(
        self,
        query: str,
        schema: Mapping[str, pl.DataType],
        params: Mapping[str, object],
        shard: Shard,
    ) -> Iterator[pl.DataFrame]:
        """The CSV stream of COPY, parsed every SPILL_BYTES cut at a line end (a value never
        holds a line break: read_payments takes one row per physical line)."""
        k, shards = shard

        def condition(column: str) -> sql.Composable:
            if shards == 1:
                return sql.SQL("")
            return sql.SQL(" AND {} = {}").format(shard_of(column), sql.Literal(k))

        def shard_of(column: str) -> sql.Composable:
            return sql.SQL("((hashtext({}) & 2147483647) % {})").format(
                sql.SQL(column), sql.Literal(shards)
            )

        composed = sql.SQL(query).format(
            t=sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(self.table)),
            ts_us=sql.SQL("(extract(epoch FROM ts) * 1000000)::bigint"),
            shard=condition("account_id"),
            shard_h=condition("h.account_id"),
            shard_of=shard_of("account_id"),
            **{name: sql.Literal(value) for name, value in params.items()},
        )
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(composed)

        def parse(data: bytes) -> pl.DataFrame:
            return pl.read_csv(
                io.BytesIO(data), has_header=False, new_columns=list(schema), schema=dict(schema)
            )

        assert isinstance(self.warehouse, PostgresWarehouse)
        pending = bytearray()
        with self.warehouse._connect() as con, con.cursor() as cur:
            _tune(cur)
            with cur.copy(statement) as copy:
                for block in copy:
                    pending += block
                    if len(pending) >= SPILL_BYTES:
                        cut = pending.rfind(b"\n") + 1
                        yield parse(bytes(pending[:cut]))
                        del pending[:cut]
        if pending:
            yield parse(bytes(pending))


def _collect(batches: Iterator[pl.DataFrame], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """The batches as one frame (no batch: no rows, of `schema`)."""
    frames = list(batches)
    return pl.concat(frames) if frames else pl.DataFrame(schema=dict(schema))


def _tune(cur: psycopg.Cursor) -> None:
    """This transaction's settings for the history reads (WORK_MEM, JIT_OFF)."""
    cur.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
    for setting in JIT_OFF:
        cur.execute(sql.SQL("SET LOCAL {} = -1").format(sql.Identifier(setting)))


def _days(days: Sequence[dt.date]) -> str:
    if not days:
        return "FALSE"
    return "(" + " OR ".join(f"date = {{d{i}}}" for i in range(len(days))) + ")"


def _day_params(days: Sequence[dt.date]) -> dict[str, object]:
    return {f"d{i}": day for i, day in enumerate(days)}
