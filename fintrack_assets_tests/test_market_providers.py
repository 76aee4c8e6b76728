"""Real providers through Dagster: batch accounting, failures and bronze as traded.

Yahoo's servers are replaced by recorded frames (`RecordedYahoo`), Polygon's by recorded
payloads on a local HTTP server; everything of ours runs, configured from the environment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

import polars as pl
import pytest

from fintrack_assets.resources.fetching import Retries
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets.resources.polygon import PolygonProvider
from fintrack_assets.resources.yahoo import YAHOO_RETRIES, YahooProvider
from fintrack_assets_tests.helpers import Platform, yfinance_platform
from fintrack_assets_tests.polygon_stub import RecordedPolygon, StubServer
from fintrack_assets_tests.test_yahoo import (
    MARCH,
    SPLT,
    SPLT_SPLITS,
    RecordedYahoo,
    calm_history,
)

FIRST, LAST = MARCH[0].isoformat(), MARCH[-1].isoformat()


class RecordedYahooData(MarketDataResource):
    """The yfinance provider with Yahoo's answers recorded; no backoff waits."""

    def _build(self) -> YahooProvider:
        adapter = RecordedYahoo(
            {"SPLT": SPLT, "CALM": calm_history()},
            splits={"SPLT": SPLT_SPLITS},
            failures=[{"GONE": "possibly delisted; no price data found"}] * 20,
        )
        return YahooProvider(
            adapter=adapter,
            batch_size_range=2,
            retries=replace(YAHOO_RETRIES, max_attempts=2, sleep=lambda _: None),
        )


@pytest.fixture
def platform(tmp_path, monkeypatch) -> Platform:
    return yfinance_platform(
        tmp_path, monkeypatch, "SPLT,CALM,GONE", RecordedYahooData(source="yfinance")
    )


def test_a_failed_symbol_is_accounted_for_and_never_fails_the_partition(platform):
    run = platform.market(FIRST, LAST)
    assert run.success
    assert run.partitions["bronze_ohlcv"] == {d.isoformat() for d in MARCH}
    raw = run.metadata["raw_ohlcv"]
    assert raw["run/batches_total"].value == 2 and raw["run/batch_size"].value == 2
    assert raw["run/symbols_requested"].value == 3
    assert raw["run/symbols_succeeded"].value == 2 and raw["run/symbols_failed"].value == 1
    assert "| GONE     | possibly delisted; no price data found after 2 attempts |" in (
        raw["run/failures"].value
    )
    assert raw["run/compute_seconds"].value >= 0
    # 1 of 3 symbols failed, past the default 5 %: the check is red, the data is there.
    assert run.checks == {"symbol_failures": False, "reject_share": True, "contract": True}
    bronze = platform.lake_frame("bronze_ohlcv")
    splt = bronze.filter(pl.col("symbol") == "SPLT").sort("date")
    assert splt["close"].to_list() == [400.0, 404.0, 101.0, 102.0]
    assert splt["split_ratio"].to_list() == [1.0, 1.0, 4.0, 1.0]
    assert splt["source"].unique().to_list() == ["yfinance"]
    assert bronze.filter(pl.col("symbol") == "CALM").height == 4


def test_symbol_metadata_comes_from_the_provider_and_is_cached(platform):
    universe = platform.warehouse_frame("symbol_universe").sort("symbol")
    assert universe.select("symbol", "name", "sector").rows() == [
        ("CALM", "CALM Corp", "Energy"),
        ("GONE", "GONE Corp", "Energy"),
        ("SPLT", "SPLT Corp", "Energy"),
    ]
    first = universe["metadata_refreshed_at"].to_list()
    assert None not in first
    assert platform.universe().success  # within 30 days: nothing asked again
    again = platform.warehouse_frame("symbol_universe").sort("symbol")
    assert again["metadata_refreshed_at"].to_list() == first


def test_the_failure_threshold_is_configurable(platform):
    run = platform.market(
        FIRST,
        LAST,
        assets=["raw_ohlcv"],
        run_config={"ops": {"raw_ohlcv": {"config": {"max_failed_share": 0.5}}}},
    )
    assert run.success and run.checks == {"symbol_failures": True}


def test_one_session_alone_equals_its_day_in_the_range(platform, tmp_path, monkeypatch):
    assert platform.market(FIRST, LAST).success
    ranged = platform.lake_frame("bronze_ohlcv").filter(pl.col("date") == dt.date(2024, 3, 6))
    alone = Platform(
        {**platform.env, "FINTRACK_LAKE_URL": str(tmp_path / "alone")},
        monkeypatch,
        resources={"market_data": RecordedYahooData(source="yfinance")},
    )
    assert alone.universe().success and alone.market("2024-03-06").success
    single = alone.lake_frame("bronze_ohlcv")
    columns = ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"]
    assert single.select(columns).rows() == ranged.select(columns).rows()


def test_the_resource_maps_max_attempts_onto_each_providers_own_backoff():
    universe = pl.DataFrame({"symbol": ["AAPL"]})
    yahoo = MarketDataResource(source="yfinance", max_attempts=7).provider(universe)
    polygon = MarketDataResource(
        source="polygon", polygon_api_key="pk_test_mapping", max_attempts=2
    ).provider(universe)
    assert isinstance(yahoo, YahooProvider) and isinstance(polygon, PolygonProvider)
    assert yahoo.retries == Retries(7, backoff_base_seconds=2.0, backoff_max_seconds=60.0)
    assert polygon.retries == Retries(2, backoff_base_seconds=1.0, backoff_max_seconds=60.0)


POLYGON_KEY = "pk_test_NEVER_SHOWN_9f3a"
JUNE = ["2024-06-06", "2024-06-07", "2024-06-10", "2024-06-11"]


@pytest.fixture
def polygon_platform(tmp_path, monkeypatch) -> Iterator[tuple[Platform, StubServer]]:
    """The real Polygon provider over HTTP, against recorded payloads on 127.0.0.1."""
    with StubServer(RecordedPolygon()) as server:
        platform = Platform(
            {
                "FINTRACK_MARKET_DATA": "polygon",
                "POLYGON_API_KEY": POLYGON_KEY,
                "FINTRACK_POLYGON_URL": server.url,
                "FINTRACK_UNIVERSE": "AAPL,MSFT,NVDA,AMD,TWTR,^GSPC",
                "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
                "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
                "FINTRACK_START_DATE": "2024-01-02",
            },
            monkeypatch,
        )
        assert platform.universe().success
        yield platform, server


def test_polygon_range_through_dagster(polygon_platform):
    platform, server = polygon_platform
    run = platform.market(JUNE[0], JUNE[-1])
    assert run.success
    assert run.partitions["bronze_ohlcv"] == set(JUNE)
    raw = run.metadata["raw_ohlcv"]
    assert raw["source"].value == "polygon"
    assert raw["run/symbols_requested"].value == 6 and raw["run/symbols_failed"].value == 2
    failures = raw["run/failures"].value
    assert "TWTR" in failures and "^GSPC" in failures
    assert run.checks["symbol_failures"] is False
    bronze = platform.lake_frame("bronze_ohlcv")
    nvda = bronze.filter(pl.col("symbol") == "NVDA").sort("date")
    assert nvda["split_ratio"].to_list() == [1.0, 1.0, 10.0, 1.0]
    assert nvda["dividend"].to_list() == [0.0, 0.0, 0.0, 0.01]
    assert bronze["adj_close"].null_count() == bronze.height
    rejects = platform.lake_frame("bronze_ohlcv_rejects")
    assert rejects.select("symbol", "date", "reason").rows() == [
        ("AMD", dt.date(2024, 6, 8), "non_session_date")
    ]
    shown = " ".join(str(v.value) for m in run.metadata.values() for v in m.values())
    assert POLYGON_KEY not in shown
    assert all(auth == f"Bearer {POLYGON_KEY}" for _, _, auth in server.seen)
