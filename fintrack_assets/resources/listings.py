"""Where the `all` universe comes from, per market-data source: the synthetic market's
generated listing, Polygon's reference tickers (`PolygonProvider.listing`), and for yfinance,
which publishes no listing, Nasdaq Trader's symbol directories.

A lister answers `(universe, left out)` (core/listings.py parses the payloads) or raises
`ListingFailed` with a one-line reason naming the source; `symbol_universe` caches what it
got and falls back to a previous listing when a new one cannot be had.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import httpx
import polars as pl

from fintrack_assets.core.listings import (
    LEFT_OUT_SCHEMA,
    NASDAQ_LISTED,
    OTHER_LISTED,
    ListingError,
    nasdaq_listing,
    synthetic_listing,
)
from fintrack_assets.resources.fetching import Log, Retries
from fintrack_assets.resources.http import HttpPolicy, RequestFailed, threaded_client

DEFAULT_SYMBOL_DIRECTORY_URL = "https://www.nasdaqtrader.com/dynamic/SymDir"
"""Nasdaq Trader's published symbol directories (also on ftp.nasdaqtrader.com/symboldirectory)."""
DIRECTORY_RETRIES = Retries(max_attempts=4, backoff_base_seconds=2.0, backoff_max_seconds=60.0)


class ListingFailed(RuntimeError):
    """The listing could not be had (after the HTTP client's retries); `str()` says from
    whom and why, in one line, without secrets."""


class Lister(Protocol):
    name: str

    def listing(self, log: Log) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(universe of every listed US stock and ETF, rows left out with a reason)."""
        ...


class SyntheticLister:
    """The synthetic market lists 5,400 generated symbols; nothing is left out."""

    name = "synthetic"

    def listing(self, log: Log) -> tuple[pl.DataFrame, pl.DataFrame]:
        universe = synthetic_listing()
        log(f"synthetic listing: {universe.height:,} symbols")
        return universe, pl.DataFrame(schema=LEFT_OUT_SCHEMA)


@dataclass
class NasdaqTraderLister:
    """`nasdaqlisted.txt` and `otherlisted.txt` from `base_url` (two GETs through the
    project's HTTP client: timeouts, retries of 429/5xx/connection errors)."""

    name: ClassVar[str] = "nasdaqtrader"

    base_url: str = DEFAULT_SYMBOL_DIRECTORY_URL
    timeout_seconds: float = 30.0
    retries: Retries = DIRECTORY_RETRIES
    transport: httpx.BaseTransport | None = field(default=None, repr=False)

    def listing(self, log: Log) -> tuple[pl.DataFrame, pl.DataFrame]:
        started = time.perf_counter()
        policy = HttpPolicy(
            2,
            self.timeout_seconds,
            self.retries.max_attempts,
            self.retries.backoff_base_seconds,
            self.retries.backoff_max_seconds,
            self.transport,
            self.retries.sleep,
        )
        texts: dict[str, str] = {}
        with threaded_client(self.base_url, policy, "nasdaqtrader") as (http, _):
            for file in (NASDAQ_LISTED, OTHER_LISTED):
                try:
                    texts[file] = http.request("GET", f"{http.base_url}/{file}").text
                except RequestFailed as exc:
                    raise ListingFailed(f"Nasdaq Trader's {file}: {exc}") from None
            requests = http.requests
        try:
            universe, left_out, created = nasdaq_listing(texts)
        except ListingError as exc:
            raise ListingFailed(f"Nasdaq Trader's symbol directory: {exc}") from None
        log(
            f"Nasdaq Trader listing ({created}): {universe.height:,} stocks and ETFs, "
            f"{left_out.height:,} rows left out, {requests} requests, "
            f"{time.perf_counter() - started:.1f} s"
        )
        return universe, left_out


__all__ = [
    "DEFAULT_SYMBOL_DIRECTORY_URL",
    "Lister",
    "ListingFailed",
    "NasdaqTraderLister",
    "SyntheticLister",
]
