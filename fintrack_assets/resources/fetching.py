"""What every market-data provider reports about a fetch: bars, failed symbols, batches.

No dagster import: the providers are plain classes, and `raw_ohlcv` turns a `FetchResult`
into metadata, log lines and the failed-share check.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import polars as pl
from tenacity import RetryCallState, Retrying, stop_after_attempt, wait_random_exponential

from fintrack_assets.core.bronze import BAR_COLUMNS, empty_bars
from fintrack_assets.core.display import plural
from fintrack_assets.core.progress import progress_line

FAILURE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "error": pl.String(),
    "batch": pl.Int64(),
}

Log = Callable[[str], None]
Sleep = Callable[[float], None]


def backoff(base_seconds: float, max_seconds: float) -> wait_random_exponential:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(max, base * 2^n))."""
    return wait_random_exponential(multiplier=base_seconds, max=max_seconds)


@dataclass(frozen=True)
class Retries:
    """How a provider retries a failed request or symbol, declared once for every provider;
    each holds one with its own defaults. Tests pass a `sleep` that records the waits."""

    max_attempts: int  # the first included
    backoff_base_seconds: float  # attempt n waits up to base * 2^(n-1)
    backoff_max_seconds: float  # the cap on every wait
    sleep: Sleep = field(default=time.sleep, repr=False)

    def backoff(self) -> wait_random_exponential:
        return backoff(self.backoff_base_seconds, self.backoff_max_seconds)

    def retrying(
        self, wait: Callable[[RetryCallState], float] | None = None, **options: Any
    ) -> Retrying:
        """tenacity's `Retrying` over these attempts and `sleep`; `wait` defaults to the
        backoff, `options` are the rest of its arguments (retry, reraise, ...)."""
        return Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait or self.backoff(),
            sleep=self.sleep,
            **options,
        )


class Retryable(Exception):
    """A transient failure (429, 5xx, timeout, connection): tenacity retries it."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from `Retry-After` (a number, or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def retry_wait(base_seconds: float, max_seconds: float) -> Callable[[RetryCallState], float]:
    """tenacity's wait: the server's Retry-After when a Retryable carries one (capped at
    `max_seconds`), else exponential backoff with full jitter."""
    jittered = backoff(base_seconds, max_seconds)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, Retryable) and error.retry_after is not None:
            return min(error.retry_after, max_seconds)
        return float(jittered(state))

    return wait


@dataclass(frozen=True)
class Batch:
    number: int  # 1-based
    symbols: int
    seconds: float
    failed: int


@dataclass
class FetchResult:
    """One provider call for a universe over [start, end)."""

    bars: pl.DataFrame
    failures: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FAILURE_SCHEMA))
    batches: list[Batch] = field(default_factory=list)
    batch_size: int = 0
    requests: int = 0
    symbols_requested: int = 0

    @property
    def symbols_failed(self) -> int:
        return self.failures["symbol"].n_unique()

    @property
    def symbols_succeeded(self) -> int:
        return self.symbols_requested - self.symbols_failed


METADATA_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "name": pl.String(),
    "sector": pl.String(),
    "industry": pl.String(),
}
MetadataRow = tuple[str, str | None, str | None, str | None]


def metadata_frame(rows: Sequence[MetadataRow]) -> pl.DataFrame:
    """(symbol, name, sector, industry) as a provider knows them; None where it does not."""
    return pl.DataFrame(list(rows), schema=METADATA_SCHEMA, orient="row")


def failures_frame(rows: Sequence[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=FAILURE_SCHEMA, orient="row")


def in_batches(symbols: Sequence[str], size: int) -> Iterator[list[str]]:
    size = max(1, size)
    for offset in range(0, len(symbols), size):
        yield list(symbols[offset : offset + size])


@dataclass
class BatchBars:
    """One batch of a fetch, as soon as it is complete: its symbols' bars (corporate actions
    joined) and its failed symbols. `requests` counts the call's requests so far."""

    number: int  # 1-based, in the plan of the whole window
    symbols: list[str]
    bars: pl.DataFrame
    failures: pl.DataFrame
    seconds: float
    requests: int = 0

    @property
    def batch(self) -> Batch:
        return Batch(
            self.number, len(self.symbols), self.seconds, self.failures["symbol"].n_unique()
        )


Plan = list[tuple[int, list[str]]]
"""Numbered batches of symbols (1-based): the same symbols and size give the same plan."""


def plan_batches(symbols: Sequence[str], size: int) -> Plan:
    return list(enumerate(in_batches(list(dict.fromkeys(symbols)), size), start=1))


def gather(
    batches: Iterator[BatchBars], total: int, batch_size: int, symbols: int, log: Log
) -> FetchResult:
    """A whole fetch from its batches, logging a `batch_line` as each one completes."""
    started = time.perf_counter()
    result = FetchResult(bars=empty_bars(), batch_size=batch_size, symbols_requested=symbols)
    pieces: list[pl.DataFrame] = []
    failures: list[pl.DataFrame] = []
    for done, piece in enumerate(batches, start=1):
        pieces.append(piece.bars)
        failures.append(piece.failures)
        result.batches.append(piece.batch)
        result.requests = piece.requests
        log(batch_line(piece.batch, total, time.perf_counter() - started, done))
    result.batches.sort(key=lambda batch: batch.number)
    result.bars = pl.concat([empty_bars(), *pieces], how="diagonal_relaxed").select(BAR_COLUMNS)
    result.failures = pl.concat([failures_frame([]), *failures])
    return result


def batch_line(batch: Batch, total: int, elapsed: float, done: int | None = None) -> str:
    """The per-batch progress line, e.g.
    `batch 3/55 (5 %): 100 symbols, 1.2 s, 2 failed, ETA 1 min 4 s`; `elapsed` is the time
    since the fetch began, `done` the batches finished when they finish out of order."""
    return progress_line(
        "batch",
        batch.number,
        total,
        f"{plural(batch.symbols, 'symbol')}, {batch.seconds:.1f} s, {batch.failed} failed",
        elapsed,
        done,
    )


__all__ = [
    "BAR_COLUMNS",
    "FAILURE_SCHEMA",
    "Batch",
    "BatchBars",
    "FetchResult",
    "Plan",
    "Retries",
    "backoff",
    "batch_line",
    "empty_bars",
    "failures_frame",
    "gather",
    "in_batches",
    "metadata_frame",
    "plan_batches",
]
