"""Provider output -> raw_ohlcv: normalised columns, stamped with source and ingestion time."""

from __future__ import annotations

import datetime as dt

import polars as pl

from fintrack_assets.core.bronze import OHLCV_SCHEMA


def normalise_raw(
    bars: pl.DataFrame, source: str, start: dt.date, end: dt.date, ingested_at: dt.datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows for the window [start, end), rows that belong to no partition of it).

    The second frame holds bars dated outside the requested window or not dated at all: they
    cannot be stored in this partition, so the caller reports them instead of dropping them.
    """
    stamp = ingested_at.astimezone(dt.UTC)
    frame = bars.with_columns(
        pl.lit(source).alias("source"),
        pl.lit(stamp).dt.cast_time_unit("us").alias("ingested_at"),
    )
    for column, dtype in OHLCV_SCHEMA.items():
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
    frame = frame.select(pl.col(c).cast(t, strict=False) for c, t in OHLCV_SCHEMA.items())
    inside = pl.col("date").is_between(start, end, closed="left").fill_null(False)
    return frame.filter(inside), frame.filter(~inside)
