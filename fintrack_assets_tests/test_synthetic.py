import datetime as dt

import polars as pl
import pytest

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.synthetic import generate_ohlcv
from fintrack_assets.core.universe import sample_universe, synthetic_universe

D = dt.date


@pytest.fixture(scope="module")
def history() -> pl.DataFrame:
    return generate_ohlcv(sample_universe(), D(2020, 1, 2), D(2025, 12, 1))


@pytest.mark.parametrize("day", [D(2020, 1, 2), D(2023, 7, 18), D(2025, 7, 3), D(2025, 11, 28)])
def test_a_bar_is_the_same_alone_or_inside_any_range(history, day):
    alone = generate_ohlcv(sample_universe(), day, day + dt.timedelta(days=1))
    assert alone.height == sample_universe().height
    assert alone.equals(history.filter(pl.col("date") == day))
    window = generate_ohlcv(
        sample_universe(), day - dt.timedelta(days=10), day + dt.timedelta(days=3)
    )
    assert window.filter(pl.col("date") == day).equals(alone)


def test_bars_only_on_sessions_one_per_symbol(history):
    sessions = sessions_between(D(2020, 1, 2), D(2025, 12, 1))
    assert sorted(history["date"].unique().to_list()) == sessions
    assert history.height == len(sessions) * sample_universe().height
    assert history.select(pl.struct("symbol", "date").is_unique().all()).item()


def test_ohlc_is_consistent_and_volume_positive(history):
    assert history.filter(
        (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("low") <= 0)
        | (pl.col("volume") <= 0)
    ).is_empty()


def test_corporate_actions_occur(history):
    assert history.filter(pl.col("split_ratio") > 1).height >= 3
    assert history.filter(pl.col("dividend") > 0)["symbol"].n_unique() >= 10


def _day_over_day(history: pl.DataFrame) -> pl.DataFrame:
    return (
        history.sort("symbol", "date")
        .with_columns(
            pl.col("close").shift().over("symbol").alias("prev_close"),
            pl.col("adj_close").shift().over("symbol").alias("prev_adj"),
        )
        .drop_nulls("prev_close")
        .filter(pl.col("prev_close") >= 5)
    )


def test_total_return_reconciles_prices_splits_and_dividends(history):
    """adj_close (total return) moves as the as-traded close does once the day's split and
    dividend are put back: adj_t / adj_t-1 = (close_t + dividend_t) * ratio_t / close_t-1."""
    moves = _day_over_day(history).with_columns(
        (pl.col("adj_close") / pl.col("prev_adj")).alias("total_return"),
        (
            (pl.col("close") + pl.col("dividend")) * pl.col("split_ratio") / pl.col("prev_close")
        ).alias("rebuilt"),
    )
    error = (moves["total_return"] / moves["rebuilt"] - 1).abs()
    # cents rounding of a >= $5 price bounds the error at about 0.1 % + 0.1 %.
    assert error.max() < 2.5e-3


def test_a_split_day_keeps_the_value_continuous(history):
    splits = _day_over_day(history).filter(pl.col("split_ratio") > 1)
    jump = splits["close"] * splits["split_ratio"] / splits["prev_close"]
    assert jump.is_between(0.8, 1.25).all()
    after = splits["close"] / splits["prev_close"]
    assert (after < 0.7).all()  # as traded: the price really drops on the split day


def test_synthetic_universe_spreads_across_sectors():
    universe = synthetic_universe(5400)
    assert universe.height == 5400
    assert universe["symbol"].n_unique() == 5400
    assert universe["sector"].n_unique() == 11
