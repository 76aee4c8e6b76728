"""What assets and the IO managers share: the definition metadata an asset tells its IO manager,
the error for an input that does not exist yet, and the base both IO managers write and read
through."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl
from dagster import (
    AssetKey,
    ConfigurableIOManager,
    Failure,
    InitResourceContext,
    InputContext,
    OutputContext,
)
from deltalake.exceptions import DeltaError
from pydantic import PrivateAttr

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.s3_errors import credentials_sentence, refused_credentials
from fintrack_assets.home import HeldEventLog
from fintrack_assets.partitions import window_dates

PARTITION_EXPR = "partition_expr"
"""The date column a partitioned asset's windows select on (default `date`)."""
COLUMNS = "columns"
"""On an input: load only these columns."""
OPTIONAL = "optional"
"""On an input: an upstream that has no table yet loads as None (the asset says what it does
without it) instead of failing the step."""

Window = tuple[dt.date, dt.date]
"""[start, end) dates."""


@dataclass(frozen=True)
class Rows:
    """What a read takes of an asset's table: the rows with start <= `column` < end of `window`
    (every row without a window) and `columns` (every column without)."""

    column: str = "date"
    window: Window | None = None
    columns: Sequence[str] | None = None

    @property
    def selected(self) -> list[str] | None:
        return list(self.columns) if self.columns else None


def partition_column(context: OutputContext | InputContext, default: str = "date") -> str:
    if isinstance(context, OutputContext):
        metadata = context.definition_metadata or {}
    else:
        upstream = context.upstream_output
        metadata = (upstream.definition_metadata or {}) if upstream else {}
    return str(metadata.get(PARTITION_EXPR, default))


def partitions_window(context: OutputContext | InputContext) -> Window | None:
    """The dates of an output's partitions, or of the upstream partitions an input's partition
    mapping names; None when unpartitioned."""
    if not context.has_asset_partitions:
        return None
    return window_dates(context.asset_partitions_time_window)


def input_rows(context: InputContext) -> Rows:
    """The rows an input asks for: its partition mapping's window on the upstream's
    `partition_expr`, and the input's `columns` metadata."""
    columns = (context.definition_metadata or {}).get(COLUMNS)
    return Rows(partition_column(context), partitions_window(context), columns)


def lazy_input(context: InputContext) -> bool:
    """An input annotated `pl.LazyFrame` gets a scan that its asset filters before collecting."""
    return context.dagster_type.typing_type is pl.LazyFrame


@dataclass(frozen=True)
class MergeRows:
    """An output that adds its rows to the window without rewriting what is there: a row whose
    `keys` the table already holds is left as it is (`raw_ohlcv`'s `mode: missing`)."""

    frame: pl.DataFrame
    keys: tuple[str, ...]


@dataclass(frozen=True)
class FrameStream:
    """An output written as its frames come (`frames` of `schema`), never held whole: the
    window is replaced atomically once the last frame is in (`replace_window_stream`)."""

    frames: Iterable[pl.DataFrame]
    schema: Mapping[str, pl.DataType]


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

    @classmethod
    def reading(cls, asset: str, start: dt.date | None, end: dt.date | None) -> NotMaterialised:
        """For a read of [start, end): the command names the window's last session."""
        return cls(asset, last_session(start, end))

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
    which a multi-asset also calls for a companion output its run did not select; an input is
    read by `read`, or `scan` for a `pl.LazyFrame` input, which the upstream reader
    (`io_managers/reader.py`) calls too."""

    kind: ClassVar[str]
    """Names the write's timing in the output metadata: `<kind>_write_seconds`."""
    _event_log: HeldEventLog | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """A step writing a table stores a materialisation event per partition: on a local
        SQLite instance the event log is held open meanwhile (`home.HeldEventLog`), until this
        step's copy of the IO manager is let go (no teardown: a resource with one must be
        opened as a context manager wherever it is used, sensors included)."""
        run = context.dagster_run
        self._event_log = HeldEventLog(context.instance, run.run_id if run else None)

    def location(self, key: AssetKey) -> str:
        """Where the asset's table is, as the logs and the metadata name it."""
        raise NotImplementedError

    def store(
        self, key: AssetKey, frame: pl.DataFrame, column: str, window: Window | None
    ) -> dict[str, Any]:
        """Replaces the `window` of the asset's table by `frame` (all of it when unpartitioned);
        returns the output metadata."""
        raise NotImplementedError

    def read(self, key: AssetKey, rows: Rows) -> pl.DataFrame:
        """Raises NotMaterialised when the asset has no table; a window the table holds no rows
        of (a trailing window reaching before the first partition) reads empty."""
        raise NotImplementedError

    def scan(self, key: AssetKey, rows: Rows) -> pl.LazyFrame:
        """`read` as a LazyFrame: the filters and column choices its asset adds before
        `collect` apply as the rows stream in, so a filtered read never holds the whole
        window. NotMaterialised is raised here, not at `collect`."""
        raise NotImplementedError

    def merge(
        self, key: AssetKey, rows: MergeRows, column: str, window: Window | None
    ) -> dict[str, Any]:
        """Inserts `rows`' rows whose keys the window does not hold yet; returns the output
        metadata."""
        raise NotImplementedError(f"{type(self).__name__} does not merge")

    def store_stream(
        self, key: AssetKey, stream: FrameStream, column: str, window: Window
    ) -> dict[str, Any]:
        """`store` of a partitioned window from a FrameStream; returns the output metadata."""
        raise NotImplementedError(f"{type(self).__name__} does not write streams")

    def write(
        self,
        key: AssetKey,
        frame: pl.DataFrame | MergeRows | FrameStream,
        column: str,
        window: Window | None,
    ) -> dict[str, Any]:
        """`store`, after refusing a frame that holds an inf or a NaN: no table ever gets one,
        whichever asset computed it (the contracts judge after the write; this is before)."""
        started = time.perf_counter()
        if isinstance(frame, FrameStream):
            if window is None:
                raise ValueError(f"{key.to_user_string()}: a stream writes a partition window")

            def finite(frames: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
                for each in frames:
                    refuse_non_finite(key, each)
                    yield each

            with credentials_checked():
                metadata = self.store_stream(
                    key, FrameStream(finite(frame.frames), frame.schema), column, window
                )
        elif isinstance(frame, MergeRows):
            refuse_non_finite(key, frame.frame)
            with credentials_checked():
                metadata = self.merge(key, frame, column, window)
        else:
            refuse_non_finite(key, frame)
            with credentials_checked():
                metadata = self.store(key, frame, column, window)
        return {**metadata, f"{self.kind}_write_seconds": round(time.perf_counter() - started, 3)}

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | MergeRows) -> None:
        if obj is None:
            return
        column = partition_column(context)
        context.add_output_metadata(
            self.write(context.asset_key, obj, column, partitions_window(context))
        )

    def load_input(self, context: InputContext) -> pl.DataFrame | pl.LazyFrame | None:
        rows = input_rows(context)
        try:
            with input_materialised(context):
                if lazy_input(context):
                    return self.scan(context.asset_key, rows)
                frame = self.read(context.asset_key, rows)
        except NotMaterialised as exc:
            if not (context.definition_metadata or {}).get(OPTIONAL):
                raise
            context.log.info(f"{exc.asset} has not been materialised yet: an optional input, None")
            return None
        context.log.info(f"loaded {frame.height:,} rows from {self.location(context.asset_key)}")
        return frame


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
