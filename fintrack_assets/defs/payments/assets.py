"""Payments: landing files in, validated transactions and rejects, fraud predictions out."""

import datetime as dt
import time
from collections.abc import Iterator
from hashlib import sha256
from typing import Any

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    BackfillPolicy,
    Config,
    MetadataValue,
    Output,
    ResourceParam,
    multi_asset,
)
from pydantic import Field

from fintrack_assets.core.display import percent, rate
from fintrack_assets.core.fraud_features import payment_features
from fintrack_assets.core.payments import PAYMENT_SCHEMA, REJECT_SCHEMA, read_payments
from fintrack_assets.core.payments import reject_counts as payment_reject_counts
from fintrack_assets.core.progress import Meter
from fintrack_assets.io_managers.context import NotMaterialised, Rows
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.reader import UpstreamReader
from fintrack_assets.metadata import (
    WAREHOUSE_POOL,
    add_partition_metadata,
    contract_check,
    contract_spec,
    reason_metadata,
    reject_share_check,
    reject_share_spec,
    share_threshold,
)
from fintrack_assets.partitions import calendar_days, window_dates
from fintrack_assets.resources.fraud_scorers import FraudScorer
from fintrack_assets.resources.landing import LandingFile, LandingZone
from fintrack_assets.schemas import PaymentTransaction
from fintrack_assets.subsets import companion, companion_outs, is_selected

PAYMENTS = "payment_transactions"
REJECTS = "payment_transaction_rejects"
PREDICTIONS = "fraud_predictions"
FAILURES = "fraud_prediction_failures"
FINGERPRINT = "landing_fingerprint"
"""The metadata key under which each payment_transactions partition records the fingerprint of
the files it read (landing_fingerprint)."""
HISTORY_COLUMNS = ["account_id", "ts", "amount", "merchant"]
"""What the features look back on."""
PAYMENTS_KEY = AssetKey(PAYMENTS)


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def landing_zone(lake: LakeIOManager) -> LandingZone:
    return LandingZone(lake.lake_url, lake.storage_options)


def _source(zone: LandingZone, file: LandingFile) -> str:
    """The file as the rejects table names it: its key under the dataset's folder."""
    return file.path.removeprefix(zone.folder(PAYMENTS) + "/")


def landing_fingerprint(zone: LandingZone, files: list[LandingFile]) -> str:
    """What a day's files are: each one's key under the dataset's folder, version (the ETag
    where the store gives one, else its modification time) and size, hashed. Equal
    fingerprints mean the same files, unchanged."""
    versions = "\n".join(
        f"{_source(zone, f)}|{f.etag or f.mtime.isoformat()}|{f.size}"
        for f in sorted(files, key=lambda f: f.path)
    )
    return sha256(versions.encode()).hexdigest()[:16]


_DAILY_FRAUD_ASSET: dict[str, Any] = {
    "partitions_def": calendar_days,
    "backfill_policy": BackfillPolicy.single_run(),
    "group_name": "fraud",
    "pool": WAREHOUSE_POOL,
    "can_subset": True,
}
"""What both payment multi-assets share: a day a partition, ranges in one run, warehouse
writers, a main table selectable apart from its companion."""


class PaymentsConfig(Config):
    chunk_rows: int = Field(
        default=5000,
        description="Rows of a landing file parsed at a time: memory stays flat whatever "
        "the file's size.",
    )
    max_reject_share: float = share_threshold(
        0.01, "The reject_share check warns above this share of rows refused"
    )


@multi_asset(
    outs=companion_outs(
        "warehouse",
        {
            PAYMENTS: "Valid payment transactions from "
            "<lake>/landing/payment_transactions/date=YYYY-MM-DD/*.csv; `date` is the UTC day.",
            REJECTS: "Payment rows refused, with file, line and reason.",
        },
    ),
    **_DAILY_FRAUD_ASSET,
    check_specs=[
        reject_share_spec(PAYMENTS, "Few payment rows refused."),
        contract_spec(PaymentTransaction, PAYMENTS, blocking=True),
    ],
)
def payment_transactions(
    context: AssetExecutionContext, config: PaymentsConfig, lake: ResourceParam[LakeIOManager]
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    """Streams each day's files in chunks; a bad row is a reject, a file that cannot be read
    is one reject naming it, and the other files go on. Each day records the fingerprint of
    the files it read, which payment_files_sensor compares before requesting the day again."""
    started = time.perf_counter()
    start, end = window_dates(context.partition_time_window)
    zone = landing_zone(lake)
    valid: list[pl.DataFrame] = []
    rejected: list[pl.DataFrame] = []
    files_read = 0
    per_day: dict[str, dict[str, object]] = {}
    days = _days(start, end)
    progress = Meter(len(days))
    for day in days:
        seen: set[str] = set()
        day_good = day_bad = 0
        files = zone.list_files(PAYMENTS, day)
        per_day[day.isoformat()] = {
            "files": len(files),
            FINGERPRINT: MetadataValue.text(landing_fingerprint(zone, files)),
        }
        for file in files:
            source = _source(zone, file)
            good = bad = 0
            try:
                with zone.open(file) as stream:
                    for rows, rejects in read_payments(
                        stream, source, day, config.chunk_rows, seen
                    ):
                        valid.append(rows.with_columns(pl.lit(day).alias("date")))
                        rejected.append(rejects.with_columns(pl.lit(day).alias("date")))
                        good, bad = good + rows.height, bad + rejects.height
            except OSError as error:
                context.log.error(f"{source}: unreadable, skipped: {error}")
                rejected.append(
                    pl.DataFrame(
                        [{"file": source, "reason": "unreadable_file", "raw": str(error)[:200]}],
                        schema={c: REJECT_SCHEMA[c] for c in ("file", "reason", "raw")},
                    ).with_columns(pl.lit(day).alias("date"))
                )
            files_read += 1
            day_good, day_bad = day_good + good, day_bad + bad
            context.log.info(f"{source}: {good:,} valid, {bad:,} rejected")
        progress.advance()
        read = (
            f"{len(files)} file(s), {day_good:,} valid, {day_bad:,} rejected"
            if files
            else f"no files under {zone.folder(PAYMENTS)}/date={day}/"
        )
        context.log.info(progress.line("day", f"{day}: {read}"))
    payments = _concat(valid, {**PAYMENT_SCHEMA, "date": pl.Date()})
    rejects = _concat(rejected, {**REJECT_SCHEMA, "date": pl.Date()})
    seconds = time.perf_counter() - started
    counts = payment_reject_counts(rejects)
    total = payments.height + rejects.height
    context.log.info(
        f"{files_read} file(s) over {len(days)} day(s): {payments.height:,} "
        f"valid, {rejects.height:,} rejected in {seconds:.2f} s"
    )
    yield from companion(
        context,
        Output(rejects, output_name=REJECTS),
        run=reason_metadata(counts),
    )
    if not is_selected(context, PAYMENTS):
        return
    add_partition_metadata(
        context,
        PAYMENTS,
        payments,
        "date",
        run={
            "files": files_read,
            "rejected_rows": rejects.height,
            "read_seconds": round(seconds, 3),
            "throughput": rate(total, seconds),
        },
        partitions=per_day,
    )
    yield Output(payments, output_name=PAYMENTS)
    yield reject_share_check(
        PAYMENTS,
        rejects.height,
        total,
        threshold=config.max_reject_share,
        severity=AssetCheckSeverity.WARN,
        counts=counts,
        metadata={"rows": total},
    )
    yield contract_check(PaymentTransaction, payments, PAYMENTS)


def _concat(frames: list[pl.DataFrame], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """One frame of `schema` from chunks that may lack columns (an unreadable file's reject
    has no line). No chunks (a day without files) is no rows, not one row of nulls."""
    if not frames:
        return pl.DataFrame(schema=schema)
    frame = pl.concat(frames, how="diagonal_relaxed")
    return frame.select(
        (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
        for c, t in schema.items()
    )


class FraudConfig(Config):
    history_days: int = Field(
        default=30,
        description="Days of earlier transactions the features look back over (amount "
        "z-score, velocity, first time at a merchant).",
    )


@multi_asset(
    outs={
        PREDICTIONS: AssetOut(
            io_manager_key="warehouse",
            is_required=False,
            kinds={"polars"},
            description="Per transaction: fraud_score in [0, 1], is_fraud, model_version, "
            "reasons, scored_at. A re-run replaces its days: an upsert by transaction_id, "
            "since a transaction's day is its timestamp's.",
        ),
        FAILURES: AssetOut(
            io_manager_key="warehouse",
            is_required=False,
            kinds={"polars"},
            description="Transactions whose scoring batch failed after its retries, with the "
            "batch, error and attempts: scored again by the next run of their day.",
        ),
    },
    ins={PAYMENTS: AssetIn(), REJECTS: AssetIn()},
    **_DAILY_FRAUD_ASSET,
    check_specs=[
        AssetCheckSpec(
            "no_failed_batches",
            asset=PREDICTIONS,
            description="Every transaction of the run was scored.",
        )
    ],
)
def fraud_predictions(
    context: AssetExecutionContext,
    config: FraudConfig,
    payment_transactions: pl.DataFrame,
    payment_transaction_rejects: pl.DataFrame,
    fraud_scorer: FraudScorer,
    upstream_reader: UpstreamReader,
) -> Iterator[Output[pl.DataFrame] | AssetCheckResult]:
    """Features from each account's earlier transactions only, then the configured scorer;
    batches that fail after their retries are listed, and the rest of the run completes."""
    started = time.perf_counter()
    start, _ = window_dates(context.partition_time_window)
    look_back = (start - dt.timedelta(days=config.history_days), start)
    history = _history(context, upstream_reader, look_back)
    history_read = time.perf_counter()
    features = payment_features(payment_transactions, history, config.history_days)
    featured = time.perf_counter()
    result = fraud_scorer.score(features, context.log)
    scored = time.perf_counter()
    days = payment_transactions.select("transaction_id", "date")
    now = dt.datetime.now(dt.UTC)
    predictions = (
        result.predictions.join(days, on="transaction_id", how="left")
        .with_columns(pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("scored_at"))
        .select(
            "transaction_id",
            "date",
            "fraud_score",
            "is_fraud",
            "model_version",
            "reasons",
            "scored_at",
        )
    )
    failures = result.failed_ids.join(days, on="transaction_id", how="left").select(
        "transaction_id", "date", "batch", "error", "attempts"
    )
    seconds = time.perf_counter() - started
    processed = payment_transactions.height
    flagged = int(predictions["is_fraud"].sum() or 0)
    context.log.info(
        f"{processed:,} transactions: {flagged:,} flagged, {failures.height:,} not scored "
        f"({result.stats.failed_batches} failed batches); history {history.height:,} rows "
        f"read in {history_read - started:.2f} s, features {featured - history_read:.2f} s, "
        f"scoring {scored - featured:.2f} s"
    )
    yield from companion(context, Output(failures, output_name=FAILURES))
    if not is_selected(context, PREDICTIONS):
        return
    add_partition_metadata(
        context,
        PREDICTIONS,
        predictions,
        "date",
        run={
            "processed": processed,
            "invalid": payment_transaction_rejects.height,
            "failed": failures.height,
            "flagged": flagged,
            "fraud_rate": percent(flagged / predictions.height if predictions.height else 0.0),
            "throughput": rate(processed, seconds),
            "seconds": round(seconds, 3),
            "history_read_seconds": round(history_read - started, 3),
            "feature_seconds": round(featured - history_read, 3),
            "scoring_seconds": round(scored - featured, 3),
            "history_rows": history.height,
        },
        partitions=_daily_fraud(predictions),
    )
    yield Output(
        predictions,
        output_name=PREDICTIONS,
        metadata={
            "scorer": fraud_scorer.kind,
            "model_version": MetadataValue.text(
                ", ".join(sorted(predictions["model_version"].unique().drop_nulls().to_list()))
            ),
        },
    )
    errors = (
        failures.group_by("error").len().sort("len", descending=True).head(5)
        if not failures.is_empty()
        else failures.select("error")
    )
    yield AssetCheckResult(
        check_name="no_failed_batches",
        asset_key=PREDICTIONS,
        passed=failures.is_empty(),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "failed_batches": result.stats.failed_batches,
            "failed_transactions": failures.height,
            "errors": MetadataValue.md(
                "\n".join(f"- {row[0]} ({row[1]})" for row in errors.iter_rows())
                if not failures.is_empty()
                else "none"
            ),
        },
    )


def _daily_fraud(predictions: pl.DataFrame) -> dict[str, dict[str, object]]:
    """Each day's own flagged count and fraud rate."""
    daily = predictions.group_by("date").agg(
        pl.len().alias("scored"), pl.col("is_fraud").sum().alias("flagged")
    )
    return {
        day.isoformat(): {"flagged": flagged, "fraud_rate": percent(flagged / scored)}
        for day, scored, flagged in daily.iter_rows()
    }


def _history(
    context: AssetExecutionContext, reader: UpstreamReader, window: tuple[dt.date, dt.date]
) -> pl.DataFrame:
    """Stored transactions of the [start, end) `window`: what the run's first day looks back
    on. Later days of a range also look back on the range's own earlier days, passed with
    them. The look-back is the run's config, so the upstream reader reads it, not a partition
    mapping."""
    try:
        return reader.read(context, PAYMENTS_KEY, Rows(window=window, columns=HISTORY_COLUMNS))
    except NotMaterialised:
        return pl.DataFrame(schema={c: PAYMENT_SCHEMA[c] for c in HISTORY_COLUMNS})
