"""The `fintrack` console script."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions, JobDefinition

    from fintrack_assets.io_managers.lake import LakeIOManager
    from fintrack_assets.runs import RunSummary
    from fintrack_assets.settings import Settings

DAGSTER_DEV_SUPERSEDED = "Function `dev_command` is superseded"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
PAYMENT_DAYS = 7
"""Calendar days of synthetic payments the demo lands and scores, ending at its last session."""
PAYMENT_ACCOUNTS = 2000


def _dagster_home() -> Path:
    """The demo's instance, its storage created before any run can start (see home.py)."""
    from fintrack_assets.home import prepare_home

    return prepare_home()


def doctor() -> int:
    """Checks the settings and DAGSTER_HOME, repairs what is safe, one line a finding."""
    from fintrack_assets.home import doctor as findings

    found = findings()
    for finding in found:
        print(finding.line, file=sys.stdout if finding.ok else sys.stderr)
    return 0 if all(finding.ok for finding in found) else 1


@dataclass(frozen=True)
class DemoStep:
    """One run of the demo: `job` over the partition range `partitions` (first and last key;
    None for an unpartitioned job), after `land` has put the run's input in the landing zone
    (it returns the line to print, None when the files were there already)."""

    name: str
    job: JobDefinition
    partitions: tuple[str, str] | None = None
    land: Callable[[], str | None] | None = None

    @property
    def tags(self) -> dict[str, str]:
        from dagster._core.storage.tags import (
            ASSET_PARTITION_RANGE_END_TAG,
            ASSET_PARTITION_RANGE_START_TAG,
        )

        if self.partitions is None:
            return {}
        first, last = self.partitions
        return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def demo(days: int) -> int:
    """Materialises every asset for the last `days` calendar days of sessions, in single runs."""
    home = _dagster_home()
    from dagster import DagsterInstance

    from fintrack_assets.core.calendar import sessions_between
    from fintrack_assets.definitions import build_defs, plan_range_runs_per_asset
    from fintrack_assets.partitions import latest_closed_session
    from fintrack_assets.settings import get_settings

    settings = get_settings()
    defs = build_defs(settings)
    plan_range_runs_per_asset()
    last = dt.date.fromisoformat(latest_closed_session())
    first_wanted = max(last - dt.timedelta(days=days), settings.start_date)
    sessions = sessions_between(first_wanted, last + dt.timedelta(days=1))
    first = sessions[0]
    print(
        f"fintrack demo: {len(sessions)} sessions {first} .. {last}, universe "
        f"{settings.universe}, market data {settings.market_data}\n"
    )
    instance = DagsterInstance.get()
    rows: list[list[object]] = []
    ok = True
    for step in demo_steps(settings, defs, first, last):
        run, took = _run_step(instance, step)
        rows.extend(
            [
                asset,
                len(run.partitions.get(asset, ())) or "-",
                f"{run.rows.get(asset, 0):,}",
                f"{run.step_seconds.get(step_key, took):.1f}",
            ]
            for asset, step_key in run.asset_steps.items()
        )
        if not run.success:
            ok = False
            print(f"run {run.run_id} ({step.name}) failed; see `make dev` -> Runs", file=sys.stderr)
            break
    print()
    print(tabulate(rows, headers=["asset", "partitions", "rows", "seconds"], tablefmt="github"))
    print(
        f"\nlake:       {settings.lake_url}\n"
        f"warehouse:  {settings.warehouse_display}\n"
        f"dagster:    {home} (runs and events)\n"
        "open the UI: make dev, then http://127.0.0.1:3000"
    )
    return 0 if ok else 1


def demo_steps(
    settings: Settings, defs: Definitions, first: dt.date, last: dt.date
) -> list[DemoStep]:
    """The demo's runs, in order, over the sessions [first, last]: the universe, its
    fundamentals, the market layers and yields, the silver bars of those months, the
    portfolios (one job in two runs: the
    sample trades are priced off the bronze bars of the first), the months that have ended
    and a week of payments."""
    from dagster import AssetKey

    from fintrack_assets.defs.market.jobs import PORTFOLIO_ASSETS
    from fintrack_assets.partitions import partitions_for

    assets_job = defs.resolve_implicit_global_asset_job_def()
    daily_job = defs.resolve_job_def("daily_market_job")
    portfolios = PORTFOLIO_ASSETS.resolve(defs.resolve_asset_graph())
    market = set(daily_job.asset_layer.selected_asset_keys) - portfolios
    session_range = (first.isoformat(), last.isoformat())
    lake = _lake(settings)
    payment_days = [last - dt.timedelta(days=i) for i in range(PAYMENT_DAYS - 1, -1, -1)]
    steps = [
        DemoStep(
            "symbol_universe", assets_job.get_subset(asset_selection={AssetKey("symbol_universe")})
        ),
        DemoStep(
            "company_fundamentals",
            assets_job.get_subset(asset_selection={AssetKey("company_fundamentals")}),
        ),
        DemoStep(
            "daily_market_job: market", daily_job.get_subset(asset_selection=market), session_range
        ),
        DemoStep(
            "silver_job",
            defs.resolve_job_def("silver_job"),
            (first.replace(day=1).isoformat(), last.replace(day=1).isoformat()),
        ),
        DemoStep(
            "daily_market_job: portfolios",
            daily_job.get_subset(asset_selection=portfolios),
            session_range,
            land=lambda: _land_sample_trades(lake),
        ),
    ]
    # Only months that have ended are partitions of `months`.
    month_keys = [
        k
        for k in partitions_for(settings.start_date).months.get_partition_keys()
        if k >= first.replace(day=1).isoformat()
    ]
    if month_keys:
        monthly = assets_job.get_subset(asset_selection={AssetKey("holdings_monthly")})
        steps.append(DemoStep("holdings_monthly", monthly, (month_keys[0], month_keys[-1])))
    steps.append(
        DemoStep(
            "payments_job",
            defs.resolve_job_def("payments_job"),
            (payment_days[0].isoformat(), payment_days[-1].isoformat()),
            land=lambda: _land_sample_payments(lake, payment_days),
        )
    )
    return steps


def _run_step(instance: DagsterInstance, step: DemoStep) -> tuple[RunSummary, float]:
    """Lands the step's input, then runs it in process with its progress on screen; its
    summary and wall seconds."""
    from fintrack_assets.progress import expected, watching
    from fintrack_assets.runs import summarise_run

    landed = step.land() if step.land else None
    if landed:
        print(landed)
    print(f"running {step.name} ...", flush=True)
    tags = step.tags
    started = time.perf_counter()
    run_id = str(uuid.uuid4())
    with watching(instance, run_id, step.name, expected(step.job, tags)) as progress:
        step.job.execute_in_process(
            instance=instance, tags=tags, raise_on_error=False, run_config=QUIET, run_id=run_id
        )
    took = time.perf_counter() - started
    run = summarise_run(instance, run_id)
    print(
        f"  run {run_id}: {'ok' if run.success else 'FAILED'} in {took:.1f} s, "
        f"{progress.done:,}/{progress.total:,} {progress.unit}"
    )
    return run, took


def _lake(settings: Settings) -> LakeIOManager:
    """The lake resource of the settings: the landing zone lies under it."""
    from fintrack_assets.definitions import build_resources
    from fintrack_assets.io_managers.lake import LakeIOManager

    lake = build_resources(settings)["lake"]
    if not isinstance(lake, LakeIOManager):
        raise TypeError(f"the lake resource is a {type(lake).__name__}, not a LakeIOManager")
    return lake


def _land_sample_trades(lake: LakeIOManager) -> str | None:
    """Drops the deterministic sample of three portfolios into the landing zone, built from the
    bronze bars just materialised, unless trades have landed already."""
    from fintrack_assets.core.sample_trades import sample_trades
    from fintrack_assets.resources.landing import LandingZone

    zone = LandingZone(lake.lake_url, lake.storage_options)
    if zone.list_files("portfolio_trades"):
        return None
    bars = lake.table(["bronze_ohlcv"]).read_window()
    path = zone.write(
        "portfolio_trades", "demo_sample.csv", sample_trades(bars).write_csv().encode()
    )
    return f"landed the sample trades: {path}"


def _land_sample_payments(lake: LakeIOManager, days: list[dt.date]) -> str | None:
    """Synthetic payments with injected fraud patterns for each day that has no files yet."""
    from fintrack_assets.core.synthetic_payments import generate_payments
    from fintrack_assets.resources.landing import LandingZone

    zone = LandingZone(lake.lake_url, lake.storage_options)
    landed = 0
    for day in days:
        if zone.list_files("payment_transactions", day):
            continue
        payments = generate_payments(day, accounts=PAYMENT_ACCOUNTS).drop("is_fraud")
        zone.write("payment_transactions", "demo_payments.csv", payments.write_csv().encode(), day)
        landed += 1
    return f"landed synthetic payments for {landed} day(s)" if landed else None


def ui(host: str, port: int) -> int:
    from fintrack_assets.settings import get_settings

    get_settings()
    _dagster_home()
    command = ["dev", "-m", "fintrack_assets", "-h", host, "-p", str(port)]
    # `dagster dev` warns that `dg dev` supersedes it; this project is no dg project (yet), so
    # the warning names nothing a user here can act on.
    quiet = ["-W", f"ignore:{DAGSTER_DEV_SUPERSEDED}"]
    os.execv(sys.executable, [sys.executable, *quiet, "-m", "dagster", *command])


def show_settings() -> int:
    from fintrack_assets.settings import get_settings

    print(tabulate(get_settings().shown(), headers=["variable", "value"], tablefmt="github"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fintrack", description="fintrack_assets: markets and personal finance on Dagster."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        help="materialise every asset for the last six months of sessions, offline",
        description="Runs symbol_universe and company_fundamentals, then daily_market_job over "
        "the last six months of sessions up to the latest closed one (raw -> bronze and the "
        "treasury yields; silver_job for those months; then, after landing a sample of three "
        "portfolios' trades priced off those bars, trades -> holdings -> risk), "
        "holdings_monthly and a week of payments through fraud scoring, in single runs, on the "
        "configured lake and warehouse (embedded defaults: no server, no network). Prints "
        "what it made.",
    )
    demo_parser.add_argument(
        "--days", type=int, default=182, help="calendar days of sessions to cover (default 182)"
    )
    commands.add_parser("settings", help="print the settings read from the environment")
    commands.add_parser(
        "home",
        help="create DAGSTER_HOME (default .fintrack/dagster) as the demo does and print it",
        description="Creates the Dagster instance folder the demo and `fintrack ui` use "
        "(telemetry off in a new one; an existing dagster.yaml is left alone) and prints its "
        "path, for `dagster asset materialize` and other dagster commands.",
    )
    commands.add_parser(
        "doctor",
        help="check the settings and DAGSTER_HOME; repair a home broken by a storage race",
        description="Checks that the settings are valid, that DAGSTER_HOME's storage is at "
        "Dagster's one schema head and that the instance loads. A home two runs created "
        "together (two schema heads recorded) is repaired in place; anything else is reported "
        "with what to do. One line a finding; exit 0 when healthy, 1 otherwise.",
    )
    ui_parser = commands.add_parser(
        "ui",
        help="the Dagster UI and daemon (dagster dev) on this code location",
        description="Checks the settings, prepares DAGSTER_HOME as the demo does, then runs "
        "`dagster dev -m fintrack_assets`: the UI, with the daemon running the schedules, "
        "sensors and declarative automation.",
    )
    ui_parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    ui_parser.add_argument("--port", type=int, default=3000, help="default 3000")
    args = parser.parse_args(argv)
    from fintrack_assets.settings import SettingsError

    try:
        if args.command == "demo":
            return demo(args.days)
        if args.command == "ui":
            return ui(args.host, args.port)
        if args.command == "doctor":
            return doctor()
        if args.command == "home":
            print(_dagster_home())
            return 0
        return show_settings()
    except SettingsError as exc:
        print(f"fintrack: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
