"""What a new user and an operator meet first: no secret on screen, one line for a bad setting,
no warning or banner, everything the README calls "on by default" running."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from fintrack_assets.resources.alerts import AlertWebhook
from fintrack_assets.settings import Settings, redact_url
from fintrack_assets_tests.topology import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FRAUD_URL = "https://svc:hunter2@ml.example/v1?token=abc123"
WEBHOOK_URL = "https://hooks.slack.example/services/T000/B000/SECRET"
SECRETS = ("hunter2", "abc123", "svc:", "T000", "B000/", "pk_live_42", "wJalrXUtn")
BAD_SETTINGS = [
    ("FINTRACK_UNIVERSE", "../../etc"),
    ("FINTRACK_WAREHOUSE_URL", "mysql://x"),
    ("FINTRACK_START_DATE", "1999-01-01"),
]


def _machine_env() -> dict[str, str]:
    """The machine's environment less any variable of ours, Dagster's or AWS's."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FINTRACK_", "AWS_", "POLYGON_", "DAGSTER_"))
    }


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """_machine_env on tmp_path storage."""
    env = _machine_env()
    env.update(
        FINTRACK_LAKE_URL=str(tmp_path / "lake"),
        FINTRACK_WAREHOUSE_URL=f"duckdb:///{tmp_path}/warehouse.duckdb",
        DAGSTER_HOME=str(tmp_path / "home"),
    )
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


# 1. A secret on screen


def test_fintrack_settings_lists_every_variable_with_every_url_masked(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        FINTRACK_FRAUD_SCORER="http",
        FINTRACK_FRAUD_API_URL=FRAUD_URL,
        FINTRACK_FRAUD_API_TOKEN="tok-abc123",
        FINTRACK_ALERT_WEBHOOK_URL=WEBHOOK_URL,
        FINTRACK_MARKET_DATA="polygon",
        POLYGON_API_KEY="pk_live_42",
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI",
        AWS_ENDPOINT_URL="http://minio:9000",
        FINTRACK_MARKET_DATA_RATE_LIMIT="5",
    )
    done = _run([str(BIN / "fintrack"), "settings"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    for secret in (*SECRETS, "AKIAEXAMPLE"):
        assert secret not in shown
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in done.stdout.splitlines()[2:]
    }
    assert rows["FINTRACK_FRAUD_API_URL"] == "https://ml.example/…"
    assert rows["FINTRACK_ALERT_WEBHOOK_URL"] == "https://hooks.slack.example/…"
    assert rows["FINTRACK_FRAUD_API_TOKEN"] == "***"
    assert rows["POLYGON_API_KEY"] == "***"
    assert rows["AWS_SECRET_ACCESS_KEY"] == "***"
    assert rows["AWS_ACCESS_KEY_ID"] == "***"
    assert rows["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert rows["FINTRACK_POLYGON_URL"] == "https://api.polygon.io"
    assert rows["FINTRACK_START_DATE"] == "2020-01-02"
    assert rows["FINTRACK_MARKET_DATA_RATE_LIMIT"] == "5/min"


def test_repr_of_settings_masks_every_url_and_key() -> None:
    settings = Settings.from_env(
        {
            "FINTRACK_FRAUD_SCORER": "http",
            "FINTRACK_FRAUD_API_URL": FRAUD_URL,
            "FINTRACK_ALERT_WEBHOOK_URL": WEBHOOK_URL,
            "FINTRACK_WAREHOUSE_URL": "postgresql://app:hunter2@db.internal:5432/fintrack",
            "FINTRACK_POLYGON_URL": "https://proxy.example/polygon?token=abc123",
        }
    )
    printed = repr(settings) + str(settings)
    for secret in (*SECRETS, "fintrack?", "/polygon"):
        assert secret not in printed
    assert "https://ml.example/…" in printed
    assert "postgresql://db.internal:5432/…" in printed


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (FRAUD_URL, "https://ml.example/…"),
        (WEBHOOK_URL, "https://hooks.slack.example/…"),
        ("postgresql://app:pw@db:5432/fintrack", "postgresql://db:5432/…"),
        ("https://tok3n@api.example", "https://api.example/…"),
        ("https://api.polygon.io", "https://api.polygon.io"),
        ("https://api.polygon.io/", "https://api.polygon.io"),
        ("http://[::1]:8080/x", "http://[::1]:8080/…"),
        ("s3://bucket/lake", "s3://bucket/…"),
        ("duckdb:////abs/w.duckdb", "duckdb:////abs/w.duckdb"),
        ("/srv/lake", "/srv/lake"),
    ],
)
def test_redact_url_keeps_scheme_host_and_port_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_undeliverable_alert_logs_no_part_of_the_webhook_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/services/T000/B000/SECRET"
    logger = logging.getLogger("alert-test")
    with caplog.at_level(logging.INFO, logger="alert-test"):
        assert not AlertWebhook(url=dead, attempts=1).send({"text": "x"}, logger)
    assert caplog.records, "the failed delivery is logged"
    for record in caplog.records:
        assert "SECRET" not in record.getMessage()
        assert "T000" not in record.getMessage()


# 2. One line, not a traceback


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_and_exit_2_and_help_needs_no_settings(
    tmp_path: Path, name: str, value: str
) -> None:
    env = _env(tmp_path, **{name: value})
    helped = _run([str(BIN / "fintrack"), "--help"], env, tmp_path)
    assert helped.returncode == 0
    assert "usage: fintrack" in helped.stdout
    assert helped.stderr == ""
    for command in (["settings"], ["demo", "--days", "5"], ["ui"]):
        done = _run([str(BIN / "fintrack"), *command], env, tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"fintrack: {name}=")
        assert "Traceback" not in done.stderr


def test_dagster_shows_the_same_line_as_the_code_locations_load_error(tmp_path: Path) -> None:
    env = _env(tmp_path, FINTRACK_WAREHOUSE_URL="mysql://x")
    done = _run([str(BIN / "dagster"), "asset", "list", "-m", "fintrack_assets"], env, tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.endswith(
        "FINTRACK_WAREHOUSE_URL='mysql://x' is not valid; it accepts "
        "duckdb:///path/file.duckdb or postgresql://user:pass@host:port/db"
    )


def test_importing_the_package_and_core_reads_no_setting(tmp_path: Path) -> None:
    """Every environment read during import is recorded; none may be one of ours."""
    probe = """
import os, pkgutil, importlib, sys
read = []
original = os.environ
class Spy(dict):
    def __getitem__(self, key): read.append(key); return original[key]
    def get(self, key, default=None): read.append(key); return original.get(key, default)
    def __contains__(self, key): read.append(key); return key in original
os.environ = Spy(original)
import fintrack_assets
import fintrack_assets.core
for info in pkgutil.iter_modules(fintrack_assets.core.__path__):
    importlib.import_module(f"fintrack_assets.core.{info.name}")
ours = sorted({k for k in read if k.startswith(("FINTRACK_", "POLYGON_", "AWS_"))})
print("READ:" + ",".join(ours))
"""
    env = _env(tmp_path, FINTRACK_WAREHOUSE_URL="mysql://x", FINTRACK_START_DATE="1999-01-01")
    done = _run([sys.executable, "-c", probe], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "READ:"


# 3. No noise


def test_commands_print_no_warning(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for args in (
        [str(BIN / "fintrack"), "--help"],
        [str(BIN / "fintrack"), "settings"],
        [str(BIN / "dagster"), "asset", "list", "-m", "fintrack_assets"],
    ):
        done = _run(args, env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr, (args, done.stderr)


def test_the_demo_prints_no_warning_and_no_telemetry_banner(tmp_path: Path) -> None:
    done = _run([str(BIN / "fintrack"), "demo", "--days", "3"], _env(tmp_path), tmp_path)
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert "Warning" not in printed
    assert "Telemetry" not in printed and "telemetry" not in printed
    assert (tmp_path / "home" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_the_demo_keeps_an_existing_instance_yaml(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("run_retries:\n  enabled: false\n")
    from fintrack_assets.cli import _dagster_home

    os.environ["DAGSTER_HOME"], before = str(home), os.environ.get("DAGSTER_HOME")
    try:
        _dagster_home()
    finally:
        if before is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = before
    assert (home / "dagster.yaml").read_text() == "run_retries:\n  enabled: false\n"


# 7. On by default means running


ON_BY_DEFAULT = {
    "daily_market_schedule",
    "company_fundamentals_schedule",
    "session_freshness_schedule",
    "holdings_monthly_schedule",
    "lake_maintenance_schedule",
    "payment_files_sensor",
    "run_failure_alert",
    "default_automation_condition_sensor",
}
STATUS_QUERY = """
{
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        schedules { name scheduleState { status } }
        sensors { name sensorType sensorState { status } }
      }
    }
  }
}
"""


def test_every_schedule_and_sensor_is_running_on_a_fresh_instance(tmp_path: Path) -> None:
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    (tmp_path / "dagster.yaml").write_text("")
    with (
        DagsterInstance.from_config(str(tmp_path)) as instance,
        define_out_of_process_context(str(ROOT / "workspace.yaml"), None, instance) as context,
    ):
        result = execute_dagster_graphql(context, STATUS_QUERY)
    (repository,) = result.data["repositoriesOrError"]["nodes"]
    status = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    status |= {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    automation = [s for s in repository["sensors"] if s["sensorType"] == "AUTO_MATERIALIZE"]
    assert [s["name"] for s in automation] == ["default_automation_condition_sensor"]
    assert set(status) == ON_BY_DEFAULT
    assert {name: "RUNNING" for name in ON_BY_DEFAULT} == status


# The README's shell commands, as written


def _readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(f"## {heading}\n") :]
    return section[section.index("```sh\n") + 6 : section.index("```\n", section.index("```sh"))]


def test_the_readmes_shell_commands_run_as_written_without_noise(tmp_path: Path) -> None:
    """In a checkout of its own (every top-level entry linked, `.fintrack/` fresh), so the
    commands' relative paths land in tmp_path."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".fintrack", ".git"):
            (checkout / entry.name).symlink_to(entry)
    block = _readme_block("From a shell")
    done = _run(["bash", "-euo", "pipefail", "-c", block], _machine_env(), checkout)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-4000:]
    for noise in ("Warning", "WARNING", "Traceback", "Telemetry"):
        assert noise not in printed, (noise, printed[-4000:])
    from deltalake import DeltaTable

    lake = checkout / ".fintrack" / "lake"
    bronze = DeltaTable(str(lake / "bronze_ohlcv")).to_pyarrow_table()
    # July 2025: 23 weekdays, less Independence Day.
    assert len(set(bronze.column("date").to_pylist())) == 22
    assert len(set(bronze.column("symbol").to_pylist())) == 45  # the sample universe
    assert DeltaTable(str(lake / "silver_ohlcv_3d")).to_pyarrow_table().num_rows > 0
    assert "| FINTRACK_LAKE_URL" in done.stdout
