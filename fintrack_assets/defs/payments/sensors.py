"""Payment files landing drive the payments job: a day runs when its files, as they are now,
have not been processed."""

import datetime as dt
import json

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInvariantViolationError,
    DefaultSensorStatus,
    PartitionsDefinition,
    ResourceParam,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from fintrack_assets.defs.payments.assets import (
    FINGERPRINT,
    PAYMENTS,
    landing_fingerprint,
    landing_zone,
)
from fintrack_assets.defs.payments.jobs import payments_job
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.resources.landing import LandingFile


def _cursor(raw: str | None) -> tuple[str, set[str]]:
    if not raw:
        return "", set()
    state = json.loads(raw)
    return state["mtime"], set(state["keys"])


@sensor(
    job=payments_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests a day's payments_job run when files land or change under "
    "<lake>/landing/payment_transactions/date=YYYY-MM-DD/, unless that day's files, as they "
    "are now, have been processed already.",
)
def payment_files_sensor(
    context: SensorEvaluationContext, lake: ResourceParam[LakeIOManager]
) -> SensorResult | SkipReason:
    """The cursor is the newest modification time seen and the keys that carry it, so files
    are listed once, in (mtime, key) order. A day with a new file is requested unless the
    latest materialisation of its payment_transactions partition, by whatever run (the demo's,
    a backfill, this sensor's), records the same fingerprint of the day's files. The run key
    is that fingerprint: a file never triggers twice, a file uploaded again with new content
    does."""
    zone = landing_zone(lake)
    days = _calendar_days(context)
    newest, keys_at_newest = _cursor(context.cursor)
    listed = zone.list_files(PAYMENTS, recursive=True)
    files = [
        f
        for f in listed
        if f.mtime.isoformat() > newest
        or (f.mtime.isoformat() == newest and f.path not in keys_at_newest)
    ]
    if not files:
        return SkipReason("no new or changed payment files")
    by_day: dict[dt.date, list[LandingFile]] = {}
    for file in listed:
        if (day := zone.day_of(file)) is not None:
            by_day.setdefault(day, []).append(file)
    changed: set[dt.date] = set()
    ignored: list[str] = []
    for file in files:
        day = zone.day_of(file)
        if day is None:
            reason = zone.why_no_day(file)
            context.log.warning(f"{file.path}: {reason}, so no day to run; ignored")
            ignored.append(f"{file.path} ({reason})")
            continue
        changed.add(day)
    requests = []
    for day in sorted(changed):
        key = day.isoformat()
        if not days.has_partition_key(key):
            context.log.warning(f"{key}: files landed for a day outside calendar_days; ignored")
            continue
        fingerprint = landing_fingerprint(zone, by_day[day])
        if _processed_fingerprint(context, key) == fingerprint:
            context.log.info(f"{key}: these files have been processed already; not requested")
            continue
        requests.append(
            RunRequest(
                run_key=f"{key}:{fingerprint}",
                partition_key=key,
                tags={"fintrack/files": str(len(by_day[day]))},
            )
        )
    latest = max(f.mtime.isoformat() for f in files)
    keys = {f.path for f in files if f.mtime.isoformat() == latest}
    if latest == newest:
        keys |= keys_at_newest
    return SensorResult(
        run_requests=requests,
        skip_reason=None if requests else _skip_reason(bool(changed), ignored),
        cursor=json.dumps({"mtime": latest, "keys": sorted(keys)}),
    )


def _skip_reason(any_day: bool, ignored: list[str]) -> str:
    reason = "every changed day's files are processed already" if any_day else "no day changed"
    if ignored:
        reason += f"; ignored {len(ignored)} file(s) with no day: {'; '.join(ignored)}"
    return reason


def _calendar_days(context: SensorEvaluationContext) -> PartitionsDefinition:
    """payment_transactions' partitions as the code location built them (they start at
    FINTRACK_START_DATE, which the module-level template does not know)."""
    if context.repository_def is None:
        raise DagsterInvariantViolationError(
            "payment_files_sensor needs its code location: build_sensor_context(definitions=...)"
        )
    partitions = context.repository_def.asset_graph.get(AssetKey(PAYMENTS)).partitions_def
    assert partitions is not None, f"{PAYMENTS} is partitioned by calendar_days"
    return partitions


def _processed_fingerprint(context: SensorEvaluationContext, key: str) -> str | None:
    """The file fingerprint on the day's latest payment_transactions materialisation."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(PAYMENTS), asset_partitions=[key]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    value = materialization.metadata.get(FINGERPRINT) if materialization else None
    return str(value.value) if value is not None else None
