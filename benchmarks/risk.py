"""Risk workloads: the six `risk` assets over 1,000 portfolios for one session, and over 3
portfolios for six months in one run, against the anchor's sequential per-portfolio pandas.

Import this module only after `harness.configure_environment`.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from dagster import DagsterInstance, Definitions
from deltalake import DeltaTable

from benchmarks.common import INFO, Outcome, Row, VerificationError, log, verdict
from benchmarks.holdings import _land, _verify_trades, benchmark_trades
from benchmarks.market import (
    RunStats,
    backfill_sessions,
    market_defs,
    materialise_universe,
    run_daily_market_job,
)
from fintrack_assets.core.factors import FACTOR_SYMBOLS, SECTOR_ETFS
from fintrack_assets.core.holdings import CASH
from fintrack_assets.core.risk import (
    BETA_WINDOW,
    CORRELATION_WINDOW,
    MIN_OBSERVATIONS,
    TAIL_WINDOW,
    TRADING_DAYS,
    VAR_LEVELS,
    VOLATILITY_WINDOWS,
)
from fintrack_assets.core.universe import sample_universe
from fintrack_assets.defs.risk.assets import RISK_ASSET_KEYS as RISK_ASSETS
from fintrack_assets.io_managers.lake import LakeTable
from fintrack_assets.io_managers.warehouse import Warehouse, warehouse_for

EQUITIES = 480
ETFS = ("SPY", "TLT", *SECTOR_ETFS)
BRONZE_SESSIONS = 380
"""The 6-month range (126) plus the 252-session windows of its first date, plus one session
for the first return and one for the first holding."""
HISTORY = TAIL_WINDOW + 1
"""portfolio_returns sessions a date's longest window reaches back (one more for its first
return): stored before the timed runs, as a daily schedule would have them."""
PORTFOLIOS = 1000
TRADES = 100_000
BOOK_A_SESSIONS = 260
RANGE_SESSIONS = 126
SMALL_PORTFOLIOS = 3
SMALL_TRADES = 300
TOLERANCE = 1e-9
ONE_SESSION_TARGET = 10.0
RANGE_TARGET = 15.0


def write_universe(path: Path) -> str:
    """~480 synthetic equities spread over the 11 GICS sectors of the sector ETFs, plus SPY,
    TLT and the sector ETFs with their shipped rows. Returns the FINTRACK_UNIVERSE spec."""
    sectors = list(SECTOR_ETFS.values())
    equities = pl.DataFrame(
        {
            "symbol": [f"SYN{i:04d}" for i in range(EQUITIES)],
            "name": [f"Synthetic {i}" for i in range(EQUITIES)],
            "sector": [sectors[i % len(sectors)] for i in range(EQUITIES)],
            "industry": ["Synthetic"] * EQUITIES,
            "asset_type": ["equity"] * EQUITIES,
        }
    )
    etfs = sample_universe().filter(pl.col("symbol").is_in(list(ETFS)))
    if etfs.height != len(ETFS):
        raise VerificationError(f"sample_universe.csv lacks some of {ETFS}")
    pl.concat([equities, etfs.select(equities.columns)]).write_csv(path)
    return str(path)


@dataclass
class Market:
    """One workdir: its definitions and instance, bronze, a landed book and its holdings."""

    workdir: Path
    defs: Definitions
    instance: DagsterInstance
    book: pl.DataFrame
    setup_seconds: float
    holdings_run: RunStats
    history_run: RunStats

    @property
    def warehouse(self) -> Warehouse:
        return warehouse_for(f"duckdb:///{self.workdir / 'warehouse.duckdb'}")


def prepare(
    name: str,
    workdir: Path,
    universe: str,
    portfolios: int,
    trades: int,
    book_sessions: list[dt.date],
    history_last: dt.date,
) -> Market:
    """Setup, not timed: universe, bronze for BRONZE_SESSIONS, a book over the equities from
    `book_sessions[0]`, portfolio_trades, holdings_daily over `book_sessions` in one run, and
    portfolio_returns up to `history_last` in one run (the windows' history)."""
    started = time.perf_counter()
    workdir.mkdir(parents=True)
    bronze = backfill_sessions(BRONZE_SESSIONS)
    first, last = book_sessions[0], book_sessions[-1]
    defs = market_defs(workdir, universe)
    instance = DagsterInstance.ephemeral(tempdir=str(workdir / "dagster"))
    try:
        materialise_universe(defs, instance, universe)
        log(f"{name}: bronze for {bronze[0]} .. {bronze[-1]} (setup) ...")
        run_daily_market_job(defs, instance, bronze[0], bronze[-1])
        bars = (
            LakeTable(str(workdir / "lake" / "bronze_ohlcv"))
            .read_window("date", first, last + dt.timedelta(days=1))
            .filter(~pl.col("symbol").is_in(list(ETFS)))
        )
        book = benchmark_trades(bars, portfolios, trades)
        _land(workdir, book)
        trades_run = run_daily_market_job(
            defs, instance, None, None, ["portfolio_trades", "portfolio_trades_rejects"], None
        )
        _verify_trades(trades_run, book.height)
        log(f"{name}: {book.height:,} trades of {portfolios:,} portfolios; holdings_daily ...")
        holdings_run = run_daily_market_job(defs, instance, first, last, ["holdings_daily"], None)
        if holdings_run.checks != {"holdings_daily:reconciliation": True}:
            raise VerificationError(f"{name}: holdings_daily checks {holdings_run.checks}")
        log(f"{name}: portfolio_returns {first} .. {history_last} (history, setup) ...")
        history_run = run_daily_market_job(
            defs, instance, first, history_last, ["portfolio_returns"], None
        )
    except BaseException:
        instance.dispose()
        raise
    gc.collect()
    return Market(
        workdir,
        defs,
        instance,
        book,
        time.perf_counter() - started,
        holdings_run,
        history_run,
    )


def run_risk(market: Market, first: dt.date, last: dt.date) -> RunStats:
    return run_daily_market_job(market.defs, market.instance, first, last, RISK_ASSETS, None)


# --------------------------------------------------------------------------------------------
# Verification


def _stored(warehouse: Warehouse, table: str, first: dt.date, last: dt.date) -> pl.DataFrame:
    return warehouse.read(table, "date", first, last + dt.timedelta(days=1))


def verify_run(
    name: str, stats: RunStats, warehouse: Warehouse, sessions: list[dt.date], portfolios: int
) -> dict[str, int]:
    """Every asset materialised once per session, every check passed, one returns and risk
    row per portfolio and session with full-window statistics, exposures per factor, stress
    tests for every portfolio. Returns the rows stored per asset."""
    first, last = sessions[0], sessions[-1]
    problems: list[str] = []
    expected_keys = {s.isoformat() for s in sessions}
    for asset in RISK_ASSETS:
        got = stats.partitions.get(asset, set())
        if got != expected_keys:
            problems.append(f"{asset}: {len(got)} partitions, expected {len(sessions)}")
    failed = [check for check, passed in stats.checks.items() if not passed]
    if failed:
        problems.append(f"asset checks failed: {', '.join(failed)}")
    stored = {asset: _stored(warehouse, asset, first, last) for asset in RISK_ASSETS}
    for asset, frame in stored.items():
        reported = stats.row_counts.get(asset)
        if reported != frame.height:
            problems.append(f"{asset}: {reported} rows reported, {frame.height:,} stored")
    pairs = portfolios * len(sessions)
    for asset in ("portfolio_returns", "portfolio_risk"):
        frame = stored[asset]
        if frame.height != pairs or frame.select("date", "portfolio_id").n_unique() != pairs:
            problems.append(f"{asset}: {frame.height:,} rows, expected {pairs:,} (one per pair)")
    risk = stored["portfolio_risk"]
    for column in ("volatility_252d", "beta_90d", "sharpe_252d", "var_99_1d", "cvar_99_1d"):
        nulls = risk[column].null_count()
        if nulls:
            problems.append(f"portfolio_risk.{column}: {nulls:,} nulls with full windows")
    if stored["portfolio_returns"]["daily_return"].null_count():
        problems.append("portfolio_returns: null daily returns")
    exposures = stored["portfolio_factor_exposures"]
    if exposures.height != pairs * len(FACTOR_SYMBOLS) or exposures["beta"].null_count():
        problems.append(
            f"portfolio_factor_exposures: {exposures.height:,} rows "
            f"({exposures['beta'].null_count()} null betas), expected "
            f"{pairs * len(FACTOR_SYMBOLS):,}"
        )
    stress = stored["portfolio_stress_tests"]
    equity = stress.filter(pl.col("scenario") == "equity_-10%")
    if equity.height != pairs or equity["pnl_usd"].null_count():
        problems.append(f"portfolio_stress_tests: {equity.height:,} equity_-10% rows of {pairs:,}")
    sectors = stored["sector_exposure"]
    weights = sectors.group_by("date", "portfolio_id").agg(pl.col("weight").sum())
    if weights.height != pairs or ((weights["weight"] - 1.0).abs() > 1e-9).any():
        problems.append("sector_exposure: weights do not sum to 1 for every pair")
    if stored["holding_correlations"].is_empty():
        problems.append("holding_correlations: no rows")
    if problems:
        raise VerificationError(f"{name}: " + "; ".join(problems))
    return {asset: frame.height for asset, frame in stored.items()}


# --------------------------------------------------------------------------------------------
# Baseline: the anchor's shape, one portfolio at a time in pandas


@dataclass
class BaselineResult:
    seconds: float
    read_seconds: float
    price_seconds: float
    compute_seconds: float
    portfolios: int
    compared: int
    max_difference: float


def _read_prices(lake: Path, symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    """Bronze closes and corporate actions of `symbols` over [start, end], as pandas."""
    dataset = DeltaTable(str(lake / "bronze_ohlcv")).to_pyarrow_dataset()
    condition = (
        (pc.field("date") >= pa.scalar(start, pa.date32()))
        & (pc.field("date") <= pa.scalar(end, pa.date32()))
        & pc.field("symbol").isin(symbols)
    )
    columns = ["date", "symbol", "close", "split_ratio", "dividend"]
    prices = dataset.to_table(columns=columns, filter=condition).to_pandas()
    prices["date"] = pd.to_datetime(prices["date"]).astype("datetime64[ns]")
    return prices


def _symbol_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Wide (date x symbol) total returns: split * (close + dividend) / previous close - 1."""
    wide = prices.pivot(index="date", columns="symbol")
    close = wide["close"].astype(float)
    split = wide["split_ratio"].astype(float).fillna(1.0)
    dividend = wide["dividend"].astype(float).fillna(0.0)
    previous = close.shift(1)
    value = split * (close + dividend)
    return (value / previous - 1.0).where(previous > 0)


def _anchor_statistics(
    series: pd.DataFrame, held: list[str], returns: pd.DataFrame
) -> dict[str, float]:
    """The statistics of one portfolio on its last date: `series` (date-indexed
    daily_return), `returns` the wide symbol returns (holdings, SPY, TLT, sector ETFs)."""
    out: dict[str, float] = {}
    r = series["daily_return"]
    annual = math.sqrt(TRADING_DAYS)
    for window in VOLATILITY_WINDOWS:
        rolling = r.rolling(window, min_periods=MIN_OBSERVATIONS).std()
        out[f"volatility_{window}d"] = float(rolling.iloc[-1]) * annual

    spy = returns["SPY"].reindex(r.index)
    recent, bench = r.iloc[-BETA_WINDOW:], spy.iloc[-BETA_WINDOW:]
    both = recent.notna() & bench.notna()
    beta = recent[both].cov(bench[both]) / bench[both].var()
    out[f"beta_{BETA_WINDOW}d"] = beta
    alpha = (recent[both] - beta * bench[both]).mean()
    out[f"alpha_{BETA_WINDOW}d"] = (1.0 + alpha) ** TRADING_DAYS - 1.0

    year = r.iloc[-TAIL_WINDOW:].dropna()
    out[f"sharpe_{TAIL_WINDOW}d"] = year.mean() / year.std() * annual
    downside = math.sqrt((np.minimum(year, 0.0) ** 2).mean()) * annual
    out[f"sortino_{TAIL_WINDOW}d"] = year.mean() * TRADING_DAYS / downside
    wealth = (1.0 + year).cumprod()
    peak = np.maximum(wealth.cummax(), 1.0)
    out[f"max_drawdown_{TAIL_WINDOW}d"] = float((wealth / peak).min() - 1.0)
    values = year.to_numpy()
    for level in VAR_LEVELS:
        q = (100 - level) / 100
        out[f"var_{level}_1d"] = float(np.percentile(values, 100 - level))
        cutoff = int((len(values) - 1) * q)
        out[f"cvar_{level}_1d"] = float(np.mean(np.partition(values, cutoff)[: cutoff + 1]))

    factors = returns[list(FACTOR_SYMBOLS.values())].reindex(r.index).iloc[-TAIL_WINDOW:]
    window = pd.concat([r.iloc[-TAIL_WINDOW:].rename("_portfolio"), factors], axis=1).dropna()
    for factor, symbol in FACTOR_SYMBOLS.items():
        out[f"beta:{factor}"] = window["_portfolio"].cov(window[symbol]) / window[symbol].var()

    correlations = returns[held].iloc[-CORRELATION_WINDOW:].corr()
    for i, a in enumerate(held):
        for b in held[i + 1 :]:
            out[f"corr:{a}:{b}"] = float(correlations.loc[a, b])
    return out


def anchor_baseline(
    workdir: Path, warehouse: Warehouse, day: dt.date, portfolios: Sequence[str]
) -> tuple[BaselineResult, dict[str, dict[str, float]]]:
    """Sequential per-portfolio pandas, as the anchor did: the stored returns and holdings
    read once, then per portfolio its bronze prices re-read (holdings, SPY, TLT, sector ETFs
    over a year and a bit) and every statistic computed for `day`."""
    started = time.perf_counter()
    since = day - dt.timedelta(days=400)
    returns = _stored(warehouse, "portfolio_returns", since, day).to_pandas()
    returns["date"] = pd.to_datetime(returns["date"]).astype("datetime64[ns]")
    holdings = _stored(warehouse, "holdings_daily", day, day).to_pandas()
    read = time.perf_counter() - started
    price_seconds = compute_seconds = 0.0
    results: dict[str, dict[str, float]] = {}
    for portfolio in portfolios:
        t0 = time.perf_counter()
        mine = holdings[
            (holdings["portfolio_id"] == portfolio)
            & (holdings["symbol"] != CASH)
            & (holdings["quantity"] > 0)
            & (holdings["market_value"] > 0)
        ]
        held = sorted(mine["symbol"].tolist())
        prices = _read_prices(
            workdir / "lake",
            held + list(FACTOR_SYMBOLS.values()),
            since,
            day,
        )
        t1 = time.perf_counter()
        series = (
            returns[returns["portfolio_id"] == portfolio]
            .set_index("date")
            .sort_index()
            .loc[: pd.Timestamp(day)]
        )
        results[portfolio] = _anchor_statistics(series, held, _symbol_returns(prices))
        t2 = time.perf_counter()
        price_seconds += t1 - t0
        compute_seconds += t2 - t1
    total = time.perf_counter() - started
    return BaselineResult(total, read, price_seconds, compute_seconds, len(portfolios), 0, 0.0), (
        results
    )


def compare(
    warehouse: Warehouse, day: dt.date, results: dict[str, dict[str, float]]
) -> tuple[int, float]:
    """Every baseline number against the assets' stored value for `day`: (values compared,
    largest absolute difference). Any difference above TOLERANCE fails the workload."""
    risk = _stored(warehouse, "portfolio_risk", day, day)
    exposures = _stored(warehouse, "portfolio_factor_exposures", day, day)
    correlations = _stored(warehouse, "holding_correlations", day, day)
    compared, worst, problems = 0, 0.0, []
    for portfolio, values in results.items():
        row = risk.filter(pl.col("portfolio_id") == portfolio).row(0, named=True)
        betas = dict(
            exposures.filter(pl.col("portfolio_id") == portfolio)
            .select("factor", "beta")
            .iter_rows()
        )
        pairs = {
            (a, b): c
            for a, b, c in correlations.filter(pl.col("portfolio_id") == portfolio)
            .select("symbol_a", "symbol_b", "correlation")
            .iter_rows()
        }
        expected_pairs = sum(1 for key in values if key.startswith("corr:"))
        if len(pairs) != expected_pairs:
            problems.append(f"{portfolio}: {len(pairs)} stored pairs, {expected_pairs} held")
        for key, ours in values.items():
            if key.startswith("beta:"):
                stored = betas.get(key.removeprefix("beta:"))
            elif key.startswith("corr:"):
                _, a, b = key.split(":")
                stored = pairs.get((a, b))
            else:
                stored = row[key]
            if stored is None or not math.isfinite(ours):
                problems.append(f"{portfolio} {key}: stored {stored}, baseline {ours}")
                continue
            difference = abs(stored - ours)
            worst = max(worst, difference)
            compared += 1
            if difference > TOLERANCE:
                problems.append(f"{portfolio} {key}: stored {stored!r}, baseline {ours!r}")
    if problems:
        raise VerificationError(
            f"baseline differs from the assets on {day}: " + "; ".join(problems[:5])
        )
    return compared, worst


# --------------------------------------------------------------------------------------------
# The workload


def risk(workdir: Path, quick: bool) -> Outcome:
    """Book A (1,000 portfolios) for the last session, book B (3 portfolios) over six months,
    each in one run of the six risk assets; the anchor's per-portfolio pandas on B's last
    date as the baseline."""
    workdir.mkdir(parents=True)
    portfolios = PORTFOLIOS // 10 if quick else PORTFOLIOS
    trades = TRADES // 10 if quick else TRADES
    sessions = backfill_sessions(BRONZE_SESSIONS)
    last = sessions[-1]
    universe = write_universe(workdir / "universe.csv")

    # A: 1,000 portfolios, the last session alone.
    book_a = sessions[-BOOK_A_SESSIONS:]
    a = prepare("risk A", workdir / "a", universe, portfolios, trades, book_a, sessions[-2])
    try:
        log(f"risk A: the six risk assets for {last} in one run ...")
        one = run_risk(a, last, last)
        rows_a = verify_run("risk A", one, a.warehouse, [last], portfolios)
    finally:
        a.instance.dispose()
    log(
        f"risk A: steps {one.inside_seconds:.2f} s ({one.steps_line()}), "
        f"wall {one.wall_seconds:.2f} s"
    )
    gc.collect()

    # B: 3 portfolios, six months in one run, full 252-session windows from its first date.
    range_sessions = sessions[-RANGE_SESSIONS:]
    book_b = sessions[-(RANGE_SESSIONS + HISTORY) :]
    b = prepare(
        "risk B",
        workdir / "b",
        universe,
        SMALL_PORTFOLIOS,
        SMALL_TRADES,
        book_b,
        sessions[-RANGE_SESSIONS - 1],
    )
    try:
        log(f"risk B: the six risk assets {range_sessions[0]} .. {last} in one run ...")
        ranged = run_risk(b, range_sessions[0], last)
        rows_b = verify_run("risk B", ranged, b.warehouse, range_sessions, SMALL_PORTFOLIOS)
    finally:
        b.instance.dispose()
    log(
        f"risk B: steps {ranged.inside_seconds:.2f} s ({ranged.steps_line()}), "
        f"wall {ranged.wall_seconds:.2f} s"
    )
    gc.collect()

    ids = sorted(b.book["portfolio_id"].unique().to_list())
    baseline, results = anchor_baseline(b.workdir, b.warehouse, last, ids)
    compared, worst = compare(b.warehouse, last, results)
    log(
        f"risk: baseline {baseline.seconds:.3f} s for {len(ids)} portfolios on {last}; "
        f"{compared} values equal the assets' (max |diff| {worst:.1e})"
    )
    per_pair = baseline.seconds / len(ids)
    range_baseline = baseline.seconds * RANGE_SESSIONS
    one_baseline = per_pair * portfolios
    inside_a, inside_b = one.inside_seconds, ranged.inside_seconds
    size_a = (
        f"{portfolios:,} portfolios ({a.book.height:,} trades) x 1 session ({last}): "
        f"{sum(rows_a.values()):,} rows"
    )
    size_b = (
        f"{SMALL_PORTFOLIOS} portfolios x {RANGE_SESSIONS} sessions "
        f"({range_sessions[0]} .. {last}): {sum(rows_b.values()):,} rows"
    )
    rows = [
        Row(
            "risk_1000_portfolios_1_session",
            size_a,
            inside_a,
            portfolios,
            f"{one_baseline:.1f} s (anchor pandas per portfolio, {per_pair:.3f} s each, "
            f"x{portfolios:,})",
            f"{one_baseline / inside_a:.0f}x faster",
            f"<= {ONE_SESSION_TARGET:g} s (sum of steps)",
            verdict(inside_a, ONE_SESSION_TARGET),
        ),
        Row(
            "risk_1000_portfolios_1_session (whole run, wall)",
            f"{one.events:,} event-log entries",
            one.wall_seconds,
            portfolios,
            "-",
            "-",
            "-",
            INFO,
        ),
        Row(
            "risk_3_portfolios_6_months",
            size_b,
            inside_b,
            SMALL_PORTFOLIOS * RANGE_SESSIONS,
            f"{range_baseline:.1f} s (anchor pandas, {len(ids)} portfolios on {last}: "
            f"{baseline.seconds:.2f} s, x{RANGE_SESSIONS} dates)",
            f"{range_baseline / inside_b:.0f}x faster",
            f"<= {RANGE_TARGET:g} s (sum of steps)",
            verdict(inside_b, RANGE_TARGET),
        ),
        Row(
            "risk_3_portfolios_6_months (whole run, wall)",
            f"{ranged.events:,} event-log entries",
            ranged.wall_seconds,
            SMALL_PORTFOLIOS * RANGE_SESSIONS,
            "-",
            "-",
            "-",
            INFO,
        ),
    ]
    notes = [
        f"risk_1000_portfolios_1_session: steps {one.steps_line()}; of which {one.breakdown()}; "
        f"rows {_rows_line(rows_a)}",
        f"risk_3_portfolios_6_months: steps {ranged.steps_line()}; of which {ranged.breakdown()}; "
        f"rows {_rows_line(rows_b)}",
        f"risk setup (not timed): A {a.setup_seconds:.1f} s (bronze {BRONZE_SESSIONS} sessions x "
        f"{EQUITIES + len(ETFS)} symbols, book, holdings_daily {len(book_a)} sessions "
        f"{a.holdings_run.inside_seconds:.1f} s, portfolio_returns history "
        f"{a.history_run.inside_seconds:.1f} s); B {b.setup_seconds:.1f} s (holdings_daily "
        f"{len(book_b)} sessions {b.holdings_run.inside_seconds:.1f} s, portfolio_returns "
        f"history {b.history_run.inside_seconds:.1f} s)",
        f"risk baseline: {baseline.seconds:.3f} s = stored returns and holdings read once "
        f"{baseline.read_seconds:.3f} s + bronze re-read per portfolio "
        f"{baseline.price_seconds:.3f} s + pandas statistics {baseline.compute_seconds:.3f} s "
        f"(volatility x3, beta/alpha, Sharpe, Sortino, max drawdown, VaR/CVaR x2, "
        f"{len(FACTOR_SYMBOLS)} factor betas, holding correlations); {compared} values equal "
        f"the stored ones (max |diff| {worst:.1e}, tolerance {TOLERANCE:g})",
    ]
    return Outcome(rows, notes)


def _rows_line(rows: dict[str, int]) -> str:
    return ", ".join(f"{asset} {count:,}" for asset, count in rows.items())
