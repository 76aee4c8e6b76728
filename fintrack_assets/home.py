"""The local Dagster instance (DAGSTER_HOME): created once, before any run, and checked.

Dagster creates an instance's SQLite storage on first use, in whichever process gets there
first. Two runs started together on a new home both create and stamp it (Dagster issue #27390):
one fails with `UNIQUE constraint failed: alembic_version.version_num`, and the home is left with
two revisions in `alembic_version`, so every later run fails with "more than one head".
`prepare_home` creates the storage under a file lock before any run starts; `doctor` finds
and, where it safely can, repairs a home broken that way.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance

DEFAULT_DAGSTER_HOME = ".fintrack/dagster"
INSTANCE_YAML = "telemetry:\n  enabled: false\n"
LOCK_FILE = ".fintrack-home.lock"
SQLITE_STORAGES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")
"""The instance-wide SQLite databases Dagster stamps with an alembic revision (a run's own event
shard, history/runs/<run id>.db, is created by that run alone)."""


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    with open(home / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def home_path() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()


def prepare_home() -> Path:
    """The instance folder with its storage created: a new one gets a dagster.yaml that turns
    Dagster's telemetry off (an existing one is left as its owner wrote it) and its databases,
    created by one process at a time, so runs started afterwards only open them."""
    home = home_path()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    with _locked(home):
        instance_yaml = home / "dagster.yaml"
        if not instance_yaml.exists() or not instance_yaml.read_text().strip():
            instance_yaml.write_text(INSTANCE_YAML)
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(home)):
            pass
    return home


def head_revision() -> str:
    """The alembic revision Dagster's current storage schema is at."""
    from alembic.script import ScriptDirectory
    from dagster._core.storage.runs.sqlite import sqlite_run_storage
    from dagster._core.storage.sql import get_alembic_config

    head = ScriptDirectory.from_config(
        get_alembic_config(sqlite_run_storage.__file__)
    ).as_revision_number("head")
    assert isinstance(head, str)
    return head


@dataclass(frozen=True)
class Finding:
    ok: bool
    line: str


def _revisions(database: Path) -> list[str] | None:
    """The rows of the database's alembic_version table; None when it has no such table."""
    with sqlite3.connect(database) as con:
        try:
            return [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]
        except sqlite3.OperationalError:
            return None


def _check_storage(database: Path, name: str, head: str, repair: bool) -> Finding:
    revisions = _revisions(database)
    if revisions == [head]:
        return Finding(True, f"ok: {name} is at Dagster's schema head {head}")
    if revisions and len(revisions) > 1 and head in revisions:
        # Two processes created this storage together: both created every table at head,
        # then the one that found the tables already there stamped an older revision too.
        if not repair:
            return Finding(False, f"broken: {name} records {len(revisions)} schema heads")
        with sqlite3.connect(database) as con:
            con.execute("DELETE FROM alembic_version WHERE version_num != ?", (head,))
        return Finding(
            True,
            f"repaired: {name} recorded {len(revisions)} schema heads "
            f"({', '.join(sorted(revisions))}); kept {head}, the one its tables were created at",
        )
    if revisions and len(revisions) == 1:
        return Finding(
            False,
            f"old schema: {name} is at {revisions[0]}, not {head}: run `dagster instance migrate`",
        )
    return Finding(
        False,
        f"broken: {name} records {'no' if not revisions else 'unknown'} schema revisions "
        f"({', '.join(revisions or []) or 'none'}): move it away (mv {database} "
        f"{database}.broken) and run `fintrack home` again; the runs it recorded are forgotten",
    )


def doctor(repair: bool = True) -> list[Finding]:
    """What is wrong with the settings and the home, one finding a line; repairs what is safe."""
    from fintrack_assets.settings import SettingsError, get_settings

    findings = []
    try:
        get_settings()
        findings.append(Finding(True, "ok: settings are valid"))
    except SettingsError as exc:
        findings.append(Finding(False, f"settings: {exc}"))
    home = home_path()
    if not (home / "dagster.yaml").is_file():
        findings.append(
            Finding(False, f"missing: {home} has no dagster.yaml: run `fintrack home` to create it")
        )
        return findings
    head = head_revision()
    with _locked(home):
        for name in SQLITE_STORAGES:
            if (home / name).is_file():
                findings.append(_check_storage(home / name, name, head, repair))
    if all(finding.ok for finding in findings[1:]):
        findings.append(_load_instance(home))
    return findings


def _load_instance(home: Path) -> Finding:
    from dagster import DagsterInstance

    try:
        with DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)
    except Exception as exc:  # any failure here is the finding: the instance does not load
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Finding(False, f"broken: the instance at {home} does not load: {first}")
    return Finding(True, f"ok: the instance at {home} loads")


POSTGRES_EVENT_LOG = "PostgresEventLogStorage"
"""dagster-postgres' event log, known by name: the package is the deployment's extra."""
POOL_RECYCLE_SECONDS = 3600
POOL_OVERFLOW = 4
"""Connections beyond the pooled one when threads of the step store events at once."""


class HeldEventLog:
    """Connections of our own to the local instance's SQLite event log (the index shard and the
    run's shard) while a step stores its events; `close` lets them go.

    Dagster's SQLite event log opens and closes a connection for every event it stores. When
    the connection closing is the database's last, SQLite checkpoints the write-ahead log into
    the database and deletes it, with its fsyncs: a range run's thousands of per-partition
    materialisation events each paid that. While another connection is open the closing one is
    not the last, so an event costs its insert and commit only; the log is still checkpointed
    as it grows (SQLite's automatic checkpoint) and when the last connection closes. The held
    connections never read or write a row; they close with `close`, or when this object is let
    go (a sqlite3 connection closes when collected) or its process ends.

    dagster-postgres does the same outside its webserver: a new connection per event (three
    server sessions per stored event, ~45 ms each under load). There the instance keeps one
    pooled connection for the step instead, through its own `optimize_for_webserver` (what the
    webserver calls at start; no statement timeout here: a write is never cut short). In
    memory: nothing to do."""

    def __init__(self, instance: DagsterInstance | None, run_id: str | None) -> None:
        self._connections: list[sqlite3.Connection] = []
        from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
            INDEX_SHARD_NAME,
            SqliteEventLogStorage,
        )

        storage = instance.event_log_storage if instance is not None else None
        if type(storage).__name__ == POSTGRES_EVENT_LOG and instance is not None:
            instance.optimize_for_webserver(
                statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=POOL_OVERFLOW
            )
            return
        if not isinstance(storage, SqliteEventLogStorage) or run_id is None:
            return
        for shard in (INDEX_SHARD_NAME, run_id):
            path = storage.path_for_shard(shard)
            if os.path.exists(path):
                connection = sqlite3.connect(path, check_same_thread=False)
                connection.execute("PRAGMA schema_version").fetchone()  # opens the log
                self._connections.append(connection)

    @property
    def held(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections = []
