"""Payments -> fraud predictions on PostgreSQL: 10,000 transactions end to end against a
row-by-row pipeline (the anchor's shape), 1,000,000 in a child process for its peak memory,
and the `http` scorer against a local API answering each batch in 20 ms.

Import this module only after `harness.configure_environment`. `python -m benchmarks.fraud
--child ...` is the child process of the 1M workload.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import INFO, Outcome, Row, VerificationError, log, scoped_environ, verdict
from benchmarks.postgres import DEFAULT_URL, throwaway_database
from fintrack_assets_tests.fraud_api_stub import FraudApiProcess

DAY = dt.date(2025, 10, 2)
BIG_DAY = dt.date(2025, 10, 3)
HISTORY_DAYS = 7
"""Days of payments stored before the timed day (setup), so the features read real history."""
ACCOUNTS = 2000
PER_ACCOUNT = 5.0
BIG_ACCOUNTS = 200_000
TABLES = ("payment_transactions", "payment_transaction_rejects", "fraud_predictions")


def _env(workdir: Path, warehouse_url: str, scorer: str = "local", api: str = "") -> dict:
    env = {
        "FINTRACK_LAKE_URL": str(workdir / "lake"),
        "FINTRACK_WAREHOUSE_URL": warehouse_url,
        "FINTRACK_FRAUD_SCORER": scorer,
    }
    if api:
        env["FINTRACK_FRAUD_API_URL"] = api
    return env


def _land(workdir: Path, day: dt.date, accounts: int) -> int:
    from fintrack_assets.core.synthetic_payments import generate_payments
    from fintrack_assets.resources.landing import LandingZone

    frame = generate_payments(day, accounts=accounts, per_account=PER_ACCOUNT).drop("is_fraud")
    LandingZone(str(workdir / "lake")).write(
        "payment_transactions", "payments.csv", frame.write_csv().encode(), day
    )
    return frame.height


def _run_days(first: dt.date, last: dt.date) -> dict[str, Any]:
    """payments_job over [first, last] in one run, with this process's FINTRACK_* settings."""
    from dagster import DagsterInstance

    from benchmarks.market import run_daily_market_job
    from fintrack_assets.definitions import build_defs
    from fintrack_assets.settings import Settings

    defs = build_defs(Settings.from_env())
    instance = DagsterInstance.ephemeral()
    try:
        stats = run_daily_market_job(
            defs,
            instance,
            first,
            last,
            [
                "payment_transactions",
                "payment_transaction_rejects",
                "fraud_predictions",
                "fraud_prediction_failures",
            ],
            "payments_job",
        )
    finally:
        instance.dispose()
    return {
        "steps": stats.step_seconds,
        "inside": stats.inside_seconds,
        "wall": stats.wall_seconds,
        "rows": stats.row_counts,
        "checks": stats.checks,
        "timings": stats.timings,
    }


def fraud(workdir: Path, quick: bool) -> Outcome:
    workdir.mkdir(parents=True)
    base_url = os.environ.get("FINTRACK_TEST_POSTGRES_URL") or DEFAULT_URL
    big_accounts = BIG_ACCOUNTS // 10 if quick else BIG_ACCOUNTS
    with throwaway_database(base_url) as url:
        # fintrack_assets resolves EnvVar resources (the PostgreSQL URL) at run time.
        with scoped_environ(_env(workdir, url)):
            history_first = DAY - dt.timedelta(days=HISTORY_DAYS)
            for k in range(HISTORY_DAYS + 1):
                _land(workdir, history_first + dt.timedelta(days=k), ACCOUNTS)
            log(f"fraud: {HISTORY_DAYS} days of history through payments_job (setup) ...")
            _run_days(history_first, DAY - dt.timedelta(days=1))
            log(f"fraud: {DAY} end to end, local model, PostgreSQL ...")
            small = _run_days(DAY, DAY)
            transactions = small["rows"]["payment_transactions"]
            _verify(small, url, DAY, transactions, "fraud_10k")
        baseline = _row_by_row(workdir, DAY, url)
        log(f"fraud: row-by-row baseline {baseline:.2f} s")

        with (
            FraudApiProcess(latency=0.02) as stub,
            scoped_environ(_env(workdir, url, "http", stub.url)),
        ):
            log(f"fraud: {DAY} through the http scorer (20 ms per batch) ...")
            http = _run_days(DAY, DAY)
            _verify(http, url, DAY, transactions, "fraud_http_10k")

        # --quick runs the DuckDB month alone, small: the other two are a minute each at least.
        month_pg = (
            None if quick else _month(workdir / "pg", url, big_accounts, "fraud_1m_30d_postgres")
        )
    duck_url = f"duckdb:///{workdir / 'duck' / 'warehouse.duckdb'}"
    month_duck = _month(workdir / "duck", duck_url, big_accounts, "fraud_1m_30d_duckdb", quick)
    huge = None if quick else _huge_day(workdir / "duck", duck_url, big_accounts)
    http_scoring = http["timings"]["fraud_predictions"].get("scoring_seconds", 0.0)
    rows = [
        Row(
            "fraud_10k_end_to_end",
            f"{transactions:,} transactions, {HISTORY_DAYS} days of history, PostgreSQL",
            small["inside"],
            transactions,
            f"{baseline:.2f} s (row by row: csv, dict history, math.exp, executemany)",
            f"{baseline / small['inside']:.0f}x faster",
            "<= 2 s (sum of the 2 steps)",
            verdict(small["inside"], 2.0),
        ),
        Row(
            "fraud_10k_end_to_end (whole run, wall)",
            "-",
            small["wall"],
            transactions,
            "-",
            "-",
            "-",
            INFO,
        ),
        _month_row("fraud_1m_30d_duckdb", month_duck, "DuckDB"),
        _month_row("fraud_1m_30d_postgres", month_pg, "PostgreSQL"),
        _skipped("fraud_10m_day")
        if huge is None
        else Row(
            "fraud_10m_day",
            f"{huge['rows']:,} transactions in one day (10 files), 200,000 accounts, after "
            f"the 30 days above, DuckDB; peak RSS {huge['peak_rss_bytes'] / 1e9:.2f} GB",
            huge["wall"],
            huge["rows"],
            "-",
            "-",
            "peak RSS <= 2 GB (seconds reported)",
            "PASS" if huge["peak_rss_bytes"] <= 2e9 else "FAIL",
        ),
        Row(
            "fraud_http_10k",
            f"{transactions:,} transactions, http scorer, 100 per batch, 5 workers, "
            f"stub 20 ms per batch (scoring {http_scoring:.2f} s)",
            http["inside"],
            transactions,
            "-",
            "-",
            "<= 3 s (sum of the 2 steps)",
            verdict(http["inside"], 3.0),
        ),
    ]
    notes = [
        f"fraud_10k_end_to_end: {_line(small)}",
        f"fraud_1m_30d_duckdb: {_line(month_duck)}; setup {month_duck['setup']:.0f} s",
        *(
            [f"fraud_1m_30d_postgres: {_line(month_pg)}; setup {month_pg['setup']:.0f} s"]
            if month_pg
            else []
        ),
        *([f"fraud_10m_day: {_line(huge)}"] if huge else []),
        f"fraud_http_10k: {_line(http)}",
    ]
    return Outcome(rows, notes)


MONTH = 30
"""Days of history stored before the timed day of the 30-day rows."""
HUGE_FILES = 10
"""The 10M day lands as this many files of a million rows (seeds 0..9: distinct ids, the
same accounts ten times as busy)."""


def _month(
    workdir: Path, url: str, accounts: int, name: str, quick: bool = False
) -> dict[str, Any]:
    """30 days of `accounts` x 5 payments stored as payment_transactions writes them (setup,
    not timed: generated, then the warehouse's replace_window per day, the IO manager's own
    call), then the next day landed as a CSV and run end to end through payments_job in a
    child process: its wall time and peak RSS are the row's. --quick: a tenth of the
    accounts and 3 days."""
    import polars as pl

    from fintrack_assets.core.synthetic_payments import generate_payments
    from fintrack_assets.io_managers.warehouse import warehouse_for

    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    warehouse = warehouse_for(url)
    days = 3 if quick else MONTH
    for k in range(days, 0, -1):
        day = BIG_DAY - dt.timedelta(days=k)
        frame = generate_payments(day, accounts=accounts, per_account=PER_ACCOUNT).drop("is_fraud")
        warehouse.replace_window(
            "payment_transactions",
            frame.with_columns(pl.lit(day).alias("date")),
            "date",
            day,
            day + dt.timedelta(days=1),
        )
    big = _land(workdir, BIG_DAY, accounts)
    setup = time.perf_counter() - started
    log(f"{name}: {days} days stored in {setup:.0f} s; {BIG_DAY}, {big:,} in a child ...")
    stats = _child(workdir, url, BIG_DAY)
    _verify_count(stats, url, BIG_DAY, big, name)
    return {**stats, "rows_day": big, "setup": setup, "days": days}


def _huge_day(workdir: Path, url: str, accounts: int) -> dict[str, Any]:
    """The day after the month: HUGE_FILES files of `accounts` x 5 payments each (10M at
    full size), end to end in a child process."""
    from fintrack_assets.core.synthetic_payments import generate_payments
    from fintrack_assets.resources.landing import LandingZone

    day = BIG_DAY + dt.timedelta(days=1)
    files = HUGE_FILES
    rows = 0
    for seed in range(files):
        frame = generate_payments(day, accounts, PER_ACCOUNT, seed=seed).drop("is_fraud")
        LandingZone(str(workdir / "lake")).write(
            "payment_transactions", f"payments_{seed}.csv", frame.write_csv().encode(), day
        )
        rows += frame.height
        del frame
    log(f"fraud_10m_day: {rows:,} transactions landed; in a child ...")
    stats = _child(workdir, url, day)
    _verify_count(stats, url, day, rows, "fraud_10m_day")
    return {**stats, "rows": rows}


def _skipped(name: str) -> Row:
    return Row(name, "not run with --quick", None, None, "-", "-", "-", INFO)


def _month_row(name: str, stats: dict[str, Any] | None, backend: str) -> Row:
    if stats is None:
        return _skipped(name)
    peak = stats["peak_rss_bytes"] / 1e9
    return Row(
        name,
        f"{stats['rows_day']:,} transactions, one day, after {stats['days']} days of the "
        f"same rate stored, {backend}; peak RSS {peak:.2f} GB",
        stats["wall"],
        stats["rows_day"],
        "-",
        "-",
        "<= 60 s (the child's wall), peak RSS <= 2 GB",
        "PASS" if stats["wall"] <= 60 and peak <= 2 else "FAIL",
    )


def _verify_count(stats: dict[str, Any], url: str, day: dt.date, expected: int, name: str) -> None:
    """The run's counts and checks, and the predictions stored for `day` (either back-end)."""
    from fintrack_assets.io_managers.warehouse import warehouse_for

    problems = []
    rows = stats["rows"]
    if rows.get("payment_transactions") != expected or rows.get("fraud_predictions") != expected:
        problems.append(f"rows {rows}, expected {expected}")
    if not all(stats["checks"].values()):
        problems.append(f"checks {stats['checks']}")
    stored = warehouse_for(url).read(
        "fraud_predictions", "date", day, day + dt.timedelta(days=1), ["transaction_id"]
    )
    if stored.height != expected or stored["transaction_id"].n_unique() != expected:
        problems.append(f"the warehouse holds {stored.height} predictions for {day}")
    if problems:
        raise VerificationError(f"{name}: " + "; ".join(problems))


def _line(stats: dict[str, Any]) -> str:
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in stats["steps"].items())
    timing = "; ".join(
        f"{asset} " + ", ".join(f"{k.removesuffix('_seconds')} {v:.2f}" for k, v in t.items())
        for asset, t in stats["timings"].items()
        if t
    )
    return f"steps {steps}; {timing}"


def _verify(stats: dict[str, Any], url: str, day: dt.date, expected: int, name: str) -> None:
    problems = []
    rows = stats["rows"]
    if rows.get("payment_transactions") != expected:
        problems.append(f"{rows.get('payment_transactions')} transactions, expected {expected}")
    if rows.get("fraud_predictions") != expected or rows.get("payment_transaction_rejects"):
        problems.append(f"rows {rows}")
    if not all(stats["checks"].values()):
        problems.append(f"checks {stats['checks']}")
    with psycopg.connect(url) as connection:
        stored = connection.execute(
            "SELECT count(*), count(DISTINCT transaction_id) FROM fintrack.fraud_predictions "
            "WHERE date = %s",
            (day,),
        ).fetchone()
    if stored != (expected, expected):
        problems.append(f"PostgreSQL holds {stored} predictions for {day}")
    if problems:
        raise VerificationError(f"{name}: " + "; ".join(problems))


def _child(workdir: Path, url: str, day: dt.date) -> dict[str, Any]:
    """payments_job for `day` in a child process, which does nothing else: its peak RSS
    (VmHWM) is the run's alone, its wall time (interpreter start to exit) the row's."""
    env = {**os.environ, **_env(workdir, url)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.fraud", "--child", day.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise VerificationError(f"fraud_1m child failed: {done.stderr[-2000:]}")
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    stats["wall"] = time.perf_counter() - started
    return stats


def _row_by_row(workdir: Path, day: dt.date, url: str) -> float:
    """The anchor's shape on the same file: csv rows as dicts, per-row checks, features from
    per-account deques, a per-row logistic with the shipped weights, executemany into a
    table. Its scores must equal the pipeline's."""
    from fintrack_assets.core.fraud_model import FraudModel
    from fintrack_assets.resources.landing import LandingZone

    model = FraudModel.load()
    zone = LandingZone(str(workdir / "lake"))
    history_rows = []
    for k in range(HISTORY_DAYS, 0, -1):
        [file] = zone.list_files("payment_transactions", day - dt.timedelta(days=k))
        history_rows.extend(csv.DictReader(io.StringIO(zone.read_csv(file).decode())))
    [file] = zone.list_files("payment_transactions", day)
    started = time.perf_counter()
    rows = list(csv.DictReader(io.StringIO(zone.read_csv(file).decode())))
    seen: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for row in history_rows:
        seen[row["account_id"]].append(
            (
                dt.datetime.fromisoformat(row["ts"]).timestamp(),
                float(row["amount"]),
                row["merchant"],
            )
        )
    scored = []
    for row in sorted(rows, key=lambda r: r["ts"]):
        amount = float(row["amount"])
        if amount <= 0 or row["currency"].upper() != "USD":
            continue
        ts = dt.datetime.fromisoformat(row["ts"]).timestamp()
        prior = deque(p for p in seen[row["account_id"]] if ts - 30 * 86400 <= p[0] < ts)
        features = _features(row, ts, amount, prior)
        z = model.intercept + sum(
            c * (features[f] - m) / s
            for f, c, m, s in zip(model.features, model.coef, model.mean, model.scale, strict=True)
        )
        scored.append((row["transaction_id"], 1 / (1 + math.exp(-z))))
        seen[row["account_id"]].append((ts, amount, row["merchant"]))
    with psycopg.connect(url) as connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS baseline_predictions (transaction_id text, score float8)"
        )
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO baseline_predictions VALUES (%s, %s)", scored)
    seconds = time.perf_counter() - started
    with psycopg.connect(url) as connection:
        ours = dict(
            connection.execute(
                "SELECT transaction_id, fraud_score FROM fintrack.fraud_predictions "
                "WHERE date = %s",
                (day,),
            ).fetchall()
        )
    off = [t for t, s in scored if abs(ours.get(t, -1.0) - s) > 1e-6]
    if len(scored) != len(ours) or off:
        raise VerificationError(
            f"row-by-row baseline: {len(scored)} scored vs {len(ours)}; {len(off)} differ, "
            f"e.g. {off[:3]}"
        )
    return seconds


def _features(
    row: dict[str, str], ts: float, amount: float, prior: deque[tuple[float, float, str]]
) -> dict[str, float]:
    def window(seconds: float) -> list[float]:
        return [a for t, a, _ in prior if ts - seconds <= t]

    month = [a for _, a, _ in prior]
    mean = sum(month) / len(month) if month else 0.0
    std = math.sqrt(sum((a - mean) ** 2 for a in month) / (len(month) - 1)) if len(month) > 1 else 0
    out = {
        "log_amount": math.log1p(amount),
        "amount_zscore_30d": (amount - mean) / std if std else 0,
    }
    for name, seconds in (("1h", 3600), ("24h", 86400), ("7d", 7 * 86400)):
        amounts = window(seconds)
        out[f"count_{name}"], out[f"sum_{name}"] = float(len(amounts)), sum(amounts)
    out["first_time_merchant"] = float(all(m != row["merchant"] for _, _, m in prior))
    hour = dt.datetime.fromisoformat(row["ts"]).astimezone(dt.UTC).hour
    out["is_night"] = float(hour >= 22 or hour <= 5)
    if all(row[c] for c in ("lat", "lon", "merch_lat", "merch_lon")):
        lat1, lon1, lat2, lon2 = (
            math.radians(float(row[c])) for c in ("lat", "lon", "merch_lat", "merch_lon")
        )
        h = (
            math.sin((lat2 - lat1) / 2) ** 2
            + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
        )
        out["distance_km"] = 2 * 6371.0088 * math.asin(math.sqrt(h))
    else:
        out["distance_km"] = 0.0
    return out


def _child_main(day: str) -> None:
    """The 1M run alone in this process: its peak RSS is the pipeline's."""
    import warnings

    from dagster import BetaWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
    stats = _run_days(dt.date.fromisoformat(day), dt.date.fromisoformat(day))
    stats["peak_rss_bytes"] = _peak_rss_bytes()
    print(json.dumps(stats, default=str))


def _peak_rss_bytes() -> int:
    """This process's own peak RSS: VmHWM, the high-water mark of its address space. Linux's
    getrusage(RUSAGE_SELF).ru_maxrss keeps the parent's peak across the fork and exec that
    started the child, so after a full run's big workloads it reported the harness's peak, not
    the pipeline's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    _child_main(parser.parse_args().child)
