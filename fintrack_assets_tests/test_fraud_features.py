"""Fraud features from each account's strictly earlier transactions, checked against a plain
loop written here and against cases worked out by hand."""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics

import numpy as np
import polars as pl
import pytest

from fintrack_assets.core.fraud_features import FEATURES, _by_account_time, payment_features
from fintrack_assets.core.payments import PAYMENT_SCHEMA

UTC = dt.UTC
T0 = dt.datetime(2025, 7, 3, 12, 0, tzinfo=UTC)


def payments(*rows: dict[str, object]) -> pl.DataFrame:
    """PAYMENT_SCHEMA rows; unspecified fields get harmless defaults."""
    base = {
        "currency": "USD",
        "category": "c",
        "lat": 40.0,
        "lon": -74.0,
        "merch_lat": 40.0,
        "merch_lon": -74.0,
        "merchant": "m",
        "account_id": "a",
        "amount": 10.0,
    }
    return pl.DataFrame([base | r for r in rows], schema=PAYMENT_SCHEMA)


def features_of(today: pl.DataFrame, history: pl.DataFrame | None = None, days: int = 30):
    history = payments().head(0) if history is None else history
    out = payment_features(today, history, days)
    return {r["transaction_id"]: r for r in out.to_dicts()}


# -- the reference: one transaction at a time, straight from the definitions -----------------


def reference(today: pl.DataFrame, history: pl.DataFrame, history_days: int = 30) -> list[dict]:
    everything = history.to_dicts() + today.to_dicts()
    lookback = dt.timedelta(days=history_days)
    result = []
    for tx in today.to_dicts():
        t = tx["ts"]
        prior = [
            p
            for p in everything
            if p["account_id"] == tx["account_id"] and t - lookback <= p["ts"] < t
        ]

        def within(width: dt.timedelta, t=t, prior=prior) -> list[float]:
            start = t - min(width, lookback)
            return [p["amount"] for p in prior if p["ts"] >= start]

        month = within(dt.timedelta(days=30))
        spread = statistics.stdev(month) if len(month) >= 2 else 0.0
        row = {
            "transaction_id": tx["transaction_id"],
            "log_amount": math.log(1 + tx["amount"]),
            "amount_zscore_30d": (tx["amount"] - statistics.mean(month)) / spread
            if spread > 0
            else 0.0,
        }
        windows = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1)}
        for name, width in (windows | {"7d": dt.timedelta(days=7)}).items():
            row[f"count_{name}"] = float(len(within(width)))
            row[f"sum_{name}"] = float(sum(within(width)))
        merchant = tx["merchant"]
        row["first_time_merchant"] = float(
            merchant is not None and all(p["merchant"] != merchant for p in prior)
        )
        row["is_night"] = float(t.hour >= 22 or t.hour < 6)
        coords = (tx["lat"], tx["lon"], tx["merch_lat"], tx["merch_lon"])
        if None in coords:
            row["distance_km"] = 0.0
        else:
            lat1, lon1, lat2, lon2 = map(math.radians, coords)
            a = (
                math.sin((lat2 - lat1) / 2) ** 2
                + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
            )
            row["distance_km"] = 2 * 6371.0088 * math.asin(math.sqrt(a))
        result.append(row)
    return result


def random_payments(rng: random.Random, n: int, first: dt.date, days: int, prefix: str):
    start = dt.datetime.combine(first, dt.time(), UTC)
    rows = []
    for i in range(n):
        # Whole minutes, so accounts often have several payments at one moment (ties).
        ts = start + dt.timedelta(minutes=rng.randrange(days * 24 * 60))
        rows.append(
            {
                "transaction_id": f"{prefix}{i}",
                "account_id": f"a{rng.randrange(6)}",
                "ts": ts,
                "amount": rng.choice([5.0, 10.1, 10.1, 20.3, 99.99, round(rng.uniform(1, 500), 2)]),
                "merchant": rng.choice(["m1", "m2", "m3", "m4", None]),
                "lat": rng.uniform(-60, 60),
                "lon": rng.uniform(-170, 170),
                "merch_lat": rng.choice([None, rng.uniform(-60, 60)]),
                "merch_lon": rng.uniform(-170, 170),
            }
        )
    return payments(*rows)


def assert_matches(got: pl.DataFrame, expected: list[dict]) -> None:
    assert got.columns == ["transaction_id", *FEATURES]
    assert got.schema["transaction_id"] == pl.String
    assert all(got.schema[f] == pl.Float64 for f in FEATURES)
    assert got["transaction_id"].to_list() == [e["transaction_id"] for e in expected]
    for row, want in zip(got.to_dicts(), expected, strict=True):
        for name in FEATURES:
            assert row[name] == pytest.approx(want[name], rel=1e-9, abs=1e-9), (
                name,
                row["transaction_id"],
            )


@pytest.mark.parametrize(("seed", "history_days"), [(1, 30), (2, 30), (3, 7), (4, 1), (5, 3)])
def test_features_equal_the_reference_loop(seed, history_days):
    rng = random.Random(seed)
    history = random_payments(rng, 400, dt.date(2025, 6, 1), 32, "h")
    today = random_payments(rng, 250, dt.date(2025, 7, 3), 1, "t")
    today = today.sample(fraction=1.0, shuffle=True, seed=seed)  # any input order
    got = payment_features(today, history, history_days)
    assert_matches(got, reference(today, history, history_days))


def test_a_range_of_days_equals_each_day_with_its_history():
    rng = random.Random(9)
    history = random_payments(rng, 300, dt.date(2025, 6, 1), 32, "h")
    day1 = random_payments(rng, 150, dt.date(2025, 7, 3), 1, "d1-")
    day2 = random_payments(rng, 150, dt.date(2025, 7, 4), 1, "d2-")
    together = payment_features(pl.concat([day1, day2]), history)
    one = payment_features(day1, history)
    two = payment_features(day2, pl.concat([history, day1]))
    assert together.equals(pl.concat([one, two]))
    assert_matches(together, reference(pl.concat([day1, day2]), history))


def test_history_of_other_accounts_changes_nothing():
    # Mostly other accounts' history: those rows are dropped before the sort.
    rng = random.Random(21)
    mine = random_payments(rng, 300, dt.date(2025, 6, 5), 28, "h")
    others = random_payments(rng, 3000, dt.date(2025, 6, 5), 28, "o").with_columns(
        ("x" + pl.col("account_id")).alias("account_id")
    )
    today = random_payments(rng, 120, dt.date(2025, 7, 3), 1, "t")
    got = payment_features(today, pl.concat([others, mine]))
    assert got.equals(payment_features(today, mine))
    assert_matches(got, reference(today, mine))


# -- worked by hand ----------------------------------------------------------------------------


def test_a_hand_worked_account():
    h = dt.timedelta(hours=1)
    history = payments(
        {"transaction_id": "h1", "ts": T0 - dt.timedelta(days=31), "amount": 1000.0},  # too old
        {"transaction_id": "h2", "ts": T0 - dt.timedelta(days=10), "amount": 10.0},
        {"transaction_id": "h3", "ts": T0 - dt.timedelta(days=2), "amount": 20.0, "merchant": "x"},
        {"transaction_id": "h4", "ts": T0 - 2 * h, "amount": 30.0},
        {"transaction_id": "other", "ts": T0 - h, "amount": 500.0, "account_id": "b"},
    )
    today = payments(
        {"transaction_id": "t1", "ts": T0 - h, "amount": 40.0, "merchant": "x"},  # exactly 1 h
        {"transaction_id": "t2", "ts": T0, "amount": 100.0, "merchant": "new"},
    )
    f = features_of(today, history)
    # t1 at 11:00 sees h2, h3, h4 (30 days back); h4 at 10:00 is in its hour.
    assert f["t1"]["count_1h"] == 1.0 and f["t1"]["sum_1h"] == 30.0
    assert f["t1"]["count_24h"] == 1.0 and f["t1"]["sum_24h"] == 30.0
    assert f["t1"]["count_7d"] == 2.0 and f["t1"]["sum_7d"] == 50.0
    assert f["t1"]["amount_zscore_30d"] == pytest.approx((40 - 20) / 10)  # mean 20, sd 10
    assert f["t1"]["first_time_merchant"] == 0.0  # h3 was at x
    # t2 at 12:00: t1 exactly one hour before is inside [ts - 1h, ts).
    assert f["t2"]["count_1h"] == 1.0 and f["t2"]["sum_1h"] == 40.0
    assert f["t2"]["count_24h"] == 2.0 and f["t2"]["sum_24h"] == 70.0
    assert f["t2"]["count_7d"] == 3.0 and f["t2"]["sum_7d"] == 90.0
    # mean of 10, 20, 30, 40 is 25, sample sd sqrt(500/3)
    assert f["t2"]["amount_zscore_30d"] == pytest.approx(75 / math.sqrt(500 / 3))
    assert f["t2"]["first_time_merchant"] == 1.0
    assert f["t2"]["log_amount"] == pytest.approx(math.log(101))
    assert f["t2"]["is_night"] == 0.0


def test_a_window_edge_is_inclusive_one_microsecond_matters():
    us = dt.timedelta(microseconds=1)
    today = payments(
        {"transaction_id": "edge", "ts": T0 - dt.timedelta(hours=1)},
        {"transaction_id": "out", "ts": T0 - dt.timedelta(hours=1) - us},
        {"transaction_id": "now", "ts": T0},
    )
    assert features_of(today)["now"]["count_1h"] == 1.0  # "edge" in, "out" not


def test_payments_at_the_same_moment_do_not_see_each_other():
    today = payments(
        {"transaction_id": "a", "ts": T0, "amount": 5.0, "merchant": "m"},
        {"transaction_id": "b", "ts": T0, "amount": 7.0, "merchant": "m"},
        {"transaction_id": "c", "ts": T0 + dt.timedelta(seconds=1), "merchant": "m"},
    )
    f = features_of(today)
    for tid in ("a", "b"):
        assert f[tid]["count_1h"] == 0.0 and f[tid]["first_time_merchant"] == 1.0
    assert f["c"]["count_1h"] == 2.0 and f["c"]["sum_1h"] == 12.0
    assert f["c"]["first_time_merchant"] == 0.0


def test_a_later_payment_never_changes_an_earlier_ones_features():
    rng = random.Random(11)
    history = random_payments(rng, 200, dt.date(2025, 6, 10), 23, "h")
    today = random_payments(rng, 100, dt.date(2025, 7, 3), 1, "t")
    before = payment_features(today, history)
    last = today["ts"].max()
    later = payments(
        *(
            {
                "transaction_id": f"late{k}",
                "account_id": f"a{k % 6}",
                "ts": last + dt.timedelta(seconds=k),  # at the last moment and after it
                "amount": 9999.0,
                "merchant": "m1",
            }
            for k in range(12)
        )
    )
    after = payment_features(pl.concat([today, later]), history)
    assert after.head(today.height).equals(before)


def test_history_older_than_the_look_back_is_ignored():
    today = payments({"transaction_id": "t", "ts": T0, "amount": 50.0, "merchant": "old"})
    recent = payments({"transaction_id": "r", "ts": T0 - dt.timedelta(days=2)})
    ancient = payments(
        {"transaction_id": "z", "ts": T0 - dt.timedelta(days=8), "merchant": "old"},
        {"transaction_id": "y", "ts": T0 - dt.timedelta(days=9), "amount": 1.0},
    )
    short = payment_features(today, pl.concat([recent, ancient]), history_days=7)
    assert short.equals(payment_features(today, recent, history_days=7))
    f = short.row(0, named=True)
    assert (f["count_7d"], f["first_time_merchant"], f["amount_zscore_30d"]) == (1.0, 1.0, 0.0)
    # With 30 days they all count.
    f = payment_features(today, pl.concat([recent, ancient]), 30).row(0, named=True)
    assert (f["count_7d"], f["first_time_merchant"]) == (1.0, 0.0)
    assert f["amount_zscore_30d"] == pytest.approx((50 - 7) / statistics.stdev([10, 10, 1]))


def test_equal_amounts_have_no_spread_and_a_z_score_of_zero():
    # 10.1 is not exact in binary: squares and sums of it do not cancel to 0 exactly.
    history = payments(
        {"transaction_id": "old", "ts": T0 - dt.timedelta(days=40), "amount": 20.3},
        *(
            {"transaction_id": f"h{k}", "ts": T0 - dt.timedelta(days=k), "amount": 10.1}
            for k in range(1, 8)
        ),
    )
    today = payments({"transaction_id": "t", "ts": T0, "amount": 10.2})
    z = features_of(today, history)["t"]["amount_zscore_30d"]
    assert z == 0.0  # seven 10.1s: no spread, so no z-score (not a huge one)


def test_night_is_utc_22_to_05_and_distance_is_great_circle():
    hours = [21, 22, 23, 0, 5, 6]
    today = payments(
        *(
            {"transaction_id": f"h{h}", "ts": dt.datetime(2025, 7, 3, h, 30, tzinfo=UTC)}
            for h in hours
        ),
        {
            "transaction_id": "deg",
            "ts": T0,
            "lat": 0.0,
            "lon": 0.0,
            "merch_lat": 0.0,
            "merch_lon": 1.0,
        },
        {
            "transaction_id": "pole",
            "ts": T0,
            "lat": 90.0,
            "lon": 0.0,
            "merch_lat": -90.0,
            "merch_lon": 0.0,
        },
        {"transaction_id": "online", "ts": T0, "merch_lat": None, "merch_lon": None},
    )
    f = features_of(today)
    assert [f[f"h{h}"]["is_night"] for h in hours] == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert f["deg"]["distance_km"] == pytest.approx(6371.0088 * math.pi / 180)  # 111.195 km
    assert f["pole"]["distance_km"] == pytest.approx(6371.0088 * math.pi)
    assert f["online"]["distance_km"] == 0.0


def test_an_unknown_merchant_is_never_a_first_time():
    today = payments({"transaction_id": "t", "ts": T0, "merchant": None})
    assert features_of(today)["t"]["first_time_merchant"] == 0.0


def test_empty_today_and_bad_look_back():
    out = payment_features(payments().head(0), payments().head(0))
    assert out.is_empty() and out.columns == ["transaction_id", *FEATURES]
    with pytest.raises(ValueError, match="history_days"):
        payment_features(payments().head(0), payments().head(0), 0)


def test_the_sort_by_account_and_time_is_exact_even_where_its_key_is_not():
    # Hashes sharing their top 32 bits, times inside one coarse unit and exact ties: the
    # cases the single-key sort cannot settle alone. Compared with numpy's exact lexsort.
    rng = np.random.default_rng(3)
    tops = rng.integers(0, 4, 3000).astype(np.uint64) << np.uint64(32)
    account = tops | rng.integers(0, 3, 3000).astype(np.uint64)
    since = np.concatenate([rng.integers(0, 50, 1500), rng.integers(0, 10**13, 1500)])
    amount = rng.integers(1, 5, 3000).astype(np.float64)
    order, sorted_account, sorted_since = _by_account_time(account, since, amount)
    expected = np.lexsort((amount, since, account))
    for column in (account, since, amount):
        assert np.array_equal(column[order], column[expected])
    assert np.array_equal(sorted_account, account[expected])
    assert np.array_equal(sorted_since, since[expected])
    assert sorted(order.tolist()) == list(range(3000))
