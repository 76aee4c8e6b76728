"""`fintrack demo`'s view of a run while it executes: the step running, partitions
materialised n/N with percent, rate and ETA, and the last progress line a step logged (a
fetch batch, a day of payments, a share of fraud batches).

The run's events reach `RunProgress` through the instance's event listener for the run id
(`execute_in_process(run_id=...)`), in the thread that executes the run. A terminal gets a
display redrawn in place (rich); anything else gets plain lines, no control characters.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TextIO

from fintrack_assets.core.progress import PROGRESS_LINE, Clock, Meter

if TYPE_CHECKING:
    from dagster import DagsterInstance, JobDefinition, PartitionsDefinition
    from dagster._core.events.log import EventLogEntry
    from rich.console import RenderableType

PLAIN_EVERY_SECONDS = 5.0
"""A plain progress line at most this often between the lines events print anyway."""


@dataclass
class RunProgress:
    """What one run has planned and done so far, from its events."""

    name: str
    expected: Expected
    clock: Clock
    planning: Meter | None = None
    running: Meter | None = None
    steps: list[str] = field(default_factory=list)
    step: str = ""
    steps_started: int = 0
    checks_planned: int = 0
    partitioned: bool = False
    detail: str = ""
    """The last progress line the current step logged (`batch 3/55 (5 %): ...`)."""

    @property
    def unit(self) -> str:
        return "partitions" if self.partitioned else "assets"

    def observe(self, event: EventLogEntry) -> str | None:
        """Takes one event in; says what changed ("step", "detail", "count") or None."""
        from dagster import DagsterEventType

        dagster_event = event.dagster_event
        if dagster_event is None:
            message = event.user_message or ""
            if PROGRESS_LINE.search(message):
                self.detail = message
                return "detail"
            return None
        kind = dagster_event.event_type
        if kind == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            data = dagster_event.event_specific_data
            subset = getattr(data, "partitions_subset", None)
            partition = getattr(data, "partition", None)
            self.partitioned |= subset is not None or partition is not None
            if self.planning is None:
                self.planning = Meter(self.expected.planned, self.clock)
            self.planning.advance(len(subset) if subset is not None else 1)
            self._add_step(dagster_event.step_key)
            return "count"
        if kind == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
            self.checks_planned += 1
            self._add_step(dagster_event.step_key)
            return "count"
        if kind == DagsterEventType.RUN_START:
            self.running = Meter(self.expected.materialised, self.clock)
            return None
        if kind == DagsterEventType.STEP_START:
            self.step = dagster_event.step_key or ""
            self.steps_started += 1
            self.detail = ""
            if self.running is None:
                self.running = Meter(self.expected.materialised, self.clock)
            return "step"
        if kind == DagsterEventType.ASSET_MATERIALIZATION and self.running is not None:
            self.running.advance()
            return "count"
        return None

    def _add_step(self, key: str | None) -> None:
        if key and key not in self.steps:
            self.steps.append(key)

    def headline(self) -> str:
        """`step 2/4 bronze_ohlcv: 254/1,143 partitions (22 %), 41/s, ETA 22 s`."""
        if self.running is not None:
            steps = max(len(self.steps), self.steps_started)
            where = f"step {self.steps_started}/{steps} {self.step}" if self.step else "starting"
            return f"{where}: {self.running.summary(self.unit)}"
        if self.planning is not None:
            count = self.checks_planned
            checks = f", {count} check{'' if count == 1 else 's'}" if count else ""
            return f"planning {self.planning.summary(self.unit)}{checks}"
        return "starting"

    @property
    def done(self) -> int:
        return self.running.done if self.running else 0

    @property
    def total(self) -> int:
        return self.running.total if self.running else self.expected.materialised

    @property
    def current(self) -> Meter | None:
        """The meter the bar follows: planning until the run starts, then materialisations."""
        return self.running or self.planning


class View(Protocol):
    def start(self) -> None: ...
    def changed(self, what: str) -> None: ...
    def stop(self) -> None: ...


class PlainView:
    """Lines for logs and pipes: a step's start, every progress line a step logs, and the
    count at most every `every` seconds in between. No control characters."""

    def __init__(
        self, progress: RunProgress, out: TextIO, clock: Clock, every: float = PLAIN_EVERY_SECONDS
    ) -> None:
        self.progress, self.out, self.clock, self.every = progress, out, clock, every
        self.last = clock()

    def start(self) -> None:
        self.last = self.clock()

    def changed(self, what: str) -> None:
        progress = self.progress
        if what == "step":
            self._print(progress.headline())
        elif what == "detail":
            self._print(f"{progress.step}: {progress.detail}")
        elif self.clock() - self.last >= self.every:
            self._print(progress.headline())

    def stop(self) -> None:
        return None

    def _print(self, text: str) -> None:
        print(f"  {text}", file=self.out, flush=True)
        self.last = self.clock()


class RichView:
    """A bar and the counts, redrawn in place a few times a second (so the ETA counts down
    between events), with the step's last progress line beneath; erased when the run ends."""

    def __init__(self, progress: RunProgress, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.progress = progress
        self.live = Live(
            console=Console(file=out),
            get_renderable=self._render,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def start(self) -> None:
        self.live.start()

    def changed(self, what: str) -> None:
        return None

    def stop(self) -> None:
        self.live.stop()

    def _render(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        progress = self.progress
        meter = progress.current
        line = Table.grid(padding=(0, 1))
        line.add_row(
            Text(f"  {progress.name}", style="bold", no_wrap=True),
            ProgressBar(
                total=max(meter.total, 1) if meter else 1,
                completed=meter.done if meter else 0,
                width=30,
            ),
            Text(progress.headline(), no_wrap=True, overflow="ellipsis"),
        )
        if not progress.detail:
            return line
        detail = Text(f"    {progress.step}: {progress.detail}", style="dim", no_wrap=True)
        detail.overflow = "ellipsis"
        return Group(line, detail)


@dataclass(frozen=True)
class Expected:
    """What a run will report: planned-materialisation events (Dagster plans an unpartitioned
    asset of a range run once per partition of the job) and materialisations (one per
    partition, one for an unpartitioned asset)."""

    planned: int
    materialised: int


def expected(job: JobDefinition, tags: Mapping[str, str]) -> Expected:
    """Counts for a run of `job` with these range tags. Keys compare as strings, as the ISO
    dates and months of the project's partitions do."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    first = tags.get(ASSET_PARTITION_RANGE_START_TAG)
    last = tags.get(ASSET_PARTITION_RANGE_END_TAG)

    def in_range(partitions_def: PartitionsDefinition | None) -> int | None:
        if partitions_def is None or first is None or last is None:
            return None
        return sum(first <= key <= last for key in partitions_def.get_partition_keys())

    planned = materialised = 0
    layer = job.asset_layer
    for key in layer.selected_asset_keys:
        own = in_range(layer.asset_graph.get(key).partitions_def)
        materialised += 1 if own is None else own
        planned += own if own is not None else in_range(job.partitions_def) or 1
    return Expected(planned, materialised)


@contextmanager
def watching(
    instance: DagsterInstance,
    run_id: str,
    name: str,
    expected: Expected,
    out: TextIO | None = None,
    clock: Clock | None = None,
) -> Iterator[RunProgress]:
    """Shows run `run_id`'s progress while the body executes it (with that run id)."""
    clock = clock or time.monotonic
    progress = RunProgress(name, expected, clock)
    lock = threading.Lock()
    active = True
    with _uncaptured(out or sys.stdout) as screen:
        view: View = (
            RichView(progress, screen) if screen.isatty() else PlainView(progress, screen, clock)
        )

        def listener(event: EventLogEntry) -> None:
            if not active:
                return
            with lock:
                what = progress.observe(event)
                if what is not None:
                    view.changed(what)

        instance.add_event_listener(run_id, listener)
        view.start()
        try:
            yield progress
        finally:
            active = False
            view.stop()


@contextmanager
def _uncaptured(out: TextIO) -> Iterator[TextIO]:
    """`out` on a descriptor of its own. While a run executes, Dagster points descriptors 1
    and 2 at the run's compute-log file and relays that file with `tail -F` (a second late,
    and cut short when the run ends): progress belongs on the user's screen, now, and not
    in the run's captured stdout."""
    try:
        descriptor = out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        yield out
        return
    out.flush()
    encoding = getattr(out, "encoding", None) or "utf-8"
    with os.fdopen(os.dup(descriptor), "w", buffering=1, encoding=encoding) as copy:
        yield copy
