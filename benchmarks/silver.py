"""bronze -> silver workloads: the six Fibonacci intervals over 2,000 sessions in one run, a
one-session daily update, against a per-symbol pandas loop measured on a sample.

Import this module only after `harness.configure_environment`.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.compute as pc
from dagster import DagsterEventType, DagsterInstance, Definitions
from deltalake import DeltaTable

from benchmarks.common import INFO, Outcome, Row, VerificationError, log, verdict
from benchmarks.market import (
    QUIET,
    RunStats,
    market_defs,
    materialise_universe,
    run_daily_market_job,
    run_failure,
)
from fintrack_assets.core.calendar import nyse_sessions, session_index, sessions_between
from fintrack_assets.core.silver import INTERVALS, buckets_ending_in
from fintrack_assets.defs.silver.assets import nesting_pairs
from fintrack_assets.io_managers.lake import LakeTable

SILVER = tuple(f"silver_ohlcv_{n}d" for n in INTERVALS)
DAILY_SESSION = dt.date(2025, 10, 27)
"""Ends a 34-session bucket (and a 3-session one): its month's update reads the widest bucket."""
DAILY_MONTH = DAILY_SESSION.replace(day=1)
"""The month a daily update re-writes (silver is on session_months)."""


def backfill_months(count: int) -> list[dt.date]:
    """The `count` months before DAILY_MONTH, oldest first."""
    months = [DAILY_MONTH]
    for _ in range(count):
        months.append((months[-1] - dt.timedelta(days=1)).replace(day=1))
    return months[:0:-1]


def _month_end(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


SAMPLE_SYMBOLS = 54
"""1 % of the universe for the pandas baseline, scaled up linearly."""


def silver(workdir: Path, quick: bool) -> Outcome:
    """Bronze through Dagster (not timed), then silver over the backfill's months in one run,
    then the next month alone; the pandas baseline on a sample of symbols."""
    workdir.mkdir(parents=True)
    symbols = 540 if quick else 5400
    universe = f"synthetic:{symbols}"
    assert session_index(DAILY_SESSION) % 34 == 33
    months = backfill_months(10 if quick else 95)
    first, last = months[0], _month_end(months[-1])
    backfill = sessions_between(first, last + dt.timedelta(days=1))
    bronze_last = _month_end(DAILY_MONTH)
    defs = market_defs(workdir, universe)
    instance = DagsterInstance.ephemeral(tempdir=str(workdir / "dagster"))
    lake = workdir / "lake"
    try:
        materialise_universe(defs, instance, universe)
        log(f"silver: bronze for {first} .. {bronze_last} through daily_market_job (setup) ...")
        setup = run_daily_market_job(defs, instance, backfill[0], bronze_last)
        log(f"silver: bronze ready in {setup.wall_seconds:.1f} s")
        gc.collect()
        log(f"silver: six intervals over {months[0]:%Y-%m} .. {months[-1]:%Y-%m} in one run ...")
        ranged = run_daily_market_job(defs, instance, months[0], months[-1], SILVER, "silver_job")
        log(f"silver: run {ranged.wall_seconds:.2f} s wall, steps {ranged.inside_seconds:.2f} s")
        _verify(ranged, lake, symbols, first, last, len(months))
        log(f"silver: the month of {DAILY_SESSION} ...")
        daily = run_daily_market_job(defs, instance, DAILY_MONTH, DAILY_MONTH, SILVER, "silver_job")
        _verify(daily, lake, symbols, DAILY_MONTH, bronze_last, 1)
        maintenance = _maintain_bronze(defs, instance, lake)
        log(f"silver: the month of {DAILY_SESSION} again, on the z-ordered bronze ...")
        daily_after = run_daily_market_job(
            defs, instance, DAILY_MONTH, DAILY_MONTH, SILVER, "silver_job"
        )
        _verify(daily_after, lake, symbols, DAILY_MONTH, bronze_last, 1)
    finally:
        instance.dispose()
    gc.collect()
    baseline_seconds, sample_rows = _pandas_baseline(lake, first, last, symbols)

    bronze_rows = symbols * len(backfill)
    ours = _our_seconds(ranged)
    bookkeeping = ranged.inside_seconds - ours
    size = (
        f"{bronze_rows:,} bronze rows ({symbols:,} x {len(backfill):,} sessions, "
        f"{len(months)} months) -> 6 intervals"
    )
    baseline_cell = (
        f"{baseline_seconds:.1f} s (pandas per-symbol loop, {SAMPLE_SYMBOLS} symbols timed "
        f"= {sample_rows:,} rows, x{symbols / SAMPLE_SYMBOLS:g})"
    )
    rows = [
        Row(
            "silver_fibonacci_backfill_2000",
            size,
            ours,
            bronze_rows,
            baseline_cell,
            f"{baseline_seconds / ours:.0f}x faster",
            "<= 30 s (our work in the step: read, sort, bars, writes, checks)",
            verdict(ours, 30.0),
        ),
        _info(
            "silver_fibonacci_backfill_2000 (step)",
            f"+ Dagster's {ranged.materialisation_events:,} materialisation events: "
            f"{bookkeeping:.1f} s, storing them "
            f"{ranged.materialisation_event_seconds:.1f} s",
            ranged.inside_seconds,
            bronze_rows,
        ),
        _info(
            "silver_fibonacci_backfill_2000 (whole run, wall)",
            f"{ranged.events:,} event-log entries",
            ranged.wall_seconds,
            bronze_rows,
        ),
        _daily_row(
            "silver_daily_month",
            f"{symbols:,} symbols, the month of {DAILY_SESSION} (which ends a 34-session "
            "bucket) re-written, as each new session does",
            daily,
            symbols,
        ),
        _daily_row(
            "silver_daily_month (after lake_maintenance)",
            "the same month, bronze z-ordered on symbol",
            daily_after,
            symbols,
        ),
    ]
    rows.append(
        Row(
            "lake_maintenance_bronze",
            f"bronze_ohlcv, {maintenance.rows:,} rows: {maintenance.files_before} files in "
            f"{maintenance.years} years -> {maintenance.files_after}",
            maintenance.seconds,
            maintenance.rows,
            f"one-symbol read {maintenance.symbol_read_before:.2f} s before",
            f"{maintenance.symbol_read_after:.2f} s after "
            f"({maintenance.symbol_read_before / maintenance.symbol_read_after:.0f}x faster)",
            "<= 60 s (the job, wall)",
            verdict(maintenance.seconds, 60.0),
        )
    )
    notes = [
        f"silver_fibonacci_backfill_2000: step {ranged.steps_line()}; of which "
        f"{ranged.breakdown()}",
        f"silver_fibonacci_backfill_2000: bronze setup (not timed) {setup.wall_seconds:.1f} s",
        f"silver_daily_month: {daily.steps_line()}; of which {daily.breakdown()}",
        f"silver_daily_month after maintenance: {daily_after.breakdown()}",
        f"lake_maintenance_bronze: {maintenance.line}",
    ]
    return Outcome(rows, notes)


def _info(workload: str, size: str, seconds: float, rows: int) -> Row:
    return Row(workload, size, seconds, rows, "-", "-", "-", INFO)


def _daily_row(workload: str, size: str, stats: RunStats, symbols: int) -> Row:
    seconds = stats.inside_seconds
    return Row(
        workload, size, seconds, symbols, "-", "-", "<= 3 s (sum of steps)", verdict(seconds, 3.0)
    )


def _our_seconds(stats: RunStats) -> float:
    """The step's time spent in our code, from the asset's own timings: one bronze read and
    sort, then per interval the bars, their check and their lake commit; plus the nesting
    check. The rest of the step is Dagster building and storing per-partition events."""
    timings = [stats.timings[asset] for asset in SILVER]
    shared = timings[0].get("bronze_read_seconds", 0.0) + timings[0].get("bronze_sort_seconds", 0.0)
    per_interval = sum(
        t.get("compute_seconds", 0.0)
        + t.get("check_seconds", 0.0)
        + t.get("lake_write_seconds", 0.0)
        for t in timings
    )
    return shared + per_interval + stats.check_seconds


@dataclass(frozen=True)
class Maintenance:
    seconds: float
    rows: int
    years: int
    files_before: int
    files_after: int
    symbol_read_before: float
    symbol_read_after: float
    line: str


def _symbol_read(uri: str, symbol: str) -> tuple[float, int]:
    """Seconds to read one symbol's whole history (what z-order on symbol is for)."""
    started = time.perf_counter()
    rows = DeltaTable(uri).to_pyarrow_dataset().to_table(filter=pc.field("symbol") == symbol)
    return time.perf_counter() - started, rows.num_rows


def _maintain_bronze(defs: Definitions, instance: DagsterInstance, lake: Path) -> Maintenance:
    """`lake_maintenance` on the bronze table just built: every year is due."""
    table = LakeTable(str(lake / "bronze_ohlcv"))
    before = table.active_files()
    rows = DeltaTable(table.uri).to_pyarrow_dataset().count_rows()
    read_before, symbol_rows = _symbol_read(table.uri, "SYN0042")
    log(f"lake_maintenance: bronze {rows:,} rows in {before.height} files ...")
    started = time.perf_counter()
    result = defs.resolve_job_def("lake_maintenance").execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={
            "ops": {"maintain_lake_tables": {"config": {"tables": ["bronze_ohlcv"]}}},
            **QUIET,
        },
    )
    seconds = time.perf_counter() - started
    if not result.success:
        raise VerificationError(f"lake_maintenance: {run_failure(instance, result.run_id)}")
    after = table.active_files()
    read_after, symbol_rows_after = _symbol_read(table.uri, "SYN0042")
    rows_after = DeltaTable(table.uri).to_pyarrow_dataset().count_rows()
    years = before["year"].n_unique()
    if rows_after != rows or symbol_rows_after != symbol_rows:
        raise VerificationError(f"lake_maintenance changed bronze: {rows:,} -> {rows_after:,}")
    if table.pending_partitions():
        raise VerificationError("lake_maintenance left years to optimize")
    [observation] = [
        e.event_specific_data.asset_observation  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_OBSERVATION
    ]
    metadata = {k: v.value for k, v in observation.metadata.items()}
    line = (
        f"{seconds:.1f} s wall (optimize {metadata['optimize_seconds']} s, vacuum "
        f"{metadata['vacuum_seconds']} s); files compacted {metadata['files_compacted']}, "
        f"added {metadata['files_added']}; bytes {metadata['bytes_before']:,} -> "
        f"{metadata['bytes_after']:,}; one symbol's {symbol_rows:,} rows read in "
        f"{read_before:.2f} s before, {read_after:.2f} s after"
    )
    log(f"lake_maintenance: {line}")
    return Maintenance(
        seconds, rows, years, before.height, after.height, read_before, read_after, line
    )


def _verify(
    stats: RunStats, lake: Path, symbols: int, first: dt.date, last: dt.date, sessions: int
) -> None:
    problems = []
    end = last + dt.timedelta(days=1)
    for interval, asset in zip(INTERVALS, SILVER, strict=True):
        expected = symbols * len(buckets_ending_in(interval, first, end))
        got = stats.row_counts.get(asset)
        if got != expected:
            problems.append(f"{asset}: {got} bars, expected {expected:,}")
        if len(stats.partitions.get(asset, ())) != sessions:
            problems.append(f"{asset}: {len(stats.partitions.get(asset, ()))} partitions")
        stored = LakeTable(str(lake / asset)).read_window("bar_end", first, end).height
        if stored != expected:
            problems.append(
                f"lake {asset} holds {stored:,} bars in the window, expected {expected:,}"
            )
    failed = [check for check, passed in stats.checks.items() if not passed]
    if failed:
        problems.append(f"asset checks failed: {', '.join(failed)}")
    expected_checks = len(INTERVALS) + len(nesting_pairs(INTERVALS))
    if len(stats.checks) != expected_checks:
        problems.append(f"{len(stats.checks)} asset check evaluations, not {expected_checks}")
    if problems:
        raise VerificationError("silver: " + "; ".join(problems))


def _pandas_baseline(lake: Path, first: dt.date, last: dt.date, symbols: int) -> tuple[float, int]:
    """A per-symbol pandas loop (the anchor's shape) over a sample, scaled to the universe; its
    bars must equal the stored silver bars of the same symbols."""
    sample = [f"SYN{i:04d}" for i in range(0, symbols, symbols // SAMPLE_SYMBOLS)][:SAMPLE_SYMBOLS]
    end = last + dt.timedelta(days=1)
    bronze = (
        LakeTable(str(lake / "bronze_ohlcv"))
        .read_window("date", first, end)
        .filter(pl.col("symbol").is_in(sample))
        .to_pandas()
    )
    index_of = {d.astype(dt.date): i for i, d in enumerate(nyse_sessions())}
    started = time.perf_counter()
    bars = {n: _pandas_bars(bronze, n, index_of) for n in INTERVALS}
    seconds = time.perf_counter() - started
    for interval, asset in zip(INTERVALS, SILVER, strict=True):
        ours = (
            LakeTable(str(lake / asset))
            .read_window("bar_end", first, end)
            .filter(pl.col("symbol").is_in(sample))
        )
        theirs = bars[interval]
        theirs = theirs[(theirs["bar_end"] >= first) & (theirs["bar_end"] <= last)]
        joined = ours.join(
            pl.from_pandas(theirs), on=["symbol", "bar_end"], how="full", suffix="_pd"
        )
        for column in ("open", "high", "low", "close", "volume", "n_days"):
            a, b = joined[column].to_numpy(), joined[f"{column}_pd"].to_numpy()
            if not np.allclose(a.astype(float), b.astype(float), rtol=1e-9, equal_nan=False):
                raise VerificationError(f"silver {asset}.{column} differs from the pandas loop")
    log(f"silver: pandas loop {seconds:.2f} s for {len(sample)} symbols, {len(bronze):,} rows")
    return seconds * symbols / len(sample), len(bronze)


def _pandas_bars(bronze: pd.DataFrame, interval: int, index_of: dict) -> pd.DataFrame:
    sessions = nyse_sessions()
    out = []
    for symbol, rows in bronze.groupby("symbol"):
        rows = rows.sort_values("date")
        bucket = rows["date"].map(index_of) // interval
        split = rows["split_ratio"]
        later = split[::-1].groupby(bucket[::-1]).cumprod()[::-1] / split
        adjusted = rows.assign(
            open=rows["open"] / later,
            high=rows["high"] / later,
            low=rows["low"] / later,
            volume=(rows["volume"] * later).round(),
            bucket=bucket,
        )
        grouped = adjusted.groupby("bucket").agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
            n_days=("close", "size"),
        )
        grouped["symbol"] = symbol
        grouped["bar_end"] = [
            sessions[b * interval + interval - 1].astype(dt.date) for b in grouped.index
        ]
        out.append(grouped.reset_index(drop=True))
    return pd.concat(out, ignore_index=True)
