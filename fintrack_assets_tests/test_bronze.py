import datetime as dt

import polars as pl
import pytest

from fintrack_assets.core.bronze import OHLCV_SCHEMA, reject_counts, to_bronze
from fintrack_assets.schemas import BronzeOHLCV

NOW = dt.datetime(2025, 7, 3, 21, 0, tzinfo=dt.UTC)


def bar(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "symbol": "AAPL",
        "date": dt.date(2025, 7, 3),
        "open": 100.0,
        "high": 102.0,
        "low": 99.0,
        "close": 101.0,
        "adj_close": 101.0,
        "volume": 1_000,
        "dividend": 0.0,
        "split_ratio": 1.0,
        "source": "test",
        "ingested_at": NOW,
    }
    row.update(overrides)
    return row


def frame(*rows: dict[str, object]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=OHLCV_SCHEMA)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"high": 98.0, "low": 99.5, "open": 99.0, "close": 99.0}, "high_below_low"),
        ({"volume": -5}, "negative_volume"),
        ({"close": float("nan")}, "missing_price"),
        ({"open": None}, "missing_price"),
        ({"adj_close": float("nan")}, "missing_price"),
        ({"adj_close": 0.0}, "non_positive_price"),
        ({"date": dt.date(2025, 7, 4)}, "non_session_date"),
        ({"date": dt.date(2025, 7, 5)}, "non_session_date"),
        ({"symbol": "../../etc"}, "bad_symbol"),
        ({"symbol": "A';DROP TABLE x;--"}, "bad_symbol"),
        ({"symbol": "aapl"}, "bad_symbol"),
        ({"close": 103.0}, "open_close_outside_range"),
        ({"low": -1.0}, "non_positive_price"),
        ({"split_ratio": 0.0}, "bad_corporate_action"),
        ({"dividend": -0.5}, "bad_corporate_action"),
        ({"volume": None}, "missing_volume"),
    ],
)
def test_each_bad_bar_is_rejected_with_its_reason(overrides, reason):
    good = bar(symbol="MSFT")
    bronze, rejects = to_bronze(frame(good, bar(**overrides)))
    assert bronze["symbol"].to_list() == ["MSFT"]
    assert rejects.height == 1
    assert reason in rejects["reason"].item().split(";")
    assert reject_counts(rejects)[reason] == 1


def test_a_duplicate_keeps_the_first_valid_bar():
    first, second = bar(close=101.0), bar(close=101.5)
    bronze, rejects = to_bronze(frame(first, second))
    assert bronze["close"].to_list() == [101.0]
    assert rejects.select("close", "reason").rows() == [(101.5, "duplicate")]


def test_an_invalid_bar_does_not_shadow_a_valid_one_for_the_same_day():
    bronze, rejects = to_bronze(frame(bar(volume=-1), bar()))
    assert bronze.height == 1 and bronze["volume"].item() == 1_000
    assert rejects["reason"].to_list() == ["negative_volume"]


def test_several_reasons_are_all_named():
    _, rejects = to_bronze(frame(bar(volume=-1, date=dt.date(2025, 7, 4))))
    assert set(rejects["reason"].item().split(";")) == {"negative_volume", "non_session_date"}


def test_nothing_is_lost_and_bronze_meets_the_contract():
    rows = [bar(symbol=s) for s in ["AAPL", "MSFT", "BRK-B", "^GSPC"]] + [bar(volume=-1)]
    bronze, rejects = to_bronze(frame(*rows))
    assert bronze.height + rejects.height == len(rows)
    BronzeOHLCV.validate(bronze)


def test_a_provider_without_a_total_return_close_is_not_rejected():
    bronze, rejects = to_bronze(frame(bar(adj_close=None)))
    assert rejects.is_empty() and bronze["adj_close"].to_list() == [None]
    BronzeOHLCV.validate(bronze)
