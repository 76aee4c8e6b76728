"""Command line, environment, and the one results table."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from tabulate import tabulate

from benchmarks.common import (
    ERROR,
    FAIL,
    HEADERS,
    PARTITIONS_START,
    Outcome,
    Row,
    error_row,
    log,
)

RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"
WORKLOADS = (
    "raw_to_bronze_1_session",
    "raw_to_bronze_backfill_2000",
    "raw_resume_5400x2000",
    "postgres_partition_write_1m",
    "polygon_range_backfill_500x1y",
    "silver_fibonacci_2000",
    "holdings_1000_portfolios",
    "risk_1000_portfolios",
    "fraud_scoring",
    "backfill_cli_sqlite_5400x2000",
    "backfill_cli_postgres_5400x2000",
    "backfill_in_memory_5400x2000",
)


def configure_environment(root: Path) -> None:
    """The settings every workload's definitions read (`Settings.from_env()` where a workload
    takes the environment's): fixed here, so the harness neither depends on nor touches the
    caller's lake, warehouse or universe."""
    os.environ.update(
        {
            "FINTRACK_UNIVERSE": "synthetic:5400",
            "FINTRACK_START_DATE": PARTITIONS_START,
            "FINTRACK_LAKE_URL": str(root / "import-lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{root / 'import-warehouse.duckdb'}",
            "FINTRACK_MARKET_DATA": "synthetic",
            "FINTRACK_FRAUD_SCORER": "local",
        }
    )
    os.environ.pop("FINTRACK_FRAUD_API_URL", None)
    from dagster import BetaWarning, PreviewWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
    warnings.filterwarnings("ignore", category=PreviewWarning)


def _runner(name: str) -> Callable[[Path, bool], Outcome]:
    # Imported here, after configure_environment.
    if name == "postgres_partition_write_1m":
        from benchmarks.postgres import partition_write

        return lambda _workdir, quick: partition_write(quick)
    if name == "polygon_range_backfill_500x1y":
        from benchmarks.polygon import range_backfill

        return lambda _workdir, quick: range_backfill(quick)
    if name == "raw_resume_5400x2000":
        from benchmarks.resume import raw_resume

        return raw_resume
    if name == "fraud_scoring":
        from benchmarks.fraud import fraud

        return fraud
    if name == "holdings_1000_portfolios":
        from benchmarks.holdings import holdings_book

        return holdings_book
    if name == "risk_1000_portfolios":
        from benchmarks.risk import risk

        return risk
    if name.startswith("backfill_"):
        from benchmarks import backfill

        return {
            "backfill_cli_sqlite_5400x2000": backfill.backfill_cli_sqlite,
            "backfill_cli_postgres_5400x2000": backfill.backfill_cli_postgres,
            "backfill_in_memory_5400x2000": backfill.backfill_in_memory,
        }[name]
    if name == "silver_fibonacci_2000":
        from benchmarks.silver import silver

        return silver
    from benchmarks.market import backfill, one_session

    return one_session if name == "raw_to_bronze_1_session" else backfill


def _header(quick: bool, started: dt.datetime, seconds: float) -> str:
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("dagster", "polars", "deltalake", "psycopg", "httpx")
    )
    mode = "quick (sizes ~1/10, targets are the full-size ones)" if quick else "full"
    return (
        f"fintrack_assets benchmarks, {mode}: {started:%Y-%m-%d %H:%M} UTC, "
        f"{seconds:.0f} s in all\n"
        f"Python {platform.python_version()}, {versions}; {os.cpu_count()} CPUs; "
        "ephemeral Dagster instance (in-memory event log) except the backfill_cli rows "
        "(SQLite, PostgreSQL)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Runs the performance workloads through the project's entry points and "
        "prints one table (also written to benchmarks/results/latest.md).",
    )
    parser.add_argument("--only", choices=WORKLOADS, metavar="NAME", help=", ".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="sizes ~10x smaller: a smoke run")
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(WORKLOADS)

    started_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fintrack_bench_") as tmp:
        root = Path(tmp)
        configure_environment(root)
        for name in names:
            try:
                outcome = _runner(name)(root / name, args.quick)
                rows.extend(outcome.rows)
                notes.extend(outcome.notes)
            except Exception as exc:
                traceback.print_exc()
                log(f"{name} FAILED: {exc}")
                rows.append(error_row(name, str(exc).splitlines()[0][:200]))
            gc.collect()

    table = tabulate([row.cells() for row in rows], headers=HEADERS, tablefmt="github")
    header = _header(args.quick, started_at, time.perf_counter() - started)
    listed = "".join(f"- {note}\n" for note in notes)
    print(f"\n{header}\n\n{table}\n\n{listed}", end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# Benchmark results\n\n{header}\n\n{table}\n\n{listed}")
    log(f"table written to {RESULTS}")
    failed = [row.workload for row in rows if row.status == FAIL or row.status.startswith(ERROR)]
    if failed:
        print(f"\nnot passed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
