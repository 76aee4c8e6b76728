"""Market-data providers behind one resource: `synthetic` (offline default), `yfinance`,
`polygon`. Every provider answers with a `FetchResult` (bars, failed symbols, batches)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, cast

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from fintrack_assets.core.bronze import empty_bars
from fintrack_assets.core.synthetic import generate_ohlcv
from fintrack_assets.resources.budget import UNLIMITED, RateBudget
from fintrack_assets.resources.fetching import (
    BatchBars,
    FetchResult,
    Log,
    Plan,
    failures_frame,
    gather,
    metadata_frame,
    plan_batches,
)
from fintrack_assets.resources.listings import (
    DEFAULT_SYMBOL_DIRECTORY_URL,
    Lister,
    NasdaqTraderLister,
    SyntheticLister,
)
from fintrack_assets.settings import MarketDataSource

if TYPE_CHECKING:
    from fintrack_assets.resources.fundamentals import FundamentalsSource


class Provider(Protocol):
    name: str
    budget: RateBudget  # requests per minute in force, and what waiting for it cost

    def batch_size_for(self, sessions: int) -> int:
        """Symbols per batch for a window of `sessions` sessions."""
        ...

    def fetch_batches(
        self, plan: Plan, sessions: Sequence[dt.date], log: Log
    ) -> Iterator[BatchBars]:
        """The planned batches over `sessions` (ascending), each yielded once complete (in
        any order); failed symbols are reported in their batch, never raised."""
        ...

    def fetch(self, symbols: Sequence[str], sessions: Sequence[dt.date], log: Log) -> FetchResult:
        """Bars of `symbols` on `sessions`, every batch of them, gathered."""
        ...

    def symbol_metadata(
        self, symbols: Sequence[str], log: Log
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(symbol, name, sector, industry) where the provider knows them, and failures."""
        ...


SYNTHETIC_BATCH_SIZE = 200
"""Symbols per synthetic batch: large, since generating costs no request, yet a backfill of
thousands of symbols is still staged (and resumable) in a few dozen steps."""


class SyntheticProvider:
    """The deterministic offline source: nothing fails, no metadata to refresh. A symbol's
    bars do not depend on its batch, so batches and resumes give the same table."""

    name = "synthetic"
    budget = UNLIMITED  # nothing is requested
    rate_limit_per_minute = None

    def __init__(self, universe: pl.DataFrame, batch_size: int = SYNTHETIC_BATCH_SIZE) -> None:
        self.universe = universe
        self.size = batch_size

    def batch_size_for(self, sessions: int) -> int:
        return self.size

    def fetch_batches(
        self, plan: Plan, sessions: Sequence[dt.date], log: Log
    ) -> Iterator[BatchBars]:
        for number, symbols in plan:
            started = time.perf_counter()
            universe = self.universe.filter(pl.col("symbol").is_in(symbols))
            if sessions:
                bars = generate_ohlcv(universe, sessions[0], sessions[-1] + dt.timedelta(days=1))
            else:
                bars = empty_bars()
            yield BatchBars(
                number, symbols, bars, failures_frame([]), time.perf_counter() - started
            )

    def fetch(self, symbols: Sequence[str], sessions: Sequence[dt.date], log: Log) -> FetchResult:
        plan = plan_batches(symbols, self.size)
        return gather(
            self.fetch_batches(plan, sessions, log), len(plan), self.size, len(symbols), log
        )

    def symbol_metadata(
        self, symbols: Sequence[str], log: Log
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        return metadata_frame([]), failures_frame([])


class MarketDataResource(ConfigurableResource):
    """Daily bars for a universe over a window of sessions, from the configured provider."""

    source: MarketDataSource = Field(
        default="synthetic",
        description="Where bars come from: synthetic (generated, offline), yfinance (Yahoo "
        "Finance) or polygon (Polygon.io, needs polygon_api_key).",
    )
    polygon_api_key: str | None = Field(
        default=None, repr=False, description="Polygon.io API key (POLYGON_API_KEY)."
    )
    polygon_base_url: str = Field(
        default="https://api.polygon.io", description="Polygon.io's API root (a stub in tests)."
    )
    batch_size_single: int = Field(default=100, description="Symbols per batch, one session.")
    batch_size_range: int = Field(default=50, description="Symbols per batch, several sessions.")
    max_concurrency: int = Field(default=16, description="Polygon requests in flight at most.")
    yfinance_threads: int = Field(default=4, description="Threads yf.download may use.")
    max_attempts: int = Field(default=4, description="Attempts per failed symbol or request.")
    timeout_seconds: float = Field(default=30.0, description="Per Polygon request.")
    rate_limit_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Requests per minute the provider may be sent, retries included, over the "
        "run's threads (FINTRACK_MARKET_DATA_RATE_LIMIT; e.g. 5 for Polygon's free tier). "
        "Unset: unlimited. Each run has its own budget: keep the market_data_api pool at 1 "
        "per key.",
    )

    symbol_directory_url: str = Field(
        default=DEFAULT_SYMBOL_DIRECTORY_URL,
        description="Where the yfinance source reads the `all` universe: Nasdaq Trader's "
        "symbol directories (nasdaqlisted.txt, otherlisted.txt) under this URL.",
    )

    _cached: object | None = PrivateAttr(default=None)

    def lister(self) -> Lister:
        """Who lists every US stock and ETF for the `all` universe, per source."""
        if self.source == "synthetic":
            return SyntheticLister()
        if self.source == "yfinance":
            return NasdaqTraderLister(
                base_url=self.symbol_directory_url, timeout_seconds=self.timeout_seconds
            )
        return cast(Lister, self.provider(pl.DataFrame(schema={"symbol": pl.String})))

    def provider(self, universe: pl.DataFrame) -> Provider:
        """One provider per run, so per-run caches (yfinance split histories) are shared."""
        if self.source == "synthetic":
            return SyntheticProvider(universe)
        if self._cached is None:
            self._cached = self._build()
        return self._cached  # type: ignore[return-value]

    def _build(self) -> Provider:
        if self.source == "yfinance":
            from fintrack_assets.resources.yahoo import (
                YAHOO_RETRIES,
                BudgetedAdapter,
                YahooProvider,
                YFinanceAdapter,
            )

            return YahooProvider(
                adapter=BudgetedAdapter(YFinanceAdapter(), self._budget()),
                batch_size_single=self.batch_size_single,
                batch_size_range=self.batch_size_range,
                threads=self.yfinance_threads,
                retries=replace(YAHOO_RETRIES, max_attempts=self.max_attempts),
            )
        if self.source == "polygon":
            from fintrack_assets.resources.polygon import POLYGON_RETRIES, PolygonProvider

            if not self.polygon_api_key:
                raise ValueError("POLYGON_API_KEY is required when FINTRACK_MARKET_DATA=polygon")
            return PolygonProvider(
                api_key=self.polygon_api_key,
                base_url=self.polygon_base_url,
                max_concurrency=self.max_concurrency,
                timeout_seconds=self.timeout_seconds,
                retries=replace(POLYGON_RETRIES, max_attempts=self.max_attempts),
                batch_size=self.batch_size_range,
                budget=self._budget(),
            )
        raise ValueError(
            f"unknown market data source {self.source!r}: synthetic, yfinance or polygon"
        )

    def _budget(self) -> RateBudget:
        """The provider's budget: one per provider, so one per run (`provider` caches it)."""
        return RateBudget(self.rate_limit_per_minute)

    def fundamentals_source(self) -> FundamentalsSource:
        """Company fundamentals and treasury yields from the same provider
        (resources/fundamentals.py)."""
        from fintrack_assets.resources.fundamentals import fundamentals_source

        return fundamentals_source(self)
