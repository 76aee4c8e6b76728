"""Polygon.io as a market-data provider: daily bars, splits, dividends and ticker details.

A plain class (no dagster import) so it can be unit-tested against recorded payloads and
benchmarked against a local stub. Design points:

- One session is one request for the whole market (grouped daily); a range is one request
  per ticker (range aggregates, following `next_url`). Splits and dividends are fetched
  market-wide for the window (a few paged requests, not one per ticker) and joined on.
- Prices are as traded (`adjusted=false`): DESIGN wants `split_ratio` and `dividend` to carry
  the adjustments, so nothing is back-adjusted here. `adj_close` is null: Polygon serves no
  total-return close.
- Every request of a fetch goes through one `resources.http` client (one pooled
  `httpx.Client`, one thread pool of `max_concurrency`), so at most that many requests are in
  flight, whatever the batching; retries, `Retry-After` and what a status means are its.
- `budget` (`rate_limit_per_minute`, unlimited by default; the free tier allows 5) is the
  provider's, shared by every call and thread of it: each request, retries included, waits
  for a unit of it before it is sent (`resources.budget`).
- The API key travels only in the `Authorization` header and only to `base_url`: `next_url`
  is followed on `base_url` (its path and query), so a proxy or stub keeps working and the
  token never goes to a host it was not configured for. It is in no repr, log line, error
  string or `FetchResult`.
- A symbol that fails (after retries) is a failure row `(symbol, error, batch)`; only an
  authentication failure (401/403) raises, because every other request would fail the same.
- If the splits or dividends finally fail, every symbol of the fetch is marked failed with
  that error and no bars are returned: prices without their corporate actions would be
  silently wrong downstream (a split would look like a crash). A malformed split or dividend
  record (no date, no amount, split_from 0) fails just its symbol, for the same reason.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import polars as pl

from fintrack_assets.core.bronze import BAR_COLUMNS, empty_bars
from fintrack_assets.core.listings import polygon_listing
from fintrack_assets.core.symbols import is_valid_symbol
from fintrack_assets.resources.budget import RateBudget
from fintrack_assets.resources.fetching import (
    BatchBars,
    FetchResult,
    Log,
    Plan,
    Retries,
    failures_frame,
    gather,
    metadata_frame,
    plan_batches,
)
from fintrack_assets.resources.http import (
    CredentialsRefused,
    HttpClient,
    HttpPolicy,
    RequestFailed,
    threaded_client,
)
from fintrack_assets.resources.listings import ListingFailed

DEFAULT_BASE_URL = "https://api.polygon.io"
NEW_YORK = "America/New_York"
"""Polygon stamps daily bars in epoch ms; the session date is the New York date of `t`."""

INDEX_UNAVAILABLE = "index symbols are not available from Polygon's stocks API"
FX_UNAVAILABLE = "FX and futures symbols (with '=') are not available from Polygon's stocks API"
NO_BARS = "no bars returned for the window"
MALFORMED_ACTION = "malformed split or dividend record from Polygon for this symbol"
SINGLE_SESSION_BATCH = 1_000_000
"""One session's plan is one batch: the grouped request serves every symbol at once."""
MAX_PAGES = 10_000
"""A guard against a server that never stops handing out `next_url`."""
POLYGON_RETRIES = Retries(max_attempts=5, backoff_base_seconds=1.0, backoff_max_seconds=60.0)


class PolygonAuthError(RuntimeError):
    """Polygon refused the key (401/403): every request would fail, so the fetch stops."""


class PolygonRequestFailed(Exception):
    """A request that finally failed; `str()` is the short error recorded for its symbols."""


def to_polygon(symbol: str) -> str:
    """Our Yahoo-style class shares (`BRK-B`) as Polygon spells them (`BRK.B`)."""
    return symbol.replace("-", ".")


def from_polygon(ticker: str) -> str:
    """Polygon's `BRK.B` as our `BRK-B`."""
    return ticker.replace(".", "-")


def unsupported_reason(symbol: str) -> str | None:
    """Why a symbol is failed without a request, or None when Polygon can serve it."""
    if not is_valid_symbol(symbol):
        return "invalid symbol"
    if symbol.startswith("^"):
        return INDEX_UNAVAILABLE
    if "=" in symbol:
        return FX_UNAVAILABLE
    return None


def _parse_date(value: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class PolygonSession:
    """One call's Polygon requests over the shared client: JSON bodies, `next_url` paging
    on our base URL, and a refused key raised as `PolygonAuthError`."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http
        self.base = http.base_url

    @property
    def requests(self) -> int:
        return self.http.requests

    def get(self, url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET with retries; raises `PolygonRequestFailed` with a short reason, or
        `PolygonAuthError`."""
        try:
            response = self.http.request("GET", url, params=params)
        except CredentialsRefused as exc:
            raise PolygonAuthError(
                f"Polygon answered HTTP {exc.status} ({exc.meaning}): check POLYGON_API_KEY "
                "and that its plan covers this data"
            ) from None
        except RequestFailed as exc:
            raise PolygonRequestFailed(str(exc)) from None
        try:
            body = response.json()
        except ValueError:
            raise PolygonRequestFailed("invalid JSON in the response") from None
        if not isinstance(body, dict):
            raise PolygonRequestFailed("unexpected response shape")
        return body

    def rebased(self, next_url: str) -> str:
        """`next_url`'s path and query on our base URL, without any `apiKey` parameter."""
        parts = urlsplit(next_url)
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() == "apikey" for key, _ in pairs):
            query = urlencode([(k, v) for k, v in pairs if k.lower() != "apikey"])
        return f"{self.base}{parts.path}" + (f"?{query}" if query else "")

    def pages(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every page of a listing, following `next_url` until it is absent."""
        body = self.get(f"{self.base}{path}?{urlencode(params)}")  # cheaper than params=
        yield body
        seen: set[str] = set()
        while next_url := body.get("next_url"):
            if next_url in seen or len(seen) >= MAX_PAGES:
                raise PolygonRequestFailed(
                    "pagination did not end (next_url repeated or too many pages)"
                )
            seen.add(next_url)
            body = self.get(self.rebased(str(next_url)))
            yield body


def page_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    results = body.get("results")
    return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []


def _reference(
    session: PolygonSession, listing: str, on: str, first: dt.date, last: dt.date
) -> Iterator[dict[str, Any]]:
    """Every record of `/v3/reference/<listing>` whose date field `on` is in [first, last]."""
    params = {f"{on}.gte": first.isoformat(), f"{on}.lte": last.isoformat(), "limit": "1000"}
    for page in session.pages(f"/v3/reference/{listing}", params):
        yield from page_results(page)


@dataclass
class _Progress:
    """One batch's accounting while its symbols are in flight."""

    size: int
    open: int = 0
    started: float = float("inf")
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        """First request of the batch to its last symbol done (0 when nothing was sent)."""
        return max(0.0, self.ended - self.started) if self.started != float("inf") else 0.0


_ActionRow = tuple[str, dt.date | None, float | None]
"""(ticker, date, split ratio or cash); date or value None when Polygon's record is malformed."""


@dataclass(frozen=True)
class _Actions:
    """Splits and dividends of the window for the universe, in our symbol spelling, and the
    symbols with a malformed record (their bars would be wrong: they are failed)."""

    splits: list[tuple[str, dt.date, float]]
    dividends: list[tuple[str, dt.date, float]]
    malformed: set[str]


@dataclass
class PolygonProvider:
    """Daily bars and ticker details from Polygon.io (api_key from `POLYGON_API_KEY`)."""

    name: ClassVar[str] = "polygon"

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    max_concurrency: int = 16
    timeout_seconds: float = 30.0
    retries: Retries = POLYGON_RETRIES
    batch_size: int = 50
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    budget: RateBudget = field(default_factory=RateBudget.unlimited)

    @property
    def rate_limit_per_minute(self) -> int | None:
        return self.budget.per_minute

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("POLYGON_API_KEY is empty: the polygon provider needs a key")
        if self.max_concurrency < 1 or self.retries.max_attempts < 1 or self.batch_size < 1:
            raise ValueError("max_concurrency, max_attempts and batch_size must be >= 1")

    # -- bars -------------------------------------------------------------------------------

    def batch_size_for(self, sessions: int) -> int:
        """A range is one request per ticker, in batches; one session is one grouped request
        for the whole market, so one batch."""
        return self.batch_size if sessions > 1 else SINGLE_SESSION_BATCH

    def fetch(self, symbols: Sequence[str], sessions: Sequence[dt.date], log: Log) -> FetchResult:
        """Bars for `symbols` over `sessions` (ascending NYSE sessions of the window)."""
        symbols = list(dict.fromkeys(symbols))
        size = self.batch_size_for(len(sessions))
        plan = plan_batches(symbols, size) if sessions else []
        result = gather(self.fetch_batches(plan, sessions, log), len(plan), size, len(symbols), log)
        result.batch_size = self.batch_size if len(sessions) > 1 else len(symbols)
        return result

    def fetch_batches(
        self, plan: Plan, sessions: Sequence[dt.date], log: Log
    ) -> Iterator[BatchBars]:
        """The plan's batches, each once its symbols and the window's corporate actions are in."""
        plan = [(number, list(dict.fromkeys(group))) for number, group in plan if group]
        if not plan or not sessions:
            return
        with self.calls() as (session, pool):
            if len(sessions) == 1:
                yield from self._grouped(session, pool, plan, sessions[0], log)
            else:
                yield from self._ranges(session, pool, plan, sessions[0], sessions[-1], log)

    @contextmanager
    def calls(self) -> Iterator[tuple[PolygonSession, ThreadPoolExecutor]]:
        """One client and a pool of `max_concurrency` threads for a call (`threaded_client`:
        an auth failure stops every request not yet sent)."""
        retries = self.retries
        policy = HttpPolicy(
            self.max_concurrency,
            self.timeout_seconds,
            retries.max_attempts,
            retries.backoff_base_seconds,
            retries.backoff_max_seconds,
            self.transport,
            retries.sleep,
            self.budget,
        )
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with threaded_client(self.base_url, policy, "polygon", headers=headers) as (http, pool):
            yield PolygonSession(http), pool

    def _submit_actions(
        self, session: PolygonSession, pool: ThreadPoolExecutor, first: dt.date, last: dt.date
    ) -> list[Future[list[_ActionRow]]]:
        """Splits and dividends as two pool tasks, started before the bars."""
        return [
            pool.submit(self._splits, session, first, last),
            pool.submit(self._dividends, session, first, last),
        ]

    def _splits(self, session: PolygonSession, first: dt.date, last: dt.date) -> list[_ActionRow]:
        rows = []
        for split in _reference(session, "splits", "execution_date", first, last):
            split_from, split_to = _number(split.get("split_from")), _number(split.get("split_to"))
            ratio = split_to / split_from if split_from and split_to else None
            rows.append((str(split.get("ticker")), _parse_date(split.get("execution_date")), ratio))
        return rows

    def _dividends(
        self, session: PolygonSession, first: dt.date, last: dt.date
    ) -> list[_ActionRow]:
        rows = []
        for dividend in _reference(session, "dividends", "ex_dividend_date", first, last):
            day = _parse_date(dividend.get("ex_dividend_date"))
            rows.append((str(dividend.get("ticker")), day, _number(dividend.get("cash_amount"))))
        return rows

    @staticmethod
    def _actions_outcome(
        futures: list[Future[list[_ActionRow]]], symbols: list[str]
    ) -> _Actions | str:
        """The window's actions for `symbols` (Polygon spells them its way), or the error
        that makes every symbol's bars unusable."""
        try:
            splits, dividends = (future.result() for future in futures)
        except PolygonRequestFailed as exc:
            return f"corporate actions: {exc}"
        ours = {to_polygon(symbol): symbol for symbol in symbols}
        actions = _Actions([], [], set())
        for rows, kept in ((splits, actions.splits), (dividends, actions.dividends)):
            for ticker, day, value in rows:
                symbol = ours.get(ticker)
                if symbol is None:
                    continue
                if day is None or value is None:
                    actions.malformed.add(symbol)
                else:
                    kept.append((symbol, day, value))
        return actions

    def _grouped(
        self, session: PolygonSession, pool: ThreadPoolExecutor, plan: Plan, day: dt.date, log: Log
    ) -> Iterator[BatchBars]:
        """One session: one grouped-daily request for the whole market serves every batch."""
        started = time.perf_counter()
        symbols = [symbol for _, group in plan for symbol in group]
        actions = self._submit_actions(session, pool, day, day)
        grouped = pool.submit(
            session.get,
            f"{session.base}/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}",
            {"adjusted": "false"},
        )
        batch_of = {symbol: number for number, group in plan for symbol in group}
        failures: list[tuple[str, str, int]] = []
        wanted: dict[str, str] = {}
        for symbol in symbols:
            reason = unsupported_reason(symbol)
            if reason:
                failures.append((symbol, reason, batch_of[symbol]))
            else:
                wanted[to_polygon(symbol)] = symbol
        bars: dict[str, list[dict[str, Any]]] = {}
        try:
            for bar in page_results(grouped.result()):
                symbol = wanted.get(str(bar.get("T")))
                if symbol is not None:
                    bars.setdefault(symbol, []).append(bar)
            failures.extend((s, NO_BARS, batch_of[s]) for s in wanted.values() if s not in bars)
        except PolygonRequestFailed as exc:
            failures.extend((s, str(exc), batch_of[s]) for s in wanted.values())
            bars = {}
        outcome = self._actions_outcome(actions, symbols)
        _say_if_failed(outcome, log)
        bars, failures = _settle(bars, failures, outcome, symbols, batch_of)
        seconds = time.perf_counter() - started
        for number, group in plan:
            yield _batch_bars(number, group, bars, failures, outcome, seconds, session.requests)

    def _symbol_bars(
        self, session: PolygonSession, symbol: str, first: dt.date, last: dt.date
    ) -> tuple[float, list[dict[str, Any]] | str]:
        """(start time, bars or error) of one ticker's range, every page of it."""
        started = time.perf_counter()
        path = (
            f"/v2/aggs/ticker/{to_polygon(symbol)}/range/1/day/"
            f"{first.isoformat()}/{last.isoformat()}"
        )
        params = {"adjusted": "false", "sort": "asc", "limit": "50000"}
        bars: list[dict[str, Any]] = []
        try:
            for page in session.pages(path, params):
                bars.extend(page_results(page))
        except PolygonRequestFailed as exc:
            return started, str(exc)
        return started, bars if bars else NO_BARS

    def _ranges(
        self,
        session: PolygonSession,
        pool: ThreadPoolExecutor,
        plan: Plan,
        first: dt.date,
        last: dt.date,
        log: Log,
    ) -> Iterator[BatchBars]:
        """Several sessions: one range request per ticker (paged), all through one pool. A
        batch is yielded once its symbols are done and the corporate actions are in (they are
        submitted first, so they rarely hold a batch back): only then is it final."""
        symbols = [symbol for _, group in plan for symbol in group]
        actions = self._submit_actions(session, pool, first, last)
        groups = dict(plan)
        progress = {number: _Progress(len(group)) for number, group in plan}
        batch_of: dict[str, int] = {}
        failures: list[tuple[str, str, int]] = []
        pending: dict[Future[tuple[float, list[dict[str, Any]] | str]], str] = {}
        for number, group in plan:
            for symbol in group:
                batch_of[symbol] = number
                reason = unsupported_reason(symbol)
                if reason:
                    failures.append((symbol, reason, number))
                else:
                    pending[pool.submit(self._symbol_bars, session, symbol, first, last)] = symbol
                    progress[number].open += 1
        completed = [number for number, state in progress.items() if state.open == 0]
        bars: dict[str, list[dict[str, Any]]] = {}
        outcome: _Actions | str | None = None

        def settled(number: int, known: _Actions | str) -> BatchBars:
            """Batch `number`, its symbols done and the actions known, with its bars handed
            over (so they are not held twice)."""
            group = groups[number]
            mine = [f for f in failures if f[2] == number]
            kept, mine = _settle(
                {s: bars.pop(s) for s in group if s in bars}, mine, known, group, batch_of
            )
            seconds = progress[number].seconds
            return _batch_bars(number, group, kept, mine, known, seconds, session.requests)

        # as_completed registers its waiter once; wait(FIRST_COMPLETED) in a loop would
        # re-register on every pending future per wake-up (quadratic, under the GIL).
        for future in as_completed([*actions, *pending]):
            if future in pending:
                symbol = pending.pop(future)
                state = progress[batch_of[symbol]]
                started, result = future.result()  # PolygonAuthError propagates
                state.started = min(state.started, started)
                if isinstance(result, str):
                    failures.append((symbol, result, batch_of[symbol]))
                else:
                    bars[symbol] = result
                state.open -= 1
                if state.open == 0:
                    state.ended = time.perf_counter()
                    completed.append(batch_of[symbol])
            if outcome is None and all(action.done() for action in actions):
                outcome = self._actions_outcome(actions, symbols)
                _say_if_failed(outcome, log)
            if outcome is not None:
                yield from (settled(number, outcome) for number in completed)
                completed = []
        if outcome is None:  # only without any symbol to wait for
            outcome = self._actions_outcome(actions, symbols)
            _say_if_failed(outcome, log)
        yield from (settled(number, outcome) for number in completed)

    # -- ticker details ---------------------------------------------------------------------

    def symbol_metadata(
        self, symbols: Sequence[str], log: Log
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(symbol, name, sector, industry) from ticker details, and the failures (batch 0).
        Polygon has no GICS sector, so `sector` is null; `industry` is the SIC description."""
        symbols = list(dict.fromkeys(symbols))
        started = time.perf_counter()
        rows: list[tuple[str, str | None, None, str | None]] = []
        failures: list[tuple[str, str, int]] = []
        with self.calls() as (session, pool):
            futures: dict[Future[dict[str, Any]], str] = {}
            for symbol in symbols:
                reason = unsupported_reason(symbol)
                if reason:
                    failures.append((symbol, reason, 0))
                    continue
                url = f"{session.base}/v3/reference/tickers/{to_polygon(symbol)}"
                futures[pool.submit(session.get, url)] = symbol
            for future, symbol in futures.items():
                try:
                    details = future.result().get("results")
                except PolygonRequestFailed as exc:
                    failures.append((symbol, str(exc), 0))
                    continue
                if not isinstance(details, dict):
                    failures.append((symbol, "no ticker details returned", 0))
                    continue
                rows.append(
                    (
                        symbol,
                        _text(details.get("name")),
                        None,
                        _text(details.get("sic_description")),
                    )
                )
        log(
            f"ticker details: {len(symbols)} symbols, {len(failures)} failed, "
            f"{session.requests} requests, {time.perf_counter() - started:.1f} s"
        )
        return metadata_frame(rows), failures_frame(failures)

    # -- the `all` universe -----------------------------------------------------------------

    def listing(self, log: Log) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Every active ticker of the stocks market (`/v3/reference/tickers`, 1,000 a page,
        following `next_url`) kept to stocks and ETFs (core/listings.py), and the rest left
        out with their type. A page that finally fails fails the listing (`ListingFailed`):
        half a listing would drop symbols silently."""
        started = time.perf_counter()
        params = {"market": "stocks", "active": "true", "limit": "1000"}
        records: list[dict[str, Any]] = []
        pages = 0
        try:
            with self.calls() as (session, _):
                for page in session.pages("/v3/reference/tickers", params):
                    records.extend(page_results(page))
                    pages += 1
        except (PolygonRequestFailed, PolygonAuthError) as exc:
            raise ListingFailed(f"Polygon's reference tickers: {exc}") from None
        universe, left_out = polygon_listing(records)
        log(
            f"Polygon listing: {len(records):,} tickers in {pages} page(s), "
            f"{universe.height:,} stocks and ETFs, {left_out.height:,} left out, "
            f"{time.perf_counter() - started:.1f} s"
        )
        return universe, left_out


def _settle(
    bars: dict[str, list[dict[str, Any]]],
    failures: list[tuple[str, str, int]],
    outcome: _Actions | str,
    symbols: list[str],
    batch_of: dict[str, int],
) -> tuple[dict[str, list[dict[str, Any]]], list[tuple[str, str, int]]]:
    """The symbols' results once the corporate actions are known. Failed actions fail every
    symbol (its own error wins where it had one); a malformed action record fails its
    symbol. Either way no bar is kept whose adjustments are unknown."""
    if isinstance(outcome, str):
        already = {symbol for symbol, _, _ in failures}
        return {}, failures + [
            (symbol, outcome, batch_of[symbol]) for symbol in symbols if symbol not in already
        ]
    for symbol in sorted(outcome.malformed & bars.keys()):
        failures.append((symbol, MALFORMED_ACTION, batch_of[symbol]))
        del bars[symbol]
    return bars, failures


def _say_if_failed(outcome: _Actions | str, log: Log) -> None:
    if isinstance(outcome, str):
        log(f"{outcome}: every symbol marked failed, no bars kept")


def _batch_bars(
    number: int,
    group: list[str],
    bars: dict[str, list[dict[str, Any]]],
    failures: list[tuple[str, str, int]],
    outcome: _Actions | str,
    seconds: float,
    requests: int,
) -> BatchBars:
    """One batch's settled bars (actions joined) and failures."""
    members = set(group)
    mine = {symbol: rows for symbol, rows in bars.items() if symbol in members}
    return BatchBars(
        number,
        group,
        _with_actions(_bars_frame(mine), outcome),
        failures_frame([f for f in failures if f[0] in members]),
        seconds,
        requests,
    )


_AGG_SCHEMA = {"t": pl.Int64, **dict.fromkeys("ohlcv", pl.Float64)}


def _bars_frame(bars: dict[str, list[dict[str, Any]]]) -> pl.DataFrame:
    """Aggregates as our bar columns: as traded, `t` (epoch ms) to its New York date. A
    value of the wrong type becomes null (bronze rejects the bar with its reason)."""
    symbol: list[str] = []
    for name, results in bars.items():
        symbol.extend([name] * len(results))
    if not symbol:
        return empty_bars()
    flat = [bar for results in bars.values() for bar in results]
    try:  # polars reads the dicts natively, faster than columns built in Python
        raw = pl.from_dicts(flat, schema=_AGG_SCHEMA, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError):  # e.g. "n/a" for a price
        columns = {key: [bar.get(key) for bar in flat] for key in _AGG_SCHEMA}
        raw = pl.DataFrame(columns, schema=_AGG_SCHEMA, strict=False)
    raw = raw.with_columns(pl.Series("symbol", symbol, dtype=pl.String))
    return raw.select(
        "symbol",
        pl.from_epoch("t", time_unit="ms")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(NEW_YORK)
        .dt.date()
        .alias("date"),
        pl.col("o").alias("open"),
        pl.col("h").alias("high"),
        pl.col("l").alias("low"),
        pl.col("c").alias("close"),
        pl.lit(None, dtype=pl.Float64).alias("adj_close"),
        pl.col("v").round(0).cast(pl.Int64).alias("volume"),
        pl.lit(0.0).alias("dividend"),
        pl.lit(1.0).alias("split_ratio"),
    )


def _with_actions(bars: pl.DataFrame, actions: _Actions | str) -> pl.DataFrame:
    """`split_ratio` (split_to / split_from, 1.0 otherwise) and `dividend` (cash on the
    ex-date, 0.0 otherwise) joined onto the bars; actions of other symbols drop out."""
    schema = empty_bars().schema
    if bars.is_empty() or isinstance(actions, str):
        return empty_bars()
    keys = {"symbol": pl.String, "date": pl.Date}
    splits = (
        pl.DataFrame(actions.splits, schema={**keys, "ratio": pl.Float64}, orient="row")
        .group_by("symbol", "date")
        .agg(pl.col("ratio").product())
    )
    dividends = (
        pl.DataFrame(actions.dividends, schema={**keys, "cash": pl.Float64}, orient="row")
        .group_by("symbol", "date")
        .agg(pl.col("cash").sum())
    )
    return (
        bars.join(splits, on=["symbol", "date"], how="left")
        .join(dividends, on=["symbol", "date"], how="left")
        .with_columns(
            pl.col("ratio").fill_null(1.0).alias("split_ratio"),
            pl.col("cash").fill_null(0.0).alias("dividend"),
        )
        .select(BAR_COLUMNS)
        .cast(dict(schema))
    )


__all__ = [
    "DEFAULT_BASE_URL",
    "POLYGON_RETRIES",
    "PolygonAuthError",
    "PolygonProvider",
    "PolygonRequestFailed",
    "PolygonSession",
    "from_polygon",
    "page_results",
    "to_polygon",
    "unsupported_reason",
]
