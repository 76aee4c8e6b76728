"""raw -> bronze workloads: `daily_market_job` in process, against a plain Delta write.

Import this module only after `harness.configure_environment`: fintrack_assets reads its
settings (universe, partition start date) when it is imported.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
)
from deltalake import DeltaTable, write_deltalake

from benchmarks.common import (
    INFO,
    PARTITIONS_START,
    Outcome,
    Row,
    VerificationError,
    log,
    verdict,
)
from fintrack_assets.core.calendar import EPOCH, sessions_between
from fintrack_assets.core.synthetic import generate_ohlcv
from fintrack_assets.core.universe import synthetic_universe
from fintrack_assets.definitions import build_defs
from fintrack_assets.defs.ops.checks import FRESHNESS_CHECK
from fintrack_assets.runs import RunSummary, summarise_run
from fintrack_assets.settings import Settings

QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
MARKET_ASSETS = ("raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects")

ONE_SESSION = dt.date(2025, 7, 3)
BACKFILL_LAST = dt.date(2025, 10, 3)
TIMING_METADATA = (
    "bronze_read_seconds",
    "bronze_sort_seconds",
    "compute_seconds",
    "check_seconds",
    "lake_write_seconds",
    "warehouse_write_seconds",
    "read_seconds",
    "history_read_seconds",
    "split_seconds",
    "feature_seconds",
    "scoring_seconds",
)


class EventLogTimer:
    """Times the instance's event-log writes, by event type. Observation only: it wraps
    `handle_new_event` and passes every call through unchanged."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()
        original = instance.handle_new_event

        def timed(event: Any, *args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                original(event, *args, **kwargs)
            finally:
                kind = event.dagster_event.event_type_value if event.dagster_event else "LOG"
                self.seconds[kind] += time.perf_counter() - started
                self.counts[kind] += 1

        instance.handle_new_event = timed  # type: ignore[method-assign]

    def materialisations(self) -> tuple[int, float]:
        """(events, seconds) of stored materialisations: written inside the steps."""
        kind = DagsterEventType.ASSET_MATERIALIZATION.value
        return self.counts[kind], self.seconds[kind]


@dataclass
class RunStats:
    """What one `daily_market_job` run did (its summary) and what it cost."""

    run: RunSummary
    wall_seconds: float
    events: int = 0
    materialisation_events: int = 0
    materialisation_event_seconds: float = 0.0

    @property
    def step_seconds(self) -> dict[str, float]:
        return self.run.step_seconds

    @property
    def row_counts(self) -> dict[str, int]:
        """Rows the run wrote per asset: the sum of its partitions' `dagster/row_count`."""
        return self.run.rows

    @property
    def partitions(self) -> dict[str, set[str]]:
        return self.run.partitions

    @property
    def checks(self) -> dict[str, bool]:
        """By `asset:check`."""
        return {
            f"{asset}:{check}": passed for (asset, check), passed in self.run.asset_checks.items()
        }

    @property
    def check_seconds(self) -> float:
        """Time separate checks report in their own `seconds` metadata."""
        return sum(
            float(seconds.value)
            for metadata in self.run.check_metadata.values()
            if (seconds := metadata.get("seconds")) is not None
            and isinstance(seconds.value, int | float)
        )

    @property
    def timings(self) -> dict[str, dict[str, float]]:
        """By asset, its timing figures: a range run's own sit on its last partition, as
        `run/<name>`."""
        return {
            asset: {
                name: float(value.value)
                for name in TIMING_METADATA
                for label in (name, f"run/{name}")
                if (value := metadata.get(label)) is not None
                and isinstance(value.value, int | float)
            }
            for asset, metadata in self.run.metadata.items()
        }

    @property
    def inside_seconds(self) -> float:
        """Sum of the steps' own durations: our code and the events it emits, without the
        run's set-up and tear-down."""
        return sum(self.step_seconds.values())

    def steps_line(self) -> str:
        return ", ".join(f"{step} {seconds:.2f} s" for step, seconds in self.step_seconds.items())

    def breakdown(self) -> str:
        """Where the step time went: our compute and lake writes (from the assets' own
        metadata) and Dagster storing the per-partition materialisation events."""
        parts = [
            f"{asset} "
            + " + ".join(
                f"{name.removesuffix('_seconds').replace('_', ' ')} {value:.2f} s"
                for name, value in timing.items()
            )
            for asset, timing in self.timings.items()
            if timing
        ]
        parts.append(
            f"storing {self.materialisation_events:,} materialisation events "
            f"{self.materialisation_event_seconds:.2f} s"
        )
        return "; ".join(parts)


@dataclass(frozen=True)
class Baseline:
    generate_seconds: float
    write_seconds: float
    rows: int

    @property
    def seconds(self) -> float:
        return self.generate_seconds + self.write_seconds

    def cell(self) -> str:
        return (
            f"{self.seconds:.2f} s (generate {self.generate_seconds:.2f} "
            f"+ write {self.write_seconds:.2f})"
        )


def backfill_sessions(count: int, last: dt.date = BACKFILL_LAST) -> list[dt.date]:
    sessions = sessions_between(EPOCH, last + dt.timedelta(days=1))
    if len(sessions) < count:
        raise VerificationError(f"only {len(sessions)} sessions up to {last}, wanted {count}")
    return sessions[-count:]


def plain_write_baseline(
    workdir: Path, symbols: int, first: dt.date, last: dt.date, expected_rows: int
) -> Baseline:
    """The same frame from generate_ohlcv, appended once to a fresh Delta table."""
    universe = synthetic_universe(symbols)
    started = time.perf_counter()
    frame = generate_ohlcv(universe, first, last + dt.timedelta(days=1))
    generated = time.perf_counter()
    write_deltalake(str(workdir / "baseline_ohlcv"), frame.to_arrow(), mode="append")
    written = time.perf_counter()
    rows = frame.height
    del frame
    gc.collect()
    if rows != expected_rows:
        raise VerificationError(f"baseline generated {rows:,} rows, expected {expected_rows:,}")
    return Baseline(generated - started, written - generated, rows)


def market_defs(workdir: Path, universe: str) -> Definitions:
    settings = Settings.from_env(
        {
            "FINTRACK_LAKE_URL": str(workdir / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{workdir / 'warehouse.duckdb'}",
            "FINTRACK_UNIVERSE": universe,
            "FINTRACK_MARKET_DATA": "synthetic",
            "FINTRACK_START_DATE": PARTITIONS_START,
        }
    )
    return build_defs(settings)


def run_failure(instance: DagsterInstance, run_id: str) -> str:
    return summarise_run(instance, run_id).reason()


def materialise_universe(defs: Definitions, instance: DagsterInstance, universe: str) -> None:
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("symbol_universe")}
    )
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {"symbol_universe": {"config": {"universe": universe}}}, **QUIET},
    )
    if not result.success:
        raise VerificationError(f"symbol_universe: {run_failure(instance, result.run_id)}")


def run_daily_market_job(
    defs: Definitions,
    instance: DagsterInstance,
    first: dt.date | None,
    last: dt.date | None,
    assets: Sequence[str] = MARKET_ASSETS,
    job_name: str | None = "daily_market_job",
    run_config: dict[str, Any] | None = None,
) -> RunStats:
    """One run of `job_name`'s `assets` (and their checks) over [first, last] (a single
    partition when equal, none when None). `job_name=None` is the implicit asset job: what
    "Materialize" in the UI runs."""
    whole = (
        defs.resolve_job_def(job_name) if job_name else defs.resolve_implicit_global_asset_job_def()
    )
    keys = {AssetKey(a) for a in assets}
    # session_freshness judges the wall clock's session, not the workload's: left out.
    checks = {
        key
        for key in defs.resolve_asset_graph().get_check_keys_for_assets(keys)
        if key.name != FRESHNESS_CHECK
    }
    job = whole.get_subset(asset_selection=keys, asset_check_selection=checks)
    partition: dict[str, Any] = {}
    if first is not None and last is not None and first == last:
        partition = {"partition_key": first.isoformat()}
    elif first is not None and last is not None:
        partition = {"tags": {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}}
    timer = EventLogTimer(instance)
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={**QUIET, **(run_config or {})},
        **partition,
    )
    wall_seconds = time.perf_counter() - started
    run = summarise_run(instance, result.run_id)
    if not run.success:
        raise VerificationError(f"{job_name or ', '.join(assets)}: {run.reason()}")
    stats = RunStats(run, wall_seconds)
    stats.materialisation_events, stats.materialisation_event_seconds = timer.materialisations()
    # Event-log entries, planned materialisations included.
    stats.events = len(instance.all_logs(result.run_id))
    return stats


def _verify(stats: RunStats, lake: Path, expected_rows: int, sessions: int, name: str) -> None:
    problems = []
    for asset in MARKET_ASSETS:
        if asset not in stats.row_counts:
            problems.append(f"no materialisation of {asset}")
        elif len(stats.partitions[asset]) != sessions:
            problems.append(
                f"{asset}: {len(stats.partitions[asset])} partitions materialised, "
                f"expected {sessions}"
            )
    expected = {"raw_ohlcv": expected_rows, "bronze_ohlcv": expected_rows}
    expected["bronze_ohlcv_rejects"] = 0
    for asset, rows in expected.items():
        got = stats.row_counts.get(asset)
        if got is not None and got != rows:
            problems.append(f"{asset}: {got:,} rows, expected {rows:,}")
    failed = [check for check, passed in stats.checks.items() if not passed]
    if failed:
        problems.append(f"asset checks failed: {', '.join(failed)}")
    if not stats.checks:
        problems.append("no asset check evaluations")
    in_lake = DeltaTable(str(lake / "bronze_ohlcv")).to_pyarrow_dataset().count_rows()
    if in_lake != expected_rows:
        problems.append(f"lake bronze_ohlcv holds {in_lake:,} rows, expected {expected_rows:,}")
    if problems:
        raise VerificationError(f"{name}: " + "; ".join(problems))


def raw_to_bronze(
    name: str,
    workdir: Path,
    symbols: int,
    sessions: list[dt.date],
    target_seconds: float,
) -> Outcome:
    """Baseline, then the job over `sessions` in one run; a row for the steps and the run."""
    workdir.mkdir(parents=True)
    universe = f"synthetic:{symbols}"
    first, last = sessions[0], sessions[-1]
    expected_rows = symbols * len(sessions)
    plural = "s" if len(sessions) > 1 else ""
    size = f"{expected_rows:,} rows ({symbols:,} symbols x {len(sessions):,} session{plural})"

    log(f"{name}: baseline generate_ohlcv + write_deltalake of {expected_rows:,} rows ...")
    baseline = plain_write_baseline(workdir, symbols, first, last, expected_rows)
    log(f"{name}: baseline {baseline.cell()}")

    defs = market_defs(workdir, universe)
    instance = DagsterInstance.ephemeral(tempdir=str(workdir / "dagster"))
    try:
        materialise_universe(defs, instance, universe)
        log(f"{name}: daily_market_job {first} .. {last} in one run ...")
        stats = run_daily_market_job(defs, instance, first, last)
    finally:
        instance.dispose()
    gc.collect()
    log(
        f"{name}: run {stats.wall_seconds:.2f} s wall, steps {stats.inside_seconds:.2f} s "
        f"({stats.steps_line()}), {stats.events:,} event-log entries"
    )
    log(f"{name}: inside the steps: {stats.breakdown()}")
    _verify(stats, workdir / "lake", expected_rows, len(sessions), name)

    bronze_rows = stats.row_counts["bronze_ohlcv"]
    inside, wall = stats.inside_seconds, stats.wall_seconds
    rows = [
        Row(
            name,
            size,
            inside,
            bronze_rows,
            baseline.cell(),
            f"{inside / baseline.seconds:.2f}x",
            f"<= {target_seconds:g} s (sum of steps)",
            verdict(inside, target_seconds),
        ),
        Row(
            f"{name} (whole run, wall)",
            f"{stats.events:,} event-log entries",
            wall,
            bronze_rows,
            f"{baseline.seconds:.2f} s",
            f"{wall / baseline.seconds:.2f}x",
            "-",
            INFO,
        ),
    ]
    notes = [
        f"{name}: steps {stats.steps_line()}; of which {stats.breakdown()}",
        f"{name}: baseline {baseline.cell()}",
    ]
    return Outcome(rows, notes)


def one_session(workdir: Path, quick: bool) -> Outcome:
    return raw_to_bronze(
        "raw_to_bronze_1_session",
        workdir,
        symbols=540 if quick else 5400,
        sessions=[ONE_SESSION],
        target_seconds=5.0,
    )


def backfill(workdir: Path, quick: bool) -> Outcome:
    return raw_to_bronze(
        "raw_to_bronze_backfill_2000",
        workdir,
        symbols=540 if quick else 5400,
        sessions=backfill_sessions(200 if quick else 2000),
        target_seconds=90.0,
    )
