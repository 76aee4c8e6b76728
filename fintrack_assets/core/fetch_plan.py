"""What a raw_ohlcv run fetches and how it reports it: the stage key that decides whether a
previous attempt's batches can be reused, the pairs `mode: missing` asks for, and the
progress line every batch logs."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from fintrack_assets.core.display import duration
from fintrack_assets.core.progress import counted, speed

STAGE_FORMAT = 1
"""Bumped whenever what a stage holds changes shape: older stages are then never reused."""

PAIR_SCHEMA = {"symbol": pl.String, "date": pl.Date}


def stage_key(
    source: str,
    plan: Sequence[tuple[int, Sequence[str]]],
    sessions: Sequence[dt.date],
    mode: str,
    wanted: pl.DataFrame | None = None,
) -> str:
    """A digest of everything that decides a batch's rows: provider, batches (their symbols
    and order), the window's sessions, the mode and, when only some pairs are wanted, those
    pairs. A stage is reused only under the same key, so another universe, another window or
    another set of missing pairs never picks up a stale batch."""
    digest = hashlib.sha256()
    for part in (f"v{STAGE_FORMAT}", source, mode, *(day.isoformat() for day in sessions)):
        digest.update(part.encode())
        digest.update(b"\0")
    for number, symbols in plan:
        digest.update(f"{number}:{','.join(symbols)}\n".encode())
    if wanted is not None:
        pairs = wanted.select("symbol", "date").sort("symbol", "date")
        digest.update(pairs.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()[:32]


def missing_pairs(expected: pl.DataFrame, existing: pl.DataFrame) -> pl.DataFrame:
    """The (symbol, date) pairs of `expected` that `existing` does not hold."""
    return (
        expected.select("symbol", "date")
        .join(existing.select("symbol", "date").unique(), on=["symbol", "date"], how="anti")
        .sort("symbol", "date")
    )


def keep_wanted(bars: pl.DataFrame, wanted: pl.DataFrame | None) -> tuple[pl.DataFrame, int]:
    """(the bars of wanted pairs, how many others there were); every bar when `wanted` is None."""
    if wanted is None:
        return bars, 0
    kept = bars.join(wanted.select("symbol", "date"), on=["symbol", "date"], how="semi")
    return kept, bars.height - kept.height


@dataclass
class FetchProgress:
    """Counts of a staged fetch across attempts; `elapsed` and the rates are this attempt's."""

    batches: int
    symbols: int
    batches_done: int = 0
    symbols_done: int = 0
    rows: int = 0
    failed: int = 0
    fetched_symbols: int = 0
    """Symbols fetched by this attempt (the rest came from the stage)."""

    def resumed(self, batches: int, symbols: int, rows: int, failed: int) -> None:
        self.batches_done += batches
        self.symbols_done += symbols
        self.rows += rows
        self.failed += failed

    def advance(self, symbols: int, rows: int, failed: int) -> None:
        self.batches_done += 1
        self.symbols_done += symbols
        self.fetched_symbols += symbols
        self.rows += rows
        self.failed += failed

    def eta(self, elapsed: float) -> float | None:
        if self.fetched_symbols <= 0:
            return None
        return (self.symbols - self.symbols_done) * elapsed / self.fetched_symbols

    def line(self, number: int, elapsed: float) -> str:
        """`batch 14/27 (13 done, 48 %): 2,600/5,400 symbols, 1,040,000 rows, 0 failed so
        far, 1,200 symbols/min, ETA 2 min 10 s` once batch `number` is staged."""
        text = f"batch {counted(number, self.batches, self.batches_done)}: " + ", ".join(
            [
                f"{self.symbols_done:,}/{self.symbols:,} symbols",
                f"{self.rows:,} rows",
                f"{self.failed:,} failed so far",
            ]
        )
        rate = speed(self.fetched_symbols, elapsed)
        if rate is not None and self.batches_done < self.batches:
            text += f", {rate.replace('/', ' symbols/')}"
        if self.batches_done >= self.batches:
            return f"{text}, {duration(elapsed)} in all"
        left = self.eta(elapsed)
        return text if left is None else f"{text}, ETA {duration(left)}"

    def figures(self, elapsed: float) -> dict[str, float | int | str]:
        """The same, as run metadata."""
        left = self.eta(elapsed)
        figures: dict[str, float | int | str] = {
            "batches_done": self.batches_done,
            "batches_total": self.batches,
            "symbols_processed": self.symbols_done,
            "symbols_total": self.symbols,
            "percent_done": round(100 * self.symbols_done / self.symbols, 1)
            if self.symbols
            else 100.0,
            "rows": self.rows,
            "symbols_failed": self.failed,
            "rate": speed(self.fetched_symbols, elapsed) or "-",
        }
        if left is not None and self.batches_done < self.batches:
            figures["eta"] = duration(left)
        return figures
