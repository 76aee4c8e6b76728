"""`raw_resume_5400x2000`: a raw_ohlcv backfill killed with SIGKILL half way and run again.

Through the entry point users run, `dagster asset materialize` of `raw_ohlcv` over a
partition range on a local `DAGSTER_HOME`: once uninterrupted, then in a second workdir
killed (the whole process group, `kill -9`) as soon as the log says half the batches are
staged, and the same command again. The resumed run's fetch work (batches it fetched, from
its own progress lines) must be at most 55 % of the uninterrupted run's, and the killed and
resumed runs' wall times together within 1.2x of the uninterrupted one's. The tables must be
equal: same rows, same checksum of every value but the ingestion time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from benchmarks.common import INFO, PARTITIONS_START, Outcome, Row, VerificationError, log, verdict
from benchmarks.market import backfill_sessions

UNIVERSE = "all"
"""On the synthetic source: 5,400 generated symbols."""
SYMBOLS = 5_400
BATCH_LINE = re.compile(r"batch (\d+)/(\d+) \((?:([\d,]+) done, )?(\d+) %\)")
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
MAX_FETCH_SHARE = 0.55
MAX_WALL_RATIO = 1.2


@dataclass
class Attempt:
    wall_seconds: float
    batches_fetched: int
    batches_total: int
    killed: bool = False


def cli_env(workdir: Path, universe: str) -> dict[str, str]:
    """The environment of a `dagster asset materialize` on a workdir of its own: its home,
    lake and DuckDB warehouse there, synthetic market data; the caller's FINTRACK_* and
    DAGSTER_* left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINTRACK_", "DAGSTER_"))}
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    return env | {
        "DAGSTER_HOME": str(home),
        "FINTRACK_MARKET_DATA": "synthetic",
        "FINTRACK_UNIVERSE": universe,
        "FINTRACK_START_DATE": PARTITIONS_START,
        "FINTRACK_LAKE_URL": str(workdir / "lake"),
        "FINTRACK_WAREHOUSE_URL": f"duckdb:///{workdir / 'warehouse.duckdb'}",
    }


def materialize_command(*args: str) -> list[str]:
    return [str(BIN / "dagster"), "asset", "materialize", "-m", "fintrack_assets", *args]


def _universe(env: dict[str, str]) -> None:
    done = subprocess.run(
        materialize_command("--select", "symbol_universe"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise VerificationError(f"symbol_universe failed: {done.stderr[-500:]}")


def _attempt(env: dict[str, str], window: str, kill_at: float | None) -> Attempt:
    """One `dagster asset materialize` of the window; with `kill_at`, SIGKILL once that share
    of the batches is staged. Reads the progress lines as they come (no polling)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        materialize_command("--select", "raw_ohlcv", "--partition-range", window),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stderr is not None
    fetched, total, killed, tail = 0, 0, False, []
    try:
        for line in child.stderr:
            tail = [*tail[-20:], line]
            match = BATCH_LINE.search(line)
            if not match:
                continue
            fetched += 1
            total = int(match.group(2))
            done = int((match.group(3) or match.group(1)).replace(",", ""))
            if kill_at is not None and done >= kill_at * total:
                os.killpg(child.pid, signal.SIGKILL)
                killed = True
                break
    except BaseException:
        # The harness interrupted or failed while reading: the command goes with it.
        os.killpg(child.pid, signal.SIGKILL)
        raise
    finally:
        child.wait()
        child.stderr.close()
    wall = time.perf_counter() - started
    if not killed and child.returncode:
        raise VerificationError(f"raw_ohlcv failed: {''.join(tail)[-800:]}")
    return Attempt(wall, fetched, total, killed)


def _checksum(workdir: Path) -> tuple[int, float, int]:
    frame = (
        pl.scan_delta(str(workdir / "lake" / "raw_ohlcv"))
        .select(
            pl.len().alias("rows"),
            (pl.col("close").sum() + pl.col("open").sum() + pl.col("dividend").sum()).alias("c"),
            pl.col("volume").sum().alias("v"),
        )
        .collect()
    )
    rows, checksum, volume = frame.row(0)
    return int(rows), round(float(checksum), 2), int(volume)


QUICK_SKIP = (
    "not run with --quick: four `dagster asset materialize` start-ups (~3.5 s each) decide "
    "its ratios at a smoke size; backfill_cli_sqlite smoke-runs the command"
)


def raw_resume(workdir: Path, quick: bool) -> Outcome:
    if quick:
        log(f"raw_resume: {QUICK_SKIP}")
        return Outcome(
            [Row("raw_resume_5400x2000", QUICK_SKIP, None, None, "-", "-", "-", INFO)], []
        )
    sessions = backfill_sessions(200 if quick else 2_000)
    window = f"{sessions[0].isoformat()}...{sessions[-1].isoformat()}"
    universe = "synthetic:540" if quick else UNIVERSE
    symbols = 540 if quick else SYMBOLS
    size = f"{symbols:,} symbols x {len(sessions):,} sessions"

    whole_dir, resumed_dir = workdir / "uninterrupted", workdir / "resumed"
    whole_env, resumed_env = cli_env(whole_dir, universe), cli_env(resumed_dir, universe)
    _universe(whole_env)
    _universe(resumed_env)
    log(f"raw_resume: uninterrupted {size}")
    whole = _attempt(whole_env, window, None)
    log(f"raw_resume: uninterrupted {whole.wall_seconds:.1f} s, {whole.batches_fetched} batches")
    killed = _attempt(resumed_env, window, 0.5)
    if not killed.killed:
        raise VerificationError("the run ended before half its batches were staged")
    log(f"raw_resume: killed after {killed.batches_fetched} batches, {killed.wall_seconds:.1f} s")
    resumed = _attempt(resumed_env, window, None)
    log(f"raw_resume: resumed {resumed.batches_fetched} batches, {resumed.wall_seconds:.1f} s")

    expected_rows = symbols * len(sessions)
    whole_sum, resumed_sum = _checksum(whole_dir), _checksum(resumed_dir)
    if whole_sum[0] != expected_rows or whole_sum != resumed_sum:
        raise VerificationError(
            f"tables differ: uninterrupted {whole_sum}, resumed {resumed_sum}, "
            f"expected {expected_rows:,} rows"
        )
    share = resumed.batches_fetched / whole.batches_fetched
    pair = killed.wall_seconds + resumed.wall_seconds
    ratio = pair / whole.wall_seconds
    passed = share <= MAX_FETCH_SHARE and ratio <= MAX_WALL_RATIO
    rows = [
        Row(
            "raw_resume_5400x2000 (killed + resumed, wall)",
            f"{size}; {killed.batches_fetched}+{resumed.batches_fetched} of "
            f"{whole.batches_fetched} batches",
            pair,
            expected_rows,
            f"{whole.wall_seconds:.2f} s uninterrupted",
            f"{ratio:.2f}x wall; resumed fetched {share:.0%}",
            f"<= {MAX_WALL_RATIO}x wall, <= {MAX_FETCH_SHARE:.0%} of the fetch",
            verdict(0, 0) if passed else "FAIL",
        ),
        Row(
            "raw_resume_5400x2000 (uninterrupted, wall)",
            size,
            whole.wall_seconds,
            expected_rows,
            "-",
            "-",
            "-",
            INFO,
        ),
    ]
    notes = [
        f"raw_resume_5400x2000: `dagster asset materialize` walls: uninterrupted "
        f"{whole.wall_seconds:.1f} s; killed at {killed.batches_fetched}/{killed.batches_total} "
        f"batches after {killed.wall_seconds:.1f} s; resumed {resumed.wall_seconds:.1f} s "
        f"fetching {resumed.batches_fetched} batches."
    ]
    return Outcome(rows, notes)
