"""Progress as people read it: n of N, percent, rate and ETA, in log lines and in `fintrack
demo`'s output. Times come from a fake clock; nothing here waits."""

from __future__ import annotations

import datetime as dt
import os
import pty
import re
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey

from fintrack_assets.core.display import duration
from fintrack_assets.core.progress import (
    PROGRESS_LINE,
    Meter,
    counted,
    eta,
    percent_done,
    speed,
    summary,
)
from fintrack_assets.progress import expected, watching
from fintrack_assets.resources.fetching import Batch, batch_line
from fintrack_assets.resources.market_data import MarketDataResource
from fintrack_assets.resources.yahoo import YAHOO_RETRIES, YahooProvider
from fintrack_assets_tests.helpers import (
    BRONZE_LAYER,
    QUIET,
    local_platform,
    yfinance_platform,
)
from fintrack_assets_tests.test_yahoo import MARCH, SPLT, RecordedYahoo, calm_history

BIN = Path(sys.executable).parent


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.4, "<1 s"),
        (42, "42 s"),
        (64, "1 min 4 s"),
        (120, "2 min"),
        (59.6, "1 min"),
        (3 * 3600 + 5 * 60 + 59, "3 h 5 min"),
        (7200, "2 h"),
        (1594 * 60, "1 day 2 h 34 min"),
        (2 * 86400 + 60, "2 days 1 min"),
    ],
)
def test_durations_read_in_whole_units(seconds, words):
    assert duration(seconds) == words


@pytest.mark.parametrize(
    ("count", "seconds", "words"),
    [
        (120, 1.0, "120/s"),
        (1234, 1.0, "1,234/s"),
        (5, 2.0, "2.5/s"),
        (1, 5.0, "12/min"),  # 0.2 a second
        (1, 600.0, "6.0/h"),  # 0.1 a minute
        (0, 3.0, None),
    ],
)
def test_rates_switch_to_minutes_and_hours_when_slow(count, seconds, words):
    assert speed(count, seconds) == words


def test_eta_percent_and_counts():
    assert eta(3, 55, 3.6) == pytest.approx(52 * 1.2)
    assert eta(0, 10, 5.0) is None
    assert eta(10, 10, 7.0) == 0
    assert [
        percent_done(3, 55),
        percent_done(54, 55),
        percent_done(55, 55),
        percent_done(0, 0),
    ] == [5, 98, 100, 100]
    assert counted(3, 55) == "3/55 (5 %)"
    assert counted(7, 55, done=3) == "7/55 (3 done, 5 %)"
    assert counted(1200, 1500) == "1,200/1,500 (80 %)"


def test_summary_while_running_and_when_done():
    # 412 of 1,143 in 22 s: 18.7 a second; 731 left at 22/412 s each is 39.0 s.
    assert summary(412, 1143, 22.0, "partitions") == ("412/1,143 partitions (36 %), 19/s, ETA 39 s")
    assert summary(1143, 1143, 64.2, "partitions") == (
        "1,143/1,143 partitions (100 %), 1 min 4 s in all"
    )
    assert summary(0, 80, 3.0, "partitions") == "0/80 partitions (0 %)"


def test_the_batch_line_carries_percent_and_eta():
    # 3 of 55 batches in 3.69 s: 52 left at 1.23 s each is 64 s.
    line = batch_line(Batch(3, 100, 1.24, 2), 55, 3.69)
    assert line == "batch 3/55 (5 %): 100 symbols, 1.2 s, 2 failed, ETA 1 min 4 s"
    assert batch_line(Batch(7, 1, 0.5, 0), 55, 3.69, done=3) == (
        "batch 7/55 (3 done, 5 %): 1 symbol, 0.5 s, 0 failed, ETA 1 min 4 s"
    )
    assert batch_line(Batch(55, 3, 0.5, 0), 55, 70.0) == (
        "batch 55/55 (100 %): 3 symbols, 0.5 s, 0 failed, 1 min 10 s in all"
    )
    assert PROGRESS_LINE.search(line)
    assert not PROGRESS_LINE.search("fetched 900 rows in 0.02 s: 45 symbols succeeded")


def test_a_meter_times_itself_on_its_clock():
    clock = FakeClock(100.0)
    meter = Meter(4, clock)
    clock.now = 103.0
    meter.advance()
    assert meter.line("day", "2024-03-01: 1 file(s)") == (
        "day 1/4 (25 %): 2024-03-01: 1 file(s), ETA 9 s"
    )
    clock.now = 112.0
    meter.advance(3)
    assert meter.summary("days") == "4/4 days (100 %), 12 s in all"


class TickingYahoo(RecordedYahoo):
    """Yahoo's recorded answers, each download taking two seconds of a fake clock."""

    def __init__(self, clock: FakeClock, histories: dict[str, pd.DataFrame]) -> None:
        super().__init__(histories)
        self.clock = clock

    def download(
        self, tickers: list[str], start: dt.date, end: dt.date, threads: int
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        self.clock.now += 2.0
        return super().download(tickers, start, end, threads)


class OneSymbolBatches(MarketDataResource):
    """The yfinance provider, one symbol a batch, timed on a fake clock."""

    def _build(self) -> YahooProvider:
        clock = FakeClock()
        histories = {"SPLT": SPLT, "CALM": calm_history(), "AAA": SPLT, "BBB": SPLT}
        return YahooProvider(
            adapter=TickingYahoo(clock, histories),
            batch_size_range=1,
            retries=replace(YAHOO_RETRIES, sleep=lambda _: None),
            clock=clock,
        )


def test_raw_ohlcv_logs_each_batch_with_percent_and_eta(tmp_path, monkeypatch):
    platform = yfinance_platform(
        tmp_path, monkeypatch, "SPLT,CALM,AAA,BBB", OneSymbolBatches(source="yfinance")
    )
    run = platform.market(MARCH[0].isoformat(), MARCH[-1].isoformat(), assets=["raw_ohlcv"])
    assert run.success
    run_id = platform.instance.get_runs(limit=1)[0].run_id
    lines = [
        entry.user_message
        for entry in platform.instance.all_logs(run_id)
        if entry.dagster_event is None and entry.user_message.startswith("batch ")
    ]
    # Four batches of one symbol, two seconds each (30 symbols a minute), four March
    # sessions a symbol: after batch k, 4k rows, and 4 - k batches at 2 s are left.
    assert lines == [
        "batch 1/4 (25 %): 1/4 symbols, 4 rows, 0 failed so far, 30 symbols/min, ETA 6 s",
        "batch 2/4 (50 %): 2/4 symbols, 8 rows, 0 failed so far, 30 symbols/min, ETA 4 s",
        "batch 3/4 (75 %): 3/4 symbols, 12 rows, 0 failed so far, 30 symbols/min, ETA 2 s",
        "batch 4/4 (100 %): 4/4 symbols, 16 rows, 0 failed so far, 8 s in all",
    ]


ANSI = re.compile(r"\x1b\[")


def test_fintrack_demo_shows_progress_as_plain_lines_when_not_a_terminal(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINTRACK_")}
    env |= {
        "DAGSTER_HOME": str(tmp_path / "home"),
        "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
        "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
    }
    result = subprocess.run(
        [str(BIN / "fintrack"), "demo", "--days", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "\r" not in out and not ANSI.search(out)
    steps = re.findall(r"^  step (\d+)/(\d+) (\w+): [\d,]+/[\d,]+ partitions \(\d+ %\)", out, re.M)
    assert ("1", "raw_ohlcv") in {(number, name) for number, _, name in steps}
    assert {name for _, _, name in steps} >= {
        "bronze_ohlcv",
        "silver_ohlcv",
        "holdings_daily",
        "portfolio_risk",
        "payment_transactions",
        "fraud_predictions",
    }
    assert re.search(r"^  raw_ohlcv: batch 1/1 \(100 %\): 45/45 symbols, .* in all$", out, re.M)
    # The demo lands seven days of payments; the run reads them one day after another.
    days = re.findall(r"^  payment_transactions: day (\d)/7 \((\d+) %\)", out, re.M)
    assert days == [(str(n), str(n * 100 // 7)) for n in range(1, 8)]
    # A run's last line counts what it materialised.
    assert re.search(r"^  run \S+: ok in [\d.]+ s, 28/28 partitions$", out, re.M)
    assert "| fraud_predictions" in out


def test_on_a_terminal_the_run_is_drawn_in_place(tmp_path, monkeypatch):
    """A pseudo-terminal stands in for the user's screen; rich draws the last state when the
    run ends, then erases it."""
    monkeypatch.setenv("COLUMNS", "160")  # rich's width when stdio is no terminal
    platform = local_platform(tmp_path, monkeypatch, universe="AAPL,SPY")
    job = platform.defs.resolve_job_def("daily_market_job").get_subset(
        asset_selection={AssetKey(a) for a in BRONZE_LAYER}
    )
    tags = {
        "dagster/asset_partition_range_start": "2024-03-04",
        "dagster/asset_partition_range_end": "2024-03-07",
    }
    screen, terminal = pty.openpty()
    shown = bytearray()
    reader = threading.Thread(target=_drain, args=(screen, shown))
    reader.start()
    run_id = str(uuid.uuid4())
    with (
        os.fdopen(terminal, "w") as out,
        watching(platform.instance, run_id, "market", expected(job, tags), out) as progress,
    ):
        result = job.execute_in_process(
            instance=platform.instance, tags=tags, run_config=QUIET, run_id=run_id
        )
    reader.join()
    assert result.success
    # Three assets over four sessions.
    assert (progress.done, progress.total, progress.unit) == (12, 12, "partitions")
    text = shown.decode()
    assert ANSI.search(text)
    assert "12/12 partitions (100 %)" in text


def _drain(screen: int, shown: bytearray) -> None:
    """Reads the terminal until its last writer closes it."""
    while True:
        try:
            chunk = os.read(screen, 4096)
        except OSError:  # EIO: the terminal side is closed
            break
        if not chunk:
            break
        shown.extend(chunk)
    os.close(screen)
