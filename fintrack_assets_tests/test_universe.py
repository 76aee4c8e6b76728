import csv
import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from fintrack_assets.core.membership import members_on, parse_spells
from fintrack_assets.core.universe import (
    cached_listing,
    load_universe,
    parse_universe_spec,
    split_valid,
    stale_symbols,
    stamped_listing,
    with_provider_metadata,
    with_stored_columns,
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


# -- sp500_pit and all ------------------------------------------------------------------------

SP500_HISTORY = Path(__file__).parents[1] / "fintrack_assets/data/sp500_history"


def sp500_members_by_csv(day: dt.date) -> set[str]:
    """The shipped spell file read with the csv module: a ticker is a member from start_date
    up to, not including, end_date (empty: still one), spelled BRK.B -> BRK-B."""
    members = set()
    with open(SP500_HISTORY / "sp500_ticker_start_end.csv", newline="") as file:
        for row in csv.DictReader(file):
            start = dt.date.fromisoformat(row["start_date"])
            end = dt.date.fromisoformat(row["end_date"]) if row["end_date"] else None
            if start <= day and (end is None or day < end):
                members.add(row["ticker"].replace(".", "-"))
    return members


@pytest.mark.parametrize(
    ("day", "count"),
    [
        (dt.date(1996, 1, 2), 487),
        (dt.date(2001, 1, 16), 494),
        (dt.date(2024, 9, 23), 503),
        (dt.date(2025, 11, 14), 503),
    ],
)
def test_sp500_pit_members_on_a_day(day, count):
    members = members_on(load_universe("sp500_pit"), day)
    assert len(members) == count
    assert set(members) == sp500_members_by_csv(day)


def test_sp500_pit_on_the_2024_09_23_replacement_day():
    universe = load_universe("sp500_pit")
    before = set(members_on(universe, dt.date(2024, 9, 20)))
    on = set(members_on(universe, dt.date(2024, 9, 23)))
    assert before - on == {"AAL", "BIO", "ETSY"}
    assert on - before == {"DELL", "ERIE", "PLTR"}


def test_sp500_pit_keeps_every_spell_of_a_symbol_and_our_spelling():
    universe = load_universe("sp500_pit")
    spells = dict(universe.select("symbol", "member_spells").rows())
    assert spells["AAL"] == "1996-01-02/1997-01-15;2015-03-23/2024-09-23"
    assert parse_spells(spells["AAL"]) == [
        (dt.date(1996, 1, 2), dt.date(1997, 1, 15)),
        (dt.date(2015, 3, 23), dt.date(2024, 9, 23)),
    ]
    assert "BRK-B" in spells and "BRK.B" not in spells
    assert universe["symbol"].n_unique() == universe.height
    brk = universe.filter(pl.col("symbol") == "BRK-B").row(0, named=True)
    assert (brk["name"], brk["sector"]) == ("Berkshire Hathaway", "Financials")
    lehman = universe.filter(pl.col("symbol") == "LEHMQ").row(0, named=True)
    assert lehman["sector"] is None and lehman["asset_type"] == "equity"
    valid, rejected = split_valid(universe)
    assert rejected.is_empty() and valid.equals(universe)


def test_a_pit_symbol_the_strict_pattern_refuses_is_a_reject_row():
    universe = pl.DataFrame(
        {
            "symbol": ["AAPL", "bad$sym", "AAPL"],
            "name": ["Apple", "broken", "again"],
            "sector": [None, None, None],
            "industry": [None, None, None],
            "asset_type": ["equity"] * 3,
            "member_spells": ["2000-01-03/", "2000-01-03/2001-01-02", "2001-01-02/"],
        }
    )
    valid, rejected = split_valid(universe)
    assert valid.select("symbol", "member_spells").rows() == [("AAPL", "2000-01-03/")]
    assert rejected.select("symbol", "reason").rows() == [
        ("bad$sym", "bad_symbol"),
        ("AAPL", "duplicate"),
    ]


def test_all_and_sp500_pit_are_specs_and_all_is_not_a_file():
    assert parse_universe_spec(" all ") == ("all", "all")
    assert parse_universe_spec("sp500_pit") == ("sp500_pit", "sp500_pit")
    with pytest.raises(ValueError, match="provider's listing"):
        load_universe("all")


NOW = dt.datetime(2025, 11, 14, 12, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)


def _previous(listed_at: dt.datetime | None, source: str | None) -> pl.DataFrame:
    listing = stamped_listing(load_universe("sample").head(3), source or "x", listed_at or NOW)
    if listed_at is None:
        listing = listing.with_columns(pl.lit(None, listing["listed_at"].dtype).alias("listed_at"))
    return with_stored_columns(listing.with_columns(pl.lit(source).alias("listing_source")))


def test_a_previous_listing_is_reused_only_while_fresh_and_from_the_same_source():
    fresh = _previous(NOW - dt.timedelta(days=6, hours=23), "polygon")
    reused = cached_listing(fresh, "polygon", NOW, WEEK)
    assert reused is not None
    assert reused["symbol"].to_list() == fresh["symbol"].to_list()
    assert reused["listed_at"].to_list() == [NOW - dt.timedelta(days=6, hours=23)] * 3
    stale = _previous(NOW - dt.timedelta(days=7, seconds=1), "polygon")
    assert cached_listing(stale, "polygon", NOW, WEEK) is None
    assert cached_listing(fresh, "nasdaqtrader", NOW, WEEK) is None  # another source
    assert cached_listing(_previous(None, None), "polygon", NOW, WEEK) is None  # not `all`
    old_table = load_universe("sample")  # written before the listing columns existed
    assert cached_listing(old_table, "polygon", NOW, WEEK) is None
    assert cached_listing(None, "polygon", NOW, WEEK) is None


def test_stored_columns_are_there_for_every_universe_and_null_when_not_theirs():
    stored = with_stored_columns(load_universe("sample"))
    assert stored.columns == [
        "symbol",
        "name",
        "sector",
        "industry",
        "asset_type",
        "member_spells",
        "listed_at",
        "listing_source",
    ]
    assert stored.select("member_spells", "listed_at", "listing_source").null_count().row(0) == (
        stored.height,
        stored.height,
        stored.height,
    )
