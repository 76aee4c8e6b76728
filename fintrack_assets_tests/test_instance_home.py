"""DAGSTER_HOME: created once by `fintrack home` before runs start, checked by `fintrack doctor`.

Real processes throughout: `fintrack` and `dagster asset materialize` as a user runs them, two
runs released together by a barrier on a home that `fintrack home` prepared.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import (
    AssetMaterialization,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    EventLogEntry,
)
from dagster._core.events import StepMaterializationData

from fintrack_assets.home import SQLITE_STORAGES, HeldEventLog

BIN = Path(sys.executable).parent
MATERIALIZE = ["asset", "materialize", "-m", "fintrack_assets", "--select", "symbol_universe"]
# The child imports everything first, says it is ready, and starts the run when released.
BARRIER_CHILD = (
    "import sys\n"
    "from dagster._cli import main\n"
    "import fintrack_assets.definitions\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "sys.argv = ['dagster', *sys.argv[1:]]\n"
    "sys.exit(main())\n"
)
TRIES = 1


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(root / "home"),
        "FINTRACK_LAKE_URL": str(root / "lake"),
        "FINTRACK_WAREHOUSE_URL": f"duckdb:///{root / 'warehouse.duckdb'}",
    }


def _fintrack(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fintrack"), *args], env=_env(root), capture_output=True, text=True, timeout=120
    )


def _materialize(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dagster"), *MATERIALIZE],
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=180,
    )


def _two_runs_together(root: Path) -> list[tuple[int, str]]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", BARRIER_CHILD, *MATERIALIZE],
            env=_env(root),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = []
    for child in children:
        out, err = child.communicate(timeout=180)
        results.append((child.returncode, out + err))
    return results


def _revisions(database: Path) -> list[str]:
    with sqlite3.connect(database) as con:
        return [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]


def _head() -> str:
    # Dagster's migration scripts, read independently of fintrack_assets.home.
    import dagster
    from alembic.script import ScriptDirectory

    scripts = Path(dagster.__file__).parent / "_core" / "storage" / "alembic"
    head = ScriptDirectory(str(scripts)).get_current_head()
    assert head is not None
    return head


def test_fintrack_home_creates_the_instance_storage_at_one_head(tmp_path: Path) -> None:
    done = _fintrack(tmp_path, "home")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "home")
    head = _head()
    for name in SQLITE_STORAGES:
        assert _revisions(tmp_path / "home" / name) == [head], name


@pytest.mark.parametrize("attempt", range(TRIES))
def test_two_runs_started_together_on_a_prepared_home_both_succeed(
    tmp_path: Path, attempt: int
) -> None:
    assert _fintrack(tmp_path, "home").returncode == 0
    for returncode, output in _two_runs_together(tmp_path):
        assert returncode == 0, output[-3000:]
    third = _materialize(tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]


def _broken_by_two_heads(root: Path) -> Path:
    """The state the race leaves: runs.db's tables created at head and stamped twice, once at
    head and once at the revision Dagster stamps when it finds the tables already there."""
    assert _fintrack(root, "home").returncode == 0
    runs_db = root / "home" / "history" / "runs.db"
    with sqlite3.connect(runs_db) as con:
        con.execute("INSERT INTO alembic_version VALUES ('5771160a95ad')")
    return runs_db


def test_doctor_reports_a_healthy_home(tmp_path: Path) -> None:
    assert _fintrack(tmp_path, "home").returncode == 0
    done = _fintrack(tmp_path, "doctor")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("ok: ") for line in lines), lines
    assert done.stderr == ""


def test_doctor_repairs_a_home_with_two_schema_heads(tmp_path: Path) -> None:
    runs_db = _broken_by_two_heads(tmp_path)
    broken = _materialize(tmp_path)
    assert broken.returncode != 0
    assert "more than one head" in broken.stdout + broken.stderr
    done = _fintrack(tmp_path, "doctor")
    assert done.returncode == 0, done.stderr
    assert "repaired: history/runs.db recorded 2 schema heads" in done.stdout
    assert _revisions(runs_db) == [_head()]
    again = _materialize(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _fintrack(tmp_path, "doctor").stdout.count("ok: ") == 5


def test_doctor_names_the_file_to_move_away_when_it_cannot_repair(tmp_path: Path) -> None:
    assert _fintrack(tmp_path, "home").returncode == 0
    index_db = tmp_path / "home" / "history" / "runs" / "index.db"
    with sqlite3.connect(index_db) as con:
        con.execute("UPDATE alembic_version SET version_num = '5771160a95ad'")
        con.execute("INSERT INTO alembic_version VALUES ('6df03f4b1efb')")
    done = _fintrack(tmp_path, "doctor")
    assert done.returncode == 1
    [line] = [line for line in done.stderr.splitlines() if "index.db" in line]
    assert f"mv {index_db} {index_db}.broken" in line
    index_db.rename(f"{index_db}.broken")
    assert _fintrack(tmp_path, "home").returncode == 0
    healed = _fintrack(tmp_path, "doctor")
    assert healed.returncode == 0, healed.stderr


def _store_an_event(instance: DagsterInstance, run_id: str) -> None:
    """An asset event, which Dagster's SQLite event log stores in the run's shard and the index
    shard, each through a connection it opens and closes."""

    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="held",
        event_specific_data=StepMaterializationData(AssetMaterialization("held")),
    )
    instance.store_event(
        EventLogEntry(
            user_message="",
            level=20,
            job_name="held",
            run_id=run_id,
            error_info=None,
            timestamp=1.0,
            dagster_event=event,
        )
    )


def test_a_held_event_log_keeps_its_write_ahead_logs_until_let_go(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    runs = home / "history" / "runs"
    with DagsterInstance.from_config(str(home)) as instance:
        _store_an_event(instance, "first")  # creates both shards
        # Alone, the connection storing an event is the last to close: SQLite checkpoints the
        # write-ahead log into the database and deletes it, after every event.
        assert not (runs / "index.db-wal").exists() and not (runs / "first.db-wal").exists()
        held = HeldEventLog(instance, "first")
        assert held.held == 2
        _store_an_event(instance, "first")
        assert (runs / "index.db-wal").exists() and (runs / "first.db-wal").exists()
        held.close()
        assert not (runs / "index.db-wal").exists() and not (runs / "first.db-wal").exists()
        assert len(instance.all_logs("first")) == 2  # nothing lost
    with DagsterInstance.ephemeral() as memory:
        assert HeldEventLog(memory, "any").held == 0
