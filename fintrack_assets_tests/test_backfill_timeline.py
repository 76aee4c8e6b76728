"""The backfill benchmark's reading of a run (benchmarks/backfill.py `read_timeline`): steps in
order, materialisations and check evaluations per step, planned check rows and the assets' own
time, from a real range run of two small assets on an ephemeral instance."""

import time

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from benchmarks.backfill import CHECK_PLANNED, MATERIALISATION, PLANNED, read_timeline
from benchmarks.common import scoped_environ
from benchmarks.market import RunStats
from fintrack_assets.definitions import PLANNED_EVENTS_AS_SUBSETS
from fintrack_assets.runs import summarise_run

KEYS = StaticPartitionsDefinition(["a", "b", "c", "d"])
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@asset(partitions_def=KEYS, backfill_policy=BackfillPolicy.single_run())
def first(context: AssetExecutionContext) -> MaterializeResult:
    """Reports its own compute time, on every partition (the reader takes the last one's)."""
    for key in context.partition_keys:
        context.add_asset_metadata({"dagster/row_count": 1}, partition_key=key)
    return MaterializeResult(metadata={"compute_seconds": 0.25})


@asset(
    partitions_def=KEYS,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[first],
    check_specs=[AssetCheckSpec("fine", asset="second", partitions_def=KEYS)],
)
def second(context: AssetExecutionContext):
    for key in context.partition_keys:
        context.add_asset_metadata({"dagster/row_count": 2}, partition_key=key)
    yield MaterializeResult(metadata={"compute_seconds": 0.5, "lake_write_seconds": 0.125})
    yield AssetCheckResult(check_name="fine", passed=True, metadata={"seconds": 0.0625})


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.mark.parametrize("planned_per_asset", ["true", "false"])
def test_a_range_run_read_back_step_by_step(instance, planned_per_asset):
    job = Definitions(assets=[first, second]).resolve_implicit_global_asset_job_def()
    tags = {ASSET_PARTITION_RANGE_START_TAG: "a", ASSET_PARTITION_RANGE_END_TAG: "c"}
    with scoped_environ({PLANNED_EVENTS_AS_SUBSETS: planned_per_asset}):
        launched = time.time()
        result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET)
        exited = time.time()
    stats = RunStats(summarise_run(instance, result.run_id), exited - launched)

    timeline = read_timeline(instance, result.run_id, launched, exited, stats)

    assert [step.step for step in timeline.steps] == ["first", "second"]
    one, two = timeline.steps
    # Three partitions (a..c) each: one materialisation per partition per asset.
    assert (one.materialisations, two.materialisations) == (3, 3)
    assert timeline.counts[MATERIALISATION] == 6
    assert (one.check_evaluations, two.check_evaluations) == (0, 1)
    # A partitioned check is planned in one event either way, a row per partition (the
    # project's checks take their asset's partitions).
    assert timeline.counts[CHECK_PLANNED] == 1
    assert timeline.planned_check_rows == 3
    assert timeline.counts[PLANNED] == (2 if planned_per_asset == "true" else 6)
    # Own time: the assets' timing metadata and the check's seconds (no inputs loaded).
    assert one.own_seconds == 0.25
    assert two.own_seconds == 0.5 + 0.125 + 0.0625
    assert timeline.own_seconds == 0.9375
    assert timeline.wall == exited - launched
    assert timeline.bookkeeping_share == 1 - 0.9375 / (exited - launched)
    assert timeline.events == len(instance.all_logs(result.run_id))
    assert launched <= timeline.first_event <= timeline.run_start <= one.start
    assert one.success <= two.start <= two.success <= timeline.run_end <= exited
    assert one.spawn_seconds == two.spawn_seconds == 0.0  # in process: no step is spawned
