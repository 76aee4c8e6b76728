"""Polygon range backfill: `PolygonProvider.fetch` against a local Polygon stub that adds
50 ms to every request, compared with the same requests sent one after another.

The stub (`fintrack_assets_tests.polygon_stub`, synthetic payloads for any ticker) runs in
a child process: in-process, its handler threads would share the GIL with the provider's
16 client threads and JSON parsing, and the benchmark would measure the contention rather
than the provider (see benchmarks/README.md for the measurement).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx

from benchmarks.common import FAIL, PASS, Outcome, Row, VerificationError, log
from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.universe import synthetic_universe
from fintrack_assets.resources.polygon import PolygonProvider
from fintrack_assets_tests.polygon_stub import StubProcess

NAME = "polygon_range_backfill_500x1y"
LATENCY_SECONDS = 0.05
MAX_CONCURRENCY = 16
TARGET_RATIO = 10.0
LAST = dt.date(2025, 10, 3)
KEY = "bench-not-a-real-key"


def year_of_sessions(last: dt.date = LAST) -> list[dt.date]:
    """The NYSE sessions of the year ending on `last` (~252)."""
    return sessions_between(
        last.replace(year=last.year - 1) + dt.timedelta(days=1), last + dt.timedelta(days=1)
    )


def _pages(client: httpx.Client, base: str, path: str, params: dict[str, str]) -> int:
    """One listing, following next_url on the stub; returns the results seen."""
    body: dict[str, Any] = client.get(base + path, params=params).raise_for_status().json()
    seen = len(body.get("results") or [])
    while next_url := body.get("next_url"):
        parts = httpx.URL(next_url)
        body = client.get(base + parts.raw_path.decode()).raise_for_status().json()
        seen += len(body.get("results") or [])
    return seen


def sequential_baseline(
    base: str, sample: list[str], first: dt.date, last: dt.date
) -> tuple[float, float, int]:
    """(seconds for the sample's range requests, seconds for the two actions listings,
    bars seen): the requests the provider sends, one at a time on one plain client."""
    window = f"{first.isoformat()}/{last.isoformat()}"
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30.0) as client:
        started = time.perf_counter()
        for path, field in (
            ("/v3/reference/splits", "execution_date"),
            ("/v3/reference/dividends", "ex_dividend_date"),
        ):
            params = {f"{field}.gte": first.isoformat(), f"{field}.lte": last.isoformat()}
            _pages(client, base, path, {**params, "limit": "1000"})
        actions = time.perf_counter() - started
        started = time.perf_counter()
        bars = 0
        for ticker in sample:
            bars += _pages(
                client,
                base,
                f"/v2/aggs/ticker/{ticker}/range/1/day/{window}",
                {"adjusted": "false", "sort": "asc", "limit": "50000"},
            )
        ranges = time.perf_counter() - started
    return ranges, actions, bars


def range_backfill(quick: bool) -> Outcome:
    count = 200 if quick else 500
    sample_size = 20 if quick else 50
    symbols = synthetic_universe(count)["symbol"].to_list()
    sessions = year_of_sessions()
    first, last = sessions[0], sessions[-1]
    expected_rows = count * len(sessions)
    lines: list[str] = []
    with StubProcess("synthetic", LATENCY_SECONDS, tickers=symbols) as stub:
        log(f"{NAME}: stub at {stub.url}, {LATENCY_SECONDS * 1000:.0f} ms per request")
        log(f"{NAME}: baseline, {sample_size} tickers one request at a time ...")
        range_seconds, actions_seconds, sample_bars = sequential_baseline(
            stub.url, symbols[:sample_size], first, last
        )
        if sample_bars != sample_size * len(sessions):
            raise VerificationError(
                f"{NAME}: baseline saw {sample_bars:,} bars, "
                f"expected {sample_size * len(sessions):,}"
            )
        baseline = range_seconds / sample_size * count + actions_seconds
        log(
            f"{NAME}: baseline {range_seconds:.2f} s for {sample_size} tickers, "
            f"~{baseline:.1f} s for {count}"
        )
        stub.reset()
        provider = PolygonProvider(
            api_key=KEY, base_url=stub.url, max_concurrency=MAX_CONCURRENCY, batch_size=50
        )
        log(f"{NAME}: PolygonProvider.fetch, {count} symbols x {len(sessions)} sessions ...")
        started = time.perf_counter()
        result = provider.fetch(symbols, sessions, lines.append)
        seconds = time.perf_counter() - started
        stats = stub.stats()
    log(
        f"{NAME}: {seconds:.2f} s, {result.requests} requests, "
        f"stub peak in flight {stats['max_in_flight']}"
    )

    problems = []
    if not result.failures.is_empty():
        problems.append(f"{result.symbols_failed} symbols failed: {result.failures.head(3).rows()}")
    if result.bars.height != expected_rows:
        problems.append(f"{result.bars.height:,} bars, expected {expected_rows:,}")
    if stats["max_in_flight"] > MAX_CONCURRENCY:
        problems.append(
            f"stub saw {stats['max_in_flight']} requests in flight, "
            f"max_concurrency is {MAX_CONCURRENCY}"
        )
    if stats["requests"] != result.requests:
        problems.append(
            f"stub counted {stats['requests']} requests, the provider {result.requests}"
        )
    if len(result.batches) != len(lines) or len(lines) != -(-count // 50):
        problems.append(f"{len(lines)} batch lines for {count} symbols in batches of 50")
    if problems:
        raise VerificationError(f"{NAME}: " + "; ".join(problems))

    ratio = baseline / seconds
    size = (
        f"{count} symbols x {len(sessions)} sessions = {expected_rows:,} bars "
        f"({result.requests} requests)"
    )
    row = Row(
        NAME,
        size,
        seconds,
        result.bars.height,
        f"{baseline:.1f} s sequential (from a {sample_size}-ticker sample)",
        f"{ratio:.1f}x faster",
        f">= {TARGET_RATIO:g}x, peak in flight <= {MAX_CONCURRENCY}",
        PASS if ratio >= TARGET_RATIO else FAIL,
    )
    notes = [
        f"{NAME}: stub in a child process, {LATENCY_SECONDS * 1000:.0f} ms per request; peak "
        f"{stats['max_in_flight']} requests in flight (max_concurrency {MAX_CONCURRENCY}); "
        f"{result.requests} requests ({count} ranges + splits and dividends listings)",
        f"{NAME}: baseline: one plain httpx.Client, same requests one at a time: "
        f"{range_seconds:.2f} s for {sample_size} tickers, extrapolated x{count / sample_size:g}, "
        f"+ {actions_seconds:.2f} s for the actions listings; the floor at 16 in flight is "
        f"~{-(-count // MAX_CONCURRENCY) * LATENCY_SECONDS:.2f} s",
    ]
    return Outcome([row], notes)
