"""Market-data providers behind one resource: `synthetic` (offline default), `yfinance`,
`polygon`. Every provider answers with a `FetchResult` (bars, failed symbols, batches)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from fintrack_assets.core.synthetic import generate_ohlcv
from fintrack_assets.resources.fetching import (
    Batch,
    FetchResult,
    Log,
    batch_line,
    failures_frame,
    metadata_frame,
)
from fintrack_assets.settings import MarketDataSource

if TYPE_CHECKING:
    from fintrack_assets.resources.fundamentals import FundamentalsSource


class Provider(Protocol):
    name: str

    def fetch(self, symbols: Sequence[str], sessions: Sequence[dt.date], log: Log) -> FetchResult:
        """Bars of `symbols` on `sessions` (ascending); failed symbols reported, never raised."""
        ...

    def symbol_metadata(
        self, symbols: Sequence[str], log: Log
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(symbol, name, sector, industry) where the provider knows them, and failures."""
        ...


class SyntheticProvider:
    """The deterministic offline source: one batch, nothing fails, no metadata to refresh."""

    name = "synthetic"

    def __init__(self, universe: pl.DataFrame) -> None:
        self.universe = universe

    def fetch(self, symbols: Sequence[str], sessions: Sequence[dt.date], log: Log) -> FetchResult:
        started = time.perf_counter()
        universe = self.universe.filter(pl.col("symbol").is_in(list(symbols)))
        if sessions:
            bars = generate_ohlcv(universe, sessions[0], sessions[-1] + dt.timedelta(days=1))
        else:
            bars = generate_ohlcv(universe.head(0), dt.date(2000, 1, 3), dt.date(2000, 1, 4))
        batch = Batch(1, len(symbols), time.perf_counter() - started, 0)
        log(batch_line(batch, 1, batch.seconds))
        return FetchResult(
            bars=bars, batches=[batch], batch_size=len(symbols), symbols_requested=len(symbols)
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

    _cached: object | None = PrivateAttr(default=None)

    def provider(self, universe: pl.DataFrame) -> Provider:
        """One provider per run, so per-run caches (yfinance split histories) are shared."""
        if self.source == "synthetic":
            return SyntheticProvider(universe)
        if self._cached is None:
            self._cached = self._build()
        return self._cached  # type: ignore[return-value]

    def _build(self) -> Provider:
        if self.source == "yfinance":
            from fintrack_assets.resources.yahoo import YAHOO_RETRIES, YahooProvider

            return YahooProvider(
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
            )
        raise ValueError(
            f"unknown market data source {self.source!r}: synthetic, yfinance or polygon"
        )

    def fundamentals_source(self) -> FundamentalsSource:
        """Company fundamentals and treasury yields from the same provider
        (resources/fundamentals.py)."""
        from fintrack_assets.resources.fundamentals import fundamentals_source

        return fundamentals_source(self)
