"""Silver bars against hand-worked cases and a plain reference computed from bronze rows."""

import datetime as dt

import polars as pl
import pytest

from fintrack_assets.core.bronze import OHLCV_SCHEMA
from fintrack_assets.core.silver import (
    INTERVALS,
    misaligned_bars,
    nesting_mismatches,
    resample,
)
from fintrack_assets.core.synthetic import generate_ohlcv
from fintrack_assets.core.universe import synthetic_universe
from fintrack_assets.schemas import SilverOHLCV
from fintrack_assets_tests.silver_reference import SESSION_INDEX, SESSIONS, reference

D = dt.date


def bronze(rows: list[dict]) -> pl.DataFrame:
    """Bronze rows with defaults for what a case does not care about."""
    defaults = {
        "adj_close": None,
        "volume": 1000,
        "dividend": 0.0,
        "split_ratio": 1.0,
        "source": "test",
        "ingested_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    return pl.DataFrame([{**defaults, **row} for row in rows], schema=OHLCV_SCHEMA)


def bar(
    o: float, h: float, low: float, c: float, day: D, symbol: str = "ABC", **extra: object
) -> dict:
    return {"symbol": symbol, "date": day, "open": o, "high": h, "low": low, "close": c, **extra}


def same(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    from polars.testing import assert_frame_equal

    assert_frame_equal(
        actual.sort("symbol", "bar_end"), expected.sort("symbol", "bar_end"), rel_tol=1e-12
    )


def test_buckets_count_sessions_from_the_epoch_and_skip_holidays():
    # 2000-01-03 (Mon) is session 0. 2000-01-17 was Martin Luther King Day: NYSE closed.
    days = [D(2000, 1, d) for d in (3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 18, 19, 20, 21, 24)]
    rows = bronze([bar(10, 11, 9, 10, day, volume=100) for day in days])
    five = resample(rows, 5, D(2000, 1, 3), D(2000, 1, 25))
    assert five.select("bar_start", "bar_end", "n_days").rows() == [
        (D(2000, 1, 3), D(2000, 1, 7), 5),
        (D(2000, 1, 10), D(2000, 1, 14), 5),
        (D(2000, 1, 18), D(2000, 1, 24), 5),
    ]
    three = resample(rows, 3, D(2000, 1, 3), D(2000, 1, 25))
    assert three.select("bar_start", "bar_end").rows() == [
        (D(2000, 1, 3), D(2000, 1, 5)),
        (D(2000, 1, 6), D(2000, 1, 10)),
        (D(2000, 1, 11), D(2000, 1, 13)),
        (D(2000, 1, 14), D(2000, 1, 19)),
        (D(2000, 1, 20), D(2000, 1, 24)),
    ]
    assert three["volume"].to_list() == [300] * 5


def test_a_bar_is_first_open_max_high_min_low_last_close_and_summed_volume():
    # 2005-02-14 .. 2005-02-18 (Mon-Fri) are sessions 1,285 .. 1,289: 5-session bucket 257.
    assert SESSION_INDEX[D(2005, 2, 14)] == 1285 and SESSION_INDEX[D(2005, 2, 18)] == 1289
    rows = bronze(
        [
            bar(20.0, 21.0, 19.5, 20.5, D(2005, 2, 14), volume=100, adj_close=18.0),
            bar(20.5, 23.0, 20.0, 22.0, D(2005, 2, 15), volume=200, adj_close=19.0),
            bar(22.0, 22.5, 18.0, 19.0, D(2005, 2, 16), volume=300, adj_close=17.0),
            bar(19.0, 19.5, 18.5, 19.2, D(2005, 2, 17), volume=400, adj_close=17.5),
            bar(19.2, 20.0, 19.0, 19.8, D(2005, 2, 18), volume=500, adj_close=17.9),
        ]
    )
    bars = resample(rows, 5, D(2005, 2, 18), D(2005, 2, 19))
    assert bars.drop("symbol").rows(named=True) == [
        {
            "interval_days": 5,
            "bar_start": D(2005, 2, 14),
            "bar_end": D(2005, 2, 18),
            "open": 20.0,
            "high": 23.0,
            "low": 18.0,
            "close": 19.8,
            "adj_close": 17.9,
            "volume": 1500,
            "n_days": 5,
            "split_ratio": 1.0,
        }
    ]


def test_a_split_inside_the_bucket_puts_earlier_days_on_the_last_days_basis():
    # 2:1 split effective 2005-02-16: the 14th and 15th trade at twice the later prices.
    rows = bronze(
        [
            bar(100.0, 104.0, 98.0, 102.0, D(2005, 2, 14), volume=1000),
            bar(102.0, 110.0, 101.0, 108.0, D(2005, 2, 15), volume=1001),
            bar(54.0, 56.0, 53.0, 55.0, D(2005, 2, 16), volume=3000, split_ratio=2.0),
            bar(55.0, 57.0, 54.5, 56.0, D(2005, 2, 17), volume=2000),
            bar(56.0, 56.5, 52.0, 53.0, D(2005, 2, 18), volume=2500),
        ]
    )
    [only] = resample(rows, 5, D(2005, 2, 18), D(2005, 2, 19)).rows(named=True)
    assert (only["open"], only["high"], only["low"], only["close"]) == (50.0, 57.0, 49.0, 53.0)
    assert only["volume"] == 2000 + 2002 + 3000 + 2000 + 2500
    assert only["split_ratio"] == 2.0
    # A 1-for-10 reverse split on the last day: earlier volumes shrink and round to shares.
    reverse = rows.with_columns(
        pl.when(pl.col("date") == D(2005, 2, 18))
        .then(pl.lit(0.1))
        .when(pl.col("date") == D(2005, 2, 16))
        .then(pl.lit(1.0))
        .otherwise(pl.col("split_ratio"))
        .alias("split_ratio")
    )
    [only] = resample(reverse, 5, D(2005, 2, 18), D(2005, 2, 19)).rows(named=True)
    assert only["open"] == pytest.approx(1000.0)
    assert only["high"] == pytest.approx(1100.0)
    assert only["low"] == pytest.approx(52.0)
    assert only["volume"] == 100 + 100 + 300 + 200 + 2500


def test_a_partial_bucket_at_first_listing_and_a_missing_day_give_fewer_days():
    rows = bronze(
        [
            # listed on the bucket's third session; the bucket still starts on its first
            bar(30.0, 31.0, 29.0, 30.5, D(2005, 2, 16), symbol="NEW"),
            bar(30.5, 33.0, 30.0, 32.0, D(2005, 2, 17), symbol="NEW"),
            bar(32.0, 32.5, 31.0, 31.5, D(2005, 2, 18), symbol="NEW"),
            # OLD has no bar on the 16th
            bar(10.0, 10.5, 9.5, 10.2, D(2005, 2, 14), symbol="OLD"),
            bar(10.2, 10.4, 10.0, 10.1, D(2005, 2, 15), symbol="OLD"),
            bar(10.1, 12.0, 10.1, 11.9, D(2005, 2, 17), symbol="OLD"),
            bar(11.9, 12.1, 11.0, 11.5, D(2005, 2, 18), symbol="OLD"),
        ]
    )
    bars = resample(rows, 5, D(2005, 2, 14), D(2005, 2, 19))
    assert bars.select("symbol", "bar_start", "n_days", "open", "high", "low", "close").rows() == [
        ("NEW", D(2005, 2, 14), 3, 30.0, 33.0, 29.0, 31.5),
        ("OLD", D(2005, 2, 14), 4, 10.0, 12.1, 9.5, 11.5),
    ]
    # A symbol with no data in a bucket has no bar at all.
    assert (
        resample(rows, 3, D(2005, 2, 14), D(2005, 2, 19))
        .filter((pl.col("symbol") == "NEW") & (pl.col("bar_end") < D(2005, 2, 16)))
        .is_empty()
    )


def test_only_buckets_ending_in_the_window_make_bars():
    rows = bronze([bar(10, 11, 9, 10, day) for day in SESSIONS[1300:1320]])
    # The 5-session buckets end on sessions 1304, 1309, 1314, 1319.
    window = resample(rows, 5, SESSIONS[1305], SESSIONS[1315])
    assert window["bar_end"].to_list() == [SESSIONS[1309], SESSIONS[1314]]
    assert resample(rows, 5, SESSIONS[1310], SESSIONS[1314]).is_empty()
    assert misaligned_bars(window, 5, SESSIONS[1305], SESSIONS[1315]).is_empty()
    moved = window.with_columns(pl.col("bar_start").dt.offset_by("1d"))
    assert misaligned_bars(moved, 5, SESSIONS[1305], SESSIONS[1315]).height == 2


@pytest.fixture(scope="module")
def synthetic_bronze() -> pl.DataFrame:
    """Eight months of 40 synthetic symbols: holidays, splits, and symbols with gaps."""
    frame = generate_ohlcv(synthetic_universe(40), D(2024, 1, 2), D(2024, 9, 3))
    gaps = (pl.col("symbol") == "SYN0003") & pl.col("date").is_in([D(2024, 3, 5), D(2024, 7, 5)])
    late = (pl.col("symbol") == "SYN0007") & (pl.col("date") < D(2024, 2, 21))
    return frame.filter(~gaps & ~late)


def test_every_interval_over_eight_months_matches_the_reference(synthetic_bronze):
    assert (synthetic_bronze["split_ratio"] != 1.0).sum() > 0, "the sample should hold a split"
    start, end = D(2024, 1, 2), D(2024, 9, 3)
    for interval in INTERVALS:
        bars = resample(synthetic_bronze, interval, start, end)
        same(bars, reference(synthetic_bronze, interval, start, end))
        SilverOHLCV.validate(bars)


def test_a_window_equals_its_sessions_one_at_a_time(synthetic_bronze):
    days = sorted(synthetic_bronze["date"].unique().to_list())[100:140]
    for interval in (5, 21):
        whole = resample(synthetic_bronze, interval, days[0], days[-1] + dt.timedelta(days=1))
        one_by_one = pl.concat(
            resample(synthetic_bronze, interval, day, day + dt.timedelta(days=1)) for day in days
        )
        same(whole, one_by_one)
        assert whole.height > 0


def test_nested_intervals_agree_and_a_disagreement_is_found(synthetic_bronze):
    start, end = D(2024, 1, 2), D(2024, 9, 3)
    three = resample(synthetic_bronze, 3, start, end)
    twenty_one = resample(synthetic_bronze, 21, start, end)
    assert nesting_mismatches(three, twenty_one).is_empty()
    target = twenty_one.row(5, named=True)
    nudged = three.with_columns(
        pl.when((pl.col("symbol") == target["symbol"]) & (pl.col("bar_end") == target["bar_end"]))
        .then(pl.col("high") * 2)
        .otherwise(pl.col("high"))
        .alias("high")
    )
    bad = nesting_mismatches(nudged, twenty_one)
    assert bad.select("symbol", "bar_end").rows() == [(target["symbol"], target["bar_end"])]


def test_bronze_off_the_calendar_or_repeated_is_refused():
    saturday = bronze([bar(10, 11, 9, 10, D(2005, 2, 19))])
    with pytest.raises(ValueError, match="non-session"):
        resample(saturday, 3, D(2005, 2, 14), D(2005, 2, 25))
    twice = bronze([bar(10, 11, 9, 10, D(2005, 2, 18)), bar(10, 12, 9, 11, D(2005, 2, 18))])
    with pytest.raises(ValueError, match="more than one row"):
        resample(twice, 3, D(2005, 2, 14), D(2005, 2, 25))


def test_the_contract_refuses_impossible_bars():
    good = resample(bronze([bar(10, 11, 9, 10, D(2005, 2, 18))]), 3, D(2005, 2, 18), D(2005, 2, 19))
    SilverOHLCV.validate(good)
    for broken in (
        good.with_columns(pl.lit(8.0).alias("high")),
        good.with_columns(pl.lit(4, pl.Int32).alias("n_days")),
        good.with_columns(pl.lit(-1, pl.Int64).alias("volume")),
    ):
        with pytest.raises(Exception, match=r"high|n_days|volume"):
            SilverOHLCV.validate(broken)
