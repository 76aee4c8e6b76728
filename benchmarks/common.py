"""What every workload reports: table rows, verification failures, progress lines."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

PARTITIONS_START = "2015-01-02"
"""Partitions' first day (FINTRACK_START_DATE) in every workload: early enough for the 2,000
sessions ending 2025-10-03 (the first is in 2017)."""

PASS = "PASS"
FAIL = "FAIL"
INFO = "info"
ERROR = "ERROR"

HEADERS = [
    "workload",
    "size",
    "seconds",
    "rows/s",
    "baseline",
    "ratio vs baseline",
    "target",
    "pass/fail",
]


class VerificationError(RuntimeError):
    """A workload produced the wrong result (row counts, failed checks, failed run)."""


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    workload: str
    size: str
    seconds: float | None
    rows: int | None
    baseline: str
    ratio: str
    target: str
    status: str

    @property
    def rows_per_second(self) -> float | None:
        if self.rows is None or not self.seconds:
            return None
        return self.rows / self.seconds

    def cells(self) -> list[str]:
        rate = self.rows_per_second
        return [
            self.workload,
            self.size,
            "-" if self.seconds is None else f"{self.seconds:.2f}",
            "-" if rate is None else f"{rate:,.0f}",
            self.baseline,
            self.ratio,
            self.target,
            self.status,
        ]


@dataclass(frozen=True)
class Outcome:
    """A workload's table rows and its notes (breakdowns printed under the table)."""

    rows: list[Row]
    notes: list[str]


def verdict(seconds: float, target_seconds: float) -> str:
    return PASS if seconds <= target_seconds else FAIL


def error_row(workload: str, message: str) -> Row:
    return Row(workload, "-", None, None, "-", "-", "-", f"{ERROR}: {message}")


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the block; what was there before after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
