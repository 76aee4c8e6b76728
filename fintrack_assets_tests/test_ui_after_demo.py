"""The README's first steps, `make demo` then `make dev`, looked at in a real browser: the UI
shows the demo's sessions materialised (none missing) and opening it starts no run, once the
daemon has evaluated every running sensor.

Needs Debian's Chromium (`apt-get install chromium`) and Playwright (the `dev` extra);
without them the test is skipped locally and fails under CI=true."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef

from fintrack_assets.core.calendar import TIMEZONE, sessions_between
from fintrack_assets.defs.ops.checks import BY_MONTH, SESSION_ASSETS
from fintrack_assets.partitions import latest_closed_session
from fintrack_assets_tests.topology import BIN, GraphQL, Topology, free_port

DEMO_DAYS = 20
LOCATION = "fintrack_assets"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
IN_CI = os.environ.get("CI", "").lower() == "true"
SENSORS = """{ sensorsOrError(repositorySelector: {repositoryName: "__repository__",
  repositoryLocationName: "fintrack_assets"}) { __typename ... on Sensors { results { name
  sensorState { status ticks(limit: 10) { status runIds error { message } } } } } } }"""
LOCATION_STATUS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
PARTITION_STATS = """{ assetNodes { assetKey { path } partitionStats { numMaterialized
  numPartitions numFailed } } }"""
FINISHED_TICKS = {"SUCCESS", "SKIPPED", "FAILURE"}


def _browser() -> tuple[Any, str]:
    """Playwright's sync API and the system Chromium, or a skip (a failure under CI=true)."""
    missing = ""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright (pip install -e '.[dev]')"
    chromium = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if chromium is None:
        missing = missing or "Chromium (apt-get install chromium)"
    if missing:
        if IN_CI:
            pytest.fail(f"the browser test needs {missing}")
        pytest.skip(f"needs {missing}")
    return sync_playwright, str(chromium)


def _demo_sessions(now: dt.datetime | None = None) -> list[dt.date]:
    """The sessions `fintrack demo --days DEMO_DAYS` covers, worked out from the calendar."""
    last = dt.date.fromisoformat(latest_closed_session(now))
    return sessions_between(last - dt.timedelta(days=DEMO_DAYS), last + dt.timedelta(days=1))


def _loaded(graphql: GraphQL) -> bool | None:
    try:
        entries = graphql(LOCATION_STATUS)["workspaceOrError"].get("locationEntries") or []
    except httpx.TransportError:  # not listening yet
        return None
    for entry in entries:
        error = entry["locationOrLoadError"]
        if error and error["__typename"] == "PythonError":
            raise AssertionError(f"{entry['name']} failed to load: {error['message']}")
    loaded = any(e["name"] == LOCATION and e["loadStatus"] == "LOADED" for e in entries)
    return True if loaded else None


def _sensors_evaluated(graphql: GraphQL) -> dict[str, list[dict[str, Any]]] | None:
    """Every running sensor's finished ticks, once each has at least one; else None."""
    sensors = graphql(SENSORS)["sensorsOrError"]["results"]
    running = {
        s["name"]: s["sensorState"] for s in sensors if s["sensorState"]["status"] == "RUNNING"
    }
    ticks = {
        name: [t for t in state["ticks"] if t["status"] in FINISHED_TICKS]
        for name, state in running.items()
    }
    return ticks if running and all(ticks.values()) else None


def _run_ids(home: Path) -> set[str]:
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return {run.run_id for run in instance.get_runs()}


def test_the_ui_after_the_demo_shows_its_sessions_and_starts_no_run(tmp_path: Path) -> None:
    sync_playwright, chromium = _browser()
    sessions = _demo_sessions()
    home = tmp_path / "dagster"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINTRACK_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
        "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
        "FINTRACK_START_DATE": sessions[0].isoformat(),
    }
    topology = Topology(tmp_path, tmp_path / "logs", marker=f"DAGSTER_HOME={home}")
    try:
        with topology.explain():
            topology.run(
                "demo", [str(BIN / "fintrack"), "demo", "--days", str(DEMO_DAYS)], env, 600
            )
            demo_runs = _run_ids(home)
            assert len(demo_runs) >= 5  # universe, market, portfolios, monthly, payments

            base = f"http://127.0.0.1:{free_port()}"
            port = base.rsplit(":", 1)[1]
            # `make dev` is `fintrack ui`: dagster dev on this code location.
            ui = topology.start("ui", [str(BIN / "fintrack"), "ui", "--port", port], env)
            deadline = time.monotonic() + 240
            with GraphQL(base) as graphql:
                topology.wait_for("the code location", lambda: _loaded(graphql), deadline)
                graphql("mutation { setNuxSeen }")  # no "Join the community" dialog

                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=chromium)
                    page = browser.new_page(viewport={"width": 1600, "height": 1000})
                    page.goto(f"{base}/assets/bronze_ohlcv?view=partitions")
                    page.get_by_text(re.compile(r"^Missing \(\d+\)$")).wait_for(timeout=60_000)
                    text = page.inner_text("body")
                    browser.close()
                assert f"Materialized ({len(sessions)})" in text, text[:2000]
                assert "Missing (0)" in text, text[:2000]
                assert f"{len(sessions)} Partitions" in text, text[:2000]

                stats = {
                    "/".join(node["assetKey"]["path"]): node["partitionStats"]
                    for node in graphql(PARTITION_STATS)["assetNodes"]
                }
                # Silver's partitions are months, the one in progress included: the demo
                # materialises those of its sessions.
                months = {day.replace(day=1) for day in sessions}
                this_month = dt.datetime.now(ZoneInfo(TIMEZONE)).date().replace(day=1)
                for asset in SESSION_ASSETS:
                    done = len(months) if asset in BY_MONTH else len(sessions)
                    total = len(months | {this_month}) if asset in BY_MONTH else len(sessions)
                    assert stats[asset] == {
                        "numMaterialized": done,
                        "numPartitions": total,
                        "numFailed": 0,
                    }, asset

                ticks = topology.wait_for(
                    "a tick of every running sensor", lambda: _sensors_evaluated(graphql), deadline
                )
            assert "payment_files_sensor" in ticks
            failed = {n: t for n, tt in ticks.items() for t in tt if t["status"] == "FAILURE"}
            assert not failed, failed
            requested = {n: t["runIds"] for n, tt in ticks.items() for t in tt if t["runIds"]}
            assert not requested, requested
            assert _run_ids(home) == demo_runs  # opening the UI started nothing
    finally:
        strays = topology.stop()
    assert not strays, strays
    for log in (topology.logs / "demo.log", ui.log):
        printed = log.read_text()
        for noise in ("Warning", "WARNING", "Traceback", "Telemetry"):
            assert noise not in printed, (log.name, noise, printed[:4000])
