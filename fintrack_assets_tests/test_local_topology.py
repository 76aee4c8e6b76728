"""The docker-compose topology with local processes: PostgreSQL, an S3 endpoint on 127.0.0.1
(moto, for MinIO), `dagster api grpc` for the code location, `dagster-webserver` and
`dagster-daemon` with deploy/dagster.yaml copied unmodified. Through the webserver's
GraphQL API the test lists the assets and backfills five sessions of raw_ohlcv + bronze_ohlcv,
then finds the data in the S3 lake and the runs in PostgreSQL. test_deployment_files.py checks
the deployment files statically; this proves they run together."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import polars as pl
import psycopg
import pytest
import yaml
from deltalake import DeltaTable

from fintrack_assets_tests.topology import BIN, GraphQL, Topology, free_port

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "fintrack_assets"
SYMBOLS = ["AAPL", "MSFT", "SPY", "TLT", "XLK"]
START_DATE = "2025-03-03"
SESSIONS = ["2025-03-10", "2025-03-11", "2025-03-12", "2025-03-13", "2025-03-14"]
"""Monday to Friday of a week without an NYSE holiday, a week after FINTRACK_START_DATE."""
BACKFILLED = ["raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects"]
"""raw + bronze and its rejects, each of the three materialised by the backfill's run."""
LAKE_BARS = ["raw_ohlcv", "bronze_ohlcv"]
SEED = ["--select", "symbol_universe"]
STARTUP_SECONDS = 90.0
BACKFILL_SECONDS = 150.0
"""The backfill daemon ticks every 30 s: one tick submits the run, a later one completes it."""
EXPECTED_ASSETS = {
    "symbol_universe",
    "raw_ohlcv",
    "bronze_ohlcv",
    "bronze_ohlcv_rejects",
    *(f"silver_ohlcv_{n}d" for n in (3, 5, 8, 13, 21, 34)),
    "portfolio_trades",
    "portfolio_trades_rejects",
    "holdings_daily",
    "holdings_monthly",
    "portfolio_returns",
    "portfolio_risk",
    "portfolio_factor_exposures",
    "sector_exposure",
    "holding_correlations",
    "portfolio_stress_tests",
    "payment_transactions",
    "payment_transaction_rejects",
    "fraud_predictions",
    "fraud_prediction_failures",
}
_SCRUBBED = ("DAGSTER_", "FINTRACK_", "AWS_", "POLYGON_")
"""Settings of the outer shell that must not leak into the services."""
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS"}
BACKFILL_FAILED = {"FAILED", "COMPLETED_FAILED", "FAILING", "CANCELED", "CANCELING"}

BACKFILL_QUERY = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status isAssetBackfill
      assetSelection { path }
      error { message stack }
      runs { runId status tags { key value } }
    }
    ... on Error { message }
  }
}"""

RUN_ERRORS_QUERY = """
query ($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events { __typename ... on MessageEvent { message stepKey } ... on ErrorEvent {
        error { message stack cause { message stack } } } }
    }
    ... on Error { message }
  }
}"""


@dataclass
class Deployment:
    topology: Topology
    graphql: GraphQL
    code_env: dict[str, str]
    """What compose's `code` service gets (runs execute there: DefaultRunLauncher)."""
    dagster_env: dict[str, str]
    """What the webserver, the daemon and pools-init get: Dagster's storage only."""
    storage_url: str
    warehouse_url: str
    lake_url: str
    s3_options: dict[str, str]


def _compose_services() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    return services


def _compose_env_names(service: dict[str, Any]) -> set[str]:
    return set(service.get("environment") or {})


def _pools_init_command(services: dict[str, Any]) -> list[str]:
    """pools-init's script as compose runs it (`/bin/sh -c`, compose's `$$` unescaped); its
    `dagster instance concurrency set POOL N` commands find this venv's `dagster` on PATH."""
    command = [str(c) for c in services["pools-init"]["command"]]
    assert command[:2] == ["/bin/sh", "-c"], command
    assert "dagster instance concurrency set" in command[2], "pools-init sets no pool limit"
    return ["/bin/sh", "-c", command[2].replace("$$", "$")]


def _grpc_healthy(port: int, env: dict[str, str]) -> bool | None:
    """Compose's healthcheck of `code`: `dagster api grpc-health-check -p 4000`."""
    check = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)]
    result = subprocess.run(check, env=env, capture_output=True, timeout=30, check=False)
    return True if result.returncode == 0 else None


def _server_info(url: str) -> bool | None:
    """Compose's healthcheck of `webserver`: GET /server_info."""
    try:
        return True if httpx.get(f"{url}/server_info", timeout=5).status_code == 200 else None
    except httpx.TransportError:
        return None


def _location_loaded(graphql: GraphQL) -> bool | None:
    """True once the webserver has loaded the code location from the gRPC server; a load
    error fails at once with its message."""
    data = graphql(
        """{ workspaceOrError { __typename ... on Workspace { locationEntries {
              name loadStatus
              locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"""
    )
    entries = {e["name"]: e for e in data["workspaceOrError"].get("locationEntries", [])}
    entry = entries.get(LOCATION)
    if entry is None or entry["loadStatus"] != "LOADED" or entry["locationOrLoadError"] is None:
        return None
    loaded = entry["locationOrLoadError"]
    assert loaded["__typename"] == "RepositoryLocation", f"the location failed to load: {loaded}"
    return True


def _drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _no_strays(topology: Topology) -> None:
    strays = topology.stop()
    assert not strays, f"processes outlived their service's process group: {strays}"


@pytest.fixture
def deployment(
    postgres_server: str, postgres_url: str, s3_endpoint: str, s3_bucket: str
) -> Iterator[Deployment]:
    """Starts the topology in compose's order (pools-init, code, then the webserver once code
    is healthy; the test starts the daemon) and, even on failure, ends every process it
    started, drops the warehouse database and removes its temp dir."""
    deadline = time.monotonic() + STARTUP_SECONDS
    services = _compose_services()
    with ExitStack() as cleanup:  # undone in reverse order, whatever fails
        # moto logs every S3 request of the services at INFO: it would bury a failure's report.
        werkzeug = logging.getLogger("werkzeug")
        cleanup.callback(werkzeug.setLevel, werkzeug.level)
        werkzeug.setLevel(logging.WARNING)

        root = Path(tempfile.mkdtemp(prefix="fintrack-topology-"))
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        home = root / "dagster_home"  # the image's DAGSTER_HOME, also the services' cwd
        (home / "storage").mkdir(parents=True)
        # Unmodified: the file is what is under test.
        shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")

        # The warehouse has its own database, as in compose (`fintrack` next to `dagster`).
        warehouse_db = f"fintrack_wh_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_server, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{warehouse_db}"')
        cleanup.callback(_drop_database, postgres_server, warehouse_db)
        warehouse_url = f"{postgres_server.rpartition('/')[0]}/{warehouse_db}"

        pg = urlsplit(postgres_url)
        storage_env = {
            "DAGSTER_PG_USERNAME": pg.username or "postgres",
            "DAGSTER_PG_PASSWORD": pg.password or "",
            "DAGSTER_PG_HOST": pg.hostname or "127.0.0.1",
            "DAGSTER_PG_DB": pg.path.strip("/"),
            "DAGSTER_PG_PORT": str(pg.port or 5432),
        }
        lake_url = f"s3://{s3_bucket}/lake"
        credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}
        code_only = {
            **storage_env,
            "FINTRACK_LAKE_URL": lake_url,
            "FINTRACK_WAREHOUSE_URL": warehouse_url,
            "FINTRACK_MARKET_DATA": "synthetic",
            "FINTRACK_UNIVERSE": ",".join(SYMBOLS),
            "FINTRACK_START_DATE": START_DATE,
            "FINTRACK_FRAUD_SCORER": "local",
            "POLYGON_API_KEY": "",
            "FINTRACK_MARKET_DATA_RATE_LIMIT": "",
            "AWS_ENDPOINT_URL": s3_endpoint,
            **credentials,
            "AWS_REGION": "us-east-1",
            "DAGSTER_CURRENT_IMAGE": "fintrack-assets:local",
        }
        # Each service gets exactly the variables compose gives it, with local values.
        assert set(code_only) == _compose_env_names(services["code"])
        for name in ("webserver", "daemon"):
            assert set(storage_env) == _compose_env_names(services[name]), name
        pools_env = {**storage_env, "FINTRACK_MARKET_DATA_RATE_LIMIT": ""}  # its slot count
        assert set(pools_env) == _compose_env_names(services["pools-init"])
        image_env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
        image_env |= {"DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}  # the Dockerfile's

        grpc_port, web_port = free_port(), free_port()
        workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
        workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=grpc_port)
        (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))

        web_url = f"http://127.0.0.1:{web_port}"
        topology = Topology(home, root / "logs", marker=f"DAGSTER_HOME={home}")
        cleanup.callback(_no_strays, topology)
        deployment = Deployment(
            topology=topology,
            graphql=cleanup.enter_context(GraphQL(web_url)),
            code_env={**image_env, **code_only},
            dagster_env={**image_env, **storage_env},
            storage_url=postgres_url,
            warehouse_url=warehouse_url,
            lake_url=lake_url,
            s3_options={
                "AWS_ENDPOINT_URL": s3_endpoint,
                "AWS_REGION": "us-east-1",
                "AWS_ALLOW_HTTP": "true",
                **credentials,
            },
        )
        with topology.explain():
            pools_init_env = {
                **deployment.dagster_env,
                **pools_env,
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
            topology.run("pools-init", _pools_init_command(services), pools_init_env, timeout=120)
            code = [str(BIN / "dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(grpc_port)]
            topology.start("code", [*code, "-m", LOCATION], deployment.code_env)
            topology.wait_for(
                "code healthy", lambda: _grpc_healthy(grpc_port, deployment.dagster_env), deadline
            )
            webserver = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port)]
            topology.start(
                "webserver",
                [*webserver, "-w", str(home / "workspace.yaml")],
                deployment.dagster_env,
            )
            topology.wait_for("webserver /server_info", lambda: _server_info(web_url), deadline)
            topology.wait_for(
                "code location loaded", lambda: _location_loaded(deployment.graphql), deadline
            )
        yield deployment


def _run_errors(graphql: GraphQL, run_id: str) -> str:
    """The error events of a run, for a failure message."""
    logs = graphql(RUN_ERRORS_QUERY, runId=run_id)["logsForRun"]
    lines = []
    for event in logs.get("events", []):
        error = event.get("error")
        if not error:
            continue
        lines.append(f"{event['__typename']} {event.get('stepKey')}: {event['message']}")
        if event["__typename"] == "ExecutionStepUpForRetryEvent":
            continue  # the same error again, before a retry
        for part in (error, error.get("cause")):
            if part:
                lines.append(f"{part['message']}{''.join(part['stack'] or [])}")
    return "\n".join(lines) or str(logs)


def _launch_backfill(graphql: GraphQL) -> str:
    data = graphql(
        """mutation ($params: LaunchBackfillParams!) {
             launchPartitionBackfill(backfillParams: $params) {
               __typename
               ... on LaunchBackfillSuccess { backfillId }
               ... on PythonError { message stack }
               ... on Error { message }
             } }""",
        params={
            "assetSelection": [{"path": [key]} for key in BACKFILLED],
            "partitionNames": SESSIONS,
            "title": "test_local_topology",
        },
    )
    result = data["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return str(result["backfillId"])


def _backfill_state(graphql: GraphQL, backfill_id: str) -> dict[str, Any] | None:
    """The backfill once it completed; fails at once on a failed run or backfill."""
    backfill = graphql(BACKFILL_QUERY, id=backfill_id)["partitionBackfillOrError"]
    assert backfill["__typename"] == "PartitionBackfill", backfill
    for run in backfill["runs"]:
        if run["status"] in ("FAILURE", "CANCELED"):
            raise AssertionError(
                f"run {run['runId']} of backfill {backfill_id} ended {run['status']}:\n"
                + _run_errors(graphql, run["runId"])
            )
    if backfill["status"] in BACKFILL_FAILED:
        raise AssertionError(f"backfill {backfill_id} is {backfill['status']}: {backfill['error']}")
    return backfill if backfill["status"] in BACKFILL_DONE else None


def _lake_table(deployment: Deployment, asset: str) -> pl.DataFrame:
    """A lake table read straight from S3, not through the project's IO manager."""
    table = DeltaTable(f"{deployment.lake_url}/{asset}", storage_options=deployment.s3_options)
    frame = pl.from_arrow(table.to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def _check_lake(deployment: Deployment) -> None:
    """Every symbol has a synthetic bar on every session (core/synthetic.py generates the
    full symbols x sessions grid), in raw and in bronze, and bronze rejects none of them."""
    expected = set(product(SYMBOLS, SESSIONS))
    for asset in LAKE_BARS:
        frame = _lake_table(deployment, asset)
        keys = [(s, d.isoformat()) for s, d in frame.select("symbol", "date").iter_rows()]
        assert frame.height == len(SYMBOLS) * len(SESSIONS), asset
        assert set(keys) == expected and len(set(keys)) == len(keys), asset
    assert set(_lake_table(deployment, "raw_ohlcv")["source"]) == {"synthetic"}
    assert _lake_table(deployment, "bronze_ohlcv_rejects").height == 0


def _check_storage(deployment: Deployment, backfill_id: str, run_id: str) -> None:
    """Dagster's storage on PostgreSQL holds the backfill, its one run (queued by the
    QueuedRunCoordinator of dagster.yaml, then started by the daemon) and a materialisation
    of each backfilled asset for each session."""
    with psycopg.connect(deployment.storage_url) as con:
        [(status,)] = con.execute(
            "SELECT status FROM bulk_actions WHERE key = %s", (backfill_id,)
        ).fetchall()
        assert status in BACKFILL_DONE
        runs = con.execute(
            "SELECT r.run_id, r.status, r.backfill_id FROM runs r JOIN run_tags t "
            "ON t.run_id = r.run_id WHERE t.key = 'dagster/backfill' AND t.value = %s",
            (backfill_id,),
        ).fetchall()
        assert runs == [(run_id, "SUCCESS", backfill_id)]
        events = {
            row[0]
            for row in con.execute(
                "SELECT DISTINCT dagster_event_type FROM event_logs WHERE run_id = %s",
                (run_id,),
            )
        }
        assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"} <= events
        for asset in BACKFILLED:
            partitions = {
                row[0]
                for row in con.execute(
                    "SELECT partition FROM event_logs WHERE run_id = %s "
                    "AND dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
                    (run_id, f'["{asset}"]'),
                )
            }
            assert partitions == set(SESSIONS), asset
    with psycopg.connect(deployment.warehouse_url) as con:
        [(symbols,)] = con.execute("SELECT count(*) FROM fintrack.symbol_universe").fetchall()
    assert symbols == len(SYMBOLS)


def test_backfill_through_the_webserver_lands_in_s3_and_postgres(deployment: Deployment) -> None:
    """List the assets, backfill 5 sessions of raw + bronze with GraphQL, wait for the
    daemon to run it through the queue, then check the lake and Dagster's storage directly."""
    topology, graphql = deployment.topology, deployment.graphql
    with topology.explain():
        nodes = graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
        listed = {"/".join(node["assetKey"]["path"]) for node in nodes}
        assert listed >= EXPECTED_ASSETS, f"missing assets: {sorted(EXPECTED_ASSETS - listed)}"

        # raw_ohlcv reads the unpartitioned symbol_universe from the warehouse: an operator
        # seeds it in the code container (`docker compose exec code dagster asset ...`).
        topology.run(
            "seed-symbol-universe",
            [str(BIN / "dagster"), "asset", "materialize", "-m", LOCATION, *SEED],
            deployment.code_env,
            timeout=120,
        )

        backfill_id = _launch_backfill(graphql)
        # The daemon starts now, so its first backfill tick (they come every 30 s) already
        # sees the request: the test waits one tick less, nothing else changes.
        topology.start(
            "daemon",
            [str(BIN / "dagster-daemon"), "run", "-w", str(topology.cwd / "workspace.yaml")],
            deployment.dagster_env,
        )
        backfill = topology.wait_for(
            f"backfill {backfill_id}",
            lambda: _backfill_state(graphql, backfill_id),
            deadline=time.monotonic() + BACKFILL_SECONDS,
            interval=1.0,
        )

        # One run for the five sessions (single-run backfill policies), tagged as the backfill's.
        assert backfill["isAssetBackfill"]
        selected = sorted("/".join(key["path"]) for key in backfill["assetSelection"])
        assert selected == sorted(BACKFILLED)
        [run] = backfill["runs"]
        assert run["status"] == "SUCCESS"
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert tags["dagster/backfill"] == backfill_id
        assert tags["dagster/asset_partition_range_start"] == SESSIONS[0]
        assert tags["dagster/asset_partition_range_end"] == SESSIONS[-1]

        _check_lake(deployment)
        _check_storage(deployment, backfill_id, run["runId"])
