"""The yfinance provider: batched `yf.download`, failed tickers retried, prices as traded.

yfinance is reached only through `YahooAdapter` (download, split history, info), so the
batching, retry and reconstruction logic is tested with recorded frames while the adapter
itself stays a few lines of yfinance calls. A request budget (`rate_limit_per_minute`) wraps
the adapter (`BudgetedAdapter`), so every call, retries included, waits for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
import polars as pl
from tenacity import RetryCallState, retry_if_exception_type, retry_if_result

from fintrack_assets.core.bronze import BAR_COLUMNS, empty_bars
from fintrack_assets.core.progress import Clock
from fintrack_assets.core.yahoo import as_traded, splits_frame, yahoo_long
from fintrack_assets.resources.budget import UNLIMITED, RateBudget
from fintrack_assets.resources.fetching import (
    BatchBars,
    FetchResult,
    Log,
    MetadataRow,
    Plan,
    Retries,
    failures_frame,
    gather,
    metadata_frame,
    plan_batches,
)

RATE_LIMITED = "YFRateLimitError"
NO_DATA = "no data returned (all-NaN Close)"
YAHOO_RETRIES = Retries(max_attempts=4, backoff_base_seconds=2.0, backoff_max_seconds=60.0)


class YahooAdapter(Protocol):
    """The three yfinance calls the provider makes."""

    def download(
        self, tickers: list[str], start: dt.date, end: dt.date, threads: int
    ) -> tuple[pd.DataFrame | None, dict[str, str]]:
        """(the wide frame `yf.download` returns, error text per failed ticker)."""
        ...

    def splits(self, ticker: str) -> pd.Series:
        """`Ticker.splits`: ratio by ex-date; raises when Yahoo could not be asked."""
        ...

    def info(self, ticker: str) -> dict[str, Any]: ...


class _ErrorCapture(logging.Handler):
    """yfinance reports per-ticker failures only as ERROR log lines: `['AAPL', 'X']: error`."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        head, sep, error = message.partition("]: ")
        if not sep or not head.startswith("["):
            return
        for ticker in head.lstrip("[").split(","):
            self.errors[ticker.strip().strip("'\"")] = error.strip()


class YFinanceAdapter:
    """The real thing: Yahoo over yfinance."""

    _config_lock = threading.Lock()

    def download(
        self, tickers: list[str], start: dt.date, end: dt.date, threads: int
    ) -> tuple[pd.DataFrame | None, dict[str, str]]:
        import yfinance as yf

        logger = logging.getLogger("yfinance")
        capture = _ErrorCapture()
        logger.addHandler(capture)
        try:
            frame = yf.download(
                tickers,
                start=start.isoformat(),
                end=end.isoformat(),
                auto_adjust=False,
                actions=True,
                group_by="ticker",
                threads=max(1, threads),
                progress=False,
                multi_level_index=True,
            )
        finally:
            logger.removeHandler(capture)
        return frame, capture.errors

    def splits(self, ticker: str) -> pd.Series:
        import yfinance as yf

        # With exceptions hidden yfinance answers a failed request with "no splits", which
        # would silently leave prices on today's basis.
        with self._config_lock:
            hidden = yf.config.debug.hide_exceptions
            yf.config.debug.hide_exceptions = False
            try:
                return yf.Ticker(ticker).splits
            finally:
                yf.config.debug.hide_exceptions = hidden

    def info(self, ticker: str) -> dict[str, Any]:
        import yfinance as yf

        return dict(yf.Ticker(ticker).info or {})


@dataclass
class BudgetedAdapter:
    """An adapter whose calls first wait for the provider's request budget. `yf.download`
    sends one chart request per ticker, so a download takes a unit per ticker (one at a
    time: a batch larger than a minute's budget waits longer, it is not refused); a split
    history or an info call takes one."""

    inner: YahooAdapter
    budget: RateBudget

    def download(
        self, tickers: list[str], start: dt.date, end: dt.date, threads: int
    ) -> tuple[pd.DataFrame | None, dict[str, str]]:
        self.budget.acquire(len(tickers))
        return self.inner.download(tickers, start, end, threads)

    def splits(self, ticker: str) -> pd.Series:
        self.budget.acquire()
        return self.inner.splits(ticker)

    def info(self, ticker: str) -> dict[str, Any]:
        self.budget.acquire()
        return self.inner.info(ticker)


def _never_splits(symbol: str) -> bool:
    """Indices (^GSPC) and FX or futures (EUR=X) have no split history to ask for."""
    return symbol.startswith("^") or "=" in symbol


@dataclass
class YahooProvider:
    adapter: YahooAdapter = field(default_factory=YFinanceAdapter)
    batch_size_single: int = 100
    batch_size_range: int = 50
    threads: int = 4
    retries: Retries = YAHOO_RETRIES
    rate_limit_backoff_seconds: float = 30.0
    clock: Clock = time.perf_counter
    _splits_cache: dict[str, pd.Series] = field(default_factory=dict, repr=False)

    name = "yfinance"

    def batch_size_for(self, sessions: int) -> int:
        return self.batch_size_single if sessions <= 1 else self.batch_size_range

    def fetch(self, symbols: Sequence[str], sessions: Sequence[dt.date], log: Log) -> FetchResult:
        size = self.batch_size_for(len(sessions))
        plan = plan_batches(symbols, size)
        return gather(self.fetch_batches(plan, sessions, log), len(plan), size, len(symbols), log)

    def fetch_batches(
        self, plan: Plan, sessions: Sequence[dt.date], log: Log
    ) -> Iterator[BatchBars]:
        """One `yf.download` per batch (its failed tickers retried), in plan order."""
        if not sessions:
            return
        start, end = sessions[0], sessions[-1] + dt.timedelta(days=1)
        counter = FetchResult(bars=empty_bars())
        for number, group in plan:
            started = self.clock()
            bars, failed = self._download_batch(group, start, end, counter)
            bars, split_failures = self._as_traded(bars, counter)
            failed |= split_failures
            failures = failures_frame(
                [(symbol, error, number) for symbol, error in sorted(failed.items())]
            )
            yield BatchBars(
                number,
                group,
                pl.concat([empty_bars(), bars], how="diagonal_relaxed").select(BAR_COLUMNS),
                failures,
                self.clock() - started,
                counter.requests,
            )

    def _download_batch(
        self, tickers: list[str], start: dt.date, end: dt.date, result: FetchResult
    ) -> tuple[pl.DataFrame, dict[str, str]]:
        """Downloads a batch, then again only its failed tickers, backing off in between.

        `yf.download` never raises per ticker: a failure is an all-NaN column and an error
        line. A rate limit among the errors stretches the wait to `rate_limit_backoff_seconds`.
        """
        pending = list(tickers)
        errors: dict[str, str] = {}
        pieces: list[pl.DataFrame] = []

        def attempt() -> list[str]:
            nonlocal pending, errors
            frame, reported = self.adapter.download(
                pending, start, end, min(self.threads, len(pending))
            )
            result.requests += len(pending)
            bars, failed = yahoo_long(frame, pending)
            pieces.append(bars)
            errors = {t: reported.get(t, NO_DATA) for t in failed}
            pending = failed
            return pending

        jittered = self.retries.backoff()

        def wait(state: RetryCallState) -> float:
            delay = jittered(state)
            if any(RATE_LIMITED in error for error in errors.values()):
                return max(delay, self.rate_limit_backoff_seconds)
            return delay

        self.retries.retrying(
            wait, retry=retry_if_result(bool), retry_error_callback=lambda state: None
        )(attempt)
        return pl.concat(pieces, how="diagonal_relaxed"), {
            t: f"{errors[t]} after {self.retries.max_attempts} attempts" for t in pending
        }

    def _as_traded(
        self, bars: pl.DataFrame, result: FetchResult
    ) -> tuple[pl.DataFrame, dict[str, str]]:
        """Bars rebuilt as traded; a symbol whose split history is unavailable fails whole."""
        failed: dict[str, str] = {}
        history: dict[str, pd.Series] = {}
        for symbol in bars["symbol"].unique(maintain_order=True).to_list():
            if _never_splits(symbol):
                continue
            try:
                history[symbol] = self._splits(symbol, result)
            except Exception as exc:  # any failure of Yahoo's is this symbol's
                failed[symbol] = f"split history unavailable: {short_error(exc)}"
        kept = bars.filter(~pl.col("symbol").is_in(list(failed)))
        return as_traded(kept, splits_frame(history)), failed

    def _splits(self, symbol: str, result: FetchResult) -> pd.Series:
        if symbol not in self._splits_cache:

            def ask() -> pd.Series:
                result.requests += 1
                return self.adapter.splits(symbol)

            retrying = self.retries.retrying(retry=retry_if_exception_type(Exception), reraise=True)
            self._splits_cache[symbol] = retrying(ask)
        return self._splits_cache[symbol]

    def symbol_metadata(
        self, symbols: Sequence[str], log: Log
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Name, sector and industry from `Ticker.info`; a symbol that fails keeps what we had."""
        rows: list[MetadataRow] = []
        failures: list[tuple[str, str, int]] = []
        for symbol in symbols:
            try:
                info = self.adapter.info(symbol)
            except Exception as exc:  # tolerated: metadata is best effort
                failures.append((symbol, short_error(exc), 0))
                continue
            rows.append(
                (
                    symbol,
                    info.get("longName") or info.get("shortName"),
                    info.get("sector"),
                    info.get("industry"),
                )
            )
        log(f"symbol metadata from yfinance: {len(rows)} refreshed, {len(failures)} failed")
        return metadata_frame(rows), failures_frame(failures)

    @property
    def budget(self) -> RateBudget:
        """The request budget its adapter waits for (`BudgetedAdapter`), else unlimited."""
        return self.adapter.budget if isinstance(self.adapter, BudgetedAdapter) else UNLIMITED

    @property
    def rate_limit_per_minute(self) -> int | None:
        return self.budget.per_minute


def short_error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
