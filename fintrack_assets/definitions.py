"""Assembles the code location: the domains under `defs/`, then what depends on the settings
(partitions from FINTRACK_START_DATE, catalog entries, resources).

Importing this module reads no environment: `defs` is Dagster's lazy loader, so a bad setting
shows as the code location's load error (one line naming the variable), and `fintrack --help`
works whatever the environment says.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from collections.abc import Mapping
from typing import Any

from dagster import (
    ComponentTree,
    Definitions,
    EnvVar,
    ExecutorDefinition,
    PreviewWarning,
    definitions,
    in_process_executor,
    map_asset_specs,
    multiprocess_executor,
)

from fintrack_assets.catalog import PACKAGE_ROOT, catalog
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.reader import UpstreamReader
from fintrack_assets.io_managers.warehouse import WarehouseIOManager
from fintrack_assets.partitions import partitions_for
from fintrack_assets.resources.alerts import AlertWebhook
from fintrack_assets.resources.fraud_scorers import FraudScorer
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets.settings import DEFAULT_POLYGON_URL, Settings, get_settings


@functools.cache
def domains() -> Definitions:
    """Everything under `defs/`, one folder per domain, found by Dagster's autoloader (what
    `dg` projects use). Loaded from the imported package rather than from pyproject.toml, so
    an installed copy (the deployment image) finds it too. It does not depend on the settings,
    so the folder is walked once per process however many code locations are built."""
    tree = ComponentTree.from_module(
        defs_module=importlib.import_module("fintrack_assets.defs"),
        project_root=PACKAGE_ROOT.parent,
    )
    with warnings.catch_warnings():
        # The autoloader calls Dagster's module loader, marked preview; nothing a user can act on.
        warnings.simplefilter("ignore", PreviewWarning)
        return tree.build_defs()


def build_resources(settings: Settings) -> dict[str, object]:
    """Secrets stay references to environment variables, so the UI never shows them."""
    if settings.warehouse_backend == "postgresql":
        warehouse = WarehouseIOManager(url=EnvVar("FINTRACK_WAREHOUSE_URL"))
    else:
        warehouse = WarehouseIOManager(url=settings.warehouse_url.value)
    lake_options = {
        key: value
        for key, value in settings.s3_storage_options.items()
        if key in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ALLOW_HTTP")
    }
    lake = LakeIOManager(
        lake_url=settings.lake_url, storage_options=lake_options if settings.lake_is_s3 else {}
    )
    return {
        "lake": lake,
        "warehouse": warehouse,
        "upstream_reader": UpstreamReader(lake=lake, warehouse=warehouse),
        "market_data": MarketDataResource(
            source=settings.market_data,
            polygon_api_key=EnvVar("POLYGON_API_KEY") if settings.polygon_api_key else None,
            polygon_base_url=(
                EnvVar("FINTRACK_POLYGON_URL")
                if settings.polygon_url.value != DEFAULT_POLYGON_URL
                else DEFAULT_POLYGON_URL
            ),
            rate_limit_per_minute=settings.market_data_rate_limit,
        ),
        "alert_webhook": AlertWebhook(
            url=EnvVar("FINTRACK_ALERT_WEBHOOK_URL") if settings.alert_webhook_url else None
        ),
        "fraud_scorer": FraudScorer(
            kind=settings.fraud_scorer,
            api_url=EnvVar("FINTRACK_FRAUD_API_URL") if settings.fraud_api_url else None,
            api_token=EnvVar("FINTRACK_FRAUD_API_TOKEN") if settings.fraud_api_token else None,
        ),
    }


def build_defs(settings: Settings, resources: Mapping[str, Any] | None = None) -> Definitions:
    """The code location; `resources` replaces named ones (another provider, say). Partitions
    start at FINTRACK_START_DATE: each kind's template (partitions.py) is swapped for the
    settings' object of that kind."""
    found = domains()
    assets = map_asset_specs(partitions_for(settings.start_date).declared_by, found.assets or [])
    return Definitions(
        assets=catalog(assets, settings),
        asset_checks=found.asset_checks,
        jobs=found.jobs,
        schedules=found.schedules,
        sensors=found.sensors,
        resources={**build_resources(settings), **(resources or {})},
        executor=executor_for(settings),
    )


def executor_for(settings: Settings) -> ExecutorDefinition:
    """The embedded default runs a run's steps in its own process: its DuckDB file takes one
    writer at a time anyway, and a step process of its own costs each step seconds of start-up
    (an interpreter importing the code location) before any work. With a PostgreSQL warehouse
    (the deployment) steps run in processes of their own, in parallel where the graph allows."""
    if settings.warehouse_backend == "postgresql":
        return multiprocess_executor
    return in_process_executor


PLANNED_EVENTS_AS_SUBSETS = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
"""Dagster plans a single-run range as one event per asset (its partitions as a subset) rather
than one per partition when this is true: a 2,000-session backfill starts without first
storing 2,000 events per asset. The price: partitions of a run that fails show as missing, not
failed (docs/decisions.md). Set to false to keep one planned event per partition."""


def plan_range_runs_per_asset() -> None:
    """In this process, runs created from here on plan a range per asset unless the
    environment already says otherwise: `dagster asset materialize -m fintrack_assets` (it
    loads `defs`) and `fintrack demo` call it; the deployment image sets the same for the
    webserver and the daemon."""
    os.environ.setdefault(PLANNED_EVENTS_AS_SUBSETS, "true")


@definitions
def defs() -> Definitions:
    """What `dagster dev -m fintrack_assets` loads: the settings are read here, not on import."""
    plan_range_runs_per_asset()
    return build_defs(get_settings())
