"""The ways users start things: `fintrack demo`, `dagster asset materialize` and `dg`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey
from deltalake import DeltaTable

from fintrack_assets.cli import main
from fintrack_assets.definitions import defs as load_defs
from fintrack_assets.partitions import calendar_days, months, session_months, trading_days
from fintrack_assets_tests.helpers import SILVER as SILVER_KEYS
from fintrack_assets_tests.test_definitions_snapshot import SNAPSHOT

defs = load_defs()

BIN = Path(sys.executable).parent


def test_every_time_partitioned_asset_shares_its_kind_and_runs_ranges_in_one_run():
    assets = [a for a in defs.assets if a.partitions_def is not None]
    keys = {k.to_user_string() for a in assets for k in a.keys}
    assert keys >= {"raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects", "holdings_daily"}
    payments = {"payment_transactions", "fraud_predictions"}
    for asset in assets:
        if asset.keys == {AssetKey("holdings_monthly")}:
            expected = months
        elif payments & {k.to_user_string() for k in asset.keys}:
            expected = calendar_days
        elif {k.to_user_string() for k in asset.keys} & set(SILVER_KEYS):
            expected = session_months
        else:
            expected = trading_days
        assert asset.partitions_def is expected
        assert asset.backfill_policy is not None
        assert asset.backfill_policy.max_partitions_per_run is None


def test_fintrack_demo_prints_its_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["demo", "--days", "10"]) == 0
    out = capsys.readouterr().out
    for asset in (
        "symbol_universe",
        "raw_ohlcv",
        "bronze_ohlcv",
        "silver_ohlcv_34d",
        "portfolio_trades",
        "holdings_daily",
        "portfolio_risk",
        "portfolio_stress_tests",
        "payment_transactions",
        "fraud_predictions",
    ):
        assert f"| {asset}" in out
    assert str(tmp_path / ".fintrack" / "lake") in out
    assert "make dev" in out
    assert DeltaTable(str(tmp_path / ".fintrack" / "lake" / "bronze_ohlcv")).version() >= 0


def test_fintrack_settings_reports_a_bad_value_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("FINTRACK_MARKET_DATA", "nope")
    assert main(["settings"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "FINTRACK_MARKET_DATA" in err


def _dagster(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dagster"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_dagster_asset_materialize_over_a_partition_range(tmp_path):
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "FINTRACK_UNIVERSE": "AAPL,SPY",
    }
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").touch()
    first = _dagster(
        ["asset", "materialize", "-m", "fintrack_assets", "--select", "symbol_universe"],
        tmp_path,
        env,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    ranged = _dagster(
        [
            "asset",
            "materialize",
            "-m",
            "fintrack_assets",
            "--select",
            "raw_ohlcv,bronze_ohlcv,bronze_ohlcv_rejects",
            "--partition-range",
            "2025-07-01...2025-07-08",
        ],
        tmp_path,
        env,
    )
    assert ranged.returncode == 0, ranged.stderr[-2000:]
    table = DeltaTable(str(tmp_path / ".fintrack" / "lake" / "bronze_ohlcv")).to_pyarrow_table()
    # 2025-07-01 .. 07-08 holds five sessions (07-04 is Independence Day).
    assert table.num_rows == 2 * 5
    with duckdb.connect(str(tmp_path / ".fintrack" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from fintrack.symbol_universe").fetchone() == (2,)


@pytest.mark.parametrize("value", ["../../etc", "AAPL,A';DROP TABLE x;--"])
def test_a_hostile_universe_stops_the_code_location_from_loading(tmp_path, value):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "FINTRACK_UNIVERSE": value}
    result = _dagster(["asset", "list", "-m", "fintrack_assets"], tmp_path, env)
    assert result.returncode != 0
    assert "FINTRACK_UNIVERSE" in result.stderr


def test_dg_checks_and_lists_the_code_location_the_snapshot_pins(tmp_path):
    """`dg`, Dagster's project CLI, finds the project from pyproject.toml ([tool.dg]) and loads
    the same definitions as `-m fintrack_assets`: the keys and names the snapshot pins."""
    project = Path(__file__).resolve().parents[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FINTRACK_")},
        "DAGSTER_HOME": str(tmp_path),
    }

    def dg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "dg"), *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    checked = dg("check", "defs")
    assert checked.returncode == 0, checked.stderr[-2000:]
    listed = dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    found = json.loads(listed.stdout)
    pinned = json.loads(SNAPSHOT.read_text())
    assert sorted(a["asset_key"] for a in found["assets"]) == sorted(pinned["assets"])
    assert sorted(c["key"] for c in found["asset_checks"]) == pinned["checks"]
    for kind in ("jobs", "schedules", "sensors"):
        assert sorted(d["name"] for d in found[kind]) == sorted(pinned[kind]), kind
