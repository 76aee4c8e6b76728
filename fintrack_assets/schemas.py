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


class _Contract(pa.DataFrameModel):
    """What every contract holds: no float column, declared or not, has inf or NaN."""

    @pa.dataframe_check
    def floats_are_finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """An absurd input is a reject upstream, never an inf or NaN in a table; a null is
        each column's own business (nullable or not)."""
        finite = pl.col(pl.Float32, pl.Float64).is_finite().fill_null(True)
        return data.lazyframe.select(pl.all_horizontal(pl.lit(True), finite).alias("finite"))


class _Bars(_Contract):
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


class PortfolioTrade(_Contract):
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


class PaymentTransaction(_Contract):
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


TOLERANCE = 1e-9
"""Floating-point slack for identities that hold exactly on paper (weights summing to 1)."""


def _holds(condition: pl.Expr) -> pl.Expr:
    """A row check over nullable columns: a null (a window too short to say) passes."""
    return condition.fill_null(True)


class _PortfolioDay(_Contract):
    """A portfolio's rows of a session: every risk table's key starts (date, portfolio_id)."""

    date: pl.Date
    portfolio_id: str = pa.Field(str_length={"min_value": 1})


class PortfolioReturn(_PortfolioDay):
    """`portfolio_returns`: one row per (date, portfolio_id); a long-only book with no
    borrowing can lose at most everything in a day."""

    market_value: float = pa.Field(nullable=True)
    net_flow: float = pa.Field(nullable=True)
    daily_return: float = pa.Field(nullable=True, ge=-1)
    benchmark_return: float = pa.Field(nullable=True, ge=-1)

    class Config:
        strict = True
        unique = ("date", "portfolio_id")


class PortfolioRisk(_PortfolioDay):
    """`portfolio_risk`: one row per (date, portfolio_id). Volatility is a standard deviation,
    a drawdown a fall from a peak, and the CVaR the mean of the tail beyond its VaR (both
    returns, negative is a loss), so the 99 % tail lies at or below the 95 % one."""

    volatility_21d: float = pa.Field(nullable=True, ge=0)
    volatility_63d: float = pa.Field(nullable=True, ge=0)
    volatility_252d: float = pa.Field(nullable=True, ge=0)
    max_drawdown_252d: float = pa.Field(nullable=True, ge=-1, le=0)
    ir_beta: float = pa.Field(nullable=True)
    """% return per +100 bp of the 10-year yield (-7.0: down 7 % when yields rise 1 pp)."""

    class Config:
        unique = ("date", "portfolio_id")

    @pa.dataframe_check
    def cvar_beyond_var(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            _holds(pl.col("cvar_95_1d") <= pl.col("var_95_1d") + TOLERANCE)
            & _holds(pl.col("cvar_99_1d") <= pl.col("var_99_1d") + TOLERANCE)
        )

    @pa.dataframe_check
    def var_99_beyond_var_95(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_holds(pl.col("var_99_1d") <= pl.col("var_95_1d") + TOLERANCE))


class FactorExposure(_PortfolioDay):
    """`portfolio_factor_exposures`: one row per (date, portfolio_id, factor); the ridge fit's
    in-sample R² lies in [0, 1] (its unpenalised intercept alone would explain nothing)."""

    factor: str = pa.Field(str_length={"min_value": 1})
    beta: float = pa.Field(nullable=True)
    ridge_coef: float = pa.Field(nullable=True)
    r_squared: float = pa.Field(nullable=True, ge=-TOLERANCE, le=1 + TOLERANCE)

    class Config:
        strict = True
        unique = ("date", "portfolio_id", "factor")


class SectorExposure(_PortfolioDay):
    """`sector_exposure`: one row per (date, portfolio_id, sector); a portfolio's sector
    weights sum to 1 each day. Valuations: a P/E only of positive earnings, a market cap above
    0, a coverage share in [0, 1]; both figures only where some of the sector is covered, and
    neither for Cash."""

    sector: str = pa.Field(str_length={"min_value": 1})
    market_value: float = pa.Field(nullable=True)
    weight: float = pa.Field(nullable=True)
    pe_ratio: float = pa.Field(nullable=True, gt=0)
    market_cap: float = pa.Field(nullable=True, gt=0)
    valuation_coverage: float = pa.Field(nullable=True, ge=0, le=1 + TOLERANCE)

    class Config:
        strict = True
        unique = ("date", "portfolio_id", "sector")

    @pa.dataframe_check
    def weights_sum_to_one(cls, data: pa.PolarsData) -> pl.LazyFrame:
        total = pl.col("weight").sum().over("date", "portfolio_id")
        valued = pl.col("weight").is_not_null().any().over("date", "portfolio_id")
        return data.lazyframe.select(~valued | ((total - 1.0).abs() <= TOLERANCE))

    @pa.dataframe_check
    def valued_where_covered(cls, data: pa.PolarsData) -> pl.LazyFrame:
        covered = pl.col("valuation_coverage").fill_null(0.0) > 0
        cash = pl.col("sector") == "Cash"
        return data.lazyframe.select(
            (covered | (pl.col("pe_ratio").is_null() & pl.col("market_cap").is_null()))
            & (~cash | pl.col("valuation_coverage").is_null())
        )


class HoldingCorrelation(_PortfolioDay):
    """`holding_correlations`: one row per (date, portfolio_id, symbol_a, symbol_b), each
    pair once, a correlation in [-1, 1]."""

    symbol_a: str = pa.Field(str_matches=SYMBOL_PATTERN)
    symbol_b: str = pa.Field(str_matches=SYMBOL_PATTERN)
    correlation: float = pa.Field(nullable=True, ge=-1 - TOLERANCE, le=1 + TOLERANCE)

    class Config:
        strict = True
        unique = ("date", "portfolio_id", "symbol_a", "symbol_b")

    @pa.dataframe_check
    def each_pair_once(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("symbol_a") < pl.col("symbol_b"))


class StressTest(_PortfolioDay):
    """`portfolio_stress_tests`: one row per (date, portfolio_id, scenario); a scenario that
    can't be valued has neither P&L nor method."""

    scenario: str = pa.Field(str_length={"min_value": 1})
    pnl_usd: float = pa.Field(nullable=True)
    pnl_pct: float = pa.Field(nullable=True)
    method: str = pa.Field(nullable=True)

    class Config:
        strict = True
        unique = ("date", "portfolio_id", "scenario")

    @pa.dataframe_check
    def valued_with_a_method(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("pnl_pct").is_null() == pl.col("method").is_null())


class HoldingsMonthly(_Contract):
    """`holdings_monthly`: one row per (month, portfolio_id, symbol), a snapshot taken on a
    session of its own month; a long-only book loses at most everything in a month."""

    month: pl.Date
    date: pl.Date
    portfolio_id: str = pa.Field(str_length={"min_value": 1})
    symbol: str
    return_month: float = pa.Field(nullable=True, ge=-1)

    class Config:
        unique = ("month", "portfolio_id", "symbol")

    @pa.dataframe_check
    def snapshot_in_its_month(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("date").dt.month_start() == pl.col("month")) & (pl.col("month").dt.day() == 1)
        )


class TreasuryYields(_Contract):
    """`treasury_yields`: one row per session, yields in percent (4.25 is 4.25 %), each within
    (-5, 30) where the provider had it, at least one of the four on every row."""

    date: pl.Date = pa.Field(unique=True)
    yield_3m: float = pa.Field(nullable=True, gt=-5, lt=30)
    yield_5y: float = pa.Field(nullable=True, gt=-5, lt=30)
    yield_10y: float = pa.Field(nullable=True, gt=-5, lt=30)
    yield_30y: float = pa.Field(nullable=True, gt=-5, lt=30)
    source: str

    class Config:
        strict = True

    @pa.dataframe_check
    def some_yield(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.any_horizontal(
                pl.col("yield_3m", "yield_5y", "yield_10y", "yield_30y").is_not_null()
            )
        )


class CompanyFundamentals(_Contract):
    """`company_fundamentals`: one row per (symbol, period_end), quarterly figures known from
    `filing_date`, which is on or after the quarter's end; shares and assets positive where
    known, liabilities not negative."""

    symbol: str = pa.Field(str_matches=SYMBOL_PATTERN)
    fiscal_period: str = pa.Field(str_matches=r"^\d{4}Q[1-4]$")
    period_end: pl.Date
    filing_date: pl.Date
    revenue: float = pa.Field(nullable=True)
    net_income: float = pa.Field(nullable=True)
    eps: float = pa.Field(nullable=True)
    shares_outstanding: float = pa.Field(nullable=True, gt=0)
    total_assets: float = pa.Field(nullable=True, gt=0)
    total_liabilities: float = pa.Field(nullable=True, ge=0)
    operating_cash_flow: float = pa.Field(nullable=True)
    source: str
    fetched_at: pl.Datetime(time_unit="us", time_zone="UTC")  # type: ignore[valid-type]

    class Config:
        strict = True
        unique = ("symbol", "period_end")

    @pa.dataframe_check
    def filed_after_the_quarter(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("filing_date") >= pl.col("period_end"))
