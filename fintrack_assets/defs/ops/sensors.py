"""The sensors that watch the whole platform: declarative automation, and failed runs."""

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG as RANGE_END_TAG,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_START_TAG as RANGE_START_TAG,
)

from fintrack_assets.resources.alerts import AlertWebhook

automation_sensor = AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (a new bronze session flows to "
    "silver, holdings and risk) every 30 seconds.",
)
"""Declared so it starts RUNNING: the one Dagster makes by itself starts stopped."""


@run_failure_sensor(
    name="run_failure_alert",
    default_status=DefaultSensorStatus.RUNNING,
    description="Logs every failed run and, when FINTRACK_ALERT_WEBHOOK_URL is set, POSTs it "
    "there with retries.",
)
def run_failure_alert(context: RunFailureSensorContext, alert_webhook: AlertWebhook) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "the run failed"
    payload: dict[str, object] = {
        "text": f"fintrack: run {run.run_id} of {run.job_name} failed",
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition")
        or " .. ".join(
            t for t in (run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)) if t
        ),
        "error": message[:1000],
    }
    context.log.error(f"ALERT: {payload['text']}: {payload['error']}")
    alert_webhook.send(payload, context.log)
