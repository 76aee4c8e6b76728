"""PolygonProvider against recorded Polygon payloads (data/polygon), through
`httpx.MockTransport` and through a real HTTP server on 127.0.0.1.

Expected values are read off the payload files by hand (see data/polygon/README.md), never
from the provider's own output."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import polars as pl
import pytest

from fintrack_assets.core.universe import synthetic_universe
from fintrack_assets.resources.fetching import Retries, empty_bars
from fintrack_assets.resources.polygon import (
    INDEX_UNAVAILABLE,
    MALFORMED_ACTION,
    NO_BARS,
    POLYGON_RETRIES,
    PolygonAuthError,
    PolygonProvider,
    from_polygon,
    to_polygon,
)
from fintrack_assets_tests.polygon_stub import (
    RecordedPolygon,
    Response,
    Router,
    StubServer,
    SyntheticPolygon,
    load,
    mock_transport,
)

KEY = "pk_TEST_5ecret_Key_9f8e7d6c5b4a"
D = dt.date
RANGE = [D(2024, 6, 6), D(2024, 6, 7), D(2024, 6, 10), D(2024, 6, 11)]
ONE = [D(2024, 6, 10)]
COLUMNS = list(empty_bars().columns)
LINE = re.compile(
    r"^batch (\d+)/(\d+) \((?:\d+ done, )?\d+ %\): (\d+) symbols?, \d+\.\d s, (\d+) failed, "
    r"(?:ETA .+|.+ in all)$"
)


class Calls:
    """What one provider saw and did: requests sent, backoff sleeps, log lines."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []
        self.lines: list[str] = []

    def paths(self, contains: str = "") -> list[str]:
        return [r.url.path for r in self.requests if contains in r.url.path]


@pytest.fixture
def calls() -> Calls:
    return Calls()


def make(
    calls: Calls,
    router: Router | None = None,
    retries: Retries = POLYGON_RETRIES,
    **options: object,
) -> PolygonProvider:
    return PolygonProvider(
        api_key=KEY,
        transport=mock_transport(router or RecordedPolygon(), calls.requests),
        retries=replace(retries, sleep=calls.sleeps.append),
        **options,  # type: ignore[arg-type]
    )


def scripted(script: Callable[[str, int], Response | None]) -> Router:
    """The recorded router, except where `script(path, nth call of that path)` answers."""
    recorded = RecordedPolygon()
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def route(path: str, query: dict[str, str]) -> Response:
        with lock:
            counts[path] = counts.get(path, 0) + 1
            nth = counts[path]
        return script(path, nth) or recorded(path, query)

    return route


def rate_limited(headers: dict[str, str] | None = None) -> Response:
    body = (RecordedPolygon().root / "error_rate_limited.json").read_bytes()
    return 429, {"Content-Type": "application/json", **(headers or {})}, body


def status(code: int) -> Response:
    return code, {"Content-Type": "application/json"}, b'{"status":"ERROR","request_id":"x"}'


def batch_lines(lines: list[str]) -> list[tuple[str, ...]]:
    """(number, total, symbols, failed) of each line; every line must be a batch line."""
    parsed = []
    for line in lines:
        match = LINE.match(line)
        assert match is not None, line
        parsed.append(match.groups())
    return parsed


def rows(frame: pl.DataFrame, symbol: str) -> list[tuple[object, ...]]:
    return frame.filter(pl.col("symbol") == symbol).sort("date").rows()


def failures(result_failures: pl.DataFrame) -> set[tuple[str, str, int]]:
    return set(result_failures.rows())


MSFT_PATH = "/v2/aggs/ticker/MSFT/range/1/day/2024-06-06/2024-06-11"
NVDA_PATH = "/v2/aggs/ticker/NVDA/range/1/day/2024-06-06/2024-06-11"
AAPL_PATH = "/v2/aggs/ticker/AAPL/range/1/day/2024-06-06/2024-06-11"

# From aggs_*_2024-06-06_2024-06-11*.json, splits_… (NVDA 1 -> 10 on 06-10) and dividends_…
# (NVDA $0.01 on 06-11, MSFT $0.75 on 06-10): symbol, date, o, h, l, c, adj, v, div, split.
AAPL_ROWS = [
    ("AAPL", D(2024, 6, 6), 195.69, 196.5, 194.17, 194.48, None, 41181753, 0.0, 1.0),
    ("AAPL", D(2024, 6, 7), 194.65, 196.94, 194.14, 196.89, None, 53103912, 0.0, 1.0),
    ("AAPL", D(2024, 6, 10), 196.9, 197.3, 192.15, 193.12, None, 97262077, 0.0, 1.0),
    ("AAPL", D(2024, 6, 11), 193.65, 207.16, 193.63, 207.15, None, 172373296, 0.0, 1.0),
]
NVDA_ROWS = [
    ("NVDA", D(2024, 6, 6), 1240.48, 1255.87, 1183.2, 1209.98, None, 64910900, 0.0, 1.0),
    ("NVDA", D(2024, 6, 7), 1197.7, 1216.92, 1180.22, 1208.88, None, 41238600, 0.0, 1.0),
    ("NVDA", D(2024, 6, 10), 120.37, 123.1, 117.01, 121.79, None, 314162700, 0.0, 10.0),
    ("NVDA", D(2024, 6, 11), 121.77, 122.87, 118.74, 120.91, None, 222551200, 0.01, 1.0),
]
MSFT_0610 = ("MSFT", D(2024, 6, 10), 424.7, 428.08, 423.89, 427.87, None, 14003001, 0.75, 1.0)
BRKB_0610 = ("BRK-B", D(2024, 6, 10), 405.81, 410.53, 405.28, 409.91, None, 3217000, 0.0, 1.0)


# -- one session: grouped daily ----------------------------------------------------------------


def test_one_session_is_one_grouped_request_filtered_to_the_universe(calls: Calls) -> None:
    provider = make(calls)
    result = provider.fetch(["AAPL", "MSFT", "BRK-B", "NVDA"], ONE, calls.lines.append)

    assert calls.paths("/v2/aggs") == ["/v2/aggs/grouped/locale/us/market/stocks/2024-06-10"]
    grouped = next(r for r in calls.requests if "grouped" in r.url.path)
    assert grouped.url.params["adjusted"] == "false"
    assert sorted(calls.paths()) == sorted(
        [
            "/v2/aggs/grouped/locale/us/market/stocks/2024-06-10",
            "/v3/reference/splits",
            "/v3/reference/dividends",
        ]
    )
    assert result.requests == 3
    assert result.bars.schema == empty_bars().schema
    assert result.failures.is_empty()
    # BRK.A, KO and SPY are in the grouped payload but not in the universe.
    assert sorted(result.bars["symbol"]) == ["AAPL", "BRK-B", "MSFT", "NVDA"]
    assert rows(result.bars, "AAPL") == [AAPL_ROWS[2]]
    assert rows(result.bars, "NVDA") == [NVDA_ROWS[2]]
    assert rows(result.bars, "MSFT") == [MSFT_0610]
    assert rows(result.bars, "BRK-B") == [BRKB_0610]
    assert batch_lines(calls.lines) == [("1", "1", "4", "0")]
    assert (result.symbols_requested, result.symbols_failed, len(result.batches)) == (4, 0, 1)


def test_one_session_missing_symbol_and_index_are_failures(calls: Calls) -> None:
    result = make(calls).fetch(["AAPL", "TWTR", "^GSPC"], ONE, calls.lines.append)

    assert failures(result.failures) == {("TWTR", NO_BARS, 1), ("^GSPC", INDEX_UNAVAILABLE, 1)}
    assert result.bars["symbol"].to_list() == ["AAPL"]
    assert result.batches[0].failed == 2
    assert not [p for p in calls.paths() if "GSPC" in p or "^" in p]


# -- several sessions: range aggregates --------------------------------------------------------


def test_range_follows_next_url_on_the_configured_host(calls: Calls) -> None:
    provider = make(calls, base_url="https://polygon.internal.example", batch_size=2)
    result = provider.fetch(["AAPL", "MSFT", "NVDA", "BRK-B"], RANGE, calls.lines.append)

    assert result.failures.is_empty()
    assert result.bars.schema == empty_bars().schema
    assert result.bars.height == 16
    assert rows(result.bars, "AAPL") == AAPL_ROWS  # two pages: 06-06/07, then 06-10/11
    page_two = [r for r in calls.requests if "1717646400000" in r.url.path]
    assert len(page_two) == 1
    assert page_two[0].url.host == "polygon.internal.example"  # next_url said api.polygon.io
    assert page_two[0].url.params["cursor"] == "bGltaXQ9MiZzb3J0PWFzYyZzdGFydD0xNzE3ODE5MjAwMDAw"
    assert {r.url.host for r in calls.requests} == {"polygon.internal.example"}
    first = next(r for r in calls.requests if r.url.path == AAPL_PATH)
    assert dict(first.url.params) == {"adjusted": "false", "sort": "asc", "limit": "50000"}
    # AAPL 2 pages, MSFT, NVDA, BRK.B 1 each, splits 1, dividends 2 pages.
    assert result.requests == len(calls.requests) == 8
    assert [b.number for b in result.batches] == [1, 2]
    assert result.batch_size == 2 and result.symbols_requested == 4
    assert sorted(batch_lines(calls.lines)) == [
        ("1", "2", "2", "0"),
        ("2", "2", "2", "0"),
    ]


def test_splits_and_dividends_land_on_their_dates(calls: Calls) -> None:
    result = make(calls).fetch(["AAPL", "MSFT", "NVDA", "BRK-B"], RANGE, calls.lines.append)

    assert rows(result.bars, "NVDA") == NVDA_ROWS
    actions = result.bars.filter((pl.col("split_ratio") != 1.0) | (pl.col("dividend") != 0.0))
    assert sorted(actions.select("symbol", "date", "dividend", "split_ratio").rows()) == [
        ("MSFT", D(2024, 6, 10), 0.75, 1.0),  # from the dividends' second page
        ("NVDA", D(2024, 6, 10), 0.0, 10.0),
        ("NVDA", D(2024, 6, 11), 0.01, 1.0),
    ]
    # SINT, HCXY (splits), PFE and O (dividends) are not in the universe.
    assert set(result.bars["symbol"]) == {"AAPL", "MSFT", "NVDA", "BRK-B"}
    splits = next(r for r in calls.requests if r.url.path == "/v3/reference/splits")
    assert dict(splits.url.params) == {
        "execution_date.gte": "2024-06-06",
        "execution_date.lte": "2024-06-11",
        "limit": "1000",
    }


def test_dividends_on_the_same_ex_date_are_summed(calls: Calls) -> None:
    special = {
        "cash_amount": 0.05,
        "currency": "USD",
        "dividend_type": "SC",
        "ex_dividend_date": "2024-06-11",
        "id": "Especial",
        "ticker": "NVDA",
    }
    page = load("dividends_2024-06-06_2024-06-11_page1.json")
    page["results"].append(special)

    def script(path: str, nth: int) -> Response | None:
        if path == "/v3/reference/dividends" and nth == 1:
            return 200, {"Content-Type": "application/json"}, httpx.Response(200, json=page).content
        return None

    result = make(calls, scripted(script)).fetch(["NVDA"], RANGE, calls.lines.append)
    assert rows(result.bars, "NVDA")[3][8] == pytest.approx(0.06)


def test_malformed_action_record_fails_only_its_symbol(calls: Calls) -> None:
    page = load("splits_2024-06-06_2024-06-11.json")
    page["results"][0]["split_from"] = 0  # NVDA: a ratio we cannot compute
    del page["results"][1]["execution_date"]  # SINT: not in the universe, ignored

    def script(path: str, nth: int) -> Response | None:
        if path == "/v3/reference/splits":
            return 200, {"Content-Type": "application/json"}, httpx.Response(200, json=page).content
        return None

    result = make(calls, scripted(script)).fetch(["NVDA", "AAPL"], RANGE, calls.lines.append)

    assert failures(result.failures) == {("NVDA", MALFORMED_ACTION, 1)}
    assert rows(result.bars, "AAPL") == AAPL_ROWS
    assert rows(result.bars, "NVDA") == []
    assert result.batches[0].failed == 1


def test_empty_results_is_a_failure_for_that_symbol(calls: Calls) -> None:
    result = make(calls).fetch(["TWTR", "MSFT"], RANGE, calls.lines.append)

    assert failures(result.failures) == {("TWTR", NO_BARS, 1)}
    assert result.bars["symbol"].unique().to_list() == ["MSFT"]
    assert result.bars.height == 4
    assert result.symbols_succeeded == 1


def test_bar_on_a_weekend_is_passed_through(calls: Calls) -> None:
    result = make(calls).fetch(["AMD"], RANGE, calls.lines.append)

    # aggs_AMD has 06-07 (Fri), 06-08 (Sat: not a session) and 06-10 (Mon); bronze rejects
    # the Saturday bar, the provider does not drop it.
    assert result.bars["date"].to_list() == [D(2024, 6, 7), D(2024, 6, 8), D(2024, 6, 10)]
    assert result.bars.row(1) == (
        "AMD",
        D(2024, 6, 8),
        167.0,
        167.0,
        167.0,
        167.0,
        None,
        1200,
        0.0,
        1.0,
    )
    assert result.failures.is_empty()


def test_a_value_of_the_wrong_type_becomes_null_not_a_crash(calls: Calls) -> None:
    page = load("aggs_MSFT_2024-06-06_2024-06-11.json")
    page["results"][1]["o"] = "n/a"

    def script(path: str, nth: int) -> Response | None:
        if path == MSFT_PATH:
            return 200, {"Content-Type": "application/json"}, httpx.Response(200, json=page).content
        return None

    result = make(calls, scripted(script)).fetch(["MSFT", "AAPL"], RANGE, calls.lines.append)

    assert result.failures.is_empty()
    assert [row[2] for row in rows(result.bars, "MSFT")] == [424.01, None, 424.7, 425.48]
    assert rows(result.bars, "AAPL") == AAPL_ROWS


def test_class_shares_map_both_ways(calls: Calls) -> None:
    assert to_polygon("BRK-B") == "BRK.B"
    assert from_polygon("BRK.B") == "BRK-B"
    assert to_polygon("AAPL") == from_polygon("AAPL") == "AAPL"

    result = make(calls).fetch(["BRK-B"], RANGE, calls.lines.append)
    assert calls.paths("/v2/aggs") == ["/v2/aggs/ticker/BRK.B/range/1/day/2024-06-06/2024-06-11"]
    assert result.bars["symbol"].unique().to_list() == ["BRK-B"]
    assert rows(result.bars, "BRK-B")[2] == BRKB_0610


def test_index_symbol_fails_without_a_request(calls: Calls) -> None:
    result = make(calls, batch_size=1).fetch(["^GSPC", "AAPL"], RANGE, calls.lines.append)

    assert failures(result.failures) == {("^GSPC", INDEX_UNAVAILABLE, 1)}
    assert not [p for p in calls.paths() if "GSPC" in p]
    assert result.bars["symbol"].unique().to_list() == ["AAPL"]
    assert [(b.number, b.failed) for b in result.batches] == [(1, 1), (2, 0)]


def test_same_bar_from_grouped_daily_or_inside_a_range(calls: Calls) -> None:
    universe = ["AAPL", "MSFT", "NVDA", "BRK-B"]
    single = make(calls).fetch(universe, ONE, calls.lines.append).bars.sort("symbol")
    ranged = make(calls).fetch(universe, RANGE, calls.lines.append).bars
    in_range = ranged.filter(pl.col("date") == ONE[0]).sort("symbol")

    assert single.height == 4
    assert single.equals(in_range)
    assert sorted(single.rows()) == sorted([AAPL_ROWS[2], NVDA_ROWS[2], MSFT_0610, BRKB_0610])


# -- retries -----------------------------------------------------------------------------------


def test_429_with_retry_after_waits_that_long(calls: Calls) -> None:
    def script(path: str, nth: int) -> Response | None:
        return rate_limited({"Retry-After": "7"}) if path == MSFT_PATH and nth == 1 else None

    result = make(calls, scripted(script)).fetch(["MSFT"], RANGE, calls.lines.append)

    assert calls.sleeps == [7.0]
    assert result.failures.is_empty()
    assert result.bars.height == 4
    assert calls.paths("/v2/aggs") == [MSFT_PATH, MSFT_PATH]
    assert result.requests == 5  # MSFT twice, splits, dividends two pages


def test_429_without_retry_after_backs_off_with_full_jitter(calls: Calls) -> None:
    def script(path: str, nth: int) -> Response | None:
        return rate_limited() if path == MSFT_PATH and nth <= 2 else None

    provider = make(calls, scripted(script), replace(POLYGON_RETRIES, backoff_base_seconds=0.5))
    result = provider.fetch(["MSFT"], RANGE, calls.lines.append)

    assert result.failures.is_empty()
    assert len(calls.sleeps) == 2
    # Attempt n waits uniform(0, base * 2^(n-1)).
    assert 0.0 <= calls.sleeps[0] <= 0.5
    assert 0.0 <= calls.sleeps[1] <= 1.0


def test_503_with_retry_after_waits_that_long(calls: Calls) -> None:
    """Honoured since Polygon shares the fraud API's client (it used to back off at random)."""

    def script(path: str, nth: int) -> Response | None:
        if path == MSFT_PATH and nth == 1:
            return 503, {"Content-Type": "application/json", "Retry-After": "7"}, b"{}"
        return None

    result = make(calls, scripted(script)).fetch(["MSFT"], RANGE, calls.lines.append)

    assert calls.sleeps == [7.0]
    assert result.failures.is_empty() and result.bars.height == 4
    assert calls.paths("/v2/aggs") == [MSFT_PATH, MSFT_PATH]


def test_500_storm_ends_as_a_recorded_failure_while_others_succeed(calls: Calls) -> None:
    def script(path: str, nth: int) -> Response | None:
        return status(500) if path == MSFT_PATH else None

    provider = make(calls, scripted(script), replace(POLYGON_RETRIES, max_attempts=3), batch_size=2)
    result = provider.fetch(["AAPL", "MSFT", "NVDA"], RANGE, calls.lines.append)

    assert failures(result.failures) == {("MSFT", "HTTP 500 after 3 attempts", 1)}
    assert calls.paths(MSFT_PATH) == [MSFT_PATH] * 3
    assert len(calls.sleeps) == 2
    assert 0.0 <= calls.sleeps[0] <= 1.0 and 0.0 <= calls.sleeps[1] <= 2.0
    assert sorted(result.bars["symbol"].unique()) == ["AAPL", "NVDA"]
    assert result.bars.height == 8
    assert [(b.number, b.symbols, b.failed) for b in result.batches] == [(1, 2, 1), (2, 1, 0)]
    assert result.requests == 3 + 2 + 1 + 1 + 2  # MSFT x3, AAPL x2 pages, NVDA, actions
    assert ("1", "2", "2", "1") in batch_lines(calls.lines)


def test_timeouts_and_connection_errors_are_retried_then_recorded(calls: Calls) -> None:
    recorded = RecordedPolygon()

    def handle(request: httpx.Request) -> httpx.Response:
        calls.requests.append(request)
        if request.url.path == MSFT_PATH:
            raise httpx.ReadTimeout("timed out", request=request)
        if request.url.path == NVDA_PATH:
            raise httpx.ConnectError("connection refused", request=request)
        code, headers, body = recorded(request.url.path, dict(request.url.params))
        return httpx.Response(code, headers=headers, content=body)

    provider = PolygonProvider(
        api_key=KEY,
        transport=httpx.MockTransport(handle),
        retries=replace(POLYGON_RETRIES, max_attempts=2, sleep=calls.sleeps.append),
    )
    result = provider.fetch(["MSFT", "NVDA", "AAPL"], RANGE, calls.lines.append)

    assert failures(result.failures) == {
        ("MSFT", "timeout (ReadTimeout) after 2 attempts", 1),
        ("NVDA", "connection error (ConnectError) after 2 attempts", 1),
    }
    assert len(calls.paths(MSFT_PATH)) == len(calls.paths(NVDA_PATH)) == 2
    assert result.bars["symbol"].unique().to_list() == ["AAPL"]


def test_other_4xx_is_not_retried(calls: Calls) -> None:
    def script(path: str, nth: int) -> Response | None:
        return status(404) if path == AAPL_PATH else None

    result = make(calls, scripted(script)).fetch(["AAPL", "MSFT"], RANGE, calls.lines.append)

    assert failures(result.failures) == {("AAPL", "HTTP 404", 1)}
    assert calls.paths(AAPL_PATH) == [AAPL_PATH]
    assert calls.sleeps == []


@pytest.mark.parametrize("sessions", [ONE, RANGE], ids=["one-session", "range"])
def test_failed_corporate_actions_fail_every_symbol(calls: Calls, sessions: list[dt.date]) -> None:
    def script(path: str, nth: int) -> Response | None:
        return status(503) if path == "/v3/reference/dividends" else None

    provider = make(calls, scripted(script), replace(POLYGON_RETRIES, max_attempts=2))
    result = provider.fetch(["AAPL", "MSFT", "TWTR"], sessions, calls.lines.append)

    actions_error = "corporate actions: HTTP 503 after 2 attempts"
    assert result.bars.is_empty()
    assert result.bars.schema == empty_bars().schema
    assert failures(result.failures) == {
        ("AAPL", actions_error, 1),
        ("MSFT", actions_error, 1),
        ("TWTR", NO_BARS, 1),  # its own error wins
    }
    assert result.symbols_succeeded == 0
    assert [b.failed for b in result.batches] == [3]
    assert any("corporate actions" in line for line in calls.lines)


# -- credentials -------------------------------------------------------------------------------


def test_bearer_header_sent_and_the_key_never_leaks(calls: Calls) -> None:
    def script(path: str, nth: int) -> Response | None:
        if path == MSFT_PATH:
            return status(500)
        if path == NVDA_PATH and nth == 1:
            return rate_limited({"Retry-After": "1"})
        return None

    provider = make(calls, scripted(script), replace(POLYGON_RETRIES, max_attempts=2), batch_size=2)
    result = provider.fetch(["AAPL", "MSFT", "NVDA", "^GSPC", "TWTR"], RANGE, calls.lines.append)
    _, meta_failures = provider.symbol_metadata(["AAPL", "ZZZZ", "^GSPC"], calls.lines.append)

    assert calls.requests
    for request in calls.requests:  # page two (next_url) included
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert KEY not in str(request.url)
    assert not result.failures.is_empty() and calls.lines
    texts = [
        repr(provider),
        str(provider),
        *calls.lines,
        *result.failures["error"],
        *meta_failures["error"],
        repr(result),
    ]
    assert not [text for text in texts if KEY in text]


@pytest.mark.parametrize("code", [401, 403])
@pytest.mark.parametrize("sessions", [ONE, RANGE], ids=["one-session", "range"])
def test_auth_failure_raises_without_the_key(
    calls: Calls, code: int, sessions: list[dt.date]
) -> None:
    body = (RecordedPolygon().root / "error_unauthorized.json").read_bytes()

    def refuse(path: str, query: dict[str, str]) -> Response:
        return code, {"Content-Type": "application/json"}, body

    provider = make(calls, refuse)
    with pytest.raises(PolygonAuthError) as raised:
        provider.fetch(["AAPL", "MSFT"], sessions, calls.lines.append)

    message = str(raised.value)
    assert f"HTTP {code}" in message and "POLYGON_API_KEY" in message
    assert KEY not in "".join(traceback.format_exception(raised.value))
    assert calls.sleeps == []  # not retried
    assert not [line for line in calls.lines if KEY in line]

    with pytest.raises(PolygonAuthError) as raised:
        provider.symbol_metadata(["AAPL"], calls.lines.append)
    assert KEY not in str(raised.value)


def test_after_a_refused_key_nothing_more_is_sent(calls: Calls) -> None:
    def refuse(path: str, query: dict[str, str]) -> Response:
        return 401, {"Content-Type": "application/json"}, b'{"status":"ERROR"}'

    provider = make(calls, refuse, max_concurrency=1)
    with pytest.raises(PolygonAuthError):
        provider.fetch(["AAPL", "MSFT", "NVDA"], RANGE, calls.lines.append)

    # One thread: the splits request is refused first; dividends and the three tickers,
    # queued behind it, are never sent.
    assert calls.paths() == ["/v3/reference/splits"]


def test_a_password_in_the_base_url_stays_out_of_httpx_log_lines(
    calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base = "https://proxy-user:pr0xy-pa55@polygon.internal.example/"
    result = make(calls, base_url=base).fetch(["AAPL"], ONE, calls.lines.append)

    assert result.failures.is_empty()
    assert all(r.url.password == "pr0xy-pa55" for r in calls.requests)  # sent all the same
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP Request")]
    assert len(lines) == len(calls.requests) == 3
    assert all("https://polygon.internal.example/…" in line for line in lines)
    assert "pr0xy-pa55" not in caplog.text


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="POLYGON_API_KEY"):
        PolygonProvider(api_key="")


# -- ticker details ----------------------------------------------------------------------------


def test_symbol_metadata_names_and_sic_industry(calls: Calls) -> None:
    frame, failed = make(calls).symbol_metadata(
        ["AAPL", "BRK-B", "MSFT", "^GSPC", "ZZZZ"], calls.lines.append
    )

    assert frame.schema == pl.Schema(
        {"symbol": pl.String, "name": pl.String, "sector": pl.String, "industry": pl.String}
    )
    assert sorted(frame.rows()) == [
        ("AAPL", "Apple Inc.", None, "ELECTRONIC COMPUTERS"),
        ("BRK-B", "Berkshire Hathaway Inc.", None, "FIRE, MARINE & CASUALTY INSURANCE"),
        ("MSFT", "Microsoft Corp", None, "SERVICES-PREPACKAGED SOFTWARE"),
    ]
    assert failures(failed) == {("^GSPC", INDEX_UNAVAILABLE, 0), ("ZZZZ", "HTTP 404", 0)}
    assert sorted(calls.paths()) == [
        "/v3/reference/tickers/AAPL",
        "/v3/reference/tickers/BRK.B",
        "/v3/reference/tickers/MSFT",
        "/v3/reference/tickers/ZZZZ",
    ]


# -- a real HTTP server on 127.0.0.1 -----------------------------------------------------------


@pytest.fixture
def recorded_server() -> Iterator[StubServer]:
    with StubServer(RecordedPolygon()) as server:
        yield server


def test_real_server_serves_the_same_bars_as_the_mock(
    calls: Calls, recorded_server: StubServer
) -> None:
    universe = ["AAPL", "MSFT", "NVDA", "BRK-B", "TWTR"]
    over_http = PolygonProvider(api_key=KEY, base_url=recorded_server.url)
    result = over_http.fetch(universe, RANGE, calls.lines.append)
    mocked = make(calls).fetch(universe, RANGE, calls.lines.append)

    assert result.bars.sort("symbol", "date").equals(mocked.bars.sort("symbol", "date"))
    assert failures(result.failures) == {("TWTR", NO_BARS, 1)}
    assert rows(result.bars, "AAPL") == AAPL_ROWS
    assert result.requests == recorded_server.requests == 9
    assert {auth for _, _, auth in recorded_server.seen} == {f"Bearer {KEY}"}
    # next_url pointed at api.polygon.io; the provider followed it on its own base URL.
    assert any("1717646400000" in path for path, _, _ in recorded_server.seen)


@pytest.fixture
def synthetic_server() -> Iterator[StubServer]:
    symbols = synthetic_universe(40)["symbol"].to_list()
    with StubServer(SyntheticPolygon(symbols), latency=0.02) as server:
        yield server


def test_in_flight_requests_never_exceed_max_concurrency(
    calls: Calls, synthetic_server: StubServer
) -> None:
    symbols = synthetic_universe(40)["symbol"].to_list()
    sessions = [*RANGE, D(2024, 6, 12), D(2024, 6, 13)]
    provider = PolygonProvider(
        api_key=KEY, base_url=synthetic_server.url, max_concurrency=4, batch_size=10
    )
    result = provider.fetch(symbols, sessions, calls.lines.append)

    assert result.failures.is_empty()
    assert result.bars.height == 40 * 6
    assert result.requests == synthetic_server.requests == 40 + 2
    assert 2 <= synthetic_server.max_in_flight <= 4
    assert len(calls.lines) == 4
