"""Backfills judged by the wall clock: raw -> bronze (+ rejects), then the six silver intervals.

The path users take, two commands, since silver is on months and raw and bronze on sessions
(one run carries one partitions definition): `dagster asset materialize -m fintrack_assets
--select raw_ohlcv,bronze_ohlcv,bronze_ohlcv_rejects --partition-range <first>...<last>` over
the sessions, then `--select <the six silver intervals> --partition-range <first month>...<last
month>` over the months holding them; subprocesses, one after the other, on a fresh
`DAGSTER_HOME` prepared by `prepare_home` as `fintrack home` prepares it (SQLite), or on one
whose dagster.yaml is the deployment's storage (dagster-postgres) pointed at a throwaway
database. The floor beside them: the same two runs through `execute_in_process` on an
ephemeral in-memory instance.

Every figure is read back from the instance's event log afterwards: where the wall went
(start-up, planning, each step's spawn and run, the materialisation events inside it), the
assets' own time (their timing metadata) and the event-log entry counts, per run and summed
over both. Nothing here assumes how many materialisations an asset emits per run; the counts
come from the instance.

Import this module only after `harness.configure_environment`.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, EventLogEntry
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from deltalake import DeltaTable

from benchmarks.common import (
    INFO,
    Outcome,
    Row,
    VerificationError,
    log,
    scoped_environ,
    verdict,
)
from benchmarks.market import QUIET, RunStats, backfill_sessions, market_defs, materialise_universe
from benchmarks.postgres import DEFAULT_URL, throwaway_database
from benchmarks.resume import ROOT, cli_env, materialize_command
from fintrack_assets.core.calendar import nyse_sessions
from fintrack_assets.core.silver import INTERVALS
from fintrack_assets.definitions import PLANNED_EVENTS_AS_SUBSETS
from fintrack_assets.defs.ops.checks import FRESHNESS_CHECK
from fintrack_assets.io_managers.lake import LakeTable
from fintrack_assets.runs import summarise_run

MARKET = ("raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects")
SILVER = tuple(f"silver_ohlcv_{n}d" for n in INTERVALS)
SELECTION = (*MARKET, *SILVER)
"""By key, as a user types them after `--select`: MARKET over sessions, then SILVER over
months."""
SYMBOLS, SESSIONS = 5_400, 2_000
QUICK_SYMBOLS, QUICK_SESSIONS = 54, 60
DEPLOY_YAML = ROOT / "deploy" / "dagster.yaml"
KEPT_FROM_DEPLOY = ("storage", "telemetry")
"""The deployment's instance sections a one-off `dagster asset materialize` uses. The run
queue, run concurrency, retries and monitoring are the daemon's; the op pools need the
concurrency slots `pools-init` sets (docs/deployment.md)."""
CLI_TIMEOUT_SECONDS = 3_600
TARGETS = {"sqlite": 180.0, "postgres": 120.0}
QUICK_SKIPS = {"postgres": "two CLI start-ups (~3.5 s each) whatever the size"}
"""The CLI rows --quick leaves out: the SQLite row alone shows the path still works."""

SHARED_TIMINGS = ("bronze_read_seconds", "bronze_sort_seconds")
"""Figures a multi-asset records on each of its outputs for work done once for all of them
(silver reads and sorts bronze once for the six intervals): counted once per step."""

EVENT = DagsterEventType
MATERIALISATION = EVENT.ASSET_MATERIALIZATION.value
CHECK_EVALUATION = EVENT.ASSET_CHECK_EVALUATION.value
PLANNED = EVENT.ASSET_MATERIALIZATION_PLANNED.value
CHECK_PLANNED = EVENT.ASSET_CHECK_EVALUATION_PLANNED.value


@dataclass
class StepTimes:
    """One step as the event log tells it (epoch seconds, the events' own timestamps)."""

    step: str
    worker_starting: float | None = None
    """STEP_WORKER_STARTING: the executor launches the step's process (none in process)."""
    start: float = 0.0
    success: float = 0.0
    load_seconds: float = 0.0
    """STEP_START to the step's first LOADED_INPUT: reading its inputs (our IO managers)."""
    materialisations: int = 0
    burst_seconds: float = 0.0
    """From each output's first materialisation event to the event after its last: Dagster
    building and storing the per-partition materialisations (the write precedes them)."""
    check_evaluations: int = 0
    check_seconds: float = 0.0
    """What the step's check evaluations report in their own `seconds` metadata."""
    own_seconds: float = 0.0

    @property
    def spawn_seconds(self) -> float:
        return self.start - self.worker_starting if self.worker_starting is not None else 0.0

    @property
    def seconds(self) -> float:
        return self.success - self.start


@dataclass
class Timeline:
    """Where one run's wall went, from the harness clock (launch, exit) and the event log."""

    launched: float
    exited: float
    first_event: float = 0.0
    run_start: float = 0.0
    run_end: float = 0.0
    steps: list[StepTimes] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    planned_check_rows: int = 0
    """Rows the planned check events put in the check-executions table: one per partition of
    each planned check (one when it plans no partitions)."""

    @property
    def wall(self) -> float:
        return self.exited - self.launched

    @property
    def startup(self) -> float:
        """Launch to the run's first event: imports, the code location, the job."""
        return self.first_event - self.launched

    @property
    def planning(self) -> float:
        return self.run_start - self.first_event

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    @property
    def own_seconds(self) -> float:
        return sum(step.own_seconds for step in self.steps)

    def phases(self) -> str:
        between = sum(
            (b.worker_starting or b.start) - a.success
            for a, b in zip(self.steps, self.steps[1:], strict=False)
        )
        last_step = self.steps[-1].success if self.steps else self.run_start
        parts = [
            f"start-up (launch to the run's first event: imports, code location, the job) "
            f"{self.startup:.1f} s",
            f"planning ({self.counts[PLANNED]:,} planned materialisation events, "
            f"{self.counts[CHECK_PLANNED]:,} planned check events = "
            f"{self.planned_check_rows:,} check rows) {self.planning:.1f} s",
            *(_step_phase(step) for step in self.steps),
            f"between steps {between:.1f} s",
            f"last step to run end {self.run_end - last_step:.1f} s",
            f"run end to exit {self.exited - self.run_end:.1f} s",
        ]
        return "; ".join(parts)


@dataclass
class Backfill:
    """The runs of one backfill, one after the other (a run per partitions definition): the
    wall from the first launch to the last exit, the rest summed over the runs."""

    runs: list[Timeline]

    @property
    def wall(self) -> float:
        return self.runs[-1].exited - self.runs[0].launched

    @property
    def own_seconds(self) -> float:
        return sum(run.own_seconds for run in self.runs)

    @property
    def bookkeeping_share(self) -> float:
        return 1.0 - self.own_seconds / self.wall

    @property
    def counts(self) -> Counter[str]:
        return sum((run.counts for run in self.runs), Counter())

    @property
    def events(self) -> int:
        return sum(run.events for run in self.runs)

    def totals(self) -> str:
        """The phases summed over the runs and their steps: what the lead cuts."""
        steps = [step for run in self.runs for step in run.steps]
        startup = sum(run.startup for run in self.runs)
        planning = sum(run.planning for run in self.runs)
        spawn = sum(step.spawn_seconds for step in steps)
        inside = sum(step.seconds for step in steps)
        bursts = sum(step.burst_seconds for step in steps)
        materialisations = sum(step.materialisations for step in steps)
        spawns = f"{len(steps)} step spawns {spawn:.1f} s + " if spawn else ""
        return (
            f"{len(self.runs)} runs: start-up {startup:.1f} s + planning {planning:.1f} s + "
            f"{spawns}{len(steps)} steps {inside:.1f} s (assets' own {self.own_seconds:.1f} s, "
            f"{materialisations:,} materialisation events {bursts:.1f} s) + the rest "
            f"{self.wall - startup - planning - spawn - inside:.1f} s"
        )

    def phases(self) -> str:
        return " | ".join(
            f"run {n} ({run.wall:.1f} s wall): {run.phases()}"
            for n, run in enumerate(self.runs, start=1)
        )

    def counts_line(self) -> str:
        shown = ", ".join(f"{kind} {n:,}" for kind, n in self.counts.most_common())
        return f"{self.events:,} event-log entries: {shown}"


def _step_phase(step: StepTimes) -> str:
    spawn = f"spawn {step.spawn_seconds:.1f} s + " if step.worker_starting is not None else ""
    per_event = step.burst_seconds / step.materialisations * 1000 if step.materialisations else 0
    rest = step.seconds - step.own_seconds - step.burst_seconds
    return (
        f"{step.step}: {spawn}step {step.seconds:.1f} s (assets' own {step.own_seconds:.1f} s, "
        f"{step.materialisations:,} materialisation events {step.burst_seconds:.1f} s = "
        f"{per_event:.1f} ms each, check evaluations {step.check_evaluations}, "
        f"other {rest:.1f} s)"
    )


def _kind(entry: EventLogEntry) -> str:
    return entry.dagster_event.event_type_value if entry.dagster_event else "LOG"


def read_timeline(
    instance: DagsterInstance, run_id: str, launched: float, exited: float, stats: RunStats
) -> Timeline:
    """The run's phases and counts from its event log; the assets' own time per step from
    their timing metadata (`RunStats.timings`, each asset's last partition; SHARED_TIMINGS
    once per step), their checks' `seconds` and their input loads."""
    timeline = Timeline(launched, exited)
    logs = instance.all_logs(run_id)
    if not logs:
        raise VerificationError(f"run {run_id} stored no events")
    timeline.first_event = logs[0].timestamp
    steps: dict[str, StepTimes] = {}
    burst_start: float | None = None
    for previous, entry in zip([None, *logs], logs, strict=False):
        kind = _kind(entry)
        timeline.counts[kind] += 1
        event = entry.dagster_event
        step = (
            steps.setdefault(entry.step_key, StepTimes(entry.step_key)) if entry.step_key else None
        )
        if burst_start is not None and kind != MATERIALISATION and previous is not None:
            steps[str(previous.step_key)].burst_seconds += entry.timestamp - burst_start
            burst_start = None
        if kind == EVENT.RUN_START.value:
            timeline.run_start = entry.timestamp
        elif kind == EVENT.RUN_SUCCESS.value:
            timeline.run_end = entry.timestamp
        elif kind == CHECK_PLANNED and event is not None:
            subset = event.event_specific_data.partitions_subset  # type: ignore[union-attr]
            timeline.planned_check_rows += len(subset) if subset is not None else 1
        elif step is None:
            continue
        elif kind == EVENT.STEP_WORKER_STARTING.value:
            step.worker_starting = entry.timestamp
        elif kind == EVENT.STEP_START.value:
            step.start = entry.timestamp
        elif kind == EVENT.STEP_SUCCESS.value:
            step.success = entry.timestamp
        elif kind == EVENT.LOADED_INPUT.value and not step.load_seconds:
            step.load_seconds = entry.timestamp - step.start
        elif kind == MATERIALISATION:
            step.materialisations += 1
            if burst_start is None:
                burst_start = entry.timestamp
        elif kind == CHECK_EVALUATION and event is not None:
            step.check_evaluations += 1
            seconds = event.asset_check_evaluation_data.metadata.get("seconds")
            if seconds is not None and isinstance(seconds.value, int | float):
                step.check_seconds += float(seconds.value)
    timeline.run_end = timeline.run_end or logs[-1].timestamp
    by_step: dict[str, float] = defaultdict(float)
    shared: dict[str, dict[str, float]] = defaultdict(dict)
    for asset, timing in stats.timings.items():
        step_key = stats.run.asset_steps[asset]
        for figure, seconds in timing.items():
            if figure in SHARED_TIMINGS:
                shared[step_key][figure] = max(shared[step_key].get(figure, 0.0), seconds)
            else:
                by_step[step_key] += seconds
    for step in steps.values():
        once = sum(shared[step.step].values())
        step.own_seconds = by_step[step.step] + once + step.check_seconds + step.load_seconds
    timeline.steps = sorted(
        (step for step in steps.values() if step.start), key=lambda step: step.start
    )
    return timeline


@dataclass(frozen=True)
class Command:
    """One `dagster asset materialize` of the backfill: a selection over a partition range."""

    selection: tuple[str, ...]
    first: dt.date
    last: dt.date

    @property
    def partition_range(self) -> str:
        return f"{self.first.isoformat()}...{self.last.isoformat()}"


@dataclass(frozen=True)
class Size:
    symbols: int
    sessions: list[dt.date]

    @property
    def first(self) -> dt.date:
        return self.sessions[0]

    @property
    def last(self) -> dt.date:
        return self.sessions[-1]

    @property
    def months(self) -> list[dt.date]:
        """The session_months keys holding the sessions (first days of their months)."""
        first, last = self.first.replace(day=1), self.last.replace(day=1)
        keys = [first]
        while keys[-1] < last:
            keys.append((keys[-1] + dt.timedelta(days=32)).replace(day=1))
        return keys

    @property
    def months_end(self) -> dt.date:
        """The day after the last month."""
        return (self.months[-1] + dt.timedelta(days=32)).replace(day=1)

    @property
    def commands(self) -> tuple[Command, Command]:
        """What a user types, in order: raw and bronze over the sessions, then silver over
        the months holding them."""
        return (
            Command(MARKET, self.first, self.last),
            Command(SILVER, self.months[0], self.months[-1]),
        )

    @property
    def bronze_rows(self) -> int:
        return self.symbols * len(self.sessions)

    @property
    def universe(self) -> str:
        return f"synthetic:{self.symbols}"

    def bars(self, interval: int) -> int:
        """Silver's bars over the months: a bar per symbol for every bucket ending in them
        that holds a session of the range (the first and last may be partial)."""
        sessions = nyse_sessions().astype("datetime64[D]").astype(object).tolist()
        ends = sessions[interval - 1 :: interval]
        starts = sessions[::interval]
        buckets = sum(
            1
            for start, end in zip(starts, ends, strict=False)
            if self.months[0] <= end < self.months_end and self.first <= end and start <= self.last
        )
        return self.symbols * buckets

    def label(self) -> str:
        return (
            f"{self.symbols:,} symbols x {len(self.sessions):,} sessions = "
            f"{self.bronze_rows:,} bronze rows -> 6 silver intervals over "
            f"{len(self.months)} months"
        )


def _size(quick: bool) -> Size:
    if quick:
        return Size(QUICK_SYMBOLS, backfill_sessions(QUICK_SESSIONS))
    return Size(SYMBOLS, backfill_sessions(SESSIONS))


def verify(
    runs: list[RunStats], lake: Path, size: Size, expected: set[tuple[str, str]], name: str
) -> None:
    """Per run, its own assets: raw and bronze hold symbols x sessions rows, one
    materialisation per session, no rejects; each silver interval holds a bar per symbol for
    every bucket ending in the months that holds a session of the range, one materialisation
    per month; every check of the run's selection but session_freshness (it judges the wall
    clock's session) ran and passed."""
    market, silver = runs
    problems = []
    sessions = len(size.sessions)
    for asset in MARKET:
        got = len(market.partitions.get(asset, ()))
        if got != sessions:
            problems.append(f"{asset}: {got:,} partitions materialised, expected {sessions:,}")
    rows = {"raw_ohlcv": size.bronze_rows, "bronze_ohlcv": size.bronze_rows}
    for asset, count in {**rows, "bronze_ohlcv_rejects": 0}.items():
        if market.row_counts.get(asset) != count:
            problems.append(f"{asset}: {market.row_counts.get(asset)} rows, expected {count:,}")
    for asset, count in rows.items():
        stored = DeltaTable(str(lake / asset)).to_pyarrow_dataset().count_rows()
        if stored != count:
            problems.append(f"lake {asset} holds {stored:,} rows, expected {count:,}")
    months = {month.isoformat() for month in size.months}
    for interval, asset in zip(INTERVALS, SILVER, strict=True):
        bars = size.bars(interval)
        if not bars or silver.row_counts.get(asset) != bars:
            problems.append(f"{asset}: {silver.row_counts.get(asset)} bars, expected {bars:,}")
        if silver.partitions.get(asset, set()) != months:
            got = len(silver.partitions.get(asset, ()))
            problems.append(f"{asset}: {got} months materialised, expected {len(months)}")
        table = LakeTable(str(lake / asset))
        stored = table.read_window("bar_end", size.months[0], size.months_end).height
        if stored != bars:
            problems.append(f"lake {asset} holds {stored:,} bars in the months, expected {bars:,}")
    for stats, selection in zip(runs, (MARKET, SILVER), strict=True):
        ran = set(stats.run.asset_checks)
        wanted = {check for check in expected if check[0] in selection}
        if ran != wanted:
            problems.append(f"checks evaluated {sorted(ran)}, expected {sorted(wanted)}")
        failed = [check for check, passed in stats.checks.items() if not passed]
        if failed:
            problems.append(f"asset checks failed: {', '.join(failed)}")
    if problems:
        raise VerificationError(f"{name}: " + "; ".join(problems))


def expected_checks(workdir: Path, size: Size) -> set[tuple[str, str]]:
    """(asset, check) of every check the selection carries, session_freshness aside."""
    graph = market_defs(workdir, size.universe).resolve_asset_graph()
    keys = graph.get_check_keys_for_assets({AssetKey(asset) for asset in SELECTION})
    return {
        (key.asset_key.to_user_string(), key.name) for key in keys if key.name != FRESHNESS_CHECK
    }


def _postgres_env(url: str) -> dict[str, str]:
    """DAGSTER_PG_* for deploy/dagster.yaml, from a postgresql:// URL."""
    parts = urlsplit(url)
    return {
        "DAGSTER_PG_USERNAME": unquote(parts.username or "postgres"),
        # dagster's `env:` refuses an unset or empty variable; trust auth ignores it.
        "DAGSTER_PG_PASSWORD": unquote(parts.password or "unused"),
        "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
    }


def _deployment_yaml() -> str:
    """deploy/dagster.yaml's storage (dagster-postgres, DAGSTER_PG_*) and telemetry sections."""
    deployed = yaml.safe_load(DEPLOY_YAML.read_text())
    return yaml.safe_dump({name: deployed[name] for name in KEPT_FROM_DEPLOY}, sort_keys=False)


def _materialize(env: dict[str, str], command: Command, log_path: Path) -> tuple[float, float]:
    """One command a user types; (launched, exited) on the epoch clock the events use. Its
    console log goes to a file, as a user's terminal would take it."""
    argv = materialize_command(
        "--select", ",".join(command.selection), "--partition-range", command.partition_range
    )
    with log_path.open("w") as out:
        launched = time.time()
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        exited = time.time()
    if done.returncode:
        tail = log_path.read_text()[-1500:]
        raise VerificationError(f"dagster asset materialize exited {done.returncode}: {tail}")
    return launched, exited


def _range_run_id(instance: DagsterInstance, command: Command) -> str:
    runs = [
        run
        for run in instance.get_runs()
        if run.tags.get(ASSET_PARTITION_RANGE_START_TAG) == command.first.isoformat()
        and run.tags.get(ASSET_PARTITION_RANGE_END_TAG) == command.last.isoformat()
    ]
    if len(runs) != 1:
        raise VerificationError(
            f"{len(runs)} runs of {command.partition_range} in the instance, expected 1"
        )
    return runs[0].run_id


def _read_run(
    instance: DagsterInstance, run_id: str, launched: float, exited: float, name: str
) -> tuple[RunStats, Timeline]:
    summary = summarise_run(instance, run_id)
    if not summary.success:
        raise VerificationError(f"{name}: {summary.reason()}")
    stats = RunStats(summary, exited - launched)
    timeline = read_timeline(instance, run_id, launched, exited, stats)
    stats.events = timeline.events
    return stats, timeline


@dataclass(frozen=True)
class Measured:
    backfill: Backfill
    runs: list[RunStats]
    setup: str
    load_before: str


def _prepare(env: dict[str, str], size: Size, storage: str) -> float:
    """The home as the project's entry points prepare it (`prepare_home`: its dagster.yaml,
    written first for PostgreSQL, and its storage created once), then `symbol_universe`
    landed in the workdir's warehouse through that instance. In this process, under the
    command's environment: a `fintrack home` and a universe command would cost ~15 s of
    interpreter and code-location start-up that is not the backfill. Returns the seconds."""
    from fintrack_assets.home import prepare_home

    started = time.perf_counter()
    home = Path(env["DAGSTER_HOME"])
    if storage == "postgres":
        (home / "dagster.yaml").write_text(_deployment_yaml())
    workdir = home.parent
    named = {k: v for k, v in env.items() if k.startswith(("DAGSTER_", "FINTRACK_"))}
    with scoped_environ(named):
        prepare_home()
        with DagsterInstance.from_config(str(home)) as instance:
            materialise_universe(market_defs(workdir, size.universe), instance, size.universe)
    return time.perf_counter() - started


def _measure_cli(workdir: Path, size: Size, storage: str, name: str, pg_url: str = "") -> Measured:
    """A fresh home and the universe (setup), then the two timed commands back to back; the
    figures read back from the instance."""
    env = cli_env(workdir, size.universe)
    pg_env = _postgres_env(pg_url) if storage == "postgres" else {}
    env |= pg_env
    setup_seconds = _prepare(env, size, storage)
    log(f"{name}: home and symbol_universe ready in {setup_seconds:.1f} s (setup)")
    load_before = _load()
    clocks = []
    for n, command in enumerate(size.commands, start=1):
        log(
            f"{name}: dagster asset materialize {', '.join(command.selection)} over "
            f"{command.partition_range}"
        )
        clocks.append(_materialize(env, command, workdir / f"materialize-{n}.log"))
    log(f"{name}: {clocks[-1][1] - clocks[0][0]:.1f} s wall; reading the instance ...")
    runs, timelines = [], []
    with scoped_environ(pg_env), DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for command, (launched, exited) in zip(size.commands, clocks, strict=True):
            run_id = _range_run_id(instance, command)
            stats, timeline = _read_run(instance, run_id, launched, exited, name)
            runs.append(stats)
            timelines.append(timeline)
    setup = f"setup, not timed: prepare_home and symbol_universe {setup_seconds:.1f} s"
    return Measured(Backfill(timelines), runs, setup, load_before)


def _measure_in_memory(workdir: Path, size: Size, name: str) -> Measured:
    """The same two runs through `execute_in_process` (in-process executor) on an ephemeral
    instance, planned per asset as the CLI plans them (`plan_range_runs_per_asset`)."""
    defs = market_defs(workdir, size.universe)
    instance = DagsterInstance.ephemeral(tempdir=str(workdir / "dagster"))
    try:
        started = time.perf_counter()
        materialise_universe(defs, instance, size.universe)
        universe_seconds = time.perf_counter() - started
        whole = defs.resolve_implicit_global_asset_job_def()
        load_before = _load()
        runs, timelines = [], []
        for command in size.commands:
            keys = {AssetKey(asset) for asset in command.selection}
            job = whole.get_subset(asset_selection=keys)
            tags = {
                ASSET_PARTITION_RANGE_START_TAG: command.first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: command.last.isoformat(),
            }
            log(
                f"{name}: execute_in_process {', '.join(command.selection)} over "
                f"{command.partition_range} ..."
            )
            with scoped_environ({PLANNED_EVENTS_AS_SUBSETS: "true"}):
                launched = time.time()
                result = job.execute_in_process(
                    instance=instance, raise_on_error=False, run_config=QUIET, tags=tags
                )
                exited = time.time()
            stats, timeline = _read_run(instance, result.run_id, launched, exited, name)
            runs.append(stats)
            timelines.append(timeline)
    finally:
        instance.dispose()
    setup = f"setup, not timed: symbol_universe {universe_seconds:.1f} s in process"
    return Measured(Backfill(timelines), runs, setup, load_before)


def _load() -> str:
    """The 1-minute load average against the cores: other work on the machine slows every
    phase (on the development machine, other sessions run their tests beside)."""
    return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _outcome(name: str, measured: Measured, size: Size, target: float | None) -> Outcome:
    backfill = measured.backfill
    wall, own = backfill.wall, backfill.own_seconds
    row = Row(
        name,
        f"{size.label()}; {len(backfill.runs)} runs, {backfill.events:,} event-log entries",
        wall,
        size.bronze_rows,
        f"assets' own {own:.1f} s",
        f"bookkeeping {backfill.bookkeeping_share:.0%} of the wall",
        "-" if target is None else f"<= {target:g} s wall",
        INFO if target is None else verdict(wall, target),
    )
    notes = [
        f"{name}: wall {wall:.1f} s = {backfill.totals()}",
        f"{name}: phases from the event log: {backfill.phases()}",
        f"{name}: {backfill.counts_line()}; {measured.setup}; load average at launch "
        f"{measured.load_before}, at the end {_load()}",
    ]
    return Outcome([row], notes)


def _run(workdir: Path, quick: bool, storage: str) -> Outcome:
    name = f"backfill_cli_{storage}_5400x2000"
    if quick and storage in QUICK_SKIPS:
        log(f"{name}: skipped with --quick ({QUICK_SKIPS[storage]})")
        return Outcome([Row(name, "skipped with --quick", None, None, "-", "-", "-", INFO)], [])
    workdir.mkdir(parents=True)
    size = _size(quick)
    checks = expected_checks(workdir, size)
    if storage == "postgres":
        base_url = os.environ.get("FINTRACK_TEST_POSTGRES_URL") or DEFAULT_URL
        with throwaway_database(base_url, name) as url:
            measured = _measure_cli(workdir, size, storage, name, url)
    else:
        measured = _measure_cli(workdir, size, storage, name)
    verify(measured.runs, workdir / "lake", size, checks, name)
    log(f"{name}: verified; {measured.backfill.phases()}")
    return _outcome(name, measured, size, TARGETS[storage])


def backfill_cli_sqlite(workdir: Path, quick: bool) -> Outcome:
    return _run(workdir, quick, "sqlite")


def backfill_cli_postgres(workdir: Path, quick: bool) -> Outcome:
    return _run(workdir, quick, "postgres")


def backfill_in_memory(workdir: Path, quick: bool) -> Outcome:
    name = "backfill_in_memory_5400x2000"
    workdir.mkdir(parents=True)
    size = _size(quick)
    measured = _measure_in_memory(workdir, size, name)
    gc.collect()
    verify(measured.runs, workdir / "lake", size, expected_checks(workdir, size), name)
    log(f"{name}: verified; {measured.backfill.phases()}")
    return _outcome(name, measured, size, None)
