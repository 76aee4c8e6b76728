"""raw -> bronze: every bar checked, each bad one rejected with its reasons, never dropped."""

from __future__ import annotations

import datetime as dt

import polars as pl

from fintrack_assets.core.calendar import nyse_sessions
from fintrack_assets.core.symbols import valid_symbol_expr

BAR_VALUES_SCHEMA: dict[str, pl.DataType] = {
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "adj_close": pl.Float64(),
    "volume": pl.Int64(),
}
"""What every bar carries, a day or longer: its prices and its volume."""

OHLCV_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "date": pl.Date(),
    **BAR_VALUES_SCHEMA,
    "dividend": pl.Float64(),
    "split_ratio": pl.Float64(),
    "source": pl.String(),
    "ingested_at": pl.Datetime("us", "UTC"),
}
PRICES = ["open", "high", "low", "close"]
BAR_COLUMNS = [c for c in OHLCV_SCHEMA if c not in ("source", "ingested_at")]
"""What a provider returns, before `normalise_raw` stamps source and ingestion time."""


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema={c: OHLCV_SCHEMA[c] for c in BAR_COLUMNS})


REJECT_REASONS: dict[str, pl.Expr] = {
    "bad_symbol": ~valid_symbol_expr(),
    # adj_close may be null: not every provider serves a total-return close (Polygon does not).
    "missing_price": pl.any_horizontal(pl.col(c).is_null() | pl.col(c).is_nan() for c in PRICES)
    | pl.col("adj_close").is_nan(),
    "non_positive_price": pl.any_horizontal(pl.col(c) <= 0 for c in [*PRICES, "adj_close"]),
    "high_below_low": pl.col("high") < pl.col("low"),
    "open_close_outside_range": (pl.col("high") < pl.max_horizontal("open", "close"))
    | (pl.col("low") > pl.min_horizontal("open", "close")),
    "missing_volume": pl.col("volume").is_null(),
    "negative_volume": pl.col("volume") < 0,
    "bad_corporate_action": pl.col("split_ratio").is_null()
    | ~(pl.col("split_ratio") > 0)
    | pl.col("dividend").is_null()
    | ~(pl.col("dividend") >= 0),
}
"""Each reason is an expression true for the rows it rejects (null counts as not rejected)."""


def _sessions() -> pl.Series:
    return pl.Series("date", nyse_sessions(), dtype=pl.Date)


def to_bronze(raw: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(bronze, rejects). Rejects keep the raw columns plus `reason` (';'-joined) and
    `rejected_at`. Of several valid bars for one (symbol, date) the first ingested is kept
    and the rest are rejected as `duplicate`."""
    raw = raw.select(pl.col(c).cast(t) for c, t in OHLCV_SCHEMA.items())
    sessions = _sessions().implode()
    checks = {name: expr.fill_null(False) for name, expr in REJECT_REASONS.items()} | {
        "non_session_date": pl.col("date").is_null() | ~pl.col("date").is_in(sessions)
    }
    marked = raw.with_row_index("_row").with_columns(
        pl.concat_str(
            [pl.when(expr).then(pl.lit(name)) for name, expr in checks.items()],
            separator=";",
            ignore_nulls=True,
        ).alias("reason")
    )
    marked = marked.with_columns(
        pl.when(pl.col("reason") == "").then(None).otherwise(pl.col("reason")).alias("reason")
    )
    ok = pl.col("reason").is_null()
    first_ok = marked.filter(ok).group_by("symbol", "date").agg(pl.col("_row").min().alias("_keep"))
    marked = marked.join(first_ok, on=["symbol", "date"], how="left").with_columns(
        pl.when(ok & (pl.col("_row") != pl.col("_keep")))
        .then(pl.lit("duplicate"))
        .otherwise(pl.col("reason"))
        .alias("reason")
    )
    bronze = (
        marked.filter(pl.col("reason").is_null()).select(list(OHLCV_SCHEMA)).sort("date", "symbol")
    )
    rejects = (
        marked.filter(pl.col("reason").is_not_null())
        .sort("_row")
        .select(*OHLCV_SCHEMA, "reason")
        .with_columns(pl.lit(dt.datetime.now(dt.UTC)).dt.cast_time_unit("us").alias("rejected_at"))
    )
    return bronze, rejects


def reject_counts(rejects: pl.DataFrame) -> dict[str, int]:
    """Rows per reason (a row with several reasons counts under each)."""
    if rejects.is_empty():
        return {}
    counts = (
        rejects.select(pl.col("reason").str.split(";").explode())
        .group_by("reason")
        .len()
        .sort("reason")
    )
    return dict(zip(counts["reason"], counts["len"], strict=True))
