"""summarise_run reads a finished run back from the instance: a range run over three
partitions beside an unpartitioned asset and its checks, and a run whose step fails."""

import pytest
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
    asset_check,
)

from fintrack_assets.runs import summarise_run

KEYS = StaticPartitionsDefinition(["a", "b", "c"])
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@asset(partitions_def=KEYS, backfill_policy=BackfillPolicy.single_run())
def parted(context: AssetExecutionContext) -> MaterializeResult:
    """Each partition reports its own rows: 1, 2 and 3, and names itself."""
    for rows, key in enumerate(context.partition_keys, start=1):
        context.add_asset_metadata({"dagster/row_count": rows, "own": key}, partition_key=key)
    return MaterializeResult()


@asset(deps=[parted])
def whole() -> MaterializeResult:
    return MaterializeResult(metadata={"dagster/row_count": 5})


@asset_check(asset=whole)
def positive() -> AssetCheckResult:
    return AssetCheckResult(passed=True, metadata={"seconds": 0.25})


@asset_check(asset=whole, name="session_freshness")
def late() -> AssetCheckResult:
    return AssetCheckResult(passed=False)


@asset
def broken() -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("boom") from exc


DEFS = Definitions(assets=[parted, whole, broken], asset_checks=[positive, late])


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


def test_a_range_run_sums_its_partitions_and_keeps_freshness_apart(instance):
    job = DEFS.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("parted"), AssetKey("whole")}
    )
    tags = {"dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "c"}
    result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET)
    run = summarise_run(instance, result.run_id)

    assert run.run_id == result.run_id and run.success
    assert run.partitions == {"parted": {"a", "b", "c"}}
    assert run.rows == {"parted": 1 + 2 + 3, "whole": 5}
    assert run.metadata["parted"]["own"].value == "c"  # the last partition's
    assert list(run.asset_steps.items()) == [("parted", "parted"), ("whole", "whole")]
    assert set(run.step_seconds) == {"parted", "whole", "whole_positive", "whole_session_freshness"}
    assert all(seconds >= 0 for seconds in run.step_seconds.values())
    assert run.checks == {"positive": True}
    assert run.asset_checks == {("whole", "positive"): True}
    assert run.check_metadata[("whole", "positive")]["seconds"].value == 0.25
    assert run.freshness_checked == {"whole"}
    assert run.failures == {} and run.failure == "" and run.reason() == ""


def test_a_failed_step_keeps_its_error_and_causes_and_names_the_innermost(instance):
    job = DEFS.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("broken")}
    )
    result = job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
    run = summarise_run(instance, result.run_id)

    assert not run.success
    assert run.failures == {
        "broken": [
            "dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while "
            'executing op "broken":',
            "ValueError: boom",
            "KeyError: 'missing'",
        ]
    }
    assert run.failure.splitlines() == run.failures["broken"]
    assert run.reason() == "step broken failed: KeyError: 'missing'"
    assert run.partitions == {} and run.rows == {} and run.step_seconds == {}
