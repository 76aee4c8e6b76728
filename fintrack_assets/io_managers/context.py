"""What assets and the IO managers share: the definition metadata an asset tells its IO manager,
the error for an input that does not exist yet, and the base both IO managers write through."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl
from dagster import AssetKey, ConfigurableIOManager, Failure, InputContext, OutputContext
from deltalake.exceptions import DeltaError

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.s3_errors import credentials_sentence, refused_credentials
from fintrack_assets.partitions import window_dates

PARTITION_EXPR = "partition_expr"
"""The date column a partitioned asset's windows select on (default `date`)."""
COLUMNS = "columns"
"""On an input: load only these columns."""


def partition_column(context: OutputContext | InputContext, default: str = "date") -> str:
    if isinstance(context, OutputContext):
        metadata = context.definition_metadata or {}
    else:
        upstream = context.upstream_output
        metadata = (upstream.definition_metadata or {}) if upstream else {}
    return str(metadata.get(PARTITION_EXPR, default))


def input_columns(context: InputContext) -> list[str] | None:
    columns = (context.definition_metadata or {}).get(COLUMNS)
    return list(columns) if columns else None


class NotMaterialised(Failure):
    """An input's table does not exist yet. A `Failure`, so Dagster shows this one sentence as
    the step's error, and one that skips the retry policy: retrying will not create it."""

    def __init__(self, asset: str, partition: str | None = None) -> None:
        self.asset = asset
        self.partition = partition
        command = f"dagster asset materialize -m fintrack_assets --select {asset}"
        if partition:
            command += f" --partition {partition}"
        super().__init__(
            description=f"{asset} has not been materialised yet: materialise it first ({command})",
            allow_retries=False,
        )

    def __reduce__(self) -> tuple[type[NotMaterialised], tuple[str, str | None]]:
        return NotMaterialised, (self.asset, self.partition)


class LakeCredentialsError(Failure):
    """S3 refused or could not find the lake's credentials: a `Failure` that skips the retry
    policy, since the same credentials would be refused again after each backoff."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(description=credentials_sentence(reason), allow_retries=False)

    def __reduce__(self) -> tuple[type[LakeCredentialsError], tuple[str]]:
        return LakeCredentialsError, (self.reason,)


@contextmanager
def credentials_checked() -> Iterator[None]:
    """An object store's credential error raised as LakeCredentialsError, the rest as they are."""
    try:
        yield
    except (OSError, DeltaError) as exc:
        reason = refused_credentials(str(exc))
        if reason is None:
            raise
        raise LakeCredentialsError(reason) from None


def last_session(start: dt.date | None, end: dt.date | None) -> str | None:
    """The partition a command should name for a read of [start, end): its last session, or
    `start` itself when the window is empty (a partition with nothing to read)."""
    if start is None or end is None:
        return None
    sessions = sessions_between(start, max(end, start + dt.timedelta(days=1)))
    return sessions[-1].isoformat() if sessions else None


@contextmanager
def input_materialised(context: InputContext) -> Iterator[None]:
    """An input's missing table named as the upstream asset, with the partition to run."""
    try:
        with credentials_checked():
            yield
    except NotMaterialised:
        partition = context.asset_partition_key_range.end if context.has_asset_partitions else None
        raise NotMaterialised(context.asset_key.to_user_string(), partition) from None


class TableIOManager(ConfigurableIOManager):
    """What the lake and the warehouse IO managers share: an output is written by `store`,
    which a multi-asset also calls for a companion output its run did not select."""

    def store(
        self,
        key: AssetKey,
        frame: pl.DataFrame,
        column: str,
        window: tuple[dt.date, dt.date] | None,
    ) -> dict[str, Any]:
        """Replaces the [start, end) `window` of the asset's table by `frame` (all of it when
        unpartitioned); returns the output metadata."""
        raise NotImplementedError

    def write(
        self,
        key: AssetKey,
        frame: pl.DataFrame,
        column: str,
        window: tuple[dt.date, dt.date] | None,
    ) -> dict[str, Any]:
        """`store`, after refusing a frame that holds an inf or a NaN: no table ever gets one,
        whichever asset computed it (the contracts judge after the write; this is before)."""
        refuse_non_finite(key, frame)
        with credentials_checked():
            return self.store(key, frame, column, window)

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        window = (
            window_dates(context.asset_partitions_time_window)
            if context.has_asset_partitions
            else None
        )
        context.add_output_metadata(
            self.write(context.asset_key, obj, partition_column(context), window)
        )


class NonFiniteValues(Failure):
    """A frame about to be written holds an inf or a NaN: nothing is written, and a retry would
    compute the same."""

    def __init__(self, key: AssetKey, counts: dict[str, int]) -> None:
        shown = ", ".join(f"{column} ({n:,})" for column, n in counts.items())
        super().__init__(
            description=f"{key.to_user_string()} was not written: non-finite values (inf or "
            f"NaN) in {shown}",
            allow_retries=False,
        )


def refuse_non_finite(key: AssetKey, frame: pl.DataFrame) -> None:
    floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
    if not floats:
        return
    counts = frame.select((~pl.col(c).is_finite()).sum() for c in floats).row(0, named=True)
    bad = {column: int(n) for column, n in counts.items() if n}
    if bad:
        raise NonFiniteValues(key, bad)
