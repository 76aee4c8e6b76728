"""The `all` universe's listings: Polygon's reference tickers (paged through `next_url`) and
Nasdaq Trader's symbol directories, through `httpx.MockTransport`.

The Polygon pages below and the directory files under data/nasdaqtrader/ are hand-recorded
in the providers' published formats (Polygon's `/v3/reference/tickers` response; Nasdaq
Trader's pipe-delimited `nasdaqlisted.txt` / `otherlisted.txt` with CRLF lines, test issues
and the `File Creation Time` footer). Expected values are counted off them by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import polars as pl
import pytest

from fintrack_assets.core.listings import (
    NASDAQ_LISTED,
    OTHER_LISTED,
    ListingError,
    nasdaq_directory,
    synthetic_listing,
)
from fintrack_assets.resources.fetching import Retries
from fintrack_assets.resources.listings import ListingFailed, NasdaqTraderLister, SyntheticLister
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets.resources.polygon import PolygonProvider

KEY = "pk_TEST_listing_key_0a1b2c"
DATA = Path(__file__).parent / "data" / "nasdaqtrader"
NO_WAIT = Retries(max_attempts=3, backoff_base_seconds=1.0, backoff_max_seconds=1.0)


def _ticker(ticker: str, name: str, kind: str) -> dict[str, object]:
    return {
        "ticker": ticker,
        "name": name,
        "market": "stocks",
        "locale": "us",
        "primary_exchange": "XNYS",
        "type": kind,
        "active": True,
        "currency_name": "usd",
        "last_updated_utc": "2025-11-14T00:00:00Z",
    }


def _page(results: list[dict[str, object]], next_url: str | None = None) -> dict[str, object]:
    """A `/v3/reference/tickers` response as Polygon sends it."""
    page: dict[str, object] = {
        "results": results,
        "status": "OK",
        "request_id": "6a7e466379af0a71039d60cc78e72282",
        "count": len(results),
    }
    return page | ({"next_url": next_url} if next_url else {})


CURSOR = "YWN0aXZlPXRydWUmYXA9JTdCJTIydiUyMiUzQTElN0Q"
RECORDS = [
    _ticker("A", "Agilent Technologies Inc.", "CS"),
    _ticker("AAPL", "Apple Inc.", "CS"),
    _ticker("ABR.PRD", "Arbor Realty Trust 6.375% Series D Preferred", "PFD"),
    _ticker("ACHR.WS", "Archer Aviation Inc. Warrants", "WARRANT"),
    _ticker("ASML", "ASML Holding N.V. New York Registry Shares", "ADRC"),
    _ticker("BRK.B", "Berkshire Hathaway Inc. Class B", "CS"),
    # page 2
    _ticker("SPY", "SPDR S&P 500 ETF Trust", "ETF"),
    _ticker("SPXL", "Direxion Daily S&P 500 Bull 3X Shares", "ETF"),
    _ticker("SHEL", "Shell plc", "OS"),
    _ticker("TSLA", "Tesla, Inc. Common Stock", "CS"),
    _ticker("UNL", "United States 12 Month Natural Gas Fund LP", "ETV"),
    {"name": "a record without a ticker", "type": "CS"},
]
PAGE_1 = _page(
    RECORDS[:6], f"https://api.polygon.io/v3/reference/tickers?cursor={CURSOR}&apiKey={KEY}"
)
PAGE_2 = _page(RECORDS[6:])


class Server:
    """A handler for MockTransport that records requests and answers from `answer`."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def _polygon_pages(request: httpx.Request) -> httpx.Response:
    assert request.url.path == "/v3/reference/tickers"
    if request.url.params.get("cursor") == CURSOR:
        return httpx.Response(200, json=PAGE_2)
    return httpx.Response(200, json=PAGE_1)


def _polygon(server: Server, sleeps: list[float] | None = None) -> PolygonProvider:
    waits = sleeps if sleeps is not None else []
    return PolygonProvider(
        api_key=KEY,
        base_url="https://polygon.test",
        transport=server.transport(),
        retries=Retries(3, 1.0, 1.0, sleep=waits.append),
    )


def test_polygon_listing_follows_next_url_and_keeps_stocks_and_etfs():
    server = Server(_polygon_pages)
    lines: list[str] = []
    universe, left_out = _polygon(server).listing(lines.append)
    first, second = server.requests
    assert (first.url.host, first.url.path) == ("polygon.test", "/v3/reference/tickers")
    assert dict(first.url.params) == {"market": "stocks", "active": "true", "limit": "1000"}
    # next_url is followed on our base URL, without the apiKey it carried; the key travels
    # only in the header.
    assert (second.url.host, dict(second.url.params)) == ("polygon.test", {"cursor": CURSOR})
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in server.requests)
    assert universe.sort("symbol").select("symbol", "asset_type").rows() == [
        ("A", "equity"),
        ("AAPL", "equity"),
        ("ASML", "equity"),
        ("BRK-B", "equity"),
        ("SHEL", "equity"),
        ("SPXL", "etf"),
        ("SPY", "etf"),
        ("TSLA", "equity"),
    ]
    assert universe.filter(pl.col("symbol") == "BRK-B")["name"].item() == (
        "Berkshire Hathaway Inc. Class B"
    )
    assert universe["sector"].null_count() == universe.height
    assert left_out.sort("reason").select("symbol", "reason").rows() == [
        (None, "no ticker in the listing record"),
        ("UNL", "type ETV: not a stock or ETF"),
        ("ABR.PRD", "type PFD: not a stock or ETF"),
        ("ACHR.WS", "type WARRANT: not a stock or ETF"),
    ]
    assert "12 tickers in 2 page(s), 8 stocks and ETFs, 4 left out" in lines[0]
    assert KEY not in "".join(lines)


def test_a_polygon_listing_page_that_keeps_failing_fails_the_listing_in_one_line():
    def second_page_down(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") == CURSOR:
            return httpx.Response(503)
        return httpx.Response(200, json=PAGE_1)

    server = Server(second_page_down)
    sleeps: list[float] = []
    with pytest.raises(ListingFailed) as failed:
        _polygon(server, sleeps).listing(lambda _: None)
    assert str(failed.value) == "Polygon's reference tickers: HTTP 503 after 3 attempts"
    assert len(server.requests) == 1 + 3 and len(sleeps) == 2  # retried, with backoff
    assert KEY not in str(failed.value)


def test_a_refused_polygon_key_fails_the_listing_without_the_key():
    server = Server(lambda request: httpx.Response(401))
    with pytest.raises(ListingFailed) as failed:
        _polygon(server).listing(lambda _: None)
    assert "Polygon's reference tickers: Polygon answered HTTP 401" in str(failed.value)
    assert KEY not in str(failed.value) and len(server.requests) == 1


def _directories(request: httpx.Request) -> httpx.Response:
    name = request.url.path.rsplit("/", 1)[-1]
    return httpx.Response(200, content=(DATA / name).read_bytes())


NASDAQ_EQUITIES = {
    "AAPL", "ACHV", "ADBE", "AMZN", "ASML", "CSCO", "GOOG", "GOOGL", "IBKR", "MSFT", "NVDA",
    "TSLA",
}  # fmt: skip
NASDAQ_ETFS = {"BNDX", "QQQ", "SHV", "TLT", "VTI"}
OTHER_EQUITIES = {"A", "AA", "BF-B", "BRK-A", "BRK-B", "IBM", "JPM", "KO", "SPXC", "XOM", "YUMC"}
OTHER_ETFS = {"DIA", "GLD", "IWM", "SPY", "XLE"}


def test_nasdaq_trader_directories_give_stocks_and_etfs_in_yahoos_spelling():
    server = Server(_directories)
    lister = NasdaqTraderLister(
        base_url="https://directory.test/SymDir", transport=server.transport(), retries=NO_WAIT
    )
    lines: list[str] = []
    universe, left_out = lister.listing(lines.append)
    assert [str(r.url) for r in server.requests] == [
        "https://directory.test/SymDir/nasdaqlisted.txt",
        "https://directory.test/SymDir/otherlisted.txt",
    ]
    kinds = dict(universe.select("symbol", "asset_type").rows())
    assert kinds == {
        **dict.fromkeys(NASDAQ_EQUITIES | OTHER_EQUITIES, "equity"),
        **dict.fromkeys(NASDAQ_ETFS | OTHER_ETFS, "etf"),
    }
    assert universe.height == 33  # no symbol twice
    names = dict(universe.select("symbol", "name").rows())
    assert names["AA"] == "Alcoa Corporation Common Stock"  # trailing blank trimmed
    assert names["AAPL"] == "Apple Inc. - Common Stock"
    reasons = dict(left_out.group_by("reason").len().rows())
    assert reasons == {
        # ZJZZT ZVZZT ZWZZT ZXYZ.A; NTEST NTEST.A ZTEST
        "test issue": 4 + 3,
        # AACBU ABLLW ACONW BRKHU CLRCR; ACHR.WS
        "warrant, right or unit: not a stock or ETF": 5 + 1,
        # AGNCN; ABR$D JPM$C PSA$H
        "preferred share: not a stock or ETF": 1 + 3,
    }
    assert "(nasdaqlisted.txt 0312202421:31, otherlisted.txt 0312202421:31)" in lines[0]


def test_a_directory_cut_short_fails_the_listing_naming_the_file():
    def truncated(request: httpx.Request) -> httpx.Response:
        text = (DATA / request.url.path.rsplit("/", 1)[-1]).read_text()
        return httpx.Response(200, text=text.split("File Creation Time")[0])

    lister = NasdaqTraderLister(
        base_url="https://directory.test", transport=Server(truncated).transport()
    )
    with pytest.raises(ListingFailed) as failed:
        lister.listing(lambda _: None)
    assert str(failed.value) == (
        "Nasdaq Trader's symbol directory: nasdaqlisted.txt has no 'File Creation Time' "
        "footer: the download was cut short"
    )


def test_an_unreachable_directory_is_retried_then_fails_in_one_line():
    server = Server(lambda request: httpx.Response(502))
    sleeps: list[float] = []
    lister = NasdaqTraderLister(
        base_url="https://directory.test",
        transport=server.transport(),
        retries=Retries(3, 1.0, 1.0, sleep=sleeps.append),
    )
    with pytest.raises(ListingFailed) as failed:
        lister.listing(lambda _: None)
    assert str(failed.value) == "Nasdaq Trader's nasdaqlisted.txt: HTTP 502 after 3 attempts"
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_a_directory_with_other_columns_or_a_broken_row_is_reported():
    with pytest.raises(ListingError, match="lacks the column"):
        text = "Ticker|Name\nAAPL|Apple\nFile Creation Time: 0101202500:00|\n"
        nasdaq_directory(text, OTHER_LISTED)
    text = (
        "Symbol|Security Name|Market Category|Test Issue|Financial Status|Round Lot Size|ETF|"
        "NextShares\nAAPL|Apple Inc. - Common Stock|Q|N|N|100|N|N\nMSFT|cut|Q\n"
        "File Creation Time: 0101202500:00|||||||\n"
    )
    universe, left_out, created = nasdaq_directory(text, NASDAQ_LISTED)
    assert universe["symbol"].to_list() == ["AAPL"] and created == "0101202500:00"
    assert left_out.rows() == [(None, None, "nasdaqlisted.txt line 3: 3 fields, not 8")]


def test_the_synthetic_listing_is_5400_symbols_with_etfs_and_every_sector():
    universe, left_out = SyntheticLister().listing(lambda _: None)
    assert universe.height == 5_400 and universe["symbol"].n_unique() == 5_400
    assert left_out.is_empty()
    assert universe.filter(pl.col("asset_type") == "etf").height == 5_400 // 20
    equities = universe.filter(pl.col("asset_type") == "equity")
    assert equities["sector"].n_unique() == 11 and equities["sector"].null_count() == 0
    assert synthetic_listing(40).equals(synthetic_listing(40))  # deterministic


def test_each_source_has_its_lister():
    assert isinstance(MarketDataResource().lister(), SyntheticLister)
    yahoo = MarketDataResource(source="yfinance", symbol_directory_url="http://127.0.0.1:9/dir")
    lister = yahoo.lister()
    assert isinstance(lister, NasdaqTraderLister) and lister.base_url == "http://127.0.0.1:9/dir"
    polygon = MarketDataResource(source="polygon", polygon_api_key=KEY).lister()
    assert isinstance(polygon, PolygonProvider) and polygon.name == "polygon"
    assert KEY not in repr(polygon)
