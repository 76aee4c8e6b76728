"""Company fundamentals and treasury yields: the point-in-time view on hand-worked books, the
synthetic sources' determinism, Polygon on handwritten payloads through httpx.MockTransport,
yfinance through a fake adapter, and both assets materialised through Dagster.

Every expected value is worked out by hand from the payloads written here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pandas as pd
import polars as pl
import pytest
from dagster import AssetKey

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.fundamentals import (
    FIGURES,
    FUNDAMENTALS_SCHEMA,
    fundamentals_as_of,
    polygon_financials,
    reporting_symbols,
    stamped,
)
from fintrack_assets.core.synthetic_fundamentals import synthetic_fundamentals, synthetic_yields
from fintrack_assets.resources.fetching import Log, failures_frame
from fintrack_assets.resources.fundamentals import (
    NO_FUNDAMENTALS,
    FundamentalsFetch,
    PolygonFundamentals,
    SyntheticFundamentals,
    YahooFundamentals,
    YieldsFetch,
    YieldsUnavailable,
)
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets.resources.polygon import POLYGON_RETRIES, PolygonAuthError, PolygonProvider
from fintrack_assets.resources.yahoo import YAHOO_RETRIES
from fintrack_assets_tests.helpers import QUIET, Platform, yfinance_platform
from fintrack_assets_tests.polygon_stub import Response, _json, mock_transport
from fintrack_assets_tests.test_yahoo import RecordedYahoo, history

D = dt.date
KEY = "pk_TEST_fundamentals_5ecret"
FETCHED = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def quarter(
    symbol: str, period: str, end: dt.date, filed: dt.date, eps: float | None, shares: float = 100.0
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "fiscal_period": period,
        "period_end": end,
        "filing_date": filed,
        "revenue": 1000.0,
        "net_income": None if eps is None else eps * shares,
        "eps": eps,
        "shares_outstanding": shares,
        "total_assets": 5000.0,
        "total_liabilities": 2000.0,
        "operating_cash_flow": 300.0,
        "source": "test",
        "fetched_at": FETCHED,
    }


def table(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FUNDAMENTALS_SCHEMA, orient="row")


# AAA files on time. BBB files its 2024Q2 late, after its 2024Q3. CCC has no 2024Q3 at all.
BOOK = table(
    [
        quarter("AAA", "2024Q1", D(2024, 3, 31), D(2024, 5, 1), 1.0),
        quarter("AAA", "2024Q2", D(2024, 6, 30), D(2024, 8, 1), 2.0),
        quarter("AAA", "2024Q3", D(2024, 9, 30), D(2024, 11, 1), 3.0),
        quarter("AAA", "2024Q4", D(2024, 12, 31), D(2025, 2, 15), 4.0),
        quarter("AAA", "2025Q1", D(2025, 3, 31), D(2025, 5, 1), 5.0, shares=90.0),
        quarter("BBB", "2024Q1", D(2024, 3, 31), D(2024, 5, 1), 1.0),
        quarter("BBB", "2024Q2", D(2024, 6, 30), D(2024, 11, 20), 2.0),
        quarter("BBB", "2024Q3", D(2024, 9, 30), D(2024, 11, 5), 3.0),
        quarter("CCC", "2024Q1", D(2024, 3, 31), D(2024, 5, 1), 1.0),
        quarter("CCC", "2024Q2", D(2024, 6, 30), D(2024, 8, 1), 1.0),
        quarter("CCC", "2024Q4", D(2024, 12, 31), D(2025, 2, 1), 1.0),
        quarter("CCC", "2025Q1", D(2025, 3, 31), D(2025, 5, 1), 1.0),
    ]
)


def as_of(symbol: str, day: dt.date) -> dict[str, Any]:
    frame = fundamentals_as_of(BOOK, pl.DataFrame({"symbol": [symbol], "date": [day]}))
    (row,) = frame.to_dicts()
    return row


def test_a_date_before_the_first_filing_knows_nothing():
    row = as_of("AAA", D(2024, 4, 30))
    assert row["date"] == D(2024, 4, 30)
    assert all(row[column] is None for column in ("fiscal_period", "eps", "eps_ttm", *FIGURES))


def test_a_quarter_is_known_from_its_filing_day_on():
    assert as_of("AAA", D(2024, 5, 1))["fiscal_period"] == "2024Q1"
    assert as_of("AAA", D(2024, 7, 31))["fiscal_period"] == "2024Q1"
    assert as_of("AAA", D(2024, 8, 1))["fiscal_period"] == "2024Q2"


def test_eps_ttm_needs_four_known_quarters():
    # The day before 2024Q4 is filed three quarters are known: no trailing year yet.
    day_before = as_of("AAA", D(2025, 2, 14))
    assert (day_before["fiscal_period"], day_before["eps_ttm"]) == ("2024Q3", None)
    # 1 + 2 + 3 + 4 once 2024Q4 is filed, then 2 + 3 + 4 + 5 with 2025Q1.
    assert as_of("AAA", D(2025, 2, 15))["eps_ttm"] == 10.0
    latest = as_of("AAA", D(2025, 6, 2))
    assert (latest["eps_ttm"], latest["shares_outstanding"], latest["eps"]) == (14.0, 90.0, 5.0)


def test_a_late_filing_of_an_older_quarter_does_not_displace_the_newer_one():
    # 2024Q3 is filed on 11-05, before the late 2024Q2 (11-20).
    on_10th = as_of("BBB", D(2024, 11, 10))
    assert (on_10th["fiscal_period"], on_10th["eps_ttm"]) == ("2024Q3", None)
    on_20th = as_of("BBB", D(2024, 11, 20))
    assert on_20th["fiscal_period"] == "2024Q3"
    assert on_20th["filing_date"] == D(2024, 11, 5)


def test_a_missing_quarter_leaves_the_trailing_year_unknown():
    # Four quarters known, but 2024Q1..2025Q1 spans five: summing them would not be a year.
    row = as_of("CCC", D(2025, 6, 2))
    assert (row["fiscal_period"], row["eps_ttm"]) == ("2025Q1", None)


def test_a_list_of_dates_gives_every_symbol_on_every_date():
    frame = fundamentals_as_of(BOOK, [D(2024, 6, 3), D(2025, 2, 18)])
    assert frame.select("symbol", "date", "fiscal_period", "eps_ttm").rows() == [
        ("AAA", D(2024, 6, 3), "2024Q1", None),
        ("AAA", D(2025, 2, 18), "2024Q4", 10.0),
        ("BBB", D(2024, 6, 3), "2024Q1", None),
        ("BBB", D(2025, 2, 18), "2024Q3", None),  # three quarters known
        ("CCC", D(2024, 6, 3), "2024Q1", None),
        ("CCC", D(2025, 2, 18), "2024Q4", None),  # 2024Q3 missing
    ]
    assert "eps_ttm" in frame.columns and "fetched_at" in frame.columns


def test_a_restated_quarter_keeps_its_latest_filing():
    original = quarter("AAA", "2024Q1", D(2024, 3, 31), D(2024, 5, 1), 1.0)
    restated = quarter("AAA", "2024Q1", D(2024, 3, 31), D(2024, 9, 1), 0.8)
    rows = pl.DataFrame([restated, original], schema=FUNDAMENTALS_SCHEMA, orient="row")
    out = stamped(rows.drop("source", "fetched_at"), "polygon", FETCHED)
    assert out.select("filing_date", "eps", "source").rows() == [(D(2024, 9, 1), 0.8, "polygon")]


def test_only_equities_report():
    universe = pl.DataFrame(
        {
            "symbol": ["AAPL", "SPY", "^GSPC", "EURUSD=X", "XOM"],
            "asset_type": ["equity", "etf", None, None, None],
        }
    )
    assert reporting_symbols(universe) == (["AAPL", "XOM"], ["SPY", "^GSPC", "EURUSD=X"])


# -- synthetic ---------------------------------------------------------------------------


def test_synthetic_yields_are_the_same_for_a_day_in_any_window():
    march = sessions_between(D(2025, 3, 1), D(2025, 4, 1))
    spring = sessions_between(D(2025, 3, 10), D(2025, 6, 1))
    one = synthetic_yields(march)
    other = synthetic_yields(spring)
    shared = one.join(other, on="date", suffix="_other")
    assert shared.height == len([d for d in march if d >= D(2025, 3, 10)])
    for column in ("yield_3m", "yield_5y", "yield_10y", "yield_30y"):
        assert (shared[column] == shared[f"{column}_other"]).all()
    assert one["date"].to_list() == march
    # Plausible: positive, upward sloping (each spread is positive by construction).
    long = synthetic_yields(sessions_between(D(2000, 1, 3), D(2026, 1, 1)))
    assert long.select(pl.min_horizontal(pl.all().exclude("date")).min()).item() > 0
    assert (long["yield_3m"] < long["yield_5y"]).all() and (
        long["yield_10y"] < long["yield_30y"]
    ).all()
    assert long.select(pl.all().exclude("date").max()).row(0) < (10.0, 10.0, 10.0, 10.0)


def test_synthetic_fundamentals_are_the_same_for_a_quarter_in_any_window():
    wide = synthetic_fundamentals(["AAPL", "XOM"], D(2023, 1, 1), D(2025, 6, 1))
    narrow = synthetic_fundamentals(["XOM"], D(2024, 4, 1), D(2025, 1, 31))
    joined = narrow.join(wide, on=["symbol", "period_end"], suffix="_wide")
    assert joined.height == narrow.height > 0
    for column in ("filing_date", *FIGURES):
        assert (joined[column] == joined[f"{column}_wide"]).all(), column
    # 2024Q2 .. 2024Q3 end in the narrow window, 2024Q4 only if filed by 2025-01-31.
    assert narrow["fiscal_period"].to_list()[:2] == ["2024Q2", "2024Q3"]
    assert (narrow["filing_date"] <= D(2025, 1, 31)).all()


def test_synthetic_fundamentals_are_plausible():
    rows = synthetic_fundamentals(["AAPL", "JPM", "XOM", "KO"], D(2020, 1, 1), D(2025, 6, 1))
    assert rows.height == 4 * 21  # 2020Q1 .. 2025Q1, all filed by June 2025
    lag = (rows["filing_date"] - rows["period_end"]).dt.total_days()
    assert lag.min() >= 30 and lag.max() <= 60
    assert (rows["revenue"] > 0).all() and (rows["shares_outstanding"] > 0).all()
    assert (rows["total_liabilities"] < rows["total_assets"]).all()
    for net, shares, eps in rows.select("net_income", "shares_outstanding", "eps").rows():
        assert eps == pytest.approx(net / shares, abs=5e-5)
    assert rows.filter(pl.col("period_end") == D(2025, 3, 31))[
        "fiscal_period"
    ].unique().to_list() == ["2025Q1"]


# -- Polygon -----------------------------------------------------------------------------

FINANCIALS_PAGE_1 = {
    "status": "OK",
    "results": [
        {
            "fiscal_period": "Q3",
            "fiscal_year": "2024",
            "start_date": "2024-06-30",
            "end_date": "2024-09-28",
            "filing_date": "2024-11-01",
            "financials": {
                "income_statement": {
                    "revenues": {"value": 94930000000, "unit": "USD"},
                    "net_income_loss": {"value": 14736000000, "unit": "USD"},
                    "basic_earnings_per_share": {"value": 0.97, "unit": "USD / shares"},
                    "basic_average_shares": {"value": 15171990000, "unit": "shares"},
                },
                "balance_sheet": {
                    "assets": {"value": 364980000000},
                    "liabilities": {"value": 308030000000},
                },
                "cash_flow_statement": {
                    "net_cash_flow_from_operating_activities": {"value": 26811000000}
                },
            },
        },
        {"fiscal_period": "FY", "fiscal_year": "2024", "end_date": "2024-09-28"},
    ],
    "next_url": "https://api.polygon.io/vX/reference/financials?cursor=PAGE2&apiKey=leaked",
}
FINANCIALS_PAGE_2 = {
    "status": "OK",
    "results": [
        {
            # No filing date: known 45 days after its end. No balance sheet: nulls.
            "fiscal_period": "Q2",
            "fiscal_year": "2024",
            "end_date": "2024-06-29",
            "financials": {
                "income_statement": {
                    "revenues": {"value": 85777000000},
                    "net_income_loss": {"value": 21448000000},
                    "basic_earnings_per_share": {"value": 1.40},
                    "basic_average_shares": {"value": 15287521000},
                }
            },
        }
    ],
}
YIELDS_PAGE_1 = {
    "status": "OK",
    "results": [
        {
            "date": "2024-06-10",
            "yield_3_month": 5.4,
            "yield_5_year": 4.47,
            "yield_10_year": 4.47,
            "yield_30_year": 4.6,
        },
        {"date": "2024-06-08", "yield_3_month": 9.9},  # a Saturday: not a session
    ],
    "next_url": "https://api.polygon.io/fed/v1/treasury-yields?cursor=Y2",
}
YIELDS_PAGE_2 = {
    "status": "OK",
    "results": [
        {
            "date": "2024-06-12",
            "yield_3_month": 5.37,
            "yield_5_year": 4.24,
            "yield_10_year": 4.31,
            "yield_30_year": None,
        },
    ],
}


def polygon_router(path: str, query: dict[str, str]) -> Response:
    if path == "/vX/reference/financials":
        ticker = query.get("ticker")
        if query.get("cursor") == "PAGE2":
            return _json(200, FINANCIALS_PAGE_2)
        if ticker == "AAPL":
            assert query["timeframe"] == "quarterly"
            assert query["period_of_report_date.gte"] == "2024-01-01"
            return _json(200, FINANCIALS_PAGE_1)
        if ticker == "BRK.B":
            return _json(200, {"status": "OK", "results": []})
        return _json(500, {"status": "ERROR"})
    if path == "/fed/v1/treasury-yields":
        if query.get("cursor") == "Y2":
            return _json(200, YIELDS_PAGE_2)
        assert (query["date.gte"], query["date.lte"]) == ("2024-06-10", "2024-06-12")
        return _json(200, YIELDS_PAGE_1)
    return _json(404, {"status": "NOT_FOUND"})


@dataclass
class Seen:
    requests: list[httpx.Request]
    sleeps: list[float]
    lines: list[str]


def polygon(router: Any = polygon_router) -> tuple[PolygonFundamentals, Seen]:
    seen = Seen([], [], [])
    provider = PolygonProvider(
        api_key=KEY,
        transport=mock_transport(router, seen.requests),
        retries=replace(POLYGON_RETRIES, max_attempts=3, sleep=seen.sleeps.append),
    )
    return PolygonFundamentals(provider), seen


def test_polygon_financials_follow_next_url_and_fail_per_symbol():
    source, seen = polygon()
    fetched = source.fundamentals(
        ["AAPL", "BRK-B", "BROKE", "^GSPC"], D(2024, 1, 1), seen.lines.append
    )
    rows = fetched.rows.sort("period_end")
    assert rows.select("symbol", "fiscal_period", "period_end", "filing_date").rows() == [
        ("AAPL", "2024Q2", D(2024, 6, 29), D(2024, 8, 13)),  # 06-29 + 45 days
        ("AAPL", "2024Q3", D(2024, 9, 28), D(2024, 11, 1)),
    ]
    q3 = rows.row(1, named=True)
    assert (q3["revenue"], q3["net_income"], q3["eps"]) == (94930000000.0, 14736000000.0, 0.97)
    assert (q3["shares_outstanding"], q3["total_assets"], q3["total_liabilities"]) == (
        15171990000.0,
        364980000000.0,
        308030000000.0,
    )
    assert q3["operating_cash_flow"] == 26811000000.0
    assert rows.row(0, named=True)["total_assets"] is None
    assert fetched.malformed == 1  # the FY record
    failures = dict(fetched.failures.select("symbol", "error").iter_rows())
    assert failures == {
        "BRK-B": NO_FUNDAMENTALS,
        "BROKE": "HTTP 500 after 3 attempts",
        "^GSPC": "index symbols are not available from Polygon's stocks API",
    }
    # AAPL 2 pages, BRK.B 1, BROKE 3 attempts; the index is never asked.
    assert len(seen.requests) == 6 == fetched.requests
    assert len(seen.sleeps) == 2
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in seen.requests)
    assert all("apiKey" not in str(r.url) for r in seen.requests)
    assert KEY not in " ".join(seen.lines)


def test_polygon_yields_follow_next_url_and_keep_to_sessions():
    source, seen = polygon()
    sessions = [D(2024, 6, 10), D(2024, 6, 11), D(2024, 6, 12)]
    fetched = source.yields(sessions, seen.lines.append)
    assert fetched.rows.rows() == [
        (D(2024, 6, 10), 5.4, 4.47, 4.47, 4.6),
        (D(2024, 6, 12), 5.37, 4.24, 4.31, None),
    ]
    assert fetched.requests == 2 == len(seen.requests)


def test_polygon_yields_that_keep_failing_are_unavailable():
    source, seen = polygon(lambda path, query: _json(503, {"status": "ERROR"}))
    with pytest.raises(YieldsUnavailable, match="HTTP 503"):
        source.yields([D(2024, 6, 10)], seen.lines.append)
    assert len(seen.requests) == 3


def test_a_refused_polygon_key_stops_the_fetch():
    source, _ = polygon(lambda path, query: _json(401, {"status": "ERROR"}))
    with pytest.raises(PolygonAuthError):
        source.fundamentals(["AAPL"], D(2024, 1, 1), lambda line: None)


def test_polygon_records_without_a_period_end_are_counted_not_kept():
    rows, malformed = polygon_financials(
        [{"fiscal_period": "Q1", "fiscal_year": "2024", "end_date": "not a date"}], "AAPL"
    )
    assert rows.is_empty() and malformed == 1


# -- yfinance ----------------------------------------------------------------------------


def statement(items: dict[str, dict[dt.date, float]]) -> pd.DataFrame:
    """A yfinance quarterly statement: raw item names by period-end columns, newest first."""
    ends = sorted({end for values in items.values() for end in values}, reverse=True)
    return pd.DataFrame(
        {
            pd.Timestamp(end): [values.get(end, float("nan")) for values in items.values()]
            for end in ends
        },
        index=list(items),
    )


Q1, Q2 = D(2024, 3, 31), D(2024, 6, 30)
STATEMENTS = {
    "income": statement(
        {
            "TotalRevenue": {Q1: 1000.0, Q2: 1100.0},
            "NetIncome": {Q1: 100.0, Q2: 120.0},
            "BasicEPS": {Q1: 1.0},  # Yahoo lacks Q2's EPS
            "BasicAverageShares": {Q1: 100.0, Q2: 100.0},
        }
    ),
    "balance": statement(
        {
            "TotalAssets": {Q1: 5000.0, Q2: 5100.0},
            "TotalLiabilitiesNetMinorityInterest": {Q1: 2000.0, Q2: 2050.0},
        }
    ),
    "cashflow": statement({"OperatingCashFlow": {Q1: 150.0, Q2: 160.0}}),
}


class FakeYahoo(RecordedYahoo):
    """Recorded yield indices (via RecordedYahoo's download), statements and earnings dates."""

    def __init__(self, histories: dict[str, pd.DataFrame], failures: list[dict[str, str]]) -> None:
        super().__init__(histories, failures=failures)
        self.statement_calls: list[str] = []

    def statements(self, ticker: str) -> dict[str, pd.DataFrame | None]:
        self.statement_calls.append(ticker)
        if ticker == "DOWN":
            raise ConnectionError("Yahoo unreachable")
        if ticker == "BARE":
            return {"income": pd.DataFrame(), "balance": None, "cashflow": pd.DataFrame()}
        return STATEMENTS

    def earnings_dates(self, ticker: str) -> list[dt.date]:
        # Q2's release; nothing for Q1 (so Q1 takes the lag rule); an announced future date.
        return [D(2024, 8, 1), D(2025, 1, 30)]


def yield_history(closes: list[float]) -> pd.DataFrame:
    days = [D(2024, 3, 4), D(2024, 3, 5), D(2024, 3, 6)]
    return history(
        {day: (close, close, 0, 0.0, 0.0) for day, close in zip(days, closes, strict=True)}
    )


def yahoo(
    failures: list[dict[str, str]] | None = None,
) -> tuple[YahooFundamentals, FakeYahoo, list[float]]:
    adapter = FakeYahoo(
        {
            "^IRX": yield_history([5.2, 5.21, 5.19]),
            "^FVX": yield_history([4.1, 4.12, 4.08]),
            "^TNX": yield_history([4.2, 4.22, 4.15]),
            "^TYX": yield_history([4.35, 4.36, 4.3]),
        },
        failures or [],
    )
    sleeps: list[float] = []
    retries = replace(YAHOO_RETRIES, max_attempts=3, sleep=sleeps.append)
    return YahooFundamentals(adapter=adapter, retries=retries), adapter, sleeps


def test_yahoo_statements_become_quarters_filed_at_their_release():
    source, adapter, sleeps = yahoo()
    fetched = source.fundamentals(["AAPL", "DOWN", "BARE"], D(2024, 1, 1), lambda line: None)
    assert fetched.rows.rows() == [
        # Q1: no release within 120 days after it -> 03-31 + 45 days. Shares from the income
        # statement (no OrdinarySharesNumber on the balance sheet).
        ("AAPL", "2024Q1", Q1, D(2024, 5, 15), 1000.0, 100.0, 1.0, 100.0, 5000.0, 2000.0, 150.0),
        ("AAPL", "2024Q2", Q2, D(2024, 8, 1), 1100.0, 120.0, None, 100.0, 5100.0, 2050.0, 160.0),
    ]
    failures = dict(fetched.failures.select("symbol", "error").iter_rows())
    assert failures == {
        "DOWN": "statements unavailable: ConnectionError: Yahoo unreachable",
        "BARE": NO_FUNDAMENTALS,
    }
    assert adapter.statement_calls.count("DOWN") == 3 and len(sleeps) == 2


def test_yahoo_yields_retry_a_failed_index_and_leave_its_tenor_null():
    gone = {"^TYX": "possibly delisted; no price data found"}
    source, adapter, sleeps = yahoo(failures=[gone, gone, gone])
    sessions = [D(2024, 3, 4), D(2024, 3, 5), D(2024, 3, 6)]
    fetched = source.yields(sessions, lambda line: None)
    assert fetched.rows.rows() == [
        (D(2024, 3, 4), 5.2, 4.1, 4.2, None),
        (D(2024, 3, 5), 5.21, 4.12, 4.22, None),
        (D(2024, 3, 6), 5.19, 4.08, 4.15, None),
    ]
    assert fetched.failed_tenors == {"yield_30y": "possibly delisted; no price data found"}
    assert adapter.calls == [["^IRX", "^FVX", "^TNX", "^TYX"], ["^TYX"], ["^TYX"]]
    assert len(sleeps) == 2


def test_yahoo_serving_no_yields_at_all_is_unavailable():
    source, _, _ = yahoo()
    with pytest.raises(YieldsUnavailable, match="no yields"):
        source.yields([D(2023, 1, 3)], lambda line: None)


# -- through Dagster ---------------------------------------------------------------------

SESSIONS = sessions_between(D(2025, 3, 3), D(2025, 3, 15))


class ScriptedSource:
    """Fundamentals and yields as a test scripts them, run after run (standing in for the
    yfinance source of the platform)."""

    name = "yfinance"

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.missing: set[dt.date] = set()
        self.down = False

    def fundamentals(self, symbols: Sequence[str], since: dt.date, log: Log) -> FundamentalsFetch:
        ok = [s for s in symbols if s not in self.failing]
        rows = synthetic_fundamentals(ok, since, D(2025, 6, 1))
        return FundamentalsFetch(
            rows, failures_frame([(s, "HTTP 500", 0) for s in symbols if s in self.failing])
        )

    def yields(self, sessions: Sequence[dt.date], log: Log) -> YieldsFetch:
        if self.down:
            raise YieldsUnavailable("Yahoo served no yields for the window")
        return YieldsFetch(synthetic_yields([d for d in sessions if d not in self.missing]))


class ScriptedData(MarketDataResource):
    def fundamentals_source(self) -> Any:
        return SCRIPT


SCRIPT = ScriptedSource()


@pytest.fixture
def platform(tmp_path, monkeypatch) -> Platform:
    global SCRIPT
    SCRIPT = ScriptedSource()
    return yfinance_platform(tmp_path, monkeypatch, "AAPL,MSFT,XOM,SPY", ScriptedData())


def fundamentals_run(platform: Platform) -> Any:
    job = platform.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("company_fundamentals")}
    )
    return platform._run(job, {}, QUIET)


def test_company_fundamentals_through_dagster_keeps_a_failed_symbols_quarters(platform):
    run = fundamentals_run(platform)
    assert run.success, run.failure
    assert run.checks == {"symbol_failures": True, "contract": True}
    stored = platform.warehouse_frame("company_fundamentals")
    # Equities only; since = 2024-01-02 - 550 days = 2022-07-01: 2022Q3 .. 2025Q1 filed by June.
    assert sorted(stored["symbol"].unique().to_list()) == ["AAPL", "MSFT", "XOM"]
    assert stored.group_by("symbol").len().sort("symbol")["len"].to_list() == [11, 11, 11]
    assert stored["period_end"].min() == D(2022, 9, 30)
    assert run.metadata["company_fundamentals"]["symbols_skipped"].value == 1
    first_fetch = stored.filter(pl.col("symbol") == "XOM")["fetched_at"].unique().to_list()

    SCRIPT.failing = {"XOM"}
    again = fundamentals_run(platform)
    assert again.success, again.failure
    # 1 of 3 reporting symbols failed (33 % > 5 %): red, and XOM's quarters are still there.
    assert again.checks == {"symbol_failures": False, "contract": True}
    assert again.metadata["company_fundamentals"]["quarters_kept_for_failed"].value == 11
    stored = platform.warehouse_frame("company_fundamentals")
    xom = stored.filter(pl.col("symbol") == "XOM")
    assert xom.height == 11 and xom["fetched_at"].unique().to_list() == first_fetch
    assert stored.filter(pl.col("symbol") == "AAPL")["fetched_at"].unique().to_list() != first_fetch


def test_treasury_yields_through_dagster_warn_on_a_missing_session(platform):
    first, last = SESSIONS[0].isoformat(), SESSIONS[-1].isoformat()
    run = platform.daily(first, last, assets=["treasury_yields"])
    assert run.success, run.failure
    assert run.checks == {"contract": True, "sessions_covered": True}
    stored = platform.lake("treasury_yields").read_window().sort("date")
    assert stored["date"].to_list() == SESSIONS
    assert stored["source"].unique().to_list() == ["yfinance"]

    # One session alone gives the same row as the range did.
    day = SESSIONS[4]
    SCRIPT.missing = {SESSIONS[6]}
    assert platform.daily(day.isoformat(), assets=["treasury_yields"]).success
    assert platform.lake("treasury_yields").read_window().sort("date").equals(stored)

    rerun = platform.daily(first, last, assets=["treasury_yields"])
    assert rerun.success  # a missing session warns, never fails the run
    assert rerun.checks == {"contract": True, "sessions_covered": False}
    assert rerun.check_metadata[("treasury_yields", "sessions_covered")]["missing"].value == (
        SESSIONS[6].isoformat()
    )
    assert platform.lake("treasury_yields").read_window().height == len(SESSIONS) - 1


def test_treasury_yields_unavailable_fail_the_step_and_keep_what_was_stored(platform):
    day = SESSIONS[0].isoformat()
    assert platform.daily(day, assets=["treasury_yields"]).success
    SCRIPT.down = True
    run = platform.daily(day, assets=["treasury_yields"], run_config={})
    assert not run.success
    assert (
        "treasury yields unavailable from yfinance: Yahoo served no yields for the window"
        in run.failure
    )
    assert platform.lake("treasury_yields").read_window().height == 1


def test_the_synthetic_source_is_what_the_default_resource_gives():
    source = MarketDataResource().fundamentals_source()
    assert isinstance(source, SyntheticFundamentals)
    polygon_source = MarketDataResource(source="polygon", polygon_api_key=KEY).fundamentals_source()
    assert isinstance(polygon_source, PolygonFundamentals)
    assert isinstance(
        MarketDataResource(source="yfinance").fundamentals_source(), YahooFundamentals
    )
