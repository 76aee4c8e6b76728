"""A deterministic synthetic market: the offline default provider.

Every number is a hash of (symbol, session index, stream), so the bar for a day is identical
whether it is generated alone or inside any range. Daily log returns are a market factor
(times the symbol's beta), a sector factor and idiosyncratic noise; the value path is their
running sum from the epoch. Prices are as traded: forward splits (when a price has run high)
divide them and multiply volume, cash dividends drop the price on the ex-date. `adj_close`
is the total-return close on the basis of the epoch's shares, so it never changes as days
are added (unlike a back-adjusted close).
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import polars as pl

from fintrack_assets.core.bronze import empty_bars
from fintrack_assets.core.calendar import nyse_sessions, sessions_between
from fintrack_assets.core.universe import SECTORS

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_SEED = 20000103

# One stream id per kind of random draw.
_IDIO, _DAILY, _MARKET, _SECTOR, _INTRADAY, _HIGH, _LOW, _VOLUME, _SPLIT, _SPLIT_AT = range(1, 11)

IDIO_STEP = 21
"""Idiosyncratic moves are drawn per step of 21 sessions and bridged day by day inside it, so
the price on any day costs O(days / 21) draws instead of a walk from the epoch."""
SPLIT_BLOCK = 252
"""At most one split per symbol per block of sessions, when its price has run above $150."""
DIVIDEND_PERIOD = 63
CHUNK_SYMBOLS = 512


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash, vectorised."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _key(base: np.ndarray, index: np.ndarray, stream: int) -> np.ndarray:
    """Hashes of (base[i], index[j], stream): shape (len(base), len(index))."""
    with np.errstate(over="ignore"):
        salt = _U64((stream * 0x632BE59BD9B4E019 + _SEED) % 2**64)
        return _mix(base[:, None] ^ _mix(index.astype(_U64)[None, :] * _GOLDEN + salt))


def uniform_draws(base: np.ndarray, index: np.ndarray, stream: int) -> np.ndarray:
    """Uniform in (0, 1]."""
    return ((_key(base, index, stream) >> _U64(11)).astype(np.float64) + 1.0) * 2.0**-53


def normal_draws(base: np.ndarray, index: np.ndarray, stream: int) -> np.ndarray:
    """Standard normal draws by Box-Muller, both uniforms cut from one 64-bit hash."""
    key = _key(base, index, stream)
    u1 = ((key >> _U64(32)).astype(np.float64) + 1.0) * 2.0**-32
    u2 = (key & _U64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def symbol_hash(symbols: list[str]) -> np.ndarray:
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
            for s in symbols
        ],
        dtype=_U64,
    )


def unit_draws(h: np.ndarray, salt: int) -> np.ndarray:
    """A per-symbol parameter in [0, 1)."""
    with np.errstate(over="ignore"):
        return (_mix(h ^ _U64(salt)) >> _U64(11)).astype(np.float64) * 2.0**-53


def _factor_returns(n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Daily market and sector factor returns for session indices 0..n-1."""
    index = np.arange(n)
    market = 0.0003 + 0.011 * normal_draws(np.array([_U64(1)]), index, _MARKET)[0]
    sector_hash = symbol_hash([f"sector:{s}" for s in SECTORS])
    sectors = 0.006 * normal_draws(sector_hash, index, _SECTOR)
    return market, {name: sectors[i] for i, name in enumerate(SECTORS)}


def generate_ohlcv(universe: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Daily bars for every universe symbol and every session with start <= session < end."""
    days = sessions_between(start, end)
    if not days or universe.is_empty():
        return empty_bars()
    all_sessions = nyse_sessions()
    first = int(np.searchsorted(all_sessions, np.datetime64(days[0], "D")))
    wanted = np.arange(first, first + len(days))
    n = int(wanted[-1]) + 1
    market, sectors = _factor_returns(n)
    frames = []
    for lo in range(0, universe.height, CHUNK_SYMBOLS):
        chunk = universe.slice(lo, CHUNK_SYMBOLS)
        frames.append(_chunk(chunk, wanted, n, market, sectors))
    return pl.concat(frames).sort("symbol", "date")


def _idiosyncratic(h: np.ndarray, vol: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-step innovations (k x n_steps) and their running sum through each step."""
    steps = vol[:, None] * np.sqrt(IDIO_STEP) * normal_draws(h, np.arange(n_steps), _IDIO)
    return steps, np.cumsum(steps, axis=1)


def _idiosyncratic_at(
    h: np.ndarray, vol: np.ndarray, steps: np.ndarray, through: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """The idiosyncratic log path at sessions t: whole steps before, a bridge inside."""
    step_of_t = t // IDIO_STEP
    touched = np.unique(step_of_t)
    days = (touched[:, None] * IDIO_STEP + np.arange(IDIO_STEP)[None, :]).ravel()
    daily = vol[:, None] * normal_draws(h, days, _DAILY)
    daily = daily.reshape(len(h), len(touched), IDIO_STEP)
    # Shift each step's days so they add up to the step's innovation exactly.
    daily += ((steps[:, touched] - daily.sum(axis=2)) / IDIO_STEP)[:, :, None]
    inside = np.cumsum(daily, axis=2)
    slot = np.searchsorted(touched, step_of_t)
    before = np.where(step_of_t > 0, through[:, np.maximum(step_of_t - 1, 0)], 0.0)
    return before + inside[:, slot, t % IDIO_STEP]


def _chunk(
    chunk: pl.DataFrame,
    wanted: np.ndarray,
    n: int,
    market: np.ndarray,
    sectors: dict[str, np.ndarray],
) -> pl.DataFrame:
    symbols = chunk["symbol"].to_list()
    h = symbol_hash(symbols)
    is_etf = (chunk["asset_type"].fill_null("equity") == "etf").to_numpy()
    sector_names = chunk["sector"].fill_null("").to_list()
    k = len(symbols)

    beta = np.where(is_etf, 1.0, 0.6 + 0.9 * unit_draws(h, 11))
    idio_vol = np.where(is_etf, 0.002, 0.008 + 0.014 * unit_draws(h, 12))
    market_path = np.cumsum(market)
    zero = np.zeros(n)
    sector_path = np.stack([np.cumsum(sectors[s]) if s in sectors else zero for s in sector_names])
    log_start = np.log(20.0 + 180.0 * unit_draws(h, 13))
    n_steps = (n + IDIO_STEP - 1) // IDIO_STEP
    steps, through = _idiosyncratic(h, idio_vol, n_steps)

    def common(t: np.ndarray) -> np.ndarray:
        """Log total-return value at session indices t, the same t for every symbol."""
        return (
            log_start[:, None]
            + beta[:, None] * market_path[t][None, :]
            + sector_path[:, t]
            + _idiosyncratic_at(h, idio_vol, steps, through, t)
        )

    # Cash dividends: quarterly for payers, yield per quarter between 0.2 % and 1 %.
    payer = unit_draws(h, 14) < np.where(is_etf, 1.0, 0.6)
    phase = (unit_draws(h, 15) * DIVIDEND_PERIOD).astype(np.int64)
    quarterly_yield = 0.002 + 0.008 * unit_draws(h, 16)
    log_keep = np.where(payer, np.log1p(-quarterly_yield), 0.0)

    def ex_dates_through(t: np.ndarray) -> np.ndarray:
        """Ex-dates on session indices 1..t (t broadcast against the symbols)."""
        return (t + phase[:, None]) // DIVIDEND_PERIOD - phase[:, None] // DIVIDEND_PERIOD

    # Forward splits: one candidate per block, at the end of an idiosyncratic step; it
    # happens when the price there has run above $150.
    rows = np.arange(k)
    blocks = np.arange((n + SPLIT_BLOCK - 1) // SPLIT_BLOCK)
    steps_per_block = SPLIT_BLOCK // IDIO_STEP
    pick = (uniform_draws(h, blocks, _SPLIT_AT) * steps_per_block).astype(np.int64)
    candidate_step = blocks[None, :] * steps_per_block + np.minimum(pick, steps_per_block - 1)
    chance = uniform_draws(h, blocks, _SPLIT)
    split_at = np.full((k, len(blocks)), -1, dtype=np.int64)
    split_ratio = np.ones((k, len(blocks)))
    log_shares = np.zeros(k)
    for b in blocks:
        step = candidate_step[:, b]
        at = step * IDIO_STEP + IDIO_STEP - 1
        live = (at < n) & (chance[:, b] < 0.5)
        at_c = np.minimum(at, n - 1)
        level = (
            log_start
            + beta * market_path[at_c]
            + sector_path[rows, at_c]
            + through[rows, np.minimum(step, n_steps - 1)]
            + ex_dates_through(at_c[:, None])[:, 0] * log_keep
            - log_shares
        )
        price = np.exp(level)
        ratio = np.select([price > 600, price > 300, price > 150], [4.0, 3.0, 2.0], 1.0)
        ratio = np.where(live, ratio, 1.0)
        split_at[:, b] = np.where(ratio > 1, at, -1)
        split_ratio[:, b] = ratio
        log_shares += np.log(ratio)
    log_ratio = np.log(split_ratio)

    w = wanted
    prev = np.maximum(w - 1, 0)
    block_of_w = w // SPLIT_BLOCK
    split_in_block = split_at[:, block_of_w]
    through_block = np.cumsum(log_ratio, axis=1) - log_ratio
    splits_today = split_in_block == w[None, :]
    log_shares_w = through_block[:, block_of_w] + np.where(
        (split_in_block >= 0) & (split_in_block <= w[None, :]), log_ratio[:, block_of_w], 0.0
    )
    ratio_today = np.where(splits_today, split_ratio[:, block_of_w], 1.0)
    lv, lv_prev = common(w), common(prev)
    ex_w = ex_dates_through(w[None, :])
    close = np.exp(lv + ex_w * log_keep[:, None] - log_shares_w)
    is_ex = payer[:, None] & (ex_w > ex_dates_through(prev[None, :]))
    q = np.where(is_ex, quarterly_yield[:, None], 0.0)
    dividend = np.round(close * q / (1.0 - q), 4)

    daily_vol = np.sqrt(beta**2 * 0.011**2 + idio_vol**2 + 0.006**2)[:, None]
    intraday = 0.6 * daily_vol * normal_draws(h, w, _INTRADAY)
    open_ = close * np.exp(-intraday)
    high = np.maximum(open_, close) * np.exp(0.5 * daily_vol * np.abs(normal_draws(h, w, _HIGH)))
    low = np.minimum(open_, close) * np.exp(-0.5 * daily_vol * np.abs(normal_draws(h, w, _LOW)))
    base_volume = np.exp(np.log(3e5) + 3.0 * unit_draws(h, 17))
    surprise = np.abs(lv - lv_prev) / daily_vol
    volume = (
        base_volume[:, None]
        * np.exp(log_shares_w)
        * (1.0 + 0.5 * surprise)
        * np.exp(0.3 * normal_draws(h, w, _VOLUME))
    )

    def cents(x: np.ndarray) -> np.ndarray:
        return np.maximum(np.round(x, 2), 0.01).ravel()

    return pl.DataFrame(
        {
            "symbol": pl.Series(symbols, dtype=pl.String).gather(np.repeat(np.arange(k), len(w))),
            "date": pl.Series(np.tile(nyse_sessions()[w], k)).cast(pl.Date),
            "open": cents(open_),
            "high": cents(high),
            "low": cents(low),
            "close": cents(close),
            "adj_close": np.round(np.exp(lv), 4).ravel(),
            "volume": np.round(volume).astype(np.int64).ravel(),
            "dividend": dividend.ravel(),
            "split_ratio": ratio_today.ravel(),
        },
        schema_overrides={"symbol": pl.String},
    )
