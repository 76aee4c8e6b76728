"""Real parts for the tests: a PostgreSQL server, an S3 endpoint on 127.0.0.1 (moto's server
mode), and a way to run the project's jobs on a lake and warehouse of the test's own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _start_local_postgres(root: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    """A throwaway server from the local PostgreSQL binaries (initdb + pg_ctl)."""
    initdb = shutil.which("initdb") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None
    )
    if initdb is None:
        raise RuntimeError("no PostgreSQL server reachable and no initdb binary to start one")
    bin_dir = Path(initdb).parent
    data = root / "pgdata"
    subprocess.run(
        [initdb, "-D", str(data), "-U", "postgres", "--auth=trust"], check=True, capture_output=True
    )
    port = _free_port()
    subprocess.run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A URL of a maintenance database on a real server: FINTRACK_TEST_POSTGRES_URL, else the
    local server on 127.0.0.1:5432, else one started here. Never skipped."""
    url = os.environ.get("FINTRACK_TEST_POSTGRES_URL")
    started: Path | None = None
    if not url:
        url = "postgresql://postgres@127.0.0.1:5432/postgres"
        if not _reachable(url):
            started = Path(tempfile.mkdtemp(prefix="fintrack-pg-"))
            url, _ = _start_local_postgres(started)
    yield url
    if started is not None:
        pg_ctl = Path(shutil.which("initdb") or "").parent / "pg_ctl"
        subprocess.run(
            [str(pg_ctl), "-D", str(started / "pgdata"), "stop", "-m", "fast"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(started, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"fintrack_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint on 127.0.0.1 (moto's server mode) with credentials in the env."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing-secret"
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    import boto3

    name = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def _quiet_beta_warnings() -> None:
    from dagster import BetaWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
