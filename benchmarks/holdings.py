"""trades -> holdings workloads: 1,000 portfolios and 100,000 trades over one year of sessions
in one range run, then the last session alone, against recomputing one session per run.

Import this module only after `harness.configure_environment`.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from pathlib import Path

import numpy as np
import polars as pl
from dagster import DagsterInstance

from benchmarks.common import INFO, Outcome, Row, VerificationError, log, verdict
from benchmarks.market import (
    RunStats,
    backfill_sessions,
    market_defs,
    materialise_universe,
    run_daily_market_job,
)
from fintrack_assets.core.holdings import CASH, holdings
from fintrack_assets.core.trades import TRADE_SCHEMA
from fintrack_assets.io_managers.lake import LakeTable
from fintrack_assets.io_managers.warehouse import warehouse_for
from fintrack_assets.resources.landing import LandingZone

SYMBOLS = 500
PORTFOLIOS = 1000
TRADES = 100_000
FILES = 10
SESSIONS = 252
BASELINE_SESSIONS = 4
"""Sessions recomputed one per call for the baseline, spread over the year, scaled up."""
POOL = 40
"""Symbols each portfolio trades in."""


def benchmark_trades(
    bars: pl.DataFrame, portfolios: int, trades: int, seed: int = 7
) -> pl.DataFrame:
    """A deterministic book: each portfolio deposits $1M on the first session, then trades a
    pool of symbols at the day's close on random sessions: buys, sells of part or all of what it
    holds (never more: the synthetic market only splits forward), deposits, withdrawals and
    account fees."""
    rng = np.random.default_rng(seed)
    days = sorted(bars["date"].unique().to_list())
    symbols = sorted(bars["symbol"].unique().to_list())
    close = {(s, d): c for s, d, c in bars.select("symbol", "date", "close").iter_rows()}
    per_portfolio = trades // portfolios
    rows: list[tuple] = []
    for p in range(portfolios):
        portfolio = f"P{p:04d}"
        pool = rng.choice(symbols, size=POOL, replace=False).tolist()
        dates = sorted(rng.choice(len(days) - 1, size=per_portfolio - 1) + 1)
        actions = rng.choice(
            ["BUY", "SELL", "DEPOSIT", "WITHDRAWAL", "FEE"],
            size=per_portfolio - 1,
            p=[0.55, 0.3, 0.05, 0.04, 0.06],
        )
        held: dict[str, float] = {}
        rows.append((f"{portfolio}-000", portfolio, days[0], None, "DEPOSIT", 1e6, 1.0, 0.0))
        for i, (d, action) in enumerate(zip(dates, actions, strict=True), start=1):
            day = days[d]
            trade_id = f"{portfolio}-{i:03d}"
            if action == "SELL" and held:
                symbol = sorted(held)[int(rng.integers(len(held)))]
                sell_all = rng.random() < 0.25
                qty = held[symbol] if sell_all else float(max(1, int(held[symbol] * rng.random())))
                held[symbol] -= qty
                if held[symbol] <= 0:
                    del held[symbol]
                fees = round(float(rng.uniform(0, 10)), 2)
                rows.append(
                    (trade_id, portfolio, day, symbol, "SELL", qty, close[symbol, day], fees)
                )
            elif action in ("BUY", "SELL"):
                symbol = pool[int(rng.integers(POOL))]
                qty = float(rng.integers(10, 200))
                held[symbol] = held.get(symbol, 0.0) + qty
                fees = round(float(rng.uniform(0, 10)), 2)
                rows.append(
                    (trade_id, portfolio, day, symbol, "BUY", qty, close[symbol, day], fees)
                )
            else:
                amount = {"DEPOSIT": 50_000.0, "WITHDRAWAL": 20_000.0, "FEE": 25.0}[str(action)]
                rows.append((trade_id, portfolio, day, None, str(action), amount, 1.0, 0.0))
    return pl.DataFrame([(*row, "USD") for row in rows], schema=TRADE_SCHEMA, orient="row").sort(
        "date", "trade_id"
    )


def _land(workdir: Path, trades: pl.DataFrame) -> None:
    zone = LandingZone(str(workdir / "lake"))
    shard = pl.col("portfolio_id").str.slice(1).cast(pl.Int32) % FILES
    for index in range(FILES):
        part = trades.filter(shard == index)
        zone.write("portfolio_trades", f"book_{index:02d}.csv", part.write_csv().encode())


def holdings_book(workdir: Path, quick: bool) -> Outcome:
    """Bronze for the year through Dagster and the book landed (not timed); then
    `portfolio_trades`, `holdings_daily` over the year in one run and the last session alone;
    the baseline recomputes sample sessions one per call with the same core."""
    workdir.mkdir(parents=True)
    portfolios = PORTFOLIOS // 10 if quick else PORTFOLIOS
    trades_wanted = TRADES // 10 if quick else TRADES
    universe = f"synthetic:{SYMBOLS}"
    sessions = backfill_sessions(SESSIONS)
    first, last = sessions[0], sessions[-1]
    defs = market_defs(workdir, universe)
    instance = DagsterInstance.ephemeral(tempdir=str(workdir / "dagster"))
    try:
        materialise_universe(defs, instance, universe)
        log(f"holdings: bronze for {first} .. {last} (setup) ...")
        run_daily_market_job(defs, instance, first, last)
        bars = LakeTable(str(workdir / "lake" / "bronze_ohlcv")).read_window(
            "date", first, last + dt.timedelta(days=1)
        )
        book = benchmark_trades(bars, portfolios, trades_wanted)
        _land(workdir, book)
        log(f"holdings: {book.height:,} trades of {portfolios:,} portfolios landed")
        trades_run = run_daily_market_job(
            defs, instance, None, None, ["portfolio_trades", "portfolio_trades_rejects"], None
        )
        _verify_trades(trades_run, book.height)
        gc.collect()
        log(f"holdings: holdings_daily {first} .. {last} in one run ...")
        ranged = run_daily_market_job(defs, instance, first, last, ["holdings_daily"], None)
        warehouse = warehouse_for(f"duckdb:///{workdir / 'warehouse.duckdb'}")
        stored = warehouse.read("holdings_daily")
        _verify_year(ranged, stored, portfolios, sessions)
        log(f"holdings: run {ranged.wall_seconds:.2f} s wall, steps {ranged.inside_seconds:.2f} s")
        log(f"holdings: holdings_daily {last} alone ...")
        daily = run_daily_market_job(defs, instance, last, last, ["holdings_daily"], None)
        _verify_same(stored, warehouse.read("holdings_daily"), last, "the one-session run")
    finally:
        instance.dispose()
    gc.collect()
    baseline, sampled = _per_session_baseline(book, workdir, sessions, stored)

    rows = stored.height
    size = f"{portfolios:,} portfolios, {book.height:,} trades, {len(sessions)} sessions"
    year = ranged.inside_seconds
    return Outcome(
        [
            Row(
                "holdings_daily_1y_range",
                f"{size} -> {rows:,} holdings rows",
                year,
                rows,
                f"{baseline:.1f} s (one session per call, {sampled} timed, "
                f"x{len(sessions) / sampled:g})",
                f"{baseline / year:.0f}x faster",
                "<= 60 s (the step, in one range run)",
                verdict(year, 60.0),
            ),
            Row(
                "holdings_daily_1y_range (whole run, wall)",
                f"{ranged.events:,} event-log entries",
                ranged.wall_seconds,
                rows,
                "-",
                "-",
                "-",
                INFO,
            ),
            Row(
                "holdings_daily_1_session",
                f"{portfolios:,} portfolios on {last}, whole history replayed",
                daily.inside_seconds,
                sum(daily.row_counts.values()),
                f"{baseline / len(sessions):.2f} s (the baseline's mean session)",
                "-",
                "<= 5 s (the step)",
                verdict(daily.inside_seconds, 5.0),
            ),
            Row(
                "portfolio_trades_validate",
                f"{book.height:,} trades in {FILES} files: parse, validate, oversell replay",
                trades_run.inside_seconds,
                book.height,
                "-",
                "-",
                "-",
                INFO,
            ),
        ],
        [
            f"holdings_daily_1y_range: steps {ranged.steps_line()}; of which {ranged.breakdown()}",
            f"holdings_daily_1_session: {daily.breakdown()}",
            f"portfolio_trades_validate: {trades_run.breakdown()}",
        ],
    )


def _verify_trades(stats: RunStats, landed: int) -> None:
    valid = stats.row_counts.get("portfolio_trades")
    rejects = stats.row_counts.get("portfolio_trades_rejects")
    failed = [check for check, passed in stats.checks.items() if not passed]
    if valid != landed or rejects != 0 or failed:
        raise VerificationError(
            f"portfolio_trades: {valid} valid, {rejects} rejects of {landed:,} landed; "
            f"failed checks: {failed}"
        )


def _verify_year(
    stats: RunStats, stored: pl.DataFrame, portfolios: int, sessions: list[dt.date]
) -> None:
    problems = []
    if len(stats.partitions.get("holdings_daily", ())) != len(sessions):
        problems.append(f"{len(stats.partitions.get('holdings_daily', ()))} partitions")
    if stats.row_counts.get("holdings_daily") != stored.height:
        problems.append(f"{stats.row_counts.get('holdings_daily')} rows reported")
    if stats.checks != {"holdings_daily:reconciliation": True}:
        problems.append(f"checks {stats.checks}")
    cash = stored.filter(pl.col("symbol") == CASH).group_by("date").len()
    if cash.height != len(sessions) or (cash["len"] != portfolios).any():
        problems.append("not one CASH row per portfolio and session")
    if stored.filter(pl.col("quantity").is_null() | pl.col("market_value").is_null()).height:
        problems.append("unvalued holdings")
    if problems:
        raise VerificationError("holdings_daily: " + "; ".join(problems))


def _verify_same(year: pl.DataFrame, again: pl.DataFrame, day: dt.date, what: str) -> None:
    keys = ["date", "portfolio_id", "symbol"]
    expected = year.filter(pl.col("date") == day).sort(keys)
    got = again.filter(pl.col("date") == day).sort(keys).select(expected.columns)
    if expected.height == 0 or not got.equals(expected):
        raise VerificationError(f"holdings_daily on {day}: {what} differs from the range run")


def _per_session_baseline(
    book: pl.DataFrame, workdir: Path, sessions: list[dt.date], stored: pl.DataFrame
) -> tuple[float, int]:
    """What a session-per-run schedule spends: the same core over one session at a time, for a
    sample spread over the year, scaled to the year. Each must equal the range run's rows."""
    prices = LakeTable(str(workdir / "lake" / "bronze_ohlcv")).read_window(
        "date", sessions[0], sessions[-1] + dt.timedelta(days=1)
    )
    sample = [sessions[i] for i in np.linspace(0, len(sessions) - 1, BASELINE_SESSIONS, dtype=int)]
    seconds = 0.0
    for day in sample:
        started = time.perf_counter()
        result = holdings(book, prices, day, day + dt.timedelta(days=1))
        seconds += time.perf_counter() - started
        _verify_same(stored, result.daily, day, "the one-session core call")
    log(f"holdings: baseline {seconds:.2f} s for {len(sample)} sessions")
    return seconds * len(sessions) / len(sample), len(sample)
