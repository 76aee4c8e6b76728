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
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import polars as pl
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
JIT_OFF = ("jit_inline_above_cost", "jit_optimize_above_cost")
"""PostgreSQL JIT-compiles these scans' expressions, which pays, but inlining and optimising
the code took ~7.5 s of a 19 s month aggregate (2026-12-07, docs/decisions.md)."""


class LookBack(NamedTuple):
    """What a day's features need of its look-back beyond the raw days, for its accounts."""

    summary: pl.DataFrame
    """SUMMARY_SCHEMA: per account, the totals over the plan's full days."""
    seen: pl.DataFrame
    """`account_id, merchant`: the day's pairs that occur in the plan's `merchants` days."""


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
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(the stored payments of `day` of the shard's accounts, their features): the day's
        rows, its plan's raw days (four columns), the totals and the pairs seen (`look_back`,
        read here when not given; accounts of other shards in it are ignored), and
        summarised_features over them."""
        plan = history_plan(day, history_days)
        today = self.rows([day], PAYMENT_SCHEMA, shard)
        raw = self.rows(plan.raw_days, {c: PAYMENT_SCHEMA[c] for c in HISTORY_COLUMNS}, shard)
        if look_back is None:
            look_back = LookBack(self.summary(plan, shard), self.seen(plan, shard))
        return today, summarised_features(
            today, raw, look_back.summary, look_back.seen, history_days
        )

    def day_counts(self, days: Sequence[dt.date]) -> dict[dt.date, int]:
        """Rows stored per day, for the days given (a day without rows is absent)."""
        # A template: its {names} are bound or Literal-quoted in _query, never formatted here.
        query = f"SELECT date, count(*) AS n FROM {{t}} WHERE {_days(days)} GROUP BY date"  # noqa: S608
        frame = self._query(query, {"date": pl.Date(), "n": pl.Int64()}, _day_params(days))
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
        frame = self._query(query, wire, _day_params(days), shard)
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
        return self._query(query, SUMMARY_SCHEMA, params, shard)

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
        return self._query(query, schema, params, shard)

    def _query(
        self,
        query: str,
        schema: Mapping[str, pl.DataType],
        params: Mapping[str, object],
        shard: Shard = (0, 1),
    ) -> pl.DataFrame:
        """`query`'s rows as `schema`. In the query, {t} is the table, {ts_us} `ts` in epoch
        microseconds, {shard} / {shard_h} the shard's condition (on the bare / `h.` account),
        every other {name} a value of `params`."""
        # A missing table is named with the calendar day the read is for (the params' last
        # date), so the sentence points at the partition to materialise.
        dates = [v for v in params.values() if isinstance(v, dt.date)]
        try:
            with _materialised(self.table):
                if isinstance(self.warehouse, DuckDBWarehouse):
                    frame = self._duckdb(query, params, shard)
                else:
                    frame = self._postgres(query, schema, params, shard)
        except NotMaterialised:
            raise NotMaterialised(self.table, max(dates).isoformat() if dates else None) from None
        return frame.select(pl.col(c).cast(t) for c, t in schema.items())

    def _duckdb(self, query: str, params: Mapping[str, object], shard: Shard) -> pl.DataFrame:
        k, shards = shard

        def condition(column: str) -> str:
            return "" if shards == 1 else f" AND hash({column}) % $shards = $shard"

        text = query.format(
            t=f"{_q(SCHEMA)}.{_q(self.table)}",
            ts_us="epoch_us(ts)",
            shard=condition("account_id"),
            shard_h=condition("h.account_id"),
            **{name: f"${name}" for name in params},
        )
        values = dict(params) | ({"shards": shards, "shard": k} if shards > 1 else {})
        assert isinstance(self.warehouse, DuckDBWarehouse)
        with self.warehouse._connect() as con:
            return _polars(con.sql(text, params=values).to_arrow_table())

    def _postgres(
        self,
        query: str,
        schema: Mapping[str, pl.DataType],
        params: Mapping[str, object],
        shard: Shard,
    ) -> pl.DataFrame:
        k, shards = shard

        def condition(column: str) -> sql.Composable:
            if shards == 1:
                return sql.SQL("")
            return sql.SQL(" AND (hashtext({}) & 2147483647) % {} = {}").format(
                sql.SQL(column), sql.Literal(shards), sql.Literal(k)
            )

        composed = sql.SQL(query).format(
            t=sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(self.table)),
            ts_us=sql.SQL("(extract(epoch FROM ts) * 1000000)::bigint"),
            shard=condition("account_id"),
            shard_h=condition("h.account_id"),
            **{name: sql.Literal(value) for name, value in params.items()},
        )
        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(composed)
        buffer = io.BytesIO()
        assert isinstance(self.warehouse, PostgresWarehouse)
        with self.warehouse._connect() as con, con.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
            for setting in JIT_OFF:
                cur.execute(sql.SQL("SET LOCAL {} = -1").format(sql.Identifier(setting)))
            with cur.copy(statement) as copy:
                for block in copy:
                    buffer.write(block)
        buffer.seek(0)
        return pl.read_csv(buffer, schema=dict(schema))


def _days(days: Sequence[dt.date]) -> str:
    if not days:
        return "FALSE"
    return "(" + " OR ".join(f"date = {{d{i}}}" for i in range(len(days))) + ")"


def _day_params(days: Sequence[dt.date]) -> dict[str, object]:
    return {f"d{i}": day for i, day in enumerate(days)}
