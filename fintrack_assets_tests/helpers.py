"""Running the project's jobs the way the UI and the CLI do, on a test's own storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, JobDefinition

from fintrack_assets.core.silver import INTERVALS
from fintrack_assets.definitions import build_defs
from fintrack_assets.defs.silver.assets import silver_key
from fintrack_assets.io_managers.lake import LakeTable
from fintrack_assets.io_managers.warehouse import warehouse_for
from fintrack_assets.runs import RunSummary, summarise_run
from fintrack_assets.settings import Settings

BRONZE_LAYER = ["raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects"]
SILVER = [silver_key(n) for n in INTERVALS]
MARKET_LAYERS = [*BRONZE_LAYER, *SILVER]
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def month_of(day: str) -> str:
    """The session_months key of an ISO day."""
    return f"{day[:7]}-01"


def _range(first: str, last: str | None) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last or first,
    }


def merged(summaries: list[RunSummary]) -> RunSummary:
    """One summary of consecutive runs: the last run's id, success only if every run
    succeeded, and what each run materialised and checked."""
    total = RunSummary(summaries[-1].run_id, all(s.success for s in summaries))
    for summary in summaries:
        for asset, keys in summary.partitions.items():
            total.partitions[asset] |= keys
        for name in ("rows", "metadata", "asset_steps", "step_seconds", "checks"):
            getattr(total, name).update(getattr(summary, name))
        for name in ("asset_checks", "check_metadata", "failures"):
            getattr(total, name).update(getattr(summary, name))
        total.freshness_checked |= summary.freshness_checked
    return total


class Platform:
    """One lake + warehouse + Dagster instance, as a user's deployment would have."""

    def __init__(
        self,
        env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
        resources: dict[str, Any] | None = None,
    ) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        self.settings = Settings.from_env()
        self.defs: Definitions = build_defs(self.settings, resources)
        self.instance = DagsterInstance.ephemeral()
        self.env = env

    def universe(self, spec: str | None = None, **options: Any) -> RunSummary:
        """`symbol_universe` for `spec` (default the settings'), `options` its other config."""
        job = self.defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("symbol_universe")}
        )
        universe = {"universe": spec or self.settings.universe, **options}
        config = {"ops": {"symbol_universe": {"config": universe}}}
        return self._run(job, {}, {**QUIET, **config})

    def market(
        self,
        first: str,
        last: str | None = None,
        assets: list[str] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> RunSummary:
        """daily_market_job over [first, last] in one run, by default raw -> bronze only."""
        return self.daily(first, last, assets or BRONZE_LAYER, run_config)

    def daily(
        self,
        first: str,
        last: str | None = None,
        assets: list[str] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> RunSummary:
        """raw -> bronze -> silver for the sessions [first, last], or `assets` (holdings and
        risk are the portfolio tests' own): daily_market_job over the sessions in one run, then
        silver_job over their months in one more, as the UI's "materialize" of both does. One
        summary of both runs."""
        selected = assets or MARKET_LAYERS
        sessions = [a for a in selected if a not in SILVER]
        bars = [a for a in selected if a in SILVER]
        summaries = []
        if sessions:
            job = self.defs.resolve_job_def("daily_market_job").get_subset(
                asset_selection={AssetKey(a) for a in sessions}
            )
            summaries.append(self._run(job, _range(first, last), {**QUIET, **(run_config or {})}))
        if bars and all(s.success for s in summaries):
            summaries.append(self.silver(month_of(first), month_of(last or first), bars))
        return merged(summaries)

    def silver(
        self, first: str, last: str | None = None, assets: list[str] | None = None
    ) -> RunSummary:
        """silver_job over the months [first, last] (keys YYYY-MM-01) in one run."""
        job = self.defs.resolve_job_def("silver_job").get_subset(
            asset_selection={AssetKey(a) for a in assets or SILVER}
        )
        return self._run(job, _range(first, last), QUIET)

    def _run(self, job: JobDefinition, tags: dict, run_config: dict) -> RunSummary:
        result = job.execute_in_process(
            instance=self.instance, tags=tags, run_config=run_config, raise_on_error=False
        )
        return summarise_run(self.instance, result.run_id)

    def lake(self, asset: str) -> LakeTable:
        resource = self.defs.resources["lake"]
        return resource.table([asset])  # type: ignore[union-attr]

    def lake_frame(self, asset: str) -> pl.DataFrame:
        return self.lake(asset).read_window().sort("symbol", "date")

    def warehouse_frame(self, table: str) -> pl.DataFrame:
        return warehouse_for(self.settings.warehouse_url.value).read(table)


def local_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, universe: str = "AAPL,MSFT,SPY"
) -> Platform:
    """A local lake and an embedded DuckDB under `tmp_path`, with `symbol_universe` loaded."""
    platform = Platform(
        {
            "FINTRACK_UNIVERSE": universe,
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
        },
        monkeypatch,
    )
    assert platform.universe().success
    return platform


def yfinance_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, universe: str, market_data: Any
) -> Platform:
    """A local platform on the yfinance source, served by `market_data` (recorded answers),
    partitions from 2024, with `symbol_universe` loaded."""
    platform = Platform(
        {
            "FINTRACK_MARKET_DATA": "yfinance",
            "FINTRACK_UNIVERSE": universe,
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
            "FINTRACK_START_DATE": "2024-01-02",
        },
        monkeypatch,
        resources={"market_data": market_data},
    )
    assert platform.universe().success
    return platform
