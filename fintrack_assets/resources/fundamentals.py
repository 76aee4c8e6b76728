"""Company fundamentals and treasury yields from the market-data providers.

One `FundamentalsSource` per provider, reached through `MarketDataResource.fundamentals_source()`:
synthetic (deterministic, offline), yfinance (quarterly statements, earnings dates, the yield
indices ^IRX ^FVX ^TNX ^TYX) and Polygon (`/vX/reference/financials`,
`/fed/v1/treasury-yields`, over the Polygon provider's client: its retries, `Retry-After`,
concurrency bound and key handling). What a payload means is core/fundamentals.py's.

A symbol whose figures cannot be had is a failure row `(symbol, error, batch 0)`, never an
exception; the yields are one series, so a provider that cannot serve them at all raises
`YieldsUnavailable` (nothing is written, the stored window stays).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pandas as pd
import polars as pl
from tenacity import retry_if_exception_type, retry_if_result

from fintrack_assets.core.fundamentals import (
    YAHOO_TENORS,
    empty_yields,
    polygon_financials,
    polygon_yields,
    yahoo_fundamentals,
    yahoo_yields,
)
from fintrack_assets.core.synthetic_fundamentals import synthetic_fundamentals, synthetic_yields
from fintrack_assets.core.yahoo import yahoo_long
from fintrack_assets.resources.fetching import Log, Retries, failures_frame
from fintrack_assets.resources.polygon import (
    PolygonProvider,
    PolygonRequestFailed,
    page_results,
    to_polygon,
    unsupported_reason,
)
from fintrack_assets.resources.yahoo import YAHOO_RETRIES, YFinanceAdapter, short_error

if TYPE_CHECKING:
    from fintrack_assets.resources.market_data import MarketDataResource

NO_FUNDAMENTALS = "no quarterly financials returned"


class YieldsUnavailable(RuntimeError):
    """The provider served none of the yields for the window (after its retries)."""


@dataclass
class FundamentalsFetch:
    """Quarterly rows (core/fundamentals.py's columns before `source`) and failed symbols."""

    rows: pl.DataFrame
    failures: pl.DataFrame = field(default_factory=lambda: failures_frame([]))
    requests: int = 0
    malformed: int = 0  # provider records that could not be read (no period end, not a quarter)


@dataclass
class YieldsFetch:
    """(date, yield_3m, yield_5y, yield_10y, yield_30y) rows; tenors that failed, with why."""

    rows: pl.DataFrame
    failed_tenors: dict[str, str] = field(default_factory=dict)
    requests: int = 0


class FundamentalsSource(Protocol):
    name: str

    def fundamentals(self, symbols: Sequence[str], since: dt.date, log: Log) -> FundamentalsFetch:
        """Quarters ending on or after `since` of each symbol; failures reported, not raised."""
        ...

    def yields(self, sessions: Sequence[dt.date], log: Log) -> YieldsFetch:
        """The yields on `sessions` (ascending) the provider has; raises YieldsUnavailable."""
        ...


@dataclass
class SyntheticFundamentals:
    """Deterministic figures and yields (core/synthetic_fundamentals.py): nothing fails."""

    name: ClassVar[str] = "synthetic"
    as_of: dt.date = field(default_factory=dt.date.today)  # quarters filed by then

    def fundamentals(self, symbols: Sequence[str], since: dt.date, log: Log) -> FundamentalsFetch:
        rows = synthetic_fundamentals(symbols, since, self.as_of)
        log(f"synthetic fundamentals: {len(symbols)} symbols, {rows.height} quarters")
        return FundamentalsFetch(rows)

    def yields(self, sessions: Sequence[dt.date], log: Log) -> YieldsFetch:
        return YieldsFetch(synthetic_yields(sessions))


class YahooFundamentalsAdapter(Protocol):
    """The yfinance calls fundamentals need (a fake in tests)."""

    def download(
        self, tickers: list[str], start: dt.date, end: dt.date, threads: int
    ) -> tuple[pd.DataFrame | None, dict[str, str]]: ...

    def statements(self, ticker: str) -> dict[str, pd.DataFrame | None]:
        """Quarterly `income`, `balance` and `cashflow`: items by period end (raw names)."""
        ...

    def earnings_dates(self, ticker: str) -> list[dt.date]:
        """Days the company released earnings (past and announced)."""
        ...


class YFinanceFundamentalsAdapter(YFinanceAdapter):
    """The real thing: `Ticker.get_income_stmt(freq="quarterly")` and its siblings with raw
    item names (`TotalRevenue`, stable where the pretty ones are not), `get_earnings_dates`."""

    def statements(self, ticker: str) -> dict[str, pd.DataFrame | None]:
        import yfinance as yf

        handle = yf.Ticker(ticker)
        return {
            "income": handle.get_income_stmt(freq="quarterly"),
            "balance": handle.get_balance_sheet(freq="quarterly"),
            "cashflow": handle.get_cashflow(freq="quarterly"),
        }

    def earnings_dates(self, ticker: str) -> list[dt.date]:
        import yfinance as yf

        frame = yf.Ticker(ticker).get_earnings_dates(limit=40)
        if frame is None or frame.empty:
            return []
        return sorted({pd.Timestamp(when).date() for when in frame.index})


@dataclass
class YahooFundamentals:
    adapter: YahooFundamentalsAdapter = field(default_factory=YFinanceFundamentalsAdapter)
    retries: Retries = YAHOO_RETRIES

    name: ClassVar[str] = "yfinance"

    def fundamentals(self, symbols: Sequence[str], since: dt.date, log: Log) -> FundamentalsFetch:
        """Each symbol's statements (retried); a quarter's filing date is its earnings release
        (core.fundamentals.yahoo_filing_dates). Yahoo serves the last four to six quarters
        whatever `since` says; older ones stay in the table from earlier refreshes."""
        pieces: list[pl.DataFrame] = []
        failures: list[tuple[str, str, int]] = []
        requests = 0
        retrying = self.retries.retrying(retry=retry_if_exception_type(Exception), reraise=True)
        for symbol in symbols:
            try:
                statements = retrying(self.adapter.statements, symbol)
                requests += 3
            except Exception as exc:  # any failure of Yahoo's is this symbol's
                failures.append((symbol, f"statements unavailable: {short_error(exc)}", 0))
                continue
            try:
                released = self.adapter.earnings_dates(symbol)
                requests += 1
            except Exception as exc:  # the lag rule stands in; not a failure
                log(
                    f"{symbol}: earnings dates unavailable ({short_error(exc)}); "
                    "filing dates estimated"
                )
                released = []
            rows = yahoo_fundamentals(symbol, statements, released)
            rows = rows.filter(pl.col("period_end") >= since)
            if rows.is_empty():
                failures.append((symbol, NO_FUNDAMENTALS, 0))
            else:
                pieces.append(rows)
        log(f"yfinance fundamentals: {len(symbols)} symbols, {len(failures)} failed")
        rows = pl.concat(pieces) if pieces else yahoo_fundamentals("", {}, [])
        return FundamentalsFetch(rows, failures_frame(failures), requests)

    def yields(self, sessions: Sequence[dt.date], log: Log) -> YieldsFetch:
        """The four yield indices' closes, failed tickers downloaded again with backoff."""
        if not sessions:
            return YieldsFetch(empty_yields().drop("source"))
        start, end = sessions[0], sessions[-1] + dt.timedelta(days=1)
        pending = list(YAHOO_TENORS)
        errors: dict[str, str] = {}
        pieces: list[pl.DataFrame] = []
        requests = 0

        def attempt() -> list[str]:
            nonlocal pending, errors, requests
            frame, reported = self.adapter.download(pending, start, end, len(pending))
            requests += len(pending)
            bars, failed = yahoo_long(frame, pending)
            pieces.append(bars)
            errors = {ticker: reported.get(ticker, "no data returned") for ticker in failed}
            pending = failed
            return pending

        self.retries.retrying(retry=retry_if_result(bool), retry_error_callback=lambda state: None)(
            attempt
        )
        closes = pl.concat(pieces, how="diagonal_relaxed") if pieces else None
        rows = yahoo_yields(closes) if closes is not None and not closes.is_empty() else None
        failed = {YAHOO_TENORS[ticker]: errors[ticker] for ticker in pending}
        if rows is None or rows.is_empty():
            reasons = "; ".join(f"{t}: {e}" for t, e in sorted(errors.items()))
            raise YieldsUnavailable(f"Yahoo served no yields for [{start}, {end}): {reasons}")
        if failed:
            log(f"yields without {', '.join(sorted(failed))}: {failed}")
        keep = pl.col("date").is_in(list(sessions))
        return YieldsFetch(rows.filter(keep), failed, requests)


@dataclass
class PolygonFundamentals:
    """Financials and treasury yields through a `PolygonProvider`'s client."""

    provider: PolygonProvider
    name: ClassVar[str] = "polygon"

    def fundamentals(self, symbols: Sequence[str], since: dt.date, log: Log) -> FundamentalsFetch:
        """One paged `/vX/reference/financials` listing per ticker, all through the pool."""
        started = time.perf_counter()
        symbols = list(dict.fromkeys(symbols))
        pieces: list[pl.DataFrame] = []
        failures: list[tuple[str, str, int]] = []
        malformed = 0
        with self.provider.calls() as (session, pool):

            def records(symbol: str) -> list[dict[str, Any]]:
                params = {
                    "ticker": to_polygon(symbol),
                    "timeframe": "quarterly",
                    "period_of_report_date.gte": since.isoformat(),
                    "limit": "100",
                }
                found: list[dict[str, Any]] = []
                for page in session.pages("/vX/reference/financials", params):
                    found.extend(page_results(page))
                return found

            futures: dict[Future[list[dict[str, Any]]], str] = {}
            for symbol in symbols:
                reason = unsupported_reason(symbol)
                if reason:
                    failures.append((symbol, reason, 0))
                else:
                    futures[pool.submit(records, symbol)] = symbol
            for future, symbol in futures.items():
                try:
                    found = future.result()  # PolygonAuthError propagates: every call would fail
                except PolygonRequestFailed as exc:
                    failures.append((symbol, str(exc), 0))
                    continue
                rows, bad = polygon_financials(found, symbol)
                malformed += bad
                if rows.is_empty():
                    failures.append((symbol, NO_FUNDAMENTALS, 0))
                else:
                    pieces.append(rows)
            requests = session.requests
        log(
            f"polygon financials: {len(symbols)} symbols, {len(failures)} failed, "
            f"{requests} requests, {time.perf_counter() - started:.1f} s"
        )
        rows = pl.concat(pieces) if pieces else polygon_financials([], "")[0]
        return FundamentalsFetch(rows, failures_frame(failures), requests, malformed)

    def yields(self, sessions: Sequence[dt.date], log: Log) -> YieldsFetch:
        """Every page of `/fed/v1/treasury-yields` over the window, kept to its sessions."""
        if not sessions:
            return YieldsFetch(empty_yields().drop("source"))
        params = {
            "date.gte": sessions[0].isoformat(),
            "date.lte": sessions[-1].isoformat(),
            "limit": "1000",
        }
        with self.provider.calls() as (session, _):
            try:
                found = [
                    r
                    for page in session.pages("/fed/v1/treasury-yields", params)
                    for r in page_results(page)
                ]
            except PolygonRequestFailed as exc:
                raise YieldsUnavailable(f"Polygon treasury yields: {exc}") from None
            requests = session.requests
        rows = polygon_yields(found)
        return YieldsFetch(rows.filter(pl.col("date").is_in(list(sessions))), {}, requests)


def fundamentals_source(resource: MarketDataResource) -> FundamentalsSource:
    """The source for the resource's `source` setting, with its attempts (and, for Polygon,
    its client settings, key and base URL)."""
    if resource.source == "synthetic":
        return SyntheticFundamentals()
    if resource.source == "yfinance":
        retries = Retries(
            resource.max_attempts,
            YAHOO_RETRIES.backoff_base_seconds,
            YAHOO_RETRIES.backoff_max_seconds,
        )
        return YahooFundamentals(retries=retries)
    if resource.source == "polygon":
        provider = resource.provider(pl.DataFrame({"symbol": []}, schema={"symbol": pl.String}))
        if not isinstance(provider, PolygonProvider):
            raise TypeError(f"polygon source built a {type(provider).__name__}")
        return PolygonFundamentals(provider)
    raise ValueError(
        f"unknown market data source {resource.source!r}: synthetic, yfinance or polygon"
    )
