"""The deployment files (docker-compose.yml, Dockerfile, deploy/) agree with the
code: no Docker engine runs here, so every service, port, variable and volume they name is
checked against the code and each other, and dagster.yaml starts a real instance on
PostgreSQL."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("postgres", "minio", "minio-init", "pools-init", "code", "webserver", "daemon")
DAGSTER_SERVICES = ("code", "webserver", "daemon", "pools-init")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` with the defaults (the shell sets nothing here)."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    return _interpolate(raw_compose)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _pools_init_limits(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """The pool limits pools-init's script sets under `env`: the script run by /bin/sh with
    `dagster` a shell function that prints its arguments."""
    command = _command(service)
    assert command[:2] == ["/bin/sh", "-c"]
    done = subprocess.run(
        ["/bin/sh", "-c", 'dagster() { echo "$@"; }; ' + command[2]],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(re.findall(r"^instance concurrency set (\w+) (\d+)$", done.stdout, re.M))


def _settings_variables() -> set[str]:
    source = (ROOT / "fintrack_assets" / "settings.py").read_text()
    names = set(re.findall(r"""get\(\s*"([A-Z][A-Z0-9_]+)\"""", source))
    names |= set(re.findall(r'"((?:FINTRACK|AWS)_[A-Z0-9_]+)"', source))
    return names


def _dagster_yaml_env_vars() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                found.add(node["env"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text()))
    return found


def test_services_exist(services: dict[str, Any]) -> None:
    assert set(SERVICES) <= set(services)


def test_one_image_for_code_webserver_and_daemon(services: dict[str, Any]) -> None:
    images = {services[name].get("image") for name in DAGSTER_SERVICES}
    assert len(images) == 1 and None not in images
    for name in DAGSTER_SERVICES:
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
        assert (ROOT / services[name]["build"]["context"] / "Dockerfile").is_file()


def test_fintrack_variables_are_the_ones_settings_reads(services: dict[str, Any]) -> None:
    known = _settings_variables()
    assert {"FINTRACK_LAKE_URL", "FINTRACK_WAREHOUSE_URL", "AWS_ENDPOINT_URL"} <= known
    for name, service in services.items():
        for variable in _env(service):
            if variable.startswith(("FINTRACK_", "POLYGON_")):
                assert variable in known, f"{name} sets {variable}, which settings.py never reads"
    code_env = _env(services["code"])
    assert {"FINTRACK_LAKE_URL", "FINTRACK_WAREHOUSE_URL"} <= set(code_env)
    assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(
        code_env
    )


def test_compose_settings_load(services: dict[str, Any]) -> None:
    """The code server's environment is one settings.py accepts."""
    from fintrack_assets.settings import Settings

    settings = Settings.from_env(_env(services["code"]))
    assert settings.lake_is_s3
    assert settings.warehouse_backend == "postgresql"
    assert settings.s3_storage_options["AWS_ALLOW_HTTP"] == "true"


def test_ports(services: dict[str, Any]) -> None:
    assert "3000:3000" in services["webserver"]["ports"]
    assert "3000" in _command(services["webserver"])
    code_ports = [str(p) for p in services["code"].get("expose", [])]
    code_ports += [str(p).rsplit(":", 1)[-1] for p in services["code"].get("ports", [])]
    assert "4000" in code_ports
    command = _command(services["code"])
    assert command[command.index("-p") + 1] == "4000"
    assert "grpc-health-check" in services["code"]["healthcheck"]["test"]
    assert "4000" in services["code"]["healthcheck"]["test"]


def test_healthchecks(services: dict[str, Any]) -> None:
    for name in ("postgres", "minio", "code", "webserver"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                used.add(source)
    assert used, "no named volumes"
    assert used <= declared, f"undeclared volumes {used - declared}"
    assert declared <= used, f"unused volumes {declared - used}"
    assert {"postgres_data", "minio_data"} <= used


def test_dependencies(services: dict[str, Any]) -> None:
    for name in ("webserver", "daemon"):
        depends = services[name]["depends_on"]
        assert depends["code"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["pools-init"]["condition"] == "service_completed_successfully"
    assert services["code"]["depends_on"]["minio-init"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name, service in services.items():
        assert set(service.get("depends_on") or {}) <= set(services), name


def test_warehouse_is_the_postgres_service(services: dict[str, Any]) -> None:
    url = urlsplit(_env(services["code"])["FINTRACK_WAREHOUSE_URL"])
    assert url.scheme == "postgresql" and url.hostname == "postgres" and url.port == 5432
    pg_env = _env(services["postgres"])
    assert url.username == pg_env["POSTGRES_USER"]
    assert url.password == pg_env["POSTGRES_PASSWORD"]
    database = url.path.strip("/")
    init = (ROOT / "deploy" / "postgres-init.sql").read_text()
    assert re.search(rf"CREATE DATABASE {database}\b", init), "warehouse database not created"
    assert database != pg_env["POSTGRES_DB"]  # Dagster's storage has its own database


def test_lake_bucket_is_created_on_the_minio_service(services: dict[str, Any]) -> None:
    env = _env(services["code"])
    assert urlsplit(env["AWS_ENDPOINT_URL"]).hostname == "minio"
    assert urlsplit(env["AWS_ENDPOINT_URL"]).port == 9000
    assert "9000:9000" in services["minio"]["ports"]
    lake = urlsplit(env["FINTRACK_LAKE_URL"])
    assert lake.scheme == "s3"
    script = " ".join(_command(services["minio-init"]))
    created = re.findall(r"mc mb (?:--\S+ )*local/([\w.-]+)", script)
    assert created == [lake.netloc]
    assert "http://minio:9000" in script
    minio_env = _env(services["minio"])
    assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_dagster_storage_variables(services: dict[str, Any]) -> None:
    names = _dagster_yaml_env_vars()
    assert names == {
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_PORT",
    }
    pg_env = _env(services["postgres"])
    for name in DAGSTER_SERVICES:
        env = _env(services[name])
        assert names <= set(env), f"{name} misses {names - set(env)}"
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert env["DAGSTER_PG_PORT"] == "5432"
        assert env["DAGSTER_PG_DB"] == pg_env["POSTGRES_DB"]
        assert env["DAGSTER_PG_USERNAME"] == pg_env["POSTGRES_USER"]
        assert env["DAGSTER_PG_PASSWORD"] == pg_env["POSTGRES_PASSWORD"]


def test_workspace_targets_the_code_service(services: dict[str, Any]) -> None:
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    grpc = entry["grpc_server"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert grpc["host"] == "code"
    assert str(grpc["port"]) == "4000"
    assert grpc["location_name"] == pyproject["tool"]["dagster"]["code_location_name"]
    for name in ("webserver", "daemon"):
        command = _command(services[name])
        assert command[command.index("-w") + 1] == "/opt/dagster/dagster_home/workspace.yaml"


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^EXPOSE .*\b4000\b", text, re.M)
    assert re.search(r"^EXPOSE .*\b3000\b", text, re.M)
    assert re.search(r"^USER (?!root)\S+", text, re.M), "runs as root"
    assert 'pip install ".[deploy]"' in text
    assert "COPY --chown=dagster:dagster deploy/dagster.yaml" in text
    assert "deploy/workspace.yaml" in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd is not None
    args = yaml.safe_load(cmd.group(1))
    assert args[:3] == ["dagster", "api", "grpc"]
    assert args[args.index("-m") + 1] == "fintrack_assets"
    assert args[args.index("-p") + 1] == "4000"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["module_name"] == "fintrack_assets"
    deploy = pyproject["project"]["optional-dependencies"]["deploy"]
    assert any(d.startswith("dagster-postgres") for d in deploy)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".fintrack", "benchmarks/results"} <= set(ignored)


def test_dagster_yaml_instance_on_postgres(
    postgres_url: str, services: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dagster.yaml starts a real instance on PostgreSQL (tables created), with the queue,
    backfill limit, pools, run retries and run monitoring it declares; pools-init's commands
    set the limits."""
    from click.testing import CliRunner
    from dagster import AssetsDefinition, DagsterInstance
    from dagster._cli.instance import instance_cli

    url = urlsplit(postgres_url)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_HOST", url.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_DB", url.path.strip("/"))
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))

    # pools-init's commands, run through Dagster's own CLI against this instance: one
    # market-data slot per key once a per-minute budget is set, else 2.
    budgeted = _pools_init_limits(services["pools-init"], {"FINTRACK_MARKET_DATA_RATE_LIMIT": "5"})
    assert budgeted == {"market_data_api": "1", "warehouse_writer": "4"}
    settings = _pools_init_limits(services["pools-init"], _env(services["pools-init"]))
    assert settings == {"market_data_api": "2", "warehouse_writer": "4"}
    for pool, limit in settings.items():
        result = CliRunner().invoke(instance_cli, ["concurrency", "set", pool, limit])
        assert result.exit_code == 0, result.output

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        # DefaultRunLauncher cannot check a run's worker, so only a runtime limit ends a run
        # whose worker was killed; a cancel it never acknowledges then times out.
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert not instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 180
        assert 6 * 3600 <= instance.run_monitoring_max_runtime_seconds <= 24 * 3600
        assert 0 < instance.run_monitoring_cancel_timeout_seconds <= 600
        config = instance.get_concurrency_config()
        queue = config.run_queue_config
        assert queue is not None and queue.max_concurrent_runs > 0
        assert {"key": "dagster/backfill", "limit": 2} in queue.tag_concurrency_limits
        assert config.pool_config.default_pool_limit == 1
        storage = instance.event_log_storage
        assert storage.get_concurrency_info("market_data_api").slot_count == 2
        assert storage.get_concurrency_info("warehouse_writer").slot_count == 4
        from fintrack_assets.definitions import defs as load_defs

        defs = load_defs()

        used = {
            asset.op.pool
            for asset in defs.assets
            if isinstance(asset, AssetsDefinition) and asset.is_executable and asset.op.pool
        }
        assert used == set(settings)  # every pool the assets use is set
        # An unconfigured pool takes the default limit (one at a time) on first use.
        assert storage.initialize_concurrency_limit_to_default("some_new_pool")
        assert storage.get_concurrency_info("some_new_pool").slot_count == 1
        # Storage works: the schema exists and is current.
        assert instance.get_runs() == []

    import psycopg

    with psycopg.connect(postgres_url) as con:
        tables = {
            row[0]
            for row in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"runs", "event_logs", "jobs", "concurrency_limits", "alembic_version"} <= tables


def test_every_shipped_data_file_is_package_data() -> None:
    """A non-editable install (the Docker image's `pip install .`) carries every file under
    fintrack_assets/data, the sp500_history spells and their LICENSE included."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["fintrack_assets"]
    data = ROOT / "fintrack_assets"
    shipped = [
        path.relative_to(data).as_posix()
        for path in (data / "data").rglob("*")
        if path.is_file() and path.name != "README.md" and "__pycache__" not in path.parts
    ]
    assert "data/sp500_history/LICENSE" in shipped
    assert "data/sp500_history/sp500_ticker_start_end.csv" in shipped
    missing = [f for f in shipped if not any(fnmatch.fnmatchcase(f, g) for g in globs)]
    assert missing == []
