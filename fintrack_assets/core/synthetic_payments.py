"""A deterministic synthetic day of card payments, labelled, for demos, tests and training.

Accounts are fixed by (accounts, seed): each lives near one of a few US cities and has its
habits: a handful of usual merchants there, an amount level and spread, a busy hour, a daily
rate. A day adds noise with its own generator, seeded by (seed, date), so any day can be made
alone and is identical however often it is made; another day gives other payments.

About 1.5 % of rows are fraud, injected as incidents on random accounts, each a pattern the
features can see (and a model can learn):
- card testing: a burst of 6-15 small amounts within ~40 minutes, at merchants anywhere;
- far away: 1-3 purchases at a merchant in another city;
- night spree: 1-2 large amounts at a merchant new to the account, between 00:00 and 05:00;
- spike: one amount 8-30 times the account's usual, at one of its usual merchants.
Legitimate life overlaps them on purpose: some night owls, some travel, new merchants now
and then, a few big tickets, so no single feature separates the classes.

Timestamps are UTC, inside the day; amounts are USD with 2 decimals, at least 0.50.
Vectorised with numpy, so the benchmark's million-row day is cheap to make
(benchmarks/README.md).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from fintrack_assets.core.payments import PAYMENT_SCHEMA

__all__ = ["CATEGORIES", "CITIES", "LABELLED_SCHEMA", "generate_history", "generate_payments"]

LABELLED_SCHEMA: dict[str, pl.DataType] = PAYMENT_SCHEMA | {"is_fraud": pl.Int8()}

CITIES: tuple[tuple[str, float, float], ...] = (
    ("New York", 40.7128, -74.0060),
    ("Los Angeles", 34.0522, -118.2437),
    ("Chicago", 41.8781, -87.6298),
    ("Houston", 29.7604, -95.3698),
    ("Phoenix", 33.4484, -112.0740),
    ("Philadelphia", 39.9526, -75.1652),
    ("San Antonio", 29.4241, -98.4936),
    ("San Diego", 32.7157, -117.1611),
    ("Dallas", 32.7767, -96.7970),
    ("Jacksonville", 30.3322, -81.6557),
    ("Columbus", 39.9612, -82.9988),
    ("Charlotte", 35.2271, -80.8431),
    ("Indianapolis", 39.7684, -86.1581),
    ("Seattle", 47.6062, -122.3321),
    ("Denver", 39.7392, -104.9903),
    ("Boston", 42.3601, -71.0589),
    ("Nashville", 36.1627, -86.7816),
    ("Detroit", 42.3314, -83.0458),
    ("Portland", 45.5152, -122.6784),
    ("Las Vegas", 36.1699, -115.1398),
    ("Minneapolis", 44.9778, -93.2650),
    ("Miami", 25.7617, -80.1918),
    ("Atlanta", 33.7490, -84.3880),
    ("Kansas City", 39.0997, -94.5786),
)
"""(name, lat, lon) of the cities accounts and merchants live in."""

CATEGORIES = (
    "grocery_pos",
    "gas_transport",
    "home",
    "shopping_pos",
    "kids_pets",
    "shopping_net",
    "entertainment",
    "food_dining",
    "personal_care",
    "health_fitness",
    "misc_pos",
    "misc_net",
    "grocery_net",
    "travel",
)
"""Sparkov's merchant categories."""

MERCHANTS_PER_CITY = 80
HABITS = np.array([0.34, 0.24, 0.15, 0.11, 0.09, 0.07])
"""How an account splits its usual spending over its usual merchants."""
FRAUD_SHARE = 0.015
PATTERNS = ("card_testing", "far_away", "night_spree", "spike")
_PATTERN_P = np.array([0.2, 0.3, 0.25, 0.25])
_PATTERN_ROWS = np.array([10.5, 2.0, 1.5, 1.0])
"""Mean rows per incident of each pattern, to hit FRAUD_SHARE."""

_ACCOUNT_STREAM, _MERCHANT_STREAM = 1, 2
_US = 1_000_000
_DAY_US = 86_400 * _US


def _merchants() -> dict[str, np.ndarray]:
    """The fixed merchant directory: MERCHANTS_PER_CITY per city, each with a category and a
    place a few km from its city centre. Merchant m lives in city m // MERCHANTS_PER_CITY."""
    rng = np.random.default_rng([20190101, _MERCHANT_STREAM])
    count = len(CITIES) * MERCHANTS_PER_CITY
    city = np.arange(count) // MERCHANTS_PER_CITY
    centre = np.array([(lat, lon) for _, lat, lon in CITIES])[city]
    return {
        "name": np.array([f"merchant_{m:04d}" for m in range(count)]),
        "category": np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), count)],
        "lat": centre[:, 0] + rng.normal(0.0, 0.06, count),
        "lon": centre[:, 1] + rng.normal(0.0, 0.08, count),
    }


_MERCHANTS = _merchants()


def _accounts(accounts: int, per_account: float, seed: int) -> dict[str, np.ndarray]:
    """Each account's fixed habits, the same on every day."""
    rng = np.random.default_rng([seed, _ACCOUNT_STREAM, accounts])
    city = rng.integers(0, len(CITIES), accounts)
    centre = np.array([(lat, lon) for _, lat, lon in CITIES])[city]
    usual = city[:, None] * MERCHANTS_PER_CITY + rng.integers(
        0, MERCHANTS_PER_CITY, (accounts, len(HABITS))
    )
    return {
        "city": city,
        "lat": centre[:, 0] + rng.normal(0.0, 0.1, accounts),
        "lon": centre[:, 1] + rng.normal(0.0, 0.12, accounts),
        "usual": usual,
        "mu": rng.normal(3.3, 0.5, accounts),
        "sigma": rng.uniform(0.3, 0.7, accounts),
        "rate": rng.gamma(2.0, per_account / 2.0, accounts),
        "peak": rng.normal(14.5, 2.0, accounts),
        "night_owl": rng.random(accounts) < 0.05,
    }


def generate_payments(
    day: dt.date, accounts: int = 2000, per_account: float = 5.0, seed: int = 0
) -> pl.DataFrame:
    """One UTC day of payments as PAYMENT_SCHEMA plus `is_fraud` (Int8 0/1), sorted by
    (ts, transaction_id). Ids are `<YYYYMMDD>-<seed>-<n>`: unique across days. The same
    arguments always give the same frame."""
    if accounts < 1 or per_account <= 0:
        raise ValueError("accounts must be >= 1 and per_account > 0")
    people = _accounts(accounts, per_account, seed)
    rng = np.random.default_rng([seed, day.toordinal()])
    legit = _legit(people, rng)
    fraud = _fraud(people, rng, legit["account"].size)
    parts = {k: np.concatenate([legit[k], fraud[k]]) for k in legit}
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * _US
    account = parts["account"]
    merchant = parts["merchant"]
    frame = pl.DataFrame(
        {
            "account_id": pl.Series(account).cast(pl.String).str.zfill(7),
            "ts": pl.Series(start + parts["micros"]).cast(pl.Datetime("us", "UTC")),
            "amount": np.maximum(np.round(parts["amount"], 2), 0.5),
            "merchant": pl.Series(_MERCHANTS["name"]).gather(merchant),
            "category": pl.Series(_MERCHANTS["category"]).gather(merchant),
            "lat": np.round(people["lat"][account], 4),
            "lon": np.round(people["lon"][account], 4),
            "merch_lat": np.round(_MERCHANTS["lat"][merchant], 6),
            "merch_lon": np.round(_MERCHANTS["lon"][merchant], 6),
            "is_fraud": parts["is_fraud"].astype(np.int8),
        }
    ).sort("ts", "account_id", "amount", maintain_order=True)
    return frame.select(
        pl.format(
            "{}-{}-{}",
            pl.lit(f"{day:%Y%m%d}"),
            pl.lit(seed),
            pl.int_range(pl.len()).cast(pl.String).str.zfill(8),
        ).alias("transaction_id"),
        pl.concat_str(pl.lit("acct"), "account_id").alias("account_id"),
        "ts",
        "amount",
        pl.lit("USD").alias("currency"),
        "merchant",
        "category",
        "lat",
        "lon",
        "merch_lat",
        "merch_lon",
        "is_fraud",
    ).cast(LABELLED_SCHEMA)  # type: ignore[arg-type]


def generate_history(
    first_day: dt.date,
    last_day: dt.date,
    accounts: int = 2000,
    per_account: float = 5.0,
    seed: int = 0,
) -> pl.DataFrame:
    """generate_payments for every day from first_day to last_day inclusive, concatenated:
    the same rows as the days made one by one."""
    days = (last_day - first_day).days + 1
    frames = [
        generate_payments(first_day + dt.timedelta(days=k), accounts, per_account, seed)
        for k in range(max(days, 0))
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=LABELLED_SCHEMA)


def _legit(people: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The day's ordinary payments: usual merchants mostly, sometimes a new one nearby,
    rarely one in another city (travel); hours around the account's busy hour."""
    counts = rng.poisson(people["rate"])
    account = np.repeat(np.arange(counts.size), counts)
    n = account.size
    habit = np.searchsorted(np.cumsum(HABITS), rng.random(n) * HABITS.sum())
    merchant = people["usual"][account, np.minimum(habit, len(HABITS) - 1)]
    city = people["city"][account]
    roll = rng.random(n)
    nearby = city * MERCHANTS_PER_CITY + rng.integers(0, MERCHANTS_PER_CITY, n)
    elsewhere = rng.integers(0, len(CITIES) * MERCHANTS_PER_CITY, n)
    merchant = np.where(roll < 0.08, nearby, np.where(roll < 0.09, elsewhere, merchant))

    spread = np.where(people["night_owl"][account], 6.0, 3.2)
    hour = (people["peak"][account] + rng.normal(0.0, 1.0, n) * spread) % 24.0
    amount = rng.lognormal(people["mu"][account], people["sigma"][account])
    big = rng.random(n) < 0.004  # the occasional legitimate big ticket
    amount = np.where(big, amount * rng.uniform(4.0, 12.0, n), amount)
    return {
        "account": account,
        "merchant": merchant,
        "micros": _micros(hour * 3600.0),
        "amount": amount,
        "is_fraud": np.zeros(n, dtype=np.int8),
    }


def _fraud(
    people: dict[str, np.ndarray], rng: np.random.Generator, legit_rows: int
) -> dict[str, np.ndarray]:
    """Incidents on random accounts, each expanded to its rows in one vectorised pass."""
    incidents = rng.poisson(FRAUD_SHARE * legit_rows / float(_PATTERN_P @ _PATTERN_ROWS))
    accounts = people["city"].size
    victim = rng.integers(0, accounts, incidents)
    pattern = rng.choice(len(PATTERNS), size=incidents, p=_PATTERN_P)
    rows = np.select(
        [pattern == 0, pattern == 1, pattern == 2],
        [
            rng.integers(6, 16, incidents),
            rng.integers(1, 4, incidents),
            rng.integers(1, 3, incidents),
        ],
        1,
    )
    start_hour = np.select(
        [pattern == 0, pattern == 2],
        [rng.uniform(0.0, 23.0, incidents), rng.uniform(0.0, 4.5, incidents)],
        rng.uniform(7.0, 21.0, incidents),
    )
    # Merchants: card testing anywhere, far away in another city, a spree at a merchant of
    # the home city the account does not use, a spike at one of its usual ones.
    home = people["city"][victim]
    other_city = (home + rng.integers(1, len(CITIES), incidents)) % len(CITIES)
    anywhere = rng.integers(0, len(CITIES) * MERCHANTS_PER_CITY, incidents)
    far = other_city * MERCHANTS_PER_CITY + rng.integers(0, MERCHANTS_PER_CITY, incidents)
    new_here = home * MERCHANTS_PER_CITY + rng.integers(0, MERCHANTS_PER_CITY, incidents)
    usual = people["usual"][victim, rng.integers(0, len(HABITS), incidents)]
    merchant = np.choose(pattern, [anywhere, far, new_here, usual])

    incident = np.repeat(np.arange(incidents), rows)
    n = incident.size
    kind = pattern[incident]
    within = rng.uniform(0.0, 1.0, n)
    offset_h = np.select([kind == 0, kind == 1], [within * 0.66, within * 2.5], within * 0.8)
    typical = np.exp(people["mu"][victim[incident]])
    amount = np.select(
        [kind == 0, kind == 1, kind == 2],
        [
            rng.uniform(0.5, 5.0, n),
            typical * rng.lognormal(0.8, 0.6, n),
            typical * rng.uniform(5.0, 20.0, n),
        ],
        typical * rng.uniform(8.0, 30.0, n),
    )
    # A card-testing burst hops between two merchants.
    hop = (kind == 0) & (rng.random(n) < 0.5)
    merchant_rows = np.where(
        hop, rng.integers(0, len(CITIES) * MERCHANTS_PER_CITY, n), merchant[incident]
    )
    return {
        "account": victim[incident],
        "merchant": merchant_rows,
        "micros": _micros((start_hour[incident] + offset_h) * 3600.0),
        "amount": amount,
        "is_fraud": np.ones(n, dtype=np.int8),
    }


def _micros(seconds: np.ndarray) -> np.ndarray:
    """Seconds into the day -> whole microseconds, kept inside the day."""
    return np.clip((seconds * _US).astype(np.int64), 0, _DAY_US - 1)
