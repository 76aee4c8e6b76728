"""The backfill benchmark's reading of a run (benchmarks/backfill.py `read_timeline`): steps in
order, materialisations and check evaluations per step, planned check rows and the assets' own
time, from a real range run of two small assets on an ephemeral instance; and a backfill of
two runs one after the other (`Backfill`), as the CLI rows take it."""

import time

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    Output,
    StaticPartitionsDefinition,
    asset,
    multi_asset,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from benchmarks.backfill import CHECK_PLANNED, MATERIALISATION, PLANNED, Backfill, read_timeline
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
    assert timeline.events == len(instance.all_logs(result.run_id))
    assert launched <= timeline.first_event <= timeline.run_start <= one.start
    assert one.success <= two.start <= two.success <= timeline.run_end <= exited
    assert one.spawn_seconds == two.spawn_seconds == 0.0  # in process: no step is spawned


def test_a_backfill_of_two_runs_sums_them_over_the_wall_of_both(instance):
    job = Definitions(assets=[first, second]).resolve_implicit_global_asset_job_def()
    tags = {ASSET_PARTITION_RANGE_START_TAG: "a", ASSET_PARTITION_RANGE_END_TAG: "d"}
    timelines = []
    for selected in (first, second):
        subset = job.get_subset(asset_selection={selected.key})
        with scoped_environ({PLANNED_EVENTS_AS_SUBSETS: "true"}):
            launched = time.time()
            result = subset.execute_in_process(instance=instance, tags=tags, run_config=QUIET)
            exited = time.time()
        stats = RunStats(summarise_run(instance, result.run_id), exited - launched)
        timelines.append(read_timeline(instance, result.run_id, launched, exited, stats))
    one, two = timelines

    backfill = Backfill(timelines)

    # The wall runs from the first launch to the last exit; the rest adds up.
    assert backfill.wall == two.exited - one.launched
    assert backfill.own_seconds == 0.25 + 0.5 + 0.125 + 0.0625
    assert backfill.bookkeeping_share == 1 - 0.9375 / backfill.wall
    # Four partitions (a..d) of each asset, each in its own run.
    assert backfill.counts[MATERIALISATION] == 8
    assert backfill.counts[CHECK_PLANNED] == 1
    assert backfill.events == sum(len(instance.all_logs(run.run_id)) for run in instance.get_runs())
    assert backfill.totals().startswith("2 runs: ")
    assert backfill.phases().startswith("run 1 (") and " | run 2 (" in backfill.phases()


@multi_asset(
    specs=[AssetSpec("left", partitions_def=KEYS), AssetSpec("right", partitions_def=KEYS)],
    backfill_policy=BackfillPolicy.single_run(),
)
def pair(context: AssetExecutionContext):
    """Like silver: one read for both outputs, recorded on each, and a compute of each own."""
    for name, compute in (("left", 0.25), ("right", 0.5)):
        for key in context.partition_keys:
            context.add_asset_metadata({"dagster/row_count": 1}, asset_key=name, partition_key=key)
        context.add_asset_metadata(
            {"bronze_read_seconds": 2.0, "compute_seconds": compute}, asset_key=name
        )
        yield Output(None, output_name=name)


def test_a_figure_shared_by_a_steps_outputs_counts_once(instance):
    job = Definitions(assets=[pair]).resolve_implicit_global_asset_job_def()
    tags = {ASSET_PARTITION_RANGE_START_TAG: "a", ASSET_PARTITION_RANGE_END_TAG: "b"}
    launched = time.time()
    result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET)
    exited = time.time()
    stats = RunStats(summarise_run(instance, result.run_id), exited - launched)

    timeline = read_timeline(instance, result.run_id, launched, exited, stats)

    assert timeline.own_seconds == 2.0 + 0.25 + 0.5
