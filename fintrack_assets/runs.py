"""What a run did, read back from its events in the instance's event log.

`fintrack demo`'s table, the tests' platform and the benchmarks all summarise their runs here,
so each reads Dagster's events the same way, whoever started the run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dagster import DagsterEventType, DagsterInstance, MetadataValue

from fintrack_assets.defs.ops.checks import FRESHNESS_CHECK

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

SUMMARISED = {
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_CHECK_EVALUATION,
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
}
"""The only events a summary reads: a range run's log is mostly planned events."""


@dataclass
class RunSummary:
    """One run's outcome: what it materialised, what its checks said, where it failed."""

    run_id: str
    success: bool
    partitions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Partitions materialised, by asset; an unpartitioned asset has none listed."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows written, by asset: its partitions' `dagster/row_count` added up (a range run
    reports each partition's own rows), or an unpartitioned asset's count."""
    metadata: dict[str, dict[str, MetadataValue]] = field(default_factory=dict)
    """By asset, the metadata of its last partition (the greatest key: Dagster need not store a
    range run's partitions in order), where a range run puts its own figures (`run/...`); an
    unpartitioned asset's last materialisation's."""
    asset_steps: dict[str, str] = field(default_factory=dict)
    """The step that materialised each asset, in the order the run first materialised them."""
    step_seconds: dict[str, float] = field(default_factory=dict)
    """Each successful step's duration."""
    checks: dict[str, bool] = field(default_factory=dict)
    """By check name (names repeat across the silver intervals: see asset_checks)."""
    asset_checks: dict[tuple[str, str], bool] = field(default_factory=dict)
    """By (asset, check name)."""
    check_metadata: dict[tuple[str, str], dict[str, MetadataValue]] = field(default_factory=dict)
    freshness_checked: set[str] = field(default_factory=set)
    """Assets whose session_freshness ran, kept out of the other check fields: it judges the
    wall clock's session, not the run's."""
    failures: dict[str, list[str]] = field(default_factory=dict)
    """By failed step, its error's message then its causes', each as Python prints it."""

    @property
    def failure(self) -> str:
        """Every failed step's error messages, one a line; empty when no step failed."""
        return "\n".join(message for messages in self.failures.values() for message in messages)

    def reason(self) -> str:
        """Why the run failed, in one line: each failed step with its innermost cause, where
        the reason is (`step b failed: ValueError: boom`); empty for a run that succeeded."""
        if self.success:
            return ""
        steps = "; ".join(
            f"step {step} failed: {' '.join(messages[-1].split())}"
            for step, messages in self.failures.items()
            if messages
        )
        return steps or "the run failed outside its steps"


def summarise_run(instance: DagsterInstance, run_id: str) -> RunSummary:
    """The summary of run `run_id`, finished, from `instance`'s storage."""
    run = instance.get_run_by_id(run_id)
    summary = RunSummary(run_id, success=run is not None and run.is_success)
    partition_rows: dict[str, dict[str, int]] = defaultdict(dict)
    last_partition: dict[str, str] = {}
    for entry in instance.all_logs(run_id, of_type=SUMMARISED):
        event = entry.dagster_event
        if event is None:
            continue
        step = event.step_key or ""
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            asset = materialization.asset_key.to_user_string()
            partition = materialization.partition or ""
            if partition:
                summary.partitions[asset].add(partition)
            if partition >= last_partition.get(asset, ""):
                last_partition[asset] = partition
                summary.metadata[asset] = dict(materialization.metadata)
            count = materialization.metadata.get("dagster/row_count")
            if count is not None and isinstance(count.value, int | float):
                partition_rows[asset][partition] = int(count.value)
            summary.asset_steps[asset] = step
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            asset = evaluation.asset_key.to_user_string()
            if evaluation.check_name == FRESHNESS_CHECK:
                summary.freshness_checked.add(asset)
                continue
            summary.checks[evaluation.check_name] = evaluation.passed
            summary.asset_checks[(asset, evaluation.check_name)] = evaluation.passed
            summary.check_metadata[(asset, evaluation.check_name)] = dict(evaluation.metadata)
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            summary.step_seconds[step] = event.step_success_data.duration_ms / 1000
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            summary.failures[step] = _messages(event.step_failure_data.error)
    summary.rows = {asset: sum(rows.values()) for asset, rows in partition_rows.items()}
    return summary


def _messages(error: SerializableErrorInfo | None) -> list[str]:
    messages = []
    while error is not None:
        messages.append(error.message.strip())
        error = error.cause
    return messages
