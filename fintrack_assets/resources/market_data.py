"""Market-data providers behind one resource: `synthetic` (offline default), `yfinance`,
`polygon`."""

from __future__ import annotations

import datetime as dt

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

from fintrack_assets.core.synthetic import generate_ohlcv


class MarketDataUnavailable(RuntimeError):
    pass


class MarketDataResource(ConfigurableResource):
    """Daily bars for a universe over [start, end), as the provider returned them."""

    source: str = "synthetic"
    polygon_api_key: str | None = Field(default=None, repr=False)

    def fetch(self, universe: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
        if self.source == "synthetic":
            return generate_ohlcv(universe, start, end)
        raise MarketDataUnavailable(
            f"FINTRACK_MARKET_DATA={self.source} is not available in this version yet; "
            "use FINTRACK_MARKET_DATA=synthetic"
        )
