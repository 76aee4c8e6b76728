"""A payment file the sensor cannot give a day to is logged and listed, never silently dropped:
a folder that looks like a day but is not one (`date=2024-5-1/`), a file outside any `date=`."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from fintrack_assets.defs.payments.sensors import payment_files_sensor
from fintrack_assets.resources.landing import LandingZone
from fintrack_assets_tests.helpers import Platform

CSV = b"transaction_id,account_id,amount\nt1,a1,10.00\n"


def _tick(platform: Platform) -> SkipReason | SensorResult:
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(),
        resources={"lake": platform.defs.resources["lake"]},
        definitions=platform.defs,
    )
    result = payment_files_sensor(context)
    assert isinstance(result, SkipReason | SensorResult)
    return result


def test_files_with_no_day_are_logged_and_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    platform = Platform(
        {
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
        },
        monkeypatch,
    )
    landing = tmp_path / "lake" / "landing" / "payment_transactions"
    for folder in ("date=2024-5-1", "date=2024-02-30", ""):
        (landing / folder).mkdir(parents=True, exist_ok=True)
        (landing / folder / "pay.csv").write_bytes(CSV)
    assert LandingZone(str(tmp_path / "lake")).list_files("payment_transactions", recursive=True)
    capfd.readouterr()
    result = _tick(platform)
    logged = capfd.readouterr().err.splitlines()
    assert isinstance(result, SensorResult) and not result.run_requests
    reason = result.skip_reason.skip_message if result.skip_reason else ""
    assert "ignored 3 file(s) with no day" in reason
    short = f"{landing}/date=2024-5-1/pay.csv (its folder 'date=2024-5-1' is not a date="
    assert short in reason
    assert f"{landing}/date=2024-02-30/pay.csv (its folder 'date=2024-02-30' is not" in reason
    assert f"{landing}/pay.csv (not under a date=YYYY-MM-DD/ folder)" in reason
    for path in (
        "date=2024-5-1/pay.csv",
        "date=2024-02-30/pay.csv",
        "payment_transactions/pay.csv",
    ):
        assert any(path in w and "WARNING" in w and "ignored" in w for w in logged), logged
