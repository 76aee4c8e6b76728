"""`add_partition_metadata` counts each partition's rows in its own time window, whatever the
partitions (sessions, months), and gives every partition the same metadata whether or not its
count is the run's most common one."""

import datetime as dt
from typing import Any

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    BackfillPolicy,
    DagsterInstance,
    InMemoryIOManager,
    MonthlyPartitionsDefinition,
    PartitionsDefinition,
    asset,
    materialize,
)

from fintrack_assets.metadata import add_partition_metadata
from fintrack_assets.partitions import partitions_for


def _run(
    partitions_def: PartitionsDefinition, days: list[str], first: str, last: str
) -> dict[str, dict[str, Any]]:
    """Materialises a tiny asset holding one row per entry of `days` over [first, last] in one
    run; each partition's stored metadata, by key."""
    frame = pl.DataFrame({"date": [dt.date.fromisoformat(d) for d in days], "x": range(len(days))})

    @asset(
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        io_manager_key="memory",
    )
    def tiny(context: AssetExecutionContext) -> None:
        add_partition_metadata(
            context,
            "tiny",
            frame,
            "date",
            run={"note": "ran"},
            partitions={first: {"extra": 1}},
        )

    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [tiny],
            instance=instance,
            resources={"memory": InMemoryIOManager()},
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            raise_on_error=True,
        )
        assert result.success
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("tiny")), limit=100
        ).records
        return {
            r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()}
            for r in records
            if r.asset_materialization is not None and r.partition_key is not None
        }


def test_monthly_partitions_count_the_rows_of_their_month():
    months = MonthlyPartitionsDefinition(start_date="2025-01-01", timezone="America/New_York")
    days = [
        "2025-07-01",
        "2025-07-15",
        "2025-07-31",  # July: 3
        "2025-08-29",  # August: 1
        # September: none
        "2025-10-01",  # after the run's last month: counted nowhere
    ]
    figures = _run(months, days, "2025-07-01", "2025-09-01")
    assert {key: f["dagster/row_count"] for key, f in figures.items()} == {
        "2025-07-01": 3,
        "2025-08-01": 1,
        "2025-09-01": 0,
    }
    assert figures["2025-07-01"]["extra"] == 1
    assert "extra" not in figures["2025-08-01"]
    last = figures["2025-09-01"]
    assert last["run/partitions"] == 3 and last["run/rows"] == 5 and last["run/note"] == "ran"
    assert not any(k.startswith("run/") for k in figures["2025-07-01"] | figures["2025-08-01"])


def test_sessions_count_their_own_day_and_the_days_to_the_next_tick():
    sessions = partitions_for(dt.date(2025, 1, 2)).trading_days
    days = [
        *["2025-07-02"] * 2,
        "2025-07-03",
        "2025-07-04",  # Independence Day: no session's window holds it
        *["2025-07-07"] * 2,
        *["2025-07-08"] * 2,
        *["2025-07-09"] * 2,
        *["2025-07-10"] * 2,
        *["2025-07-11"] * 2,
        "2025-07-12",  # a Saturday: in Friday's window, which runs to Monday 16:05
    ]
    figures = _run(sessions, days, "2025-07-02", "2025-07-11")
    assert {key: f["dagster/row_count"] for key, f in figures.items()} == {
        "2025-07-02": 2,
        "2025-07-03": 1,
        "2025-07-07": 2,
        "2025-07-08": 2,
        "2025-07-09": 2,
        "2025-07-10": 2,
        "2025-07-11": 3,
    }
    # Every partition carries exactly its own figures, the common count included.
    assert figures["2025-07-08"] == {"dagster/row_count": 2}
    assert figures["2025-07-02"] == {"dagster/row_count": 2, "extra": 1}
    assert figures["2025-07-11"]["run/rows"] == len(days)
