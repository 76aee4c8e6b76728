"""`symbol_universe` for the `all` and `sp500_pit` universes through Dagster, on a real
warehouse (DuckDB, and PostgreSQL for the round trip and the upgrade of an old table)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from fintrack_assets.core.listings import LEFT_OUT_SCHEMA, synthetic_listing
from fintrack_assets.core.membership import members_on
from fintrack_assets.core.universe import load_universe
from fintrack_assets.io_managers.warehouse import warehouse_for
from fintrack_assets.resources.fetching import Log
from fintrack_assets.resources.listings import Lister, ListingFailed
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets_tests.helpers import Platform
from fintrack_assets_tests.polygon_stub import Response, StubServer
from fintrack_assets_tests.test_listings import CURSOR, KEY, PAGE_1, PAGE_2
from fintrack_assets_tests.test_universe import sp500_members_by_csv

SP500_SPELLS = Path(__file__).parents[1] / "fintrack_assets/data/sp500_history"


def _env(tmp_path: Path, warehouse_url: str | None = None) -> dict[str, str]:
    return {
        "FINTRACK_UNIVERSE": "all",
        "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
        "FINTRACK_WAREHOUSE_URL": warehouse_url or f"duckdb:///{tmp_path}/warehouse.duckdb",
    }


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/warehouse.duckdb"
    return request.getfixturevalue("postgres_url")


def test_all_on_synthetic_is_5400_symbols_and_its_listing_is_reused(tmp_path, monkeypatch):
    platform = Platform(_env(tmp_path), monkeypatch)
    run = platform.universe()
    assert run.success, run.reason()
    stored = platform.warehouse_frame("symbol_universe")
    assert stored.height == 5_400 and stored["symbol"].n_unique() == 5_400
    assert stored["listing_source"].unique().to_list() == ["synthetic"]
    assert stored["member_spells"].null_count() == 5_400  # every symbol on every session
    shown = run.metadata["symbol_universe"]
    assert shown["members"].value == 5_400 and shown["listing"].value == "fetched"
    assert shown["asset_type/equity"].value == 5_400 - 270
    assert shown["asset_type/etf"].value == 270  # one in twenty
    assert shown["listing_source"].value == "synthetic"
    listed_at = stored["listed_at"].unique().to_list()
    again = platform.universe()
    assert again.metadata["symbol_universe"]["listing"].value == "cached"
    assert platform.warehouse_frame("symbol_universe")["listed_at"].unique().to_list() == listed_at


class FakeLister:
    """A listing source that counts its calls and fails when told to."""

    name = "fakelist"

    def __init__(self) -> None:
        self.calls = 0
        self.error: str | None = None

    def listing(self, log: Log) -> tuple[pl.DataFrame, pl.DataFrame]:
        self.calls += 1
        if self.error is not None:
            raise ListingFailed(f"fakelist's tickers: {self.error}")
        bad = synthetic_listing(1).with_columns(pl.lit("NOT A SYMBOL").alias("symbol"))
        left_out = pl.DataFrame(
            [("ABC$A", "ABC Preferred", "preferred share: not a stock or ETF")],
            schema=LEFT_OUT_SCHEMA,
            orient="row",
        )
        return pl.concat([synthetic_listing(30), bad]), left_out


LISTERS: list[FakeLister] = []


class ListedData(MarketDataResource):
    """The synthetic source whose `all` listing is the current test's FakeLister."""

    def lister(self) -> Lister:
        return LISTERS[-1]


@pytest.fixture
def lister() -> Iterator[FakeLister]:
    LISTERS.append(FakeLister())
    yield LISTERS[-1]
    LISTERS.pop()


def _listed_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Platform:
    return Platform(_env(tmp_path), monkeypatch, resources={"market_data": ListedData()})


def test_a_fresh_listing_is_reused_and_a_failing_one_falls_back_to_it(
    tmp_path, monkeypatch, lister
):
    platform = _listed_platform(tmp_path, monkeypatch)
    first = platform.universe()
    assert first.success and lister.calls == 1
    shown = first.metadata["symbol_universe"]
    assert shown["members"].value == 30
    assert shown["rejected_rows"].value == 2  # the listing's preferred, the bad symbol
    assert shown["rejected_by_reason"].value.splitlines()[2:] == [
        "| bad_symbol                          |      1 |",
        "| preferred share: not a stock or ETF |      1 |",
    ]
    listed_at = platform.warehouse_frame("symbol_universe")["listed_at"].unique().to_list()

    assert platform.universe().success and lister.calls == 1  # younger than 7 days: reused

    lister.error = "HTTP 503 after 5 attempts"
    fallback = platform.universe(listing_max_age_days=0)
    assert fallback.success and lister.calls == 2
    assert fallback.metadata["symbol_universe"]["listing"].value == "fallback"
    stored = platform.warehouse_frame("symbol_universe")
    assert stored.height == 30 and stored["listed_at"].unique().to_list() == listed_at

    failed = platform.universe(listing_max_age_days=0, listing_fallback_max_age_days=0)
    assert not failed.success and lister.calls == 3
    [message] = failed.failures["symbol_universe"]  # one error, no chain of causes
    assert message == "dagster._core.definitions.events.Failure: " + (
        "the fakelist listing for the 'all' universe failed (fakelist's tickers: HTTP 503 "
        "after 5 attempts) and no previous fakelist listing younger than 0 days is there to "
        "fall back on"
    )
    assert platform.warehouse_frame("symbol_universe").height == 30  # the table is kept


def test_a_failing_listing_without_any_previous_one_fails_clearly(tmp_path, monkeypatch, lister):
    lister.error = "connection error (ConnectError) after 5 attempts"
    platform = _listed_platform(tmp_path, monkeypatch)
    run = platform.universe()
    assert not run.success
    assert "the fakelist listing for the 'all' universe failed (fakelist's tickers: " in (
        run.reason()
    )
    assert "no previous fakelist listing younger than 30 days" in run.reason()


def test_sp500_pit_round_trips_its_spells_through_the_warehouse(
    tmp_path, monkeypatch, warehouse_url
):
    platform = Platform(_env(tmp_path, warehouse_url), monkeypatch)
    run = platform.universe("sp500_pit")
    assert run.success, run.reason()
    with open(SP500_SPELLS / "sp500_ticker_start_end.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    shown = run.metadata["symbol_universe"]
    assert shown["spells"].value == len(rows) == 1_230
    assert shown["members"].value == len({row["ticker"] for row in rows})
    latest = dt.date.fromisoformat(shown["latest_session"].value)
    assert shown["members_on_latest_session"].value == len(sp500_members_by_csv(latest))
    stored = platform.warehouse_frame("symbol_universe")
    spells = dict(stored.select("symbol", "member_spells").rows())
    assert spells["AAL"] == "1996-01-02/1997-01-15;2015-03-23/2024-09-23"
    assert spells["PLTR"] == "2024-09-23/"
    assert len(members_on(stored, dt.date(2024, 9, 23))) == 503
    assert stored["listed_at"].null_count() == stored.height


def test_an_old_table_without_the_new_columns_upgrades_without_a_crash(
    tmp_path, monkeypatch, warehouse_url
):
    """A table written before member_spells and the listing columns existed (the sample
    universe with its metadata timestamp) is read as the previous table and replaced."""
    old = load_universe("sample").with_columns(
        pl.lit(dt.datetime(2025, 1, 2, tzinfo=dt.UTC)).alias("metadata_refreshed_at")
    )
    warehouse_for(warehouse_url).replace_table("symbol_universe", old)
    platform = Platform(_env(tmp_path, warehouse_url), monkeypatch)
    assert platform.universe("all").success
    stored = platform.warehouse_frame("symbol_universe")
    assert stored.height == 5_400 and {"member_spells", "listed_at"} <= set(stored.columns)
    assert platform.universe("sp500_pit").success
    assert platform.universe("sample").success
    stored = platform.warehouse_frame("symbol_universe")
    assert stored.height == old.height and stored["member_spells"].null_count() == old.height


NASDAQ_FILES = Path(__file__).parent / "data" / "nasdaqtrader"


def _directories(path: str, query: dict[str, str]) -> Response:
    file = NASDAQ_FILES / path.removeprefix("/SymDir/")
    return (200, {"Content-Type": "text/plain"}, file.read_bytes())


def _polygon_pages(path: str, query: dict[str, str]) -> Response:
    assert path == "/v3/reference/tickers"
    page = PAGE_2 if query.get("cursor") == CURSOR else PAGE_1
    return (200, {"Content-Type": "application/json"}, json.dumps(page).encode())


@pytest.mark.parametrize(
    ("source", "router", "symbols", "etfs"),
    [("yfinance", _directories, 33, 10), ("polygon", _polygon_pages, 8, 2)],
)
def test_all_from_a_real_provider_listing_over_http(
    tmp_path, monkeypatch, source, router, symbols, etfs
):
    """`all` on yfinance (Nasdaq Trader's directories) and polygon (reference tickers) from a
    local HTTP server serving the hand-recorded payloads of test_listings.py; a second run
    within the week sends no request."""
    with StubServer(router) as server:
        market_data = MarketDataResource(
            source=source,
            polygon_api_key=KEY,
            polygon_base_url=server.url,
            symbol_directory_url=f"{server.url}/SymDir",
        )
        env = {**_env(tmp_path), "FINTRACK_MARKET_DATA": source, "POLYGON_API_KEY": KEY}
        platform = Platform(env, monkeypatch, resources={"market_data": market_data})
        run = platform.universe()
        assert run.success, run.reason()
        assert server.requests == 2  # two directories, or two pages
        stored = platform.warehouse_frame("symbol_universe")
        assert stored.height == symbols
        assert stored.filter(pl.col("asset_type") == "etf").height == etfs
        assert "BRK-B" in stored["symbol"].to_list()
        assert platform.universe().success and server.requests == 2
