"""pandera schemas: the data contracts of DESIGN.md, checked on every materialisation."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from fintrack_assets.core.symbols import SYMBOL_PATTERN


class BronzeOHLCV(pa.DataFrameModel):
    """`bronze_ohlcv`: one validated bar per (symbol, session), prices as traded."""

    symbol: str = pa.Field(str_matches=SYMBOL_PATTERN)
    date: pl.Date
    open: float = pa.Field(gt=0)
    high: float = pa.Field(gt=0)
    low: float = pa.Field(gt=0)
    close: float = pa.Field(gt=0)
    adj_close: float = pa.Field(gt=0, nullable=True)
    volume: pl.Int64 = pa.Field(ge=0)
    dividend: float = pa.Field(ge=0)
    split_ratio: float = pa.Field(gt=0)
    source: str
    ingested_at: pl.Datetime(time_unit="us", time_zone="UTC")  # type: ignore[valid-type]

    class Config:
        strict = True
        unique = ("symbol", "date")

    @pa.dataframe_check
    def high_is_the_top(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("high") >= pl.max_horizontal("open", "close", "low"))

    @pa.dataframe_check
    def low_is_the_bottom(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("low") <= pl.min_horizontal("open", "close"))
