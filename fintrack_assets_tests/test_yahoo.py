"""The yfinance provider on recorded frames in the exact shapes yfinance 1.7 returns.

`RecordedYahoo` stands in for Yahoo's servers only: it slices recorded per-ticker histories
(the shape of `Ticker.history(actions=True, auto_adjust=False)`) and assembles them with
yfinance's own `reindex_dfs`, `utils.empty_df` and concat, as `yf.download` does, so the
provider meets the real MultiIndex, all-NaN failed tickers and the all-failed shape.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from yfinance import utils as yf_utils
from yfinance.multi import reindex_dfs

from fintrack_assets.resources.fetching import Retries
from fintrack_assets.resources.yahoo import YAHOO_RETRIES, YahooProvider, _ErrorCapture

D = dt.date
NY = "America/New_York"
DATA = Path(__file__).parent / "data" / "yahoo"
RATE_LIMIT = "YFRateLimitError('Too Many Requests. Rate limited. Try after a while.')"


def calm_history() -> pd.DataFrame:
    """A real Yahoo daily history (Cal-Maine Foods), as `Ticker.history` returns it."""
    frame = pd.read_csv(DATA / "CALM-1d.csv")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("Datetime"), utc=True)).tz_convert(NY)
    frame.index.name = "Date"
    return frame


def history(rows: dict[dt.date, tuple[float, float, int, float, float]]) -> pd.DataFrame:
    """Bars as Yahoo serves them: (Close, Adj Close, Volume, Dividends, Stock Splits) by day."""
    index = pd.DatetimeIndex([pd.Timestamp(d).tz_localize(NY) for d in rows], name="Date")
    closes = [r[0] for r in rows.values()]
    return pd.DataFrame(
        {
            "Open": closes,
            "High": [c + 1 for c in closes],
            "Low": [c - 1 for c in closes],
            "Close": closes,
            "Adj Close": [r[1] for r in rows.values()],
            "Volume": [r[2] for r in rows.values()],
            "Dividends": [r[3] for r in rows.values()],
            "Stock Splits": [r[4] for r in rows.values()],
        },
        index=index,
    )


# SPLT trades at 400 and 404 before a 4:1 split on 2024-03-06 (101, 102 after), pays 0.80 a
# share on 2024-03-07, then splits 2:1 on 2024-06-03, after the window. Yahoo serves every
# price divided by the splits after its day (8 before the first split, 2 after), volumes
# multiplied by them, and the dividend on today's basis (0.40).
SPLT = history(
    {
        D(2024, 3, 4): (50.0, 49.0, 8_000, 0.0, 0.0),
        D(2024, 3, 5): (50.5, 49.5, 16_000, 0.0, 0.0),
        D(2024, 3, 6): (50.5, 49.6, 6_000, 0.0, 4.0),
        D(2024, 3, 7): (51.0, 50.1, 4_000, 0.4, 0.0),
    }
)
SPLT_SPLITS = pd.Series(
    [4.0, 2.0],
    index=pd.DatetimeIndex(
        [pd.Timestamp("2024-03-06").tz_localize(NY), pd.Timestamp("2024-06-03").tz_localize(NY)]
    ),
    name="Stock Splits",
)
INDEX = history(
    {
        d: (5000.0 + i, 5000.0 + i, 0, 0.0, 0.0)
        for i, d in enumerate([D(2024, 3, 4), D(2024, 3, 5), D(2024, 3, 6), D(2024, 3, 7)])
    }
)


class RecordedYahoo:
    """Recorded histories served as yfinance 1.7 would; scripted failures per call."""

    def __init__(
        self,
        histories: dict[str, pd.DataFrame],
        splits: dict[str, pd.Series] | None = None,
        failures: list[dict[str, str]] | None = None,
        split_errors: dict[str, Exception] | None = None,
    ) -> None:
        self.histories = histories
        self.split_history = splits or {}
        self.failures = list(failures or [])
        self.split_errors = split_errors or {}
        self.calls: list[list[str]] = []
        self.split_calls: list[str] = []

    def download(
        self, tickers: list[str], start: dt.date, end: dt.date, threads: int
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        assert 1 <= threads <= len(tickers)
        self.calls.append(list(tickers))
        failing = self.failures.pop(0) if self.failures else {}
        dfs: dict[str, pd.DataFrame] = {}
        errors: dict[str, str] = {}
        for ticker in tickers:
            full = self.histories.get(ticker)
            if ticker in failing or full is None:
                dfs[ticker] = yf_utils.empty_df()
                errors[ticker] = failing.get(ticker, "possibly delisted; no price data found")
                continue
            days = full.index.tz_localize(None).normalize()
            part = full[(days >= pd.Timestamp(start)) & (days < pd.Timestamp(end))].copy()
            dfs[ticker] = part if not part.empty else yf_utils.empty_df()
        # The tail of yfinance.multi._download_impl (ignore_tz for daily, group_by="ticker").
        for df in dfs.values():
            if df is not None and df.shape[0] > 0:
                df.index = df.index.tz_localize(None)
        dfs = reindex_dfs(dfs, True)
        data = pd.concat(
            dfs.values(), axis=1, sort=True, keys=dfs.keys(), names=["Ticker", "Price"]
        )
        return data, errors

    def splits(self, ticker: str) -> pd.Series:
        self.split_calls.append(ticker)
        if ticker in self.split_errors:
            raise self.split_errors[ticker]
        return self.split_history.get(ticker, pd.Series([], dtype="float64", name="Stock Splits"))

    def info(self, ticker: str) -> dict[str, str]:
        if ticker == "BAD":
            raise ConnectionError("Yahoo unreachable")
        return {"longName": f"{ticker} Corp", "sector": "Energy", "industry": "Oil & Gas"}


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def provider(
    adapter: RecordedYahoo, retries: Retries = YAHOO_RETRIES, **options: object
) -> tuple[YahooProvider, Sleeps]:
    sleeps = Sleeps()
    retries = replace(retries, sleep=sleeps)
    return YahooProvider(adapter=adapter, retries=retries, **options), sleeps  # type: ignore[arg-type]


def sessions(*days: dt.date) -> list[dt.date]:
    return list(days)


MARCH = sessions(D(2024, 3, 4), D(2024, 3, 5), D(2024, 3, 6), D(2024, 3, 7))


def row(bars: pl.DataFrame, symbol: str, day: dt.date) -> dict[str, object]:
    return bars.filter((pl.col("symbol") == symbol) & (pl.col("date") == day)).row(0, named=True)


def test_split_inside_and_after_the_window_rebuilds_prices_as_traded():
    adapter = RecordedYahoo({"SPLT": SPLT}, splits={"SPLT": SPLT_SPLITS})
    yahoo, _ = provider(adapter)
    result = yahoo.fetch(["SPLT"], MARCH, log=lambda _: None)
    bars = result.bars.sort("date")
    assert bars["close"].to_list() == [400.0, 404.0, 101.0, 102.0]
    assert bars["high"].to_list() == [408.0, 412.0, 103.0, 104.0]
    assert bars["volume"].to_list() == [1_000, 2_000, 3_000, 2_000]
    assert bars["dividend"].to_list() == [0.0, 0.0, 0.0, 0.8]
    assert bars["split_ratio"].to_list() == [1.0, 1.0, 4.0, 1.0]
    assert bars["adj_close"].to_list() == [49.0, 49.5, 49.6, 50.1]  # as served
    assert result.failures.is_empty()


def test_real_history_passes_through_to_the_cent_with_its_dividend():
    adapter = RecordedYahoo({"CALM": calm_history()})
    yahoo, _ = provider(adapter)
    week = sessions(D(2022, 4, 25), D(2022, 4, 26), D(2022, 4, 27))
    bars = yahoo.fetch(["CALM"], week, log=lambda _: None).bars
    ex_date = row(bars, "CALM", D(2022, 4, 26))
    assert ex_date["close"] == pytest.approx(53.48, abs=0.005)
    assert ex_date["open"] == pytest.approx(54.23, abs=0.005)
    assert ex_date["adj_close"] == pytest.approx(46.3955, abs=0.00005)
    assert ex_date["volume"] == 856_700
    assert ex_date["dividend"] == 0.125
    assert bars.height == 3 and bars["split_ratio"].to_list() == [1.0, 1.0, 1.0]


def test_failed_ticker_is_retried_alone_and_recorded_with_its_error():
    adapter = RecordedYahoo(
        {"SPLT": SPLT, "CALM": calm_history()},
        splits={"SPLT": SPLT_SPLITS},
        failures=[{"GONE": "possibly delisted; no price data found"}] * 9,
    )
    yahoo, sleeps = provider(
        adapter, replace(YAHOO_RETRIES, max_attempts=3, backoff_base_seconds=2.0)
    )
    lines: list[str] = []
    result = yahoo.fetch(["SPLT", "GONE"], MARCH, log=lines.append)
    assert adapter.calls == [["SPLT", "GONE"], ["GONE"], ["GONE"]]
    assert len(sleeps) == 2 and all(0 <= s <= 60 for s in sleeps)
    assert result.failures.rows() == [
        ("GONE", "possibly delisted; no price data found after 3 attempts", 1)
    ]
    assert result.bars["symbol"].unique().to_list() == ["SPLT"]
    assert result.symbols_requested == 2 and result.symbols_failed == 1
    assert result.requests == 4 + 1  # 2 + 1 + 1 tickers downloaded, 1 split history
    assert len(lines) == 1 and lines[0].startswith("batch 1/1 (100 %): 2 symbols, ")
    assert ", 1 failed, " in lines[0] and lines[0].endswith(" in all")


def test_rate_limit_backs_off_longer_then_succeeds():
    adapter = RecordedYahoo(
        {"SPLT": SPLT, "^GSPC": INDEX},
        splits={"SPLT": SPLT_SPLITS},
        failures=[{"SPLT": RATE_LIMIT, "^GSPC": RATE_LIMIT}],
    )
    yahoo, sleeps = provider(adapter, rate_limit_backoff_seconds=30.0)
    result = yahoo.fetch(["SPLT", "^GSPC"], MARCH, log=lambda _: None)
    assert adapter.calls == [["SPLT", "^GSPC"], ["SPLT", "^GSPC"]]
    assert len(sleeps) == 1 and sleeps[0] >= 30.0
    assert result.failures.is_empty()
    assert row(result.bars, "^GSPC", D(2024, 3, 6))["close"] == 5002.0
    assert adapter.split_calls == ["SPLT"]  # an index has no split history to ask for


def test_all_failed_shape_is_failures_not_a_crash():
    adapter = RecordedYahoo({}, failures=[{"AAA": RATE_LIMIT, "BRK-B": RATE_LIMIT}] * 2)
    yahoo, _ = provider(adapter, replace(YAHOO_RETRIES, max_attempts=2))
    frame, _ = RecordedYahoo({}).download(["AAA", "BRK-B"], D(2024, 3, 4), D(2024, 3, 8), 2)
    assert frame.shape[0] == 0 and "Dividends" not in frame.columns.get_level_values("Price")
    result = yahoo.fetch(["AAA", "BRK-B"], MARCH, log=lambda _: None)
    assert result.bars.is_empty() and result.bars.columns[:2] == ["symbol", "date"]
    assert sorted(result.failures["symbol"].to_list()) == ["AAA", "BRK-B"]
    assert all(RATE_LIMIT in e for e in result.failures["error"].to_list())


def test_split_history_unavailable_fails_the_symbol_not_the_batch():
    adapter = RecordedYahoo(
        {"SPLT": SPLT, "CALM": calm_history()},
        split_errors={"SPLT": ConnectionError("connection reset")},
    )
    yahoo, sleeps = provider(adapter, replace(YAHOO_RETRIES, max_attempts=3))
    result = yahoo.fetch(["SPLT", "CALM"], sessions(D(2024, 3, 4), D(2024, 3, 5)), lambda _: None)
    assert adapter.split_calls == ["SPLT"] * 3 + ["CALM"]
    assert len(sleeps) == 2
    assert result.failures.rows() == [
        ("SPLT", "split history unavailable: ConnectionError: connection reset", 1)
    ]
    assert "SPLT" not in result.bars["symbol"].to_list()


def test_batches_follow_the_window_and_split_history_is_asked_once_per_run():
    adapter = RecordedYahoo({"SPLT": SPLT, "CALM": calm_history(), "BRK-B": SPLT})
    yahoo, _ = provider(adapter, batch_size_single=2, batch_size_range=1)
    lines: list[str] = []
    single = yahoo.fetch(["SPLT", "CALM", "BRK-B"], [D(2024, 3, 6)], log=lines.append)
    assert single.batch_size == 2 and [b.symbols for b in single.batches] == [2, 1]
    ranged = yahoo.fetch(["SPLT", "CALM", "BRK-B"], MARCH, log=lines.append)
    assert ranged.batch_size == 1 and len(ranged.batches) == 3
    assert [line.split(":")[0] for line in lines] == [
        "batch 1/2 (50 %)",
        "batch 2/2 (100 %)",
        "batch 1/3 (33 %)",
        "batch 2/3 (66 %)",
        "batch 3/3 (100 %)",
    ]
    assert sorted(adapter.split_calls) == ["BRK-B", "CALM", "SPLT"]
    assert row(ranged.bars, "BRK-B", D(2024, 3, 6))["close"] == 50.5


def test_a_bar_is_the_same_alone_and_inside_a_range():
    adapter = RecordedYahoo({"SPLT": SPLT}, splits={"SPLT": SPLT_SPLITS})
    yahoo, _ = provider(adapter)
    for day in MARCH:
        alone = yahoo.fetch(["SPLT"], [day], lambda _: None).bars
        ranged = yahoo.fetch(["SPLT"], MARCH, lambda _: None).bars
        assert alone.height == 1
        assert alone.row(0, named=True) == row(ranged, "SPLT", day)


def test_metadata_is_best_effort():
    yahoo, _ = provider(RecordedYahoo({}))
    frame, failures = yahoo.symbol_metadata(["XOM", "BAD"], lambda _: None)
    assert frame.rows() == [("XOM", "XOM Corp", "Energy", "Oil & Gas")]
    assert failures.rows() == [("BAD", "ConnectionError: Yahoo unreachable", 0)]


def test_yfinance_error_lines_become_errors_per_ticker():
    capture = _ErrorCapture()
    logger = logging.getLogger("yfinance.test")
    logger.addHandler(capture)
    try:
        logger.error("\n2 Failed downloads:")
        logger.error(f"['AAPL', 'BRK-B']: {RATE_LIMIT}")
        logger.error("['ZZZZ']: possibly delisted; no price data found")
    finally:
        logger.removeHandler(capture)
    assert capture.errors == {
        "AAPL": RATE_LIMIT,
        "BRK-B": RATE_LIMIT,
        "ZZZZ": "possibly delisted; no price data found",
    }
