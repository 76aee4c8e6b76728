"""Payments -> fraud features, from each account's strictly earlier transactions only.

A transaction sees only transactions of its account with an earlier timestamp: never itself,
never a later one, and not one at the very same microsecond either (same-time transactions
of an account do not see each other, whatever their order in the input). So a feature never
changes when later transactions arrive, and a day scored alone or inside a range gives the
same numbers as long as the history covers the look-back.

Windows are half-open, [ts - width, ts): a transaction exactly one hour earlier is inside
`count_1h`. Every window is capped at `history_days`, the look-back the caller loads, so the
result does not depend on how much older history happens to be passed in.

How, and why so: anything that touches 30 million history rows at random (a string join or
group-by, a two-column sort) costs many times a sequential pass (benchmarks/README.md), so the
work is one sort of all rows by (account, ts) on a single 64-bit key, then binary searches and
`np.add.reduceat` sums over contiguous rows. Accounts (and merchants) are compared by 64-bit
hash (polars' `hash`): two different accounts sharing a hash would pool their histories; with
n accounts the odds are about n^2 / 2^65 per call (1e-9 for 200,000), accepted against the
cost of exact string grouping. Each window is summed on its own, never as a difference of
running totals, and rows are in a total order (account, ts, amount), so a window adds the
same numbers in the same order whatever else the call holds: a range of days and the same
days one by one give identical floats.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = [
    "EARTH_RADIUS_KM",
    "FEATURES",
    "NIGHT_HOURS",
    "SUMMARY_SCHEMA",
    "HistoryPlan",
    "history_plan",
    "payment_features",
    "summarised_features",
]

FEATURES: tuple[str, ...] = (
    "log_amount",
    "amount_zscore_30d",
    "count_1h",
    "sum_1h",
    "count_24h",
    "sum_24h",
    "count_7d",
    "sum_7d",
    "first_time_merchant",
    "is_night",
    "distance_km",
)
"""The model's inputs, in this order; all Float64, flags 0.0/1.0.
- log_amount: ln(1 + amount).
- amount_zscore_30d: (amount - mean) / std (ddof=1) of the account's amounts in the 30 days
  before; 0.0 with fewer than 2 of them or a std of 0.
- count_/sum_{1h,24h,7d}: the account's transactions and their amount in the window before.
- first_time_merchant: 1.0 when the account has no transaction at this merchant in the
  look-back (0.0 when the merchant is unknown: no evidence either way).
- is_night: 1.0 when the UTC hour is 22, 23 or 0-5. The data carries no local time zone, so
  this is night in UTC, not the cardholder's night.
- distance_km: great-circle distance from (lat, lon) to (merch_lat, merch_lon); 0.0 when a
  coordinate is missing (a card-not-present payment has no place).
"""

EARTH_RADIUS_KM = 6371.0088
"""The IUGG mean earth radius."""
NIGHT_HOURS = (22, 23, 0, 1, 2, 3, 4, 5)

_US = 1_000_000
_HOUR = 3600 * _US
_DAY = 24 * _HOUR
_VELOCITY = {"1h": _HOUR, "24h": _DAY, "7d": 7 * _DAY}
_ZSCORE_WINDOW = 30 * _DAY
_KEY_LIMIT = 1 << 62
"""(group, ts) search keys stay below this; groups go in batches that fit."""
_FLAT_LIMIT = 1 << 24
"""Rows expanded at a time when looking for a merchant inside windows."""
_RECENT = 8
"""Rows before a payment looked at first for its merchant."""
_MONTH = ("n_month", "sum_month", "sumsq_month")
_POOL_COLUMNS = ("account_id", "ts", "amount", "merchant")
_QUERY_COLUMNS = (*_POOL_COLUMNS, "transaction_id", "lat", "lon", "merch_lat", "merch_lon")


def payment_features(
    today: pl.DataFrame, history: pl.DataFrame, history_days: int = 30
) -> pl.DataFrame:
    """`transaction_id` + FEATURES (Float64), one row per row of `today`, in `today`'s order.

    `today`: the transactions to describe (PAYMENT_SCHEMA, one day or a range of days; extra
    columns are ignored). `history`: earlier transactions of the same accounts, covering at
    least the `history_days` days before `today`'s first (more is harmless, less shortens
    the windows). Rows of `today` are history for later rows of `today` too, so a range of
    days needs only the history before its first day."""
    return _features(today, history, history_days, None)


def _features(
    today: pl.DataFrame,
    history: pl.DataFrame,
    history_days: int,
    carry: dict[str, np.ndarray] | None,
) -> pl.DataFrame:
    """payment_features, plus `carry`: per row of `today`, what full days outside `history`
    add to its 7-day window (n_week, sum_week), to its z-score window (n_month, sum_month,
    sumsq_month) and whether its merchant was seen then (seen)."""
    if history_days < 1:
        raise ValueError(f"history_days must be at least 1, got {history_days}")
    if today.is_empty():
        return pl.DataFrame(
            schema={"transaction_id": pl.String} | dict.fromkeys(FEATURES, pl.Float64)
        )
    lookback = history_days * _DAY
    queries = _typed(today, _QUERY_COLUMNS)
    # Earlier than this no window reaches.
    horizon = int(queries["_ts"].min()) - lookback  # type: ignore[arg-type]
    older = _typed(history, _POOL_COLUMNS)
    pool = pl.concat([queries.select(older.columns), older])  # row i < today.height: query i

    n = queries.height
    # Time as 1 + us since the horizon; rows older than the horizon, which no window reaches,
    # all sit at 0 (cheaper than filtering them out, which would copy every column).
    columns = pool.select(
        pl.col("account_id").hash().alias("account"),
        (pl.col("_ts") - (horizon - 1)).clip(lower_bound=0).alias("since"),
        pl.col("merchant").hash().alias("merchant"),
    )
    account, since = columns["account"].to_numpy(), columns["since"].to_numpy()
    amount, merchant = pool["amount"].to_numpy(), columns["merchant"].to_numpy()
    keep = _rows_of_accounts(account, n)
    if keep is not None:
        account, since, amount, merchant = (a[keep] for a in (account, since, amount, merchant))
    order, account, since = _by_account_time(account, since, amount)
    new_group = np.empty(len(order), dtype=bool)
    new_group[0], new_group[1:] = True, account[1:] != account[:-1]
    group = np.cumsum(new_group) - 1
    del account, new_group
    # Amounts with a spare 0 at the end, as _window_sums wants them.
    amount = np.append(amount[order], 0.0)

    # Queries (the first n pool rows) in sorted order: groups ascending, as searches want.
    at = np.flatnonzero(order < n)
    q_index = order[at]
    q_group, q_since, q_amount = group[at], since[at], amount[at]
    widths = [min(w, lookback) for w in (*_VELOCITY.values(), _ZSCORE_WINDOW, lookback)]
    ends, starts = _windows(group, since, q_group, q_since, widths)

    extra = None if carry is None else {k: v[q_index] for k, v in carry.items()}
    out: dict[str, np.ndarray] = {"log_amount": np.log1p(q_amount)}
    for name, start in zip(_VELOCITY, starts[:3], strict=True):
        out[f"count_{name}"] = (ends - start).astype(np.float64)
        out[f"sum_{name}"] = _window_sums(amount, start, ends)
        if extra is not None and name == "7d":
            out[f"count_{name}"] += extra["n_week"]
            out[f"sum_{name}"] += extra["sum_week"]
    moments = _moments(amount, starts[3], ends)
    if extra is not None:
        moments = tuple(m + extra[k] for m, k in zip(moments, _MONTH, strict=True))  # type: ignore[assignment]
    out["amount_zscore_30d"] = _zscores(*moments, q_amount)
    merchant = merchant[order]
    known = queries["merchant"].is_not_null().to_numpy()[q_index]
    seen = _seen_in_window(merchant, merchant[at], starts[4], ends)
    if extra is not None:
        seen |= extra["seen"]
    out["first_time_merchant"] = (known & ~seen).astype(np.float64)
    hour = (q_since + (horizon - 1)) // _HOUR % 24
    out["is_night"] = np.isin(hour, NIGHT_HOURS).astype(np.float64)

    features = {name: np.empty(n) for name in out}
    for name, values in out.items():
        features[name][q_index] = values
    features["distance_km"] = _haversine_km(
        *(queries[c].to_numpy() for c in ("lat", "lon", "merch_lat", "merch_lon"))
    )
    return pl.DataFrame(
        {"transaction_id": queries["transaction_id"]}
        | {name: pl.Series(name, features[name], dtype=pl.Float64) for name in FEATURES}
    )


SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "n_week": pl.Int64(),
    "sum_week": pl.Float64(),
    "n_month": pl.Int64(),
    "sum_month": pl.Float64(),
    "sumsq_month": pl.Float64(),
}
"""Per account, over HistoryPlan's full days: count and sum of `week`, and count, sum and sum
of squares of `week` and `month` together."""


@dataclass(frozen=True)
class HistoryPlan:
    """What the features of payments on `day` need from the days before it, so that nothing
    reads the whole look-back row by row. A window [t - w, t) of a payment on day D starts
    inside day D - w (in days): that boundary day is read row by row, the days between it
    and D - 1 only as per-account totals. With k = min(7, L), Z = min(30, L) and L the
    look-back in days:

    - `raw_days`: D - 1 (the 1h and 24h windows start there), D - k, D - Z and D - L, row
      by row (`account_id, ts, amount, merchant`);
    - `week` = [D - k + 1, D - 1): full days inside the 7-day window, count and sum;
    - `month` = [D - Z + 1, D - k): the z-score window's other full days (D - k is raw),
      count, sum and sum of squares;
    - `merchants` = [D - L + 1, D): the full days whose (account, merchant) pairs make a
      payment not a first time (raw days included: a pair seen twice is still seen).
    """

    day: dt.date
    raw_days: tuple[dt.date, ...]
    week: tuple[dt.date, dt.date]
    month: tuple[dt.date, dt.date]
    merchants: tuple[dt.date, dt.date]


def history_plan(day: dt.date, history_days: int = 30) -> HistoryPlan:
    """The plan for payments on `day` with a look-back of `history_days` (see HistoryPlan)."""
    if history_days < 1:
        raise ValueError(f"history_days must be at least 1, got {history_days}")
    days = [min(7, history_days), min(30, history_days), history_days]

    def back(n: int) -> dt.date:
        return day - dt.timedelta(days=n)

    week_days, month_days, look_back = days
    return HistoryPlan(
        day=day,
        raw_days=tuple(sorted({back(1), *(back(n) for n in days)})),
        week=(back(max(week_days - 1, 1)), back(1)),
        month=(back(max(month_days - 1, week_days)), back(week_days)),
        merchants=(back(look_back - 1), day),
    )


def summarised_features(
    today: pl.DataFrame,
    raw: pl.DataFrame,
    summary: pl.DataFrame,
    seen: pl.DataFrame,
    history_days: int = 30,
) -> pl.DataFrame:
    """payment_features(today, history) for payments of ONE day, from what HistoryPlan says
    instead of the whole history: `raw`, the rows of its `raw_days` (rows of other days are
    ignored); `summary` (SUMMARY_SCHEMA: each account's totals over `week` and `month`;
    accounts without a row have none); `seen` (`account_id, merchant`: pairs that occur in
    `merchants`). Counts, 1h and 24h sums and the flags equal payment_features' exactly;
    the 7-day sum and the z-score add the totals to the raw window's sum, a regrouping of
    the same numbers, equal within float rounding (relative 1e-12 on these books, the tests
    hold it to 1e-9)."""
    if today.is_empty():
        return payment_features(today, raw.head(0), history_days)
    days = today["ts"].dt.date().unique()
    if days.len() != 1:
        raise ValueError(f"summarised_features scores one day at a time, got {days.len()} days")
    plan = history_plan(days[0], history_days)
    raw = raw.filter(pl.col("ts").dt.date().is_in(list(plan.raw_days)))
    keys = today.select("account_id", "merchant")
    totals = keys.join(
        summary.select(*SUMMARY_SCHEMA), on="account_id", how="left", maintain_order="left"
    ).fill_null(0)
    pairs = seen.select("account_id", "merchant").unique().with_columns(pl.lit(True).alias("seen"))
    flags = keys.join(
        pairs, on=["account_id", "merchant"], how="left", maintain_order="left"
    ).fill_null(False)
    carry = {
        name: totals[name].cast(pl.Float64).to_numpy() for name in ("n_week", "sum_week", *_MONTH)
    }
    carry["seen"] = flags["seen"].to_numpy()
    return _features(today, raw, history_days, carry)


def _typed(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """The columns named, typed, with `ts` as UTC epoch microseconds in `_ts`."""
    floats = {"amount", "lat", "lon", "merch_lat", "merch_lon"}
    return frame.select(
        pl.col("ts").dt.epoch("us").alias("_ts")
        if c == "ts"
        else pl.col(c).cast(pl.Float64 if c in floats else pl.String)
        for c in columns
    )


def _rows_of_accounts(account: np.ndarray, n: int) -> np.ndarray | None:
    """Which pool rows belong to an account of the first n (the queries); None to keep them
    all. History usually covers every account while a day's payments touch few of them, and
    sorting is what costs: when a sample says over half the history is of other accounts,
    those rows go first (a hash-set probe, a fraction of a sort)."""
    if len(account) == n:
        return None
    mine = np.unique(account[:n])
    sample = account[n :: max(1, (len(account) - n) // 4096)]
    if np.isin(sample, mine).mean() >= 0.5:
        return None
    return pl.Series(account).is_in(pl.Series(mine).implode()).to_numpy()


def _by_account_time(
    account: np.ndarray, since: np.ndarray, amount: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, account[order], since[order]): rows sorted by (account hash, time, amount),
    `since` >= 0 in us. The order is total up to identical rows, so window sums add the same
    numbers in the same order whatever else the pool holds: a range run and day-by-day runs
    give identical floats. One arg_sort of a 64-bit key (the hash's top 32 bits, the time in
    units coarse enough for 32 bits) does nearly all of it; the rows the key cannot order
    (accounts sharing their top bits, rows within one time unit) are re-sorted exactly."""
    shift = max(0, int(since.max()).bit_length() - 32)
    top = np.uint64(32)
    key = ((account >> top) << top) | (since >> shift).astype(np.uint64)
    order = pl.Series(key).arg_sort().to_numpy().astype(np.int64)
    del key
    account, since = account[order], since[order]
    bucket = account >> top
    unsure = (bucket[1:] == bucket[:-1]) & (
        (account[1:] != account[:-1]) | (since[1:] <= since[:-1])
    )
    if unsure.any():
        # Buckets ascend, so each unsure bucket's rows are one run, found by binary search.
        values = np.unique(bucket[1:][unsure])
        first = np.searchsorted(bucket, values, side="left")
        size = np.searchsorted(bucket, values, side="right") - first
        rows = np.arange(int(size.sum())) + np.repeat(first - (np.cumsum(size) - size), size)
        fix = rows[np.lexsort((amount[order[rows]], since[rows], account[rows]))]
        order[rows], account[rows], since[rows] = order[fix], account[fix], since[fix]
    return order, account, since


def _windows(
    group: np.ndarray,
    ts: np.ndarray,
    q_group: np.ndarray,
    q_ts: np.ndarray,
    widths: Sequence[int],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(ends, [starts per width]): for each query, rows [start, end) are those of its group
    with ts in [q_ts - width, q_ts). Rows are sorted by (group, ts), queries by group, and
    every q_ts - width >= 1, so rows at 0 are in no window. The search key is group * span +
    ts + 1, with the span wide enough that no window leaves its group; groups go in batches
    so keys fit int64."""
    base = -1
    span = int(max(ts.max(), q_ts.max()) - base + 1)
    per_batch = max(1, _KEY_LIMIT // span)
    ends = np.empty(len(q_ts), dtype=np.int64)
    starts = [np.empty(len(q_ts), dtype=np.int64) for _ in widths]
    for g0 in range(0, int(q_group[-1]) + 1, per_batch):
        r0, r1 = np.searchsorted(group, [g0, g0 + per_batch])
        q0, q1 = np.searchsorted(q_group, [g0, g0 + per_batch])
        if q0 == q1:
            continue
        key = (group[r0:r1] - g0) * span + (ts[r0:r1] - base)
        q_key = (q_group[q0:q1] - g0) * span + (q_ts[q0:q1] - base)
        ends[q0:q1] = r0 + np.searchsorted(key, q_key, side="left")
        for width, start in zip(widths, starts, strict=True):
            start[q0:q1] = r0 + np.searchsorted(key, q_key - width, side="left")
    return ends, starts


def _window_sums(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """sum(values[start:end]) per window, each summed on its own (no running totals).
    `values` ends with a spare element (any value) so that an end can be the row count."""
    if len(starts) == 0:
        return np.zeros(0)
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    sums = np.add.reduceat(values, bounds)[0::2]
    return np.where(ends > starts, sums, 0.0)


def _moments(
    amount: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, sum, sum of squares) of each window."""
    n = (ends - starts).astype(np.float64)
    return n, _window_sums(amount, starts, ends), _window_sums(amount * amount, starts, ends)


def _zscores(n: np.ndarray, s1: np.ndarray, s2: np.ndarray, q_amount: np.ndarray) -> np.ndarray:
    """(x - mean) / std (ddof=1) of each window from its moments; 0.0 below 2 values or
    without spread: a sum of squared deviations under 1e-12 of the sum of squares is
    rounding, not spread (it would take amounts within a millionth of their mean)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        spread = s2 - s1 * mean
        z = (q_amount - mean) / np.sqrt(spread / (n - 1))
    return np.where((n >= 2) & (spread > 1e-12 * s2), z, 0.0)


def _seen_in_window(
    values: np.ndarray, wanted: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Whether values[start:end] holds the query's wanted value, per query. Most payments are
    at a merchant the account used lately, so the last _RECENT rows are looked at first and
    only the queries not settled there look further back."""
    recent = np.maximum(starts, ends - _RECENT)
    found = _any_equal(values, wanted, recent, ends)
    rest = np.flatnonzero(~found & (recent > starts))
    if rest.size:
        found[rest] = _any_equal(values, wanted[rest], starts[rest], recent[rest])
    return found


def _any_equal(
    values: np.ndarray, wanted: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """any(values[start:end] == wanted) per query, the windows' rows expanded and compared
    at most _FLAT_LIMIT at a time."""
    lengths = ends - starts
    found = np.zeros(len(starts), dtype=bool)
    total = np.cumsum(lengths)
    first = 0
    while first < len(starts):
        limit = total[first] - lengths[first] + _FLAT_LIMIT
        stop = max(int(np.searchsorted(total, limit, side="right")), first + 1)
        size = lengths[first:stop]
        if size.sum():
            offset = np.cumsum(size) - size
            rows = np.arange(int(size.sum())) + np.repeat(starts[first:stop] - offset, size)
            hits = values[rows] == np.repeat(wanted[first:stop], size)
            inside = size > 0
            found[first:stop][inside] = np.logical_or.reduceat(hits, offset[inside])
        first = stop
    return found


def _haversine_km(
    lat: np.ndarray, lon: np.ndarray, merch_lat: np.ndarray, merch_lon: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km; 0.0 where a coordinate is missing (NaN)."""
    phi1, phi2 = np.radians(lat), np.radians(merch_lat)
    dlam = np.radians(merch_lon - lon)
    a = np.sin((phi2 - phi1) / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlam / 2) ** 2
    distance = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return np.nan_to_num(distance, nan=0.0)
