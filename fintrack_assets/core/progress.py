"""How far long work has got, in the words people read: n of N, percent, rate and an ETA.

The providers' batch log lines, the assets' progress lines and `fintrack demo`'s display all
word progress through these helpers, so one pattern (`PROGRESS_LINE`) recognises them all.
Time comes in as numbers (or a clock callable), so everything here is testable without waiting.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fintrack_assets.core.display import duration

Clock = Callable[[], float]

PROGRESS_LINE = re.compile(r"\b[\d,]+/[\d,]+ \((?:[\d,]+ done, )?\d+ %\)")
"""Matches the `n/N (p %)` (or `n/N (k done, p %)`) that `counted` writes."""


def percent_done(done: int, total: int) -> int:
    """Whole percent done, rounded down: 100 % only once everything is done."""
    if total <= 0:
        return 100
    return max(0, min(100, done * 100 // total))


def counted(number: int, total: int, done: int | None = None) -> str:
    """`3/55 (5 %)`; when items finish out of order, `number` names the item and `done` says
    how many are finished: `7/55 (3 done, 5 %)`."""
    finished = number if done is None else done
    share = f"{percent_done(finished, total)} %"
    if finished != number:
        share = f"{finished:,} done, {share}"
    return f"{number:,}/{total:,} ({share})"


def speed(count: float, seconds: float) -> str | None:
    """Units per second, or per minute or hour when slower: `120/s`, `2.5/s`, `12/min`;
    None until something is counted."""
    if count <= 0 or seconds <= 0:
        return None
    per_second = count / seconds
    for value, unit in ((per_second, "s"), (per_second * 60, "min"), (per_second * 3600, "h")):
        if value >= 1 or unit == "h":
            return f"{value:,.0f}/{unit}" if value >= 10 else f"{value:.1f}/{unit}"
    raise AssertionError("unreachable")


def eta(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the average pace so far; None before the first unit is done."""
    if done <= 0:
        return None
    return max(0, total - done) * max(0.0, elapsed) / done


def pace(done: int, total: int, elapsed: float) -> str:
    """The tail of a progress line: `ETA 1 min 4 s` while running, `1 min 4 s in all` when
    done, empty before anything is done."""
    if total > 0 and done >= total:
        return f"{duration(elapsed)} in all"
    left = eta(done, total, elapsed)
    return "" if left is None else f"ETA {duration(left)}"


def summary(done: int, total: int, elapsed: float, unit: str = "") -> str:
    """`412/1,143 partitions (36 %), 18/s, ETA 40 s`: count, share, rate and what is left."""
    noun = f" {unit}" if unit else ""
    parts = [f"{done:,}/{total:,}{noun} ({percent_done(done, total)} %)"]
    per_time = speed(done, elapsed)
    if per_time is not None and done < total:
        parts.append(per_time)
    tail = pace(done, total, elapsed)
    if tail:
        parts.append(tail)
    return ", ".join(parts)


@dataclass
class Meter:
    """Counts units of one piece of work against a clock started when the meter is made."""

    total: int
    clock: Clock = time.perf_counter
    done: int = 0
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def advance(self, units: int = 1) -> None:
        self.done += units

    def line(self, label: str, detail: str = "", number: int | None = None) -> str:
        """`label n/N (p %): detail, ETA ...`, e.g. `day 3/7 (42 %): 2 files, ETA 4 s`;
        `number` names an item finished out of order (see `counted`)."""
        return progress_line(
            label,
            self.done if number is None else number,
            self.total,
            detail,
            self.elapsed,
            self.done,
        )

    def summary(self, unit: str = "") -> str:
        return summary(self.done, self.total, self.elapsed, unit)


def progress_line(
    label: str,
    number: int,
    total: int,
    detail: str,
    elapsed: float,
    done: int | None = None,
) -> str:
    """`batch 3/55 (5 %): 100 symbols, 1.2 s, 2 failed, ETA 1 min 4 s`: what, how far, the
    item's own figures, then the time left (or taken in all, after the last)."""
    finished = number if done is None else done
    text = f"{label} {counted(number, total, finished)}"
    if detail:
        text += f": {detail}"
    tail = pace(finished, total, elapsed)
    return f"{text}, {tail}" if tail else text
