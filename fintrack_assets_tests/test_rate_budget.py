"""Request budgets (`rate_limit_per_minute`) on a fake clock: no test here sleeps.

`FakeClock` is time that passes only when someone sleeps: a thread that read the clock at t
and sleeps s seconds wakes at t + s, and the clock never goes back, so threads sleeping side
by side wake at the later of their times. Each thread's own time (the clock's value at its
last read) is when it was admitted: requests are stamped with it, so the stamps do not depend
on how the threads interleave. The expected stamps are worked out by hand from the rule
"never more than N in any 60 s": pyrate-limiter's sliding window admits the next unit 1 ms
after the oldest of the last N leaves it (t + 60.001 s).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from concurrent.futures import wait
from dataclasses import replace
from typing import Any

import httpx
import pandas as pd
import polars as pl
import pytest

from fintrack_assets.resources.budget import UNLIMITED, RateBudget
from fintrack_assets.resources.http import HttpClient, HttpPolicy, RequestFailed, threaded_client
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets.resources.polygon import POLYGON_RETRIES, PolygonProvider
from fintrack_assets.resources.yahoo import YAHOO_RETRIES, BudgetedAdapter, YahooProvider
from fintrack_assets_tests.polygon_stub import RecordedPolygon, mock_transport
from fintrack_assets_tests.test_yahoo import MARCH, SPLT, RecordedYahoo, calm_history

BASE = "https://api.example"
MINUTE = 60.001  # the wait until the oldest unit of a full window has left it


class FakeClock:
    def __init__(self) -> None:
        self.time = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()
        self._seen = threading.local()

    def now(self) -> float:
        with self._lock:
            self._seen.time = self.time
            return self.time

    def thread_time(self) -> float:
        """The clock as this thread last read it: when its request was admitted."""
        return getattr(self._seen, "time", 0.0)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.time = max(self.time, self.thread_time() + seconds)
            self._seen.time = self.time


def stamps(times: list[float]) -> list[float]:
    return sorted(round(t, 3) for t in times)


def most_in_a_minute(times: list[float]) -> int:
    """The most stamps inside any 60 s window [t, t + 60 s)."""
    return max(sum(start <= t < start + 60 for t in times) for start in times)


def budget(per_minute: int | None, clock: FakeClock) -> RateBudget:
    return RateBudget(per_minute, clock=clock.now, sleep=clock.sleep)


def policy(
    handler: httpx.MockTransport, clock: FakeClock, per_minute: int | None, workers: int = 1
) -> HttpPolicy:
    return HttpPolicy(workers, 5.0, 3, 0.5, 60.0, handler, clock.sleep, budget(per_minute, clock))


def stamping(clock: FakeClock, sent: list[float], answer: Any = None) -> httpx.MockTransport:
    """A transport that stamps each request with its thread's time; `answer(n)` (the n-th
    request, from 1) may replace the 200."""
    lock = threading.Lock()

    def handle(request: httpx.Request) -> httpx.Response:
        with lock:
            sent.append(clock.thread_time())
            n = len(sent)
        return (answer and answer(n)) or httpx.Response(200, json={"n": n})

    return httpx.MockTransport(handle)


def test_twelve_requests_at_five_a_minute_take_two_minutes() -> None:
    clock = FakeClock()
    sent: list[float] = []
    client = HttpClient(BASE, policy(stamping(clock, sent), clock, 5))
    for _ in range(12):
        client.request("GET", f"{BASE}/x")
    # 5 at 0 s; the 6th waits for the 1st to leave the window: 5 at 60.001 s; 2 at 120.002 s.
    assert stamps(sent) == [0.0] * 5 + [60.001] * 5 + [120.002] * 2
    assert sent[-1] - sent[0] >= 120
    assert clock.sleeps == pytest.approx([MINUTE, MINUTE])
    assert client.policy.budget is not None
    assert client.policy.budget.waits == 2
    assert client.policy.budget.waited_seconds == pytest.approx(2 * MINUTE)
    assert client.policy.budget.acquired == 12 == client.requests


def test_unlimited_by_default_means_no_waits() -> None:
    clock = FakeClock()
    sent: list[float] = []
    client = HttpClient(BASE, policy(stamping(clock, sent), clock, None))
    for _ in range(50):
        client.request("GET", f"{BASE}/x")
    assert len(sent) == 50 and clock.sleeps == [] and clock.time == 0.0
    assert HttpPolicy(1, 5.0, 3, 0.5, 60.0).budget is None  # fraud_http, alerts: no budget
    assert RateBudget(None).description == "unlimited"
    assert RateBudget(None).acquire(1000) == 0.0
    assert MarketDataResource().rate_limit_per_minute is None


def test_retry_after_is_waited_and_then_the_budget_still_holds() -> None:
    """2 a minute. Request 1 at 0 s. Request 2's first attempt (0 s) is refused with a 429 and
    `Retry-After: 5`: it waits 5 s, then its retry is the third request in 60 s, so it waits
    for the budget until 60.001 s (55.001 s more). A retry counts against the budget."""
    clock = FakeClock()
    sent: list[float] = []

    def answer(n: int) -> httpx.Response | None:
        return httpx.Response(429, headers={"Retry-After": "5"}) if n == 2 else None

    client = HttpClient(BASE, policy(stamping(clock, sent, answer), clock, 2))
    client.request("GET", f"{BASE}/x")
    response = client.request("GET", f"{BASE}/x")

    assert response.status_code == 200
    assert stamps(sent) == [0.0, 0.0, 60.001]
    assert clock.sleeps == pytest.approx([5.0, 55.001])
    assert client.requests == 3


def test_threads_share_one_budget() -> None:
    """Ten requests from four threads at 3 a minute: 3 at 0 s, 3 at 60.001 s, 3 at 120.002 s
    and the last at 180.003 s, however the threads interleave."""
    clock = FakeClock()
    sent: list[float] = []
    transport = stamping(clock, sent)
    with threaded_client(BASE, policy(transport, clock, 3, workers=4), "t") as (client, pool):
        done, _ = wait([pool.submit(client.request, "GET", f"{BASE}/x") for _ in range(10)])
    assert all(future.result().status_code == 200 for future in done)
    assert stamps(sent) == [0.0] * 3 + [60.001] * 3 + [120.002] * 3 + [180.003]
    assert most_in_a_minute(sent) == 3
    # Every wait is to the next window: a minute from the stamps of the one before.
    assert set(round(s, 3) for s in clock.sleeps) == {MINUTE}


def test_polygon_sends_every_request_through_the_budget() -> None:
    """A range of four tickers is 8 requests (AAPL and the dividends are 2 pages each, as
    test_polygon counts them); at 5 a minute with 16 threads: 5 at 0 s, 3 at 60.001 s."""
    clock = FakeClock()
    requests: list[httpx.Request] = []
    sent: list[float] = []
    transport = mock_transport(RecordedPolygon(), requests)

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(clock.thread_time())
        return transport.handle_request(request)

    provider = PolygonProvider(
        api_key="pk_TEST",
        transport=httpx.MockTransport(handle),
        retries=replace(POLYGON_RETRIES, sleep=clock.sleep),
        batch_size=2,
        budget=budget(5, clock),
    )
    days = [dt.date(2024, 6, 6), dt.date(2024, 6, 7), dt.date(2024, 6, 10), dt.date(2024, 6, 11)]
    result = provider.fetch(["AAPL", "MSFT", "NVDA", "BRK-B"], days, lambda line: None)

    assert result.failures.is_empty() and result.bars.height == 16
    assert result.requests == len(requests) == 8
    assert stamps(sent) == [0.0] * 5 + [60.001] * 3
    assert provider.rate_limit_per_minute == 5
    assert provider.budget.description == "5 requests/min"
    assert provider.budget.acquired == 8
    assert "pk_TEST" not in repr(provider)


class StampedYahoo(RecordedYahoo):
    """Recorded Yahoo that notes each call with its thread's time on the fake clock."""

    def __init__(self, clock: FakeClock, **histories: pd.DataFrame) -> None:
        super().__init__(histories)
        self.clock = clock
        self.log: list[tuple[str, float]] = []

    def download(
        self, tickers: list[str], start: dt.date, end: dt.date, threads: int
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        self.log.append((f"download {','.join(tickers)}", self.clock.thread_time()))
        return super().download(tickers, start, end, threads)

    def splits(self, ticker: str) -> pd.Series:
        self.log.append((f"splits {ticker}", self.clock.thread_time()))
        return super().splits(ticker)


def test_yahoo_takes_a_unit_per_ticker_downloaded_and_per_split_history() -> None:
    """3 a minute, batches of 2: the first download is 2 units (one request per ticker) and
    SPLT's split history the 3rd, at 0 s; CALM's waits until 60.001 s; BRK-B's download and
    split history are the 2nd and 3rd of that minute."""
    clock = FakeClock()
    recorded = StampedYahoo(clock, SPLT=SPLT, CALM=calm_history(), **{"BRK-B": SPLT})
    yahoo = YahooProvider(
        adapter=BudgetedAdapter(recorded, budget(3, clock)),
        batch_size_range=2,
        retries=replace(YAHOO_RETRIES, sleep=clock.sleep),
    )
    result = yahoo.fetch(["SPLT", "CALM", "BRK-B"], MARCH, lambda line: None)

    assert result.failures.is_empty()
    assert [(call, round(at, 3)) for call, at in recorded.log] == [
        ("download SPLT,CALM", 0.0),
        ("splits SPLT", 0.0),
        ("splits CALM", 60.001),
        ("download BRK-B", 60.001),
        ("splits BRK-B", 60.001),
    ]
    assert clock.sleeps == pytest.approx([MINUTE])
    assert yahoo.rate_limit_per_minute == 3 and yahoo.budget.acquired == 6
    assert YahooProvider(adapter=recorded).budget is UNLIMITED


def test_a_download_larger_than_a_minute_waits_rather_than_fails() -> None:
    clock = FakeClock()
    recorded = StampedYahoo(clock, SPLT=SPLT)
    adapter = BudgetedAdapter(recorded, budget(2, clock))
    adapter.download(["SPLT"] * 5, MARCH[0], MARCH[-1], 1)
    # Units 1-2 at 0 s, 3-4 at 60.001 s, 5 at 120.002 s; then the download goes out.
    assert recorded.log == [("download SPLT,SPLT,SPLT,SPLT,SPLT", pytest.approx(120.002))]
    assert clock.sleeps == pytest.approx([MINUTE, MINUTE])


def test_the_resource_builds_each_provider_with_its_budget() -> None:
    universe = pl.DataFrame({"symbol": ["AAPL"]})
    polygon = MarketDataResource(source="polygon", polygon_api_key="k", rate_limit_per_minute=5)
    built = polygon.provider(universe)
    assert built.budget.per_minute == 5
    assert built is polygon.provider(universe)  # one provider, so one budget, per run
    yahoo = MarketDataResource(source="yfinance", rate_limit_per_minute=60).provider(universe)
    assert yahoo.budget.description == "60 requests/min"
    assert isinstance(yahoo, YahooProvider) and isinstance(yahoo.adapter, BudgetedAdapter)
    synthetic = MarketDataResource(rate_limit_per_minute=5).provider(universe)
    assert synthetic.budget is UNLIMITED  # nothing is requested
    assert (
        MarketDataResource(source="polygon", polygon_api_key="k")
        .provider(universe)
        .budget.description
        == "unlimited"
    )
    with pytest.raises(ValueError, match="rate_limit_per_minute"):
        MarketDataResource(rate_limit_per_minute=0)
    with pytest.raises(ValueError, match="whole number"):
        RateBudget(0)


def test_budget_metadata_counts_the_waits() -> None:
    clock = FakeClock()
    limited = budget(1, clock)
    assert limited.acquire(3) == pytest.approx(2 * MINUTE)
    assert limited.metadata() == {
        "rate_limit_per_minute": 1,
        "budget": "1 request/min",
        "budget_waits": 2,
        "budget_wait_seconds": 120.002,
    }
    assert Counter(round(s, 3) for s in clock.sleeps) == {MINUTE: 2}


def test_a_call_stopped_during_a_budget_wait_sends_nothing_more() -> None:
    """The run is stopped while a request waits for the budget: it is not sent after the wait."""
    clock = FakeClock()
    sent: list[float] = []
    client: HttpClient | None = None

    def stopped_while_waiting(seconds: float) -> None:
        clock.sleep(seconds)
        assert client is not None
        client.cancelled.set()

    limited = RateBudget(1, clock=clock.now, sleep=stopped_while_waiting)
    client = HttpClient(BASE, replace(policy(stamping(clock, sent), clock, None), budget=limited))
    client.request("GET", f"{BASE}/x")
    with pytest.raises(RequestFailed, match="not sent: cancelled"):
        client.request("GET", f"{BASE}/x")
    assert sent == [0.0] and clock.sleeps == pytest.approx([MINUTE])


def test_without_an_injected_sleep_the_wait_ends_when_the_call_is_cancelled() -> None:
    clock = FakeClock()
    limited = RateBudget(1, clock=clock.now)  # production waiting: on the cancel event
    limited.acquire()
    cancelled = threading.Event()
    cancelled.set()
    assert limited.acquire(cancelled=cancelled) == pytest.approx(MINUTE)  # planned, not slept
    assert clock.time == 0.0 and limited.acquired == 1


def test_the_budget_holds_across_a_runs_calls() -> None:
    """Each call opens its own client; the budget is the provider's. At 4 a minute: ticker
    details for 2 symbols (2 requests), then a session twice (grouped bars, splits,
    dividends: 3 each) are 8 requests: 4 at 0 s and 4 at 60.001 s, not 2 + 3 + 3 at 0 s."""
    clock = FakeClock()
    sent: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(clock.thread_time())
        return transport.handle_request(request)

    transport = mock_transport(RecordedPolygon())
    provider = PolygonProvider(
        api_key="pk_TEST",
        transport=httpx.MockTransport(handle),
        retries=replace(POLYGON_RETRIES, sleep=clock.sleep),
        budget=budget(4, clock),
    )
    provider.symbol_metadata(["AAPL", "MSFT"], lambda line: None)
    for _ in range(2):
        result = provider.fetch(["AAPL", "MSFT"], [dt.date(2024, 6, 10)], lambda line: None)
        assert result.failures.is_empty() and result.requests == 3
    assert stamps(sent) == [0.0] * 4 + [60.001] * 4
    assert most_in_a_minute(sent) == 4
