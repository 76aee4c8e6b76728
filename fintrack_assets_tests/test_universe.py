import datetime as dt

import polars as pl
import pytest

from fintrack_assets.core.universe import (
    load_universe,
    split_valid,
    stale_symbols,
    with_provider_metadata,
)


def test_sample_has_sectors_spy_and_sector_etfs():
    universe = load_universe("sample")
    symbols = set(universe["symbol"])
    assert {
        "SPY",
        "XLK",
        "XLF",
        "XLE",
        "XLV",
        "XLU",
        "XLB",
        "XLI",
        "XLP",
        "XLY",
        "XLC",
        "XLRE",
    } <= symbols
    equities = universe.filter(universe["asset_type"] == "equity")
    assert 25 <= equities.height <= 40
    assert equities["sector"].n_unique() == 11
    assert universe.drop_nulls(["name", "sector", "industry"]).height == universe.height


def test_sp500_ships_with_sectors():
    universe = load_universe("sp500")
    assert 495 <= universe.height <= 510
    assert "BRK-B" in universe["symbol"].to_list()
    valid, rejected = split_valid(universe)
    assert rejected.is_empty() and valid.height == universe.height


def test_symbol_list_takes_names_from_the_shipped_lists():
    universe = load_universe("aapl, XOM,ZZZZ")
    assert universe["symbol"].to_list() == ["AAPL", "XOM", "ZZZZ"]
    assert universe["sector"].to_list()[:2] == ["Information Technology", "Energy"]


def test_synthetic_n():
    assert load_universe("synthetic:7").height == 7


def test_a_csv_universe_rejects_bad_symbols_with_reasons(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "Symbol,Name\nAAPL,Apple\n../../etc,traversal\nA';DROP TABLE x;--,injection\nAAPL,again\n"
    )
    valid, rejected = split_valid(load_universe(str(path)))
    assert valid["symbol"].to_list() == ["AAPL"]
    assert sorted(rejected.select("symbol", "reason").rows()) == [
        ("../../etc", "bad_symbol"),
        ("A';DROP TABLE x;--", "bad_symbol"),
        ("AAPL", "duplicate"),
    ]


def test_a_csv_without_a_symbol_column_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("ticker\nAAPL\n")
    with pytest.raises(ValueError, match="'symbol' column"):
        load_universe(str(path))


def test_provider_metadata_beats_the_cache_which_beats_the_shipped_list():
    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    month = dt.timedelta(days=30)
    universe = pl.DataFrame(
        {
            "symbol": ["A", "B", "C"],
            "name": ["A Inc", "B Inc", None],
            "sector": ["Tech", "Energy", "Financials"],
            "industry": ["Soft", None, None],
            "asset_type": ["equity"] * 3,
        }
    )
    previous = pl.DataFrame(
        {
            "symbol": ["A", "B"],
            "name": ["A Old", "B Old"],
            "sector": [None, "Utilities"],
            "industry": ["Chips", None],
            "metadata_refreshed_at": [now - dt.timedelta(days=10), now - dt.timedelta(days=40)],
        },
        schema_overrides={"metadata_refreshed_at": pl.Datetime("us", "Etc/UTC")},
    )
    assert stale_symbols(universe, previous, now, month) == ["B", "C"]
    fetched = pl.DataFrame(
        {"symbol": ["C"], "name": ["C Corp"], "sector": [None], "industry": ["Banks"]},
        schema_overrides={"sector": pl.String},
    )
    merged = with_provider_metadata(universe, previous, fetched, now, month)
    assert merged.select("symbol", "name", "sector", "industry").rows() == [
        ("A", "A Old", "Tech", "Chips"),
        ("B", "B Inc", "Energy", None),
        ("C", "C Corp", "Financials", "Banks"),
    ]
    assert merged["metadata_refreshed_at"].to_list() == [now - dt.timedelta(days=10), None, now]
    assert stale_symbols(universe, None, now, month) == ["A", "B", "C"]
