"""pandera schemas: the data contracts of DESIGN.md, checked on every materialisation."""

from __future__ import annotations

import pandera.errors
import pandera.polars as pa
import polars as pl

from fintrack_assets.core.silver import INTERVALS
from fintrack_assets.core.symbols import SYMBOL_PATTERN
from fintrack_assets.core.trades import ACTIONS


def contract_failures(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> str | None:
    """pandera's report of every failure of `frame` against `model` (truncated), or None."""
    try:
        model.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        return str(exc)[:4000]
    return None


class _Bars(pa.DataFrameModel):
    """What every bar has, daily or longer: positive prices that the high and low bound."""

    symbol: str = pa.Field(str_matches=SYMBOL_PATTERN)
    open: float = pa.Field(gt=0)
    high: float = pa.Field(gt=0)
    low: float = pa.Field(gt=0)
    close: float = pa.Field(gt=0)
    adj_close: float = pa.Field(gt=0, nullable=True)
    volume: pl.Int64 = pa.Field(ge=0)
    split_ratio: float = pa.Field(gt=0)

    @pa.dataframe_check
    def high_is_the_top(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("high") >= pl.max_horizontal("open", "close", "low"))

    @pa.dataframe_check
    def low_is_the_bottom(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("low") <= pl.min_horizontal("open", "close"))


class BronzeOHLCV(_Bars):
    """`bronze_ohlcv`: one validated bar per (symbol, session), prices as traded."""

    date: pl.Date
    dividend: float = pa.Field(ge=0)
    source: str
    ingested_at: pl.Datetime(time_unit="us", time_zone="UTC")  # type: ignore[valid-type]

    class Config:
        strict = True
        unique = ("symbol", "date")


class SilverOHLCV(_Bars):
    """`silver_ohlcv_<N>d`: one bar per (symbol, bucket), on the basis of its last session."""

    interval_days: pl.Int32 = pa.Field(isin=list(INTERVALS))
    bar_start: pl.Date
    bar_end: pl.Date
    n_days: pl.Int32 = pa.Field(ge=1)

    class Config:
        strict = True
        unique = ("symbol", "bar_end")

    @pa.dataframe_check
    def n_days_within_the_interval(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("n_days") <= pl.col("interval_days"))

    @pa.dataframe_check
    def starts_before_it_ends(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("bar_start") <= pl.col("bar_end"))


class PortfolioTrade(pa.DataFrameModel):
    """`portfolio_trades`: one validated trade per `trade_id`, normalised by core/trades.py.

    Cash actions (DEPOSIT, WITHDRAWAL, FEE) carry their USD amount as `quantity`, price 1 and
    no symbol; BUY and SELL a symbol, shares and a price per share. All amounts are USD."""

    trade_id: str = pa.Field(unique=True, str_length={"min_value": 1})
    portfolio_id: str = pa.Field(str_length={"min_value": 1})
    date: pl.Date
    symbol: str = pa.Field(nullable=True, str_matches=SYMBOL_PATTERN)
    action: str = pa.Field(isin=list(ACTIONS))
    quantity: float = pa.Field(gt=0)
    price: float = pa.Field(gt=0)
    fees: float = pa.Field(ge=0)
    currency: str = pa.Field(isin=["USD"])
    source_file: str
    line: pl.Int64 = pa.Field(ge=2)

    class Config:
        strict = True

    @pa.dataframe_check
    def symbol_only_on_trades(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """BUY/SELL name a symbol; cash actions name none (the CASH row is holdings' own)."""
        return data.lazyframe.select(
            pl.col("action").is_in(["BUY", "SELL"]) == pl.col("symbol").is_not_null()
        )

    @pa.dataframe_check
    def cash_at_par(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """Cash actions at price 1, so quantity x price is the amount for every action."""
        return data.lazyframe.select(
            pl.col("action").is_in(["BUY", "SELL"]) | (pl.col("price") == 1.0)
        )


class PaymentTransaction(pa.DataFrameModel):
    """`payment_transactions`: one valid payment per `transaction_id`, on its UTC day."""

    transaction_id: str = pa.Field(unique=True, str_length={"min_value": 1})
    account_id: str = pa.Field(str_length={"min_value": 1})
    ts: pl.Datetime(time_unit="us", time_zone="UTC")  # type: ignore[valid-type]
    amount: float = pa.Field(gt=0)
    currency: str = pa.Field(isin=["USD"])
    merchant: str = pa.Field(nullable=True)
    category: str = pa.Field(nullable=True)
    lat: float = pa.Field(nullable=True, ge=-90, le=90)
    lon: float = pa.Field(nullable=True, ge=-180, le=180)
    merch_lat: float = pa.Field(nullable=True, ge=-90, le=90)
    merch_lon: float = pa.Field(nullable=True, ge=-180, le=180)
    date: pl.Date

    class Config:
        strict = True

    @pa.dataframe_check
    def on_its_day(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A payment's partition is its timestamp's UTC date."""
        return data.lazyframe.select(pl.col("ts").dt.date() == pl.col("date"))
