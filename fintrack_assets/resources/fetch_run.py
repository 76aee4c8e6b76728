"""One raw_ohlcv fetch over a window, batch by batch: each completed batch is normalised,
staged durably (when the plan has more than one batch) and logged with how far the whole
fetch has got; batches an earlier attempt staged under the same key are not fetched again.

No dagster import: `raw_ohlcv` builds the plan, the stage and the normaliser, and turns the
`FetchOutcome` into its table, metadata and checks.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from fintrack_assets.core.bronze import OHLCV_SCHEMA
from fintrack_assets.core.display import plural
from fintrack_assets.core.fetch_plan import FetchProgress
from fintrack_assets.core.progress import Clock
from fintrack_assets.resources.fetching import Log, Plan, failures_frame

if TYPE_CHECKING:
    from fintrack_assets.io_managers.stage import FetchStage
    from fintrack_assets.resources.market_data import Provider

Normaliser = Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame, int]]
"""Provider bars -> (rows for the table, rows dated outside the window, other rows dropped:
not a member that session, or already stored under `mode: missing`)."""


@dataclass
class FetchOutcome:
    bars: pl.DataFrame
    outside: pl.DataFrame
    failures: pl.DataFrame
    progress: FetchProgress
    batches_resumed: int = 0
    batches_fetched: int = 0
    requests: int = 0
    """Requests this attempt sent (staged batches' requests are not counted again)."""
    dropped: int = 0
    seconds: float = 0.0
    staged: bool = False


def run_fetch(
    provider: Provider,
    plan: Plan,
    sessions: Sequence[dt.date],
    normalise: Normaliser,
    stage: FetchStage | None,
    log: Log,
    clock: Clock = time.perf_counter,
    max_stage_age: dt.timedelta = dt.timedelta(days=7),
) -> FetchOutcome:
    """Fetches the plan's batches not yet staged under `stage`'s key (all of them without a
    stage), then returns every batch's rows: this attempt's and the stage's."""
    now = dt.datetime.now(dt.UTC)
    progress = FetchProgress(len(plan), sum(len(group) for _, group in plan))
    done = stage.completed(max_stage_age, now) if stage is not None else {}
    outcome = FetchOutcome(
        pl.DataFrame(schema=OHLCV_SCHEMA),
        pl.DataFrame(schema=OHLCV_SCHEMA),
        failures_frame([]),
        progress,
        batches_resumed=len(done),
        staged=stage is not None,
    )
    if done:
        for batch in done.values():
            progress.resumed(1, batch.symbols, batch.rows, batch.failed)
            outcome.dropped += batch.dropped
        log(
            f"resuming: {plural(len(done), 'batch', 'batches')} of {len(plan)} "
            f"({progress.symbols_done:,} of {progress.symbols:,} symbols, {progress.rows:,} "
            f"rows) were staged by an earlier attempt; fetching the other "
            f"{len(plan) - len(done)}"
        )
    pending = [(number, group) for number, group in plan if number not in done]
    bars: list[pl.DataFrame] = []
    outside: list[pl.DataFrame] = []
    failures: list[pl.DataFrame] = []
    started = clock()
    for piece in provider.fetch_batches(pending, sessions, log):
        kept, misplaced, dropped = normalise(piece.bars)
        failed = piece.failures["symbol"].n_unique()
        if stage is not None:
            stage.append(
                piece.number,
                len(piece.symbols),
                kept,
                misplaced,
                piece.failures,
                dropped,
                piece.requests,
                piece.seconds,
                dt.datetime.now(dt.UTC),
            )
        else:
            bars.append(kept)
            outside.append(misplaced)
            failures.append(piece.failures)
        outcome.batches_fetched += 1
        outcome.requests = piece.requests
        outcome.dropped += dropped
        progress.advance(len(piece.symbols), kept.height, failed)
        log(progress.line(piece.number, clock() - started))
    outcome.seconds = clock() - started
    if stage is not None:
        staged = stage.read()
        outcome.bars, outcome.outside, outcome.failures = (
            staged.bars,
            staged.outside,
            staged.failures,
        )
    else:
        outcome.bars = pl.concat([outcome.bars, *bars], how="vertical_relaxed")
        outcome.outside = pl.concat([outcome.outside, *outside], how="vertical_relaxed")
        outcome.failures = pl.concat([outcome.failures, *failures])
    return outcome
