"""The code location's shape, pinned: asset keys and their upstreams, partitions, automation
conditions, backfill policies, groups, kinds, pools and IO managers; every check; every job (and
what it selects), schedule and sensor. A restructuring that moves code around must leave this
file's snapshot as it is; a change that means to alter the graph updates the snapshot in the same
commit, so the diff shows what changed for users.

Regenerate with
`FINTRACK_SNAPSHOT_UPDATE=1 pytest fintrack_assets_tests/test_definitions_snapshot.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import AssetKey, PartitionsDefinition
from dagster._serdes import serialize_value

from fintrack_assets.definitions import build_defs
from fintrack_assets.settings import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def _partitions(partitions_def: PartitionsDefinition | None) -> str | None:
    """The kind in words (cron, first partition, time zone, offset) and, for trading_days, the
    excluded weekdays' count: enough to tell the three kinds and their first day apart."""
    if partitions_def is None:
        return None
    text = str(partitions_def)
    exclusions = getattr(partitions_def, "exclusions", None)
    return f"{text} ({len(exclusions)} exclusions)" if exclusions else text


def _key(key: AssetKey) -> str:
    return key.to_user_string()


def shape(settings: Settings) -> dict[str, Any]:
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=_key):
        node = graph.get(key)
        condition = node.automation_condition
        assets[_key(key)] = {
            "upstream": sorted(_key(parent) for parent in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "automation_condition": json.loads(serialize_value(condition)) if condition else None,
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "pools": sorted(node.pools or ()),
            "owners": list(node.owners),
            "io_manager_key": node.io_manager_key if node.is_materializable else None,
        }
    checks = sorted(f"{_key(check.asset_key)}:{check.name}" for check in graph.asset_check_keys)
    jobs = {
        job.name: sorted(_key(k) for k in job.asset_layer.selected_asset_keys)
        + sorted(
            f"{_key(c.asset_key)}:{c.name}" for c in job.asset_layer.asset_graph.asset_check_keys
        )
        or sorted(f"op:{name}" for name in job.graph.node_names())
        for job in repo.get_all_jobs()
        if not job.name.startswith("__")
    }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "status": str(s.default_status),
        }
        for s in repo.schedule_defs
    }
    sensors = {
        s.name: {
            "type": type(s).__name__,
            "status": str(s.default_status),
            "jobs": sorted(t.job_name for t in s.targets),
        }
        for s in repo.sensor_defs
    }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
    }


def test_the_code_location_keeps_its_shape() -> None:
    current = shape(Settings.from_env({}))
    if os.environ.get("FINTRACK_SNAPSHOT_UPDATE") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(SNAPSHOT.read_text())
    for part in pinned:
        assert current[part] == pinned[part], f"the definitions' {part} changed"
    assert current.keys() == pinned.keys()
