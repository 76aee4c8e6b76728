"""Payments: landing files in, validated transactions and rejects, fraud predictions out."""

import datetime as dt
import tempfile
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any, cast

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
    Nothing,
    Output,
    ResourceParam,
    multi_asset,
)
from pydantic import Field

from fintrack_assets.core.display import percent, rate
from fintrack_assets.core.payments import PAYMENT_SCHEMA, REJECT_SCHEMA, SeenIds, read_payments
from fintrack_assets.core.payments import reject_counts as payment_reject_counts
from fintrack_assets.core.progress import Meter
from fintrack_assets.io_managers.context import FrameStream, TableIOManager
from fintrack_assets.io_managers.lake import LakeIOManager
from fintrack_assets.io_managers.payment_history import LookBack, PaymentHistory
from fintrack_assets.io_managers.reader import UpstreamReader
from fintrack_assets.metadata import (
    WAREHOUSE_POOL,
    add_partition_metadata,
    contract_outcome,
    contract_spec,
    reason_metadata,
    reject_share_check,
    reject_share_spec,
    share_threshold,
)
from fintrack_assets.partitions import calendar_days, window_dates
from fintrack_assets.resources.fraud_scorers import FraudScorer
from fintrack_assets.resources.fraud_scoring import PREDICTION_SCHEMA
from fintrack_assets.resources.landing import LandingFile, LandingZone
from fintrack_assets.schemas import PaymentTransaction, contract_failures
from fintrack_assets.subsets import companion, companion_outs, is_selected

PAYMENTS = "payment_transactions"
REJECTS = "payment_transaction_rejects"
PREDICTIONS = "fraud_predictions"
FAILURES = "fraud_prediction_failures"
FINGERPRINT = "landing_fingerprint"
"""The metadata key under which each payment_transactions partition records the fingerprint of
the files it read (landing_fingerprint)."""
SHARD_ROWS = 300_000
"""fraud_predictions' default shard size, in payments of the day: featuring and scoring hold
~1.7 KB per payment of the shard (measured 2026-12-07: 2.5M a shard peaked at 5.6 GB;
docs/decisions.md, "Payments at volume"). Since the day is read once and split into shard
files, more shards cost little; 300,000 leaves room beside DuckDB's write buffer (the 10M day
peaked at 1.97 GB with 500,000, 2026-12-06)."""
WRITE_ROWS = 250_000
"""payment_transactions' default write batch."""
FAILURE_COLUMNS: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "date": pl.Date(),
    "batch": pl.Int64(),
    "error": pl.String(),
    "attempts": pl.Int64(),
}
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
    write_rows: int = Field(
        default=WRITE_ROWS,
        description="Valid rows checked against the contract and written to the warehouse "
        "at a time (the window is replaced atomically when the last batch is in).",
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
) -> Iterator[Output[pl.DataFrame | None] | AssetCheckResult]:
    """Streams each day's files in chunks straight into the warehouse, `write_rows` at a
    time, each batch checked against the contract as it goes: memory holds a batch, never
    the day. The window is replaced atomically once the last batch is in. A bad row is a
    reject, a file that cannot be read is one reject naming it, and the other files go on.
    Each day records the fingerprint of the files it read, which payment_files_sensor
    compares before requesting the day again."""
    started = time.perf_counter()
    start, end = window_dates(context.partition_time_window)
    zone = landing_zone(lake)
    rejected: list[pl.DataFrame] = []
    files_read = 0
    per_day: dict[str, dict[str, object]] = {}
    days = _days(start, end)
    counts: dict[dt.date, int] = {}
    failures: list[str] = []
    preview: list[pl.DataFrame] = []
    schema = {**PAYMENT_SCHEMA, "date": pl.Date()}

    def chunks() -> Iterator[pl.DataFrame]:
        nonlocal files_read
        progress = Meter(len(days))
        for day in days:
            seen = SeenIds()
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
                            yield rows.with_columns(pl.lit(day).alias("date"))
                            rejected.append(rejects.with_columns(pl.lit(day).alias("date")))
                            good, bad = good + rows.height, bad + rejects.height
                except OSError as error:
                    context.log.error(f"{source}: unreadable, skipped: {error}")
                    rejected.append(
                        pl.DataFrame(
                            [
                                {
                                    "file": source,
                                    "reason": "unreadable_file",
                                    "raw": str(error)[:200],
                                }
                            ],
                            schema={c: REJECT_SCHEMA[c] for c in ("file", "reason", "raw")},
                        ).with_columns(pl.lit(day).alias("date"))
                    )
                files_read += 1
                day_good, day_bad = day_good + good, day_bad + bad
                context.log.info(f"{source}: {good:,} valid, {bad:,} rejected")
            counts[day] = day_good
            progress.advance()
            read = (
                f"{len(files)} file(s), {day_good:,} valid, {day_bad:,} rejected"
                if files
                else f"no files under {zone.folder(PAYMENTS)}/date={day}/"
            )
            context.log.info(progress.line("day", f"{day}: {read}"))

    def batches() -> Iterator[pl.DataFrame]:
        """The chunks in batches of write_rows, each checked against the contract."""
        for batch in _batched(chunks(), schema, config.write_rows):
            failed = contract_failures(PaymentTransaction, batch)
            if failed is not None:
                failures.append(failed)
            if not preview:
                preview.append(batch.head(10))
            yield batch

    selected = is_selected(context, PAYMENTS)
    if selected:
        written = landing_store(context).write(
            PAYMENTS_KEY, FrameStream(batches(), schema), "date", (start, end)
        )
    else:
        written = {}
        for _ in batches():
            pass
    rejects = _concat(rejected, {**REJECT_SCHEMA, "date": pl.Date()})
    seconds = time.perf_counter() - started
    valid = sum(counts.values())
    reason_counts = payment_reject_counts(rejects)
    total = valid + rejects.height
    context.log.info(
        f"{files_read} file(s) over {len(days)} day(s): {valid:,} "
        f"valid, {rejects.height:,} rejected in {seconds:.2f} s"
    )
    yield from companion(
        context,
        Output(rejects, output_name=REJECTS),
        run=reason_metadata(reason_counts),
    )
    if not selected:
        return
    add_partition_metadata(
        context,
        PAYMENTS,
        preview[0] if preview else pl.DataFrame(schema=schema),
        "date",
        run={
            "files": files_read,
            "rejected_rows": rejects.height,
            "read_seconds": round(seconds, 3),
            "throughput": rate(total, seconds),
        },
        partitions=per_day,
        daily_counts=counts,
    )
    yield Output(None, output_name=PAYMENTS, metadata=written)
    yield reject_share_check(
        PAYMENTS,
        rejects.height,
        total,
        threshold=config.max_reject_share,
        severity=AssetCheckSeverity.WARN,
        counts=reason_counts,
        metadata={"rows": total},
    )
    yield contract_outcome(PAYMENTS, failures[0] if failures else None)


def landing_store(context: AssetExecutionContext) -> TableIOManager:
    """The warehouse IO manager, which the payment assets write their streams through."""
    return cast(TableIOManager, context.resources.warehouse)


def _batched(
    chunks: Iterator[pl.DataFrame], schema: dict[str, pl.DataType], rows: int
) -> Iterator[pl.DataFrame]:
    """The chunks regrouped into frames of about `rows` rows (the last one smaller)."""
    held: list[pl.DataFrame] = []
    size = 0
    for chunk in chunks:
        if chunk.height:
            held.append(chunk)
            size += chunk.height
        if size >= rows:
            yield pl.concat(held).select(pl.col(c).cast(t) for c, t in schema.items())
            held, size = [], 0
    if held:
        yield pl.concat(held).select(pl.col(c).cast(t) for c, t in schema.items())


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
    shard_rows: int = Field(
        default=SHARD_ROWS,
        description="Payments of the day featured and scored at a time (with their "
        "accounts' boundary-day rows): a day is split into account shards of about this "
        "size, so memory stays flat whatever the day's volume.",
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
    # The day's payments are read from the warehouse shard by shard, not loaded as an input.
    ins={PAYMENTS: AssetIn(dagster_type=Nothing), REJECTS: AssetIn()},
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
    payment_transaction_rejects: pl.DataFrame,
    fraud_scorer: FraudScorer,
    upstream_reader: UpstreamReader,
) -> Iterator[Output[pl.DataFrame | None] | AssetCheckResult]:
    """Features from each account's earlier transactions only, then the configured scorer;
    batches that fail after their retries are listed, and the rest of the run completes.

    Day by day, and each day in account shards: the day's stored payments of the shard, the
    plan's boundary days row by row and the rest of the look-back as per-account totals
    from the warehouse (PaymentHistory), scored and written as they come. A range is its
    days one by one; a shard never changes a feature (features are per account)."""
    started = time.perf_counter()
    start, end = window_dates(context.partition_time_window)
    history = PaymentHistory(upstream_reader.warehouse.warehouse)
    now = dt.datetime.now(dt.UTC)
    failed: list[pl.DataFrame] = []
    counts: dict[dt.date, int] = {}
    flagged: dict[dt.date, int] = {}
    timings = dict.fromkeys(
        ("history_read_seconds", "split_seconds", "read_seconds", "scoring_seconds"), 0.0
    )
    failed_batches = shards_run = 0
    preview: list[pl.DataFrame] = []
    versions: set[str] = set()

    def scored() -> Iterator[pl.DataFrame]:
        for day in _days(start, end):
            size = history.day_counts([day]).get(day, 0)
            shards = max(1, -(-size // max(1, config.shard_rows)))
            counts[day] = flagged[day] = 0
            begun = time.perf_counter()
            behind = history.look_back(day, config.history_days)
            timings["history_read_seconds"] += time.perf_counter() - begun
            with tempfile.TemporaryDirectory(prefix="fraud-shards-") as folder:
                yield from shard_scores(day, shards, behind, Path(folder))

    def shard_scores(
        day: dt.date, shards: int, behind: LookBack, folder: Path
    ) -> Iterator[pl.DataFrame]:
        """The day's predictions shard by shard; with more than one shard, the day and its
        raw days are read once and split into `folder` first."""
        nonlocal failed_batches, shards_run
        spill = None
        if shards > 1:
            begun = time.perf_counter()
            spill = history.split(day, config.history_days, shards, folder)
            timings["split_seconds"] += time.perf_counter() - begun
        for k in range(shards):
            begun = time.perf_counter()
            today, features = history.features(day, config.history_days, (k, shards), behind, spill)
            featured = time.perf_counter()
            result = fraud_scorer.score(features, context.log)
            timings["read_seconds"] += featured - begun
            timings["scoring_seconds"] += time.perf_counter() - featured
            failed_batches += result.stats.failed_batches
            failed.append(
                result.failed_ids.with_columns(pl.lit(day).alias("date")).select(
                    "transaction_id", "date", "batch", "error", "attempts"
                )
            )
            predictions = _prediction_rows(result.predictions, day, now)
            counts[day] += today.height
            flagged[day] += int(predictions["is_fraud"].sum() or 0)
            versions.update(predictions["model_version"].drop_nulls().unique().to_list())
            shards_run += 1
            if not preview:
                preview.append(predictions.head(10))
            yield predictions

    schema = dict(_prediction_rows(pl.DataFrame(schema=PREDICTION_SCHEMA), start, now).schema)
    selected = is_selected(context, PREDICTIONS)
    if selected:
        written = landing_store(context).write(
            AssetKey(PREDICTIONS), FrameStream(scored(), schema), "date", (start, end)
        )
    else:
        written = {}
        for _ in scored():
            pass
    failures = pl.concat(failed) if failed else pl.DataFrame(schema=FAILURE_COLUMNS)
    seconds = time.perf_counter() - started
    processed = sum(counts.values())
    total_flagged = sum(flagged.values())
    context.log.info(
        f"{processed:,} transactions in {shards_run} shard(s): {total_flagged:,} flagged, "
        f"{failures.height:,} not scored ({failed_batches} failed batches); look-back totals "
        f"{timings['history_read_seconds']:.2f} s, reads and features "
        f"{timings['read_seconds']:.2f} s, scoring {timings['scoring_seconds']:.2f} s"
    )
    yield from companion(context, Output(failures, output_name=FAILURES))
    if not selected:
        return
    add_partition_metadata(
        context,
        PREDICTIONS,
        preview[0] if preview else pl.DataFrame(schema=schema),
        "date",
        run={
            "processed": processed,
            "invalid": payment_transaction_rejects.height,
            "failed": failures.height,
            "flagged": total_flagged,
            "fraud_rate": percent(total_flagged / processed if processed else 0.0),
            "throughput": rate(processed, seconds),
            "seconds": round(seconds, 3),
            "shards": shards_run,
            **{name: round(value, 3) for name, value in timings.items()},
        },
        partitions={
            day.isoformat(): {
                "flagged": flagged[day],
                "fraud_rate": percent(flagged[day] / counts[day] if counts[day] else 0.0),
            }
            for day in counts
        },
        daily_counts=counts,
    )
    yield Output(
        None,
        output_name=PREDICTIONS,
        metadata={
            **written,
            "scorer": fraud_scorer.kind,
            "model_version": MetadataValue.text(", ".join(sorted(versions))),
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
            "failed_batches": failed_batches,
            "failed_transactions": failures.height,
            "errors": MetadataValue.md(
                "\n".join(f"- {row[0]} ({row[1]})" for row in errors.iter_rows())
                if not failures.is_empty()
                else "none"
            ),
        },
    )


def _prediction_rows(predictions: pl.DataFrame, day: dt.date, now: dt.datetime) -> pl.DataFrame:
    """The scorer's predictions as the table holds them: with their day and scored_at."""
    return predictions.with_columns(
        pl.lit(day).alias("date"),
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("scored_at"),
    ).select(
        "transaction_id",
        "date",
        "fraud_score",
        "is_fraud",
        "model_version",
        "reasons",
        "scored_at",
    )
