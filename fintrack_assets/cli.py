"""The `fintrack` console script."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

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


def demo(days: int) -> int:
    """Materialises every asset for the last `days` calendar days of sessions, in single runs."""
    home = _dagster_home()
    from dagster import DagsterEventType, DagsterInstance
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from fintrack_assets.core.calendar import sessions_between
    from fintrack_assets.definitions import build_defs
    from fintrack_assets.defs.market.jobs import PORTFOLIO_ASSETS
    from fintrack_assets.partitions import latest_closed_session, partitions_for
    from fintrack_assets.progress import expected, watching
    from fintrack_assets.settings import get_settings

    settings = get_settings()
    defs = build_defs(settings)
    last = dt.date.fromisoformat(latest_closed_session())
    first_wanted = max(last - dt.timedelta(days=days), settings.start_date)
    sessions = sessions_between(first_wanted, last + dt.timedelta(days=1))
    first = sessions[0]
    print(
        f"fintrack demo: {len(sessions)} sessions {first} .. {last}, universe "
        f"{settings.universe}, market data {settings.market_data}\n"
    )
    instance = DagsterInstance.get()
    assets_job = defs.resolve_implicit_global_asset_job_def()
    session_range = {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }
    # Only months that have ended are partitions of `months`.
    month_keys = [
        k
        for k in partitions_for(settings.start_date).months.get_partition_keys()
        if k >= first.replace(day=1).isoformat()
    ]
    # One job in two runs: the sample trades are priced off the bronze bars of the first.
    daily_job = defs.resolve_job_def("daily_market_job")
    portfolios = PORTFOLIO_ASSETS.resolve(defs.resolve_asset_graph())
    market = set(daily_job.asset_layer.selected_asset_keys) - portfolios
    runs = [
        ("symbol_universe", assets_job.get_subset(asset_selection={_key("symbol_universe")}), {}),
        ("daily_market_job: market", daily_job.get_subset(asset_selection=market), session_range),
        (
            "daily_market_job: portfolios",
            daily_job.get_subset(asset_selection=portfolios),
            session_range,
        ),
    ]
    if month_keys:
        monthly = assets_job.get_subset(asset_selection={_key("holdings_monthly")})
        month_range = {
            ASSET_PARTITION_RANGE_START_TAG: month_keys[0],
            ASSET_PARTITION_RANGE_END_TAG: month_keys[-1],
        }
        runs.append(("holdings_monthly", monthly, month_range))
    payment_days = [last - dt.timedelta(days=i) for i in range(PAYMENT_DAYS - 1, -1, -1)]
    runs.append(
        (
            "payments_job",
            defs.resolve_job_def("payments_job"),
            {
                ASSET_PARTITION_RANGE_START_TAG: payment_days[0].isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: payment_days[-1].isoformat(),
            },
        )
    )
    rows = []
    ok = True
    for name, job, tags in runs:
        if name == "daily_market_job: portfolios":
            landed = _land_sample_trades(settings)
            if landed:
                print(f"landed the sample trades: {landed}")
        if name == "payments_job":
            landed_days = _land_sample_payments(settings, payment_days)
            if landed_days:
                print(f"landed synthetic payments for {landed_days} day(s)")
        print(f"running {name} ...", flush=True)
        started = time.perf_counter()
        run_id = str(uuid.uuid4())
        with watching(instance, run_id, name, expected(job, tags)) as progress:
            result = job.execute_in_process(
                instance=instance, tags=tags, raise_on_error=False, run_config=QUIET, run_id=run_id
            )
        took = time.perf_counter() - started
        print(
            f"  run {result.run_id}: {'ok' if result.success else 'FAILED'} in {took:.1f} s, "
            f"{progress.done:,}/{progress.total:,} {progress.unit}"
        )
        partitions: dict[str, set[str]] = defaultdict(set)
        row_counts: dict[str, int] = {}
        step_seconds: dict[str, float] = {}
        asset_step: dict[str, str] = {}
        for event in result.all_events:
            if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
                asset = materialization.asset_key.to_user_string()
                if materialization.partition:
                    partitions[asset].add(materialization.partition)
                count = materialization.metadata.get("dagster/row_count")
                if count is not None:
                    # A range run reports each partition's own rows.
                    rows_here = int(count.value)  # type: ignore[arg-type]
                    if materialization.partition:
                        row_counts[asset] = row_counts.get(asset, 0) + rows_here
                    else:
                        row_counts[asset] = rows_here
                asset_step[asset] = event.step_key or ""
            elif event.event_type == DagsterEventType.STEP_SUCCESS:
                duration = event.event_specific_data.duration_ms  # type: ignore[union-attr]
                step_seconds[event.step_key or ""] = duration / 1000
        for asset in sorted(asset_step, key=list(asset_step).index):
            rows.append(
                [
                    asset,
                    len(partitions[asset]) or "-",
                    f"{row_counts.get(asset, 0):,}",
                    f"{step_seconds.get(asset_step[asset], took):.1f}",
                ]
            )
        if not result.success:
            ok = False
            print(f"run {result.run_id} ({name}) failed; see `make dev` -> Runs", file=sys.stderr)
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


def _land_sample_trades(settings: object) -> str | None:
    """Drops the deterministic sample of three portfolios into the landing zone, built from the
    bronze bars just materialised, unless trades have landed already."""
    from fintrack_assets.core.sample_trades import sample_trades
    from fintrack_assets.definitions import build_resources
    from fintrack_assets.resources.landing import LandingZone

    lake = build_resources(settings)["lake"]  # type: ignore[arg-type]
    zone = LandingZone(lake.lake_url, lake.storage_options)  # type: ignore[attr-defined]
    if zone.list_files("portfolio_trades"):
        return None
    bars = lake.table(["bronze_ohlcv"]).read_window()  # type: ignore[attr-defined]
    return zone.write(
        "portfolio_trades", "demo_sample.csv", sample_trades(bars).write_csv().encode()
    )


def _land_sample_payments(settings: object, days: list[dt.date]) -> int:
    """Synthetic payments with injected fraud patterns for each day that has no files yet."""
    from fintrack_assets.core.synthetic_payments import generate_payments
    from fintrack_assets.definitions import build_resources
    from fintrack_assets.resources.landing import LandingZone

    lake = build_resources(settings)["lake"]  # type: ignore[arg-type]
    zone = LandingZone(lake.lake_url, lake.storage_options)  # type: ignore[attr-defined]
    landed = 0
    for day in days:
        if zone.list_files("payment_transactions", day):
            continue
        payments = generate_payments(day, accounts=PAYMENT_ACCOUNTS).drop("is_fraud")
        zone.write("payment_transactions", "demo_payments.csv", payments.write_csv().encode(), day)
        landed += 1
    return landed


def _key(name: str) -> object:
    from dagster import AssetKey

    return AssetKey(name)


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
        description="Runs symbol_universe, then daily_market_job over the last six months of "
        "sessions up to the latest closed one (raw -> bronze -> silver, then, after landing a "
        "sample of three portfolios' trades priced off those bars, trades -> holdings -> "
        "risk), holdings_monthly and a week of payments through fraud scoring, in single "
        "runs, on the configured lake and warehouse (embedded defaults: no server, no "
        "network). Prints what it made.",
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
