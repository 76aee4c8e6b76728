"""An S3 lake: what it needs is said when the settings load, and a credential error fails its
step at once, in one sentence, without the retries meant for a flaky provider."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType

from fintrack_assets.defs.market.assets import FETCH_RETRY
from fintrack_assets.settings import Settings, SettingsError
from fintrack_assets_tests.conftest import _free_port
from fintrack_assets_tests.helpers import QUIET, Platform

BIN = Path(sys.executable).parent
S3_LAKE = {"FINTRACK_LAKE_URL": "s3://bucket/lake"}
NO_AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def _settings_command(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FINTRACK_"))}
    return subprocess.run(
        [str(BIN / "fintrack"), "settings"],
        env={**base, **S3_LAKE, **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


def test_an_s3_lake_without_credentials_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _settings_command(tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("fintrack: FINTRACK_LAKE_URL=s3://bucket/… needs S3 credentials")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        assert name in line
    assert "FINTRACK_S3_INSTANCE_ROLE=true" in line


def test_a_key_without_its_secret_names_the_missing_one(tmp_path: Path) -> None:
    done = _settings_command(tmp_path, AWS_ACCESS_KEY_ID="AKIAEXAMPLE")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "AWS_SECRET_ACCESS_KEY is required" in line
    assert "AKIAEXAMPLE" not in line


@pytest.mark.parametrize(
    "credentials",
    [
        {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrEXAMPLE"},
        {"AWS_PROFILE": "lake"},
        {"FINTRACK_S3_INSTANCE_ROLE": "true"},
        {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/token"},
        {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"},
    ],
)
def test_an_s3_lake_with_credentials_or_a_declared_role_loads(
    tmp_path: Path, credentials: dict[str, str]
) -> None:
    done = _settings_command(tmp_path, **credentials)
    assert done.returncode == 0, done.stderr
    assert "wJalrEXAMPLE" not in done.stdout


def test_a_local_lake_needs_no_credentials() -> None:
    assert not Settings.from_env({"FINTRACK_LAKE_URL": "/tmp/lake"}).lake_is_s3


def test_the_instance_role_flag_accepts_true_or_false_only() -> None:
    with pytest.raises(SettingsError, match="FINTRACK_S3_INSTANCE_ROLE='maybe'"):
        Settings.from_env({**S3_LAKE, "FINTRACK_S3_INSTANCE_ROLE": "maybe"})
    with pytest.raises(SettingsError, match="needs S3 credentials"):
        Settings.from_env({**S3_LAKE, "FINTRACK_S3_INSTANCE_ROLE": "false"})


@pytest.fixture(scope="module")
def s3_checking_keys() -> Iterator[str]:
    """moto's S3 server with its authentication on: unknown keys get 403 InvalidAccessKeyId,
    as from AWS (the suite's shared server accepts any key)."""
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            assert time.monotonic() < deadline, "moto_server did not start"
            assert server.poll() is None, "moto_server exited"
            time.sleep(0.05)  # polling a server's port, not synchronising two of ours
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def test_wrong_keys_fail_raw_ohlcv_at_once_without_retries(
    s3_checking_keys: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    platform = Platform(
        {
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
            "FINTRACK_LAKE_URL": "s3://lake/prefix",
            "AWS_ENDPOINT_URL": s3_checking_keys,
            "AWS_ACCESS_KEY_ID": "AKIAWRONGKEY",
            "AWS_SECRET_ACCESS_KEY": "wrong-secret-value",
            "FINTRACK_UNIVERSE": "AAPL,MSFT",
        },
        monkeypatch,
    )
    assert platform.universe().success  # the universe lives in the warehouse
    job = platform.defs.resolve_job_def("daily_market_job").get_subset(
        asset_selection={AssetKey("raw_ohlcv")}
    )
    started = time.monotonic()
    result = job.execute_in_process(
        instance=platform.instance,
        tags={
            "dagster/asset_partition_range_start": "2025-03-03",
            "dagster/asset_partition_range_end": "2025-03-04",
        },
        run_config=QUIET,
        raise_on_error=False,
    )
    took = time.monotonic() - started
    assert not result.success
    kinds = [event.event_type for event in result.all_events]
    assert DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    assert DagsterEventType.STEP_RESTARTED not in kinds
    assert kinds.count(DagsterEventType.STEP_START) == 1
    assert took < FETCH_RETRY.delay  # type: ignore[operator]
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    message = failure.event_specific_data.error.message  # type: ignore[union-attr]
    assert "S3 refused the lake's credentials" in message
    assert "AWS_ACCESS_KEY_ID" in message
    assert "AKIAWRONGKEY" not in message and "wrong-secret-value" not in message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Generic S3 error: Error performing token request: failed to load IMDS session "
            "token: error sending request for url (http://169.254.169.254/latest/api/token)",
            "no credentials",
        ),
        ("<Error><Code>SignatureDoesNotMatch</Code></Error>", "SignatureDoesNotMatch"),
        ("Error performing PUT ... 503 Service Unavailable", None),
        ("Generic S3 error: connection refused", None),
    ],
)
def test_credential_errors_are_told_from_transient_ones(message: str, reason: str | None) -> None:
    from fintrack_assets.core.s3_errors import refused_credentials

    assert refused_credentials(message) == reason
