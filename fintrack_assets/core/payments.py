"""Landing CSVs of payment transactions -> typed payments, streamed; bad rows rejected.

Pure: a byte stream in, frames out, chunk by chunk, so a file of any size parses in flat
memory (the landing zone opens the files, the asset writes the tables). Nothing is dropped
silently: every non-blank row ends up either valid or a reject with its `;`-joined reasons,
and a file that has no row to blame for its problem becomes one reject with a null `line`.

Two layouts load as they are, told apart by the header:
- the documented one, `PAYMENT_COLUMNS` (extra columns ignored);
- Sparkov, the public synthetic credit-card data (Kaggle "fraudTrain.csv"), renamed by
  `SPARKOV_MAPPING`. It has no currency column: it is USD. Its label `is_fraud` is not read.
The documented layout wins when the header has all its columns.

Conventions:
- Values are trimmed of ASCII whitespace; an empty cell is null. Each physical line is one
  row: a quoted value may not span lines, so a broken quote costs one row, not the file.
- `ts` is ISO 8601 (`T` or a space, optional seconds and fraction, optional `Z` or offset
  `+HH:MM`/`+HHMM`/`+HH`); without an offset it is UTC, as Sparkov's local-less times are.
  It must fall on the partition's UTC `day`.
- The platform is USD-only: `currency` must be USD (any case) and comes out as "USD"; other
  currencies are rejected `non_usd` rather than converted, since no FX rates are at hand.
- `lat, lon, merch_lat, merch_lon` may be empty (card-not-present payments have no place);
  when given they must be numbers in range.
- A `transaction_id` already accepted earlier in the file, or in an earlier file of the day
  when the caller passes the same `seen` (SeenIds), is `duplicate_transaction_id`. A rejected row
  never claims its id, so a later good row with that id is kept.

Reasons. For the whole file: `empty_file`, `malformed_header`, `missing_column:<name>` (the
file's own column name), `bad_encoding` (an undecodable header). For a row, alone:
`bad_encoding` (not UTF-8, or a NUL byte), `bad_field_count`, `malformed_row` (broken quoting),
`line_too_long` (past csv_lines.LINE_LIMIT in a chunk pyarrow could not split). For a row's
values, as many as apply: `missing_transaction_id`, `missing_account_id`, `unparseable_ts`,
`ts_outside_day`, `unparseable_amount` (also empty, NaN or infinite), `non_positive_amount`,
`out_of_range_amount` (above AMOUNT_MAX), `non_usd`, `unparseable_<coordinate>`,
`out_of_range_<coordinate>`; and, for an otherwise valid row, `duplicate_transaction_id`.

Speed: each chunk goes through pyarrow's C++ CSV parser and numpy checks (throughput:
benchmarks/README.md); only chunks with blank lines, bad bytes or broken rows are split line
by line in Python to find the culprits.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pacompute
import pyarrow.csv as pacsv

from fintrack_assets.core.bronze import reject_counts
from fintrack_assets.core.csv_lines import is_text, line_chunks, printable, read_header, split_line

__all__ = [
    "AMOUNT_MAX",
    "PAYMENT_COLUMNS",
    "PAYMENT_SCHEMA",
    "REJECT_SCHEMA",
    "SPARKOV_MAPPING",
    "SeenIds",
    "read_payments",
    "reject_counts",
]

PAYMENT_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "account_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "amount": pl.Float64(),
    "currency": pl.String(),
    "merchant": pl.String(),
    "category": pl.String(),
    "lat": pl.Float64(),
    "lon": pl.Float64(),
    "merch_lat": pl.Float64(),
    "merch_lon": pl.Float64(),
}
PAYMENT_COLUMNS = tuple(PAYMENT_SCHEMA)

SPARKOV_MAPPING: dict[str, str] = {
    "trans_num": "transaction_id",
    "cc_num": "account_id",
    "trans_date_trans_time": "ts",
    "amt": "amount",
    "merchant": "merchant",
    "category": "category",
    "lat": "lat",
    "long": "lon",
    "merch_lat": "merch_lat",
    "merch_long": "merch_lon",
}
"""Sparkov column -> documented column. Its `currency` is always USD."""
_SPARKOV_KEYS = ("trans_num", "cc_num", "trans_date_trans_time", "amt")
"""Present in a header without the documented columns: the file is Sparkov."""

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "line": pl.Int64(),
    "transaction_id": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
}
"""`line` is 1-based in the file (the header is line 1), null for a reject that stands for a
whole file. `raw` is the offending value when the row has one value-level reason, else the
row's text; at most RAW_CHARS characters."""
RAW_CHARS = 200

AMOUNT_MAX = 1e6
"""The largest plausible payment, USD (`out_of_range_amount` above it): far beyond any card
payment (Sparkov's largest is under 30,000), and small enough that sums stay finite and exact."""
_COORDINATES = {"lat": 90.0, "lon": 180.0, "merch_lat": 90.0, "merch_lon": 180.0}
"""Coordinate column -> largest absolute value."""
_RAW_VALUE = {
    "unparseable_ts": "ts",
    "ts_outside_day": "ts",
    "unparseable_amount": "amount",
    "non_positive_amount": "amount",
    "out_of_range_amount": "amount",
    "non_usd": "currency",
    "duplicate_transaction_id": "transaction_id",
} | {f"{kind}_{c}": c for c in _COORDINATES for kind in ("unparseable", "out_of_range")}
"""Reason -> the column whose value `raw` shows when it is a row's only reason."""

_TS_PATTERN = (
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2})(:\d{2})?(?:[.,](\d{1,9}))?"
    r"\s*(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)?$"
)
_WHITESPACE = " \t\r\n\x0b\x0c"
"""Trimmed from values: ASCII whitespace only, so a value reads the same in any chunk."""
_PADDING = (b" ", b"\t", b"\x0b", b"\x0c")
"""Without any of these bytes in a chunk, no value needs trimming and the pass is skipped
(single bytes: Python finds them at memchr speed)."""


def _hash_ids(ids: pl.Series) -> np.ndarray:
    """64-bit hashes of ids (polars' hash, fixed seed: stable within a process)."""
    return ids.hash(seed=0x5EED).to_numpy()


class SeenIds:
    """The transaction ids accepted so far in a day, exact, in about (id length + 16) bytes an
    id instead of a Python set's ~100 (10M ids held ~1 GB as a set of strings). Each id is a
    64-bit hash in sorted numpy runs (merged as they grow, as a binary counter does, so a
    lookup is a binary search in a few runs) beside its position in an append-only store of
    the ids' text (pyarrow string arrays, one per batch added). A hash match is confirmed by
    comparing the stored text, so two ids sharing a hash are never taken for a repeat."""

    def __init__(self, hasher: Callable[[pl.Series], np.ndarray] = _hash_ids) -> None:
        self._hash = hasher
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        """(hashes ascending, position of each id in the text store)."""
        self._texts: list[pa.Array] = []
        self._starts: list[int] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, transaction_id: object) -> bool:
        ids = pl.Series([transaction_id], dtype=pl.String)
        return isinstance(transaction_id, str) and bool(self.earlier(ids)[0])

    def __iter__(self) -> Iterator[str]:
        for texts in self._texts:
            yield from texts.to_pylist()

    def earlier(self, ids: pl.Series) -> np.ndarray:
        """Per id (non-null strings), whether it was added before."""
        found = np.zeros(len(ids), dtype=bool)
        if not self._size or not len(ids):
            return found
        hashes = self._hash(ids)
        queries, positions = [], []
        for run, where in self._runs:
            low = np.searchsorted(run, hashes, side="left")
            high = np.searchsorted(run, hashes, side="right")
            hit = np.flatnonzero(high > low)
            if hit.size:
                size = (high - low)[hit]
                queries.append(np.repeat(hit, size))
                offset = np.cumsum(size) - size
                rows = np.arange(int(size.sum())) + np.repeat(low[hit] - offset, size)
                positions.append(where[rows].astype(np.int64))
        if not queries:
            return found
        query, position = np.concatenate(queries), np.concatenate(positions)
        store = np.searchsorted(np.asarray(self._starts), position, side="right") - 1
        for k in np.unique(store):
            at = np.flatnonzero(store == k)
            stored = pl.Series(self._texts[k].take(position[at] - self._starts[k]))
            same = (stored == ids.gather(query[at])).to_numpy()
            found[query[at][same]] = True
        return found

    def add(self, ids: pl.Series) -> None:
        """Adds ids (non-null, distinct, none added before: the caller has checked)."""
        if not len(ids):
            return
        hashes = self._hash(ids)
        order = np.argsort(hashes, kind="stable")
        kind = np.uint32 if self._size + len(ids) < 1 << 32 else np.int64
        where = (self._size + order).astype(kind)
        self._texts.append(ids.to_arrow().cast(pa.string()))
        self._starts.append(self._size)
        self._size += len(ids)
        self._runs.append((hashes[order], where))
        while len(self._runs) > 1 and len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            (h1, w1), (h2, w2) = self._runs.pop(), self._runs.pop()
            hashes, where = np.concatenate([h2, h1]), np.concatenate([w2, w1])
            order = np.argsort(hashes, kind="stable")
            self._runs.append((hashes[order], where[order]))


@dataclass(frozen=True)
class _Layout:
    """Where each documented column sits in the file's rows."""

    width: int
    """Fields per row, as in the header."""
    position: dict[str, int]
    """Documented column -> field index; a column absent from the mapping is constant."""
    constants: dict[str, str]
    problem: str | None
    """A file-level reason that rejects every row (missing columns, undecodable header)."""


def read_payments(
    stream: BinaryIO | bytes,
    source: str,
    day: dt.date,
    chunk_rows: int = 5000,
    seen: SeenIds | None = None,
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """Yields (payments as PAYMENT_SCHEMA, rejects as REJECT_SCHEMA) per chunk of at most
    `chunk_rows` non-blank rows, in file order, and at least one pair even for an empty file.
    Never raises on bad content. `seen` holds the transaction ids accepted so far: pass one
    SeenIds to every file of a day so a repeat across files is caught; accepted ids are added to
    it as the chunks are yielded. Reading is pyarrow's C++ CSV parser on each chunk, with
    Python's csv module only for chunks whose rows it cannot split one per line."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if isinstance(stream, bytes | bytearray | memoryview):
        stream = io.BytesIO(bytes(stream))
    seen = SeenIds() if seen is None else seen

    header, rest, number = read_header(stream)
    if header is None:
        yield _empty_payments(), _file_reject(source, "empty_file")
        return
    layout = _layout(header)
    yielded = False
    for first, blob in line_chunks(stream, rest, number, chunk_rows):
        yield _chunk(blob, first, layout, source, day, seen)
        yielded = True
    if not yielded:
        rejects = _file_reject(source, layout.problem) if layout.problem else _empty_rejects()
        yield _empty_payments(), rejects


def _layout(header_line: bytes) -> _Layout:
    try:
        text = header_line.decode("utf-8")
    except UnicodeDecodeError:
        # Columns of a mis-decoded header are noise: bad_encoding alone says what to fix.
        text, problem = header_line.decode("utf-8", "replace"), "bad_encoding"
    else:
        problem = None
    try:
        names = [f.strip().lower() for f in next(csv.reader([text], strict=True))]
    except csv.Error:
        return _Layout(1, {}, {}, problem or "malformed_header")
    index = {}
    for k, name in enumerate(names):
        index.setdefault(name, k)

    sparkov = not set(PAYMENT_COLUMNS) <= index.keys() and set(_SPARKOV_KEYS) <= index.keys()
    if sparkov:
        position = {target: index[src] for src, target in SPARKOV_MAPPING.items() if src in index}
        missing = [src for src in SPARKOV_MAPPING if src not in index]
        constants = {"currency": "USD"}
    else:
        position = {c: index[c] for c in PAYMENT_COLUMNS if c in index}
        missing = [c for c in PAYMENT_COLUMNS if c not in index]
        constants = {}
    if problem is None and missing:
        problem = ";".join(f"missing_column:{c}" for c in missing)
    return _Layout(len(names), position, constants, problem)


def _empty_payments() -> pl.DataFrame:
    return pl.DataFrame(schema=PAYMENT_SCHEMA)


def _empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def _file_reject(source: str, reason: str) -> pl.DataFrame:
    """One reject row standing for a whole file, so even a file with no rows is counted."""
    return pl.DataFrame(
        [{"file": source, "line": None, "transaction_id": None, "reason": reason, "raw": None}],
        schema=REJECT_SCHEMA,
    )


def _text(line: bytes) -> str:
    return printable(line).rstrip("\r\n")[:RAW_CHARS]


def _row_rejects(
    source: str, lines: list[bytes], numbers: list[int], rows: list[int], reason: str
) -> pl.DataFrame:
    """Rejects of whole rows (the row's text as `raw`), for reasons found before typing."""
    return pl.DataFrame(
        {
            "file": [source] * len(rows),
            "line": [numbers[k] for k in rows],
            "transaction_id": [None] * len(rows),
            "reason": [reason] * len(rows),
            "raw": [_text(lines[k]) for k in rows],
        },
        schema=REJECT_SCHEMA,
    )


def _chunk(
    blob: bytes, first: int, layout: _Layout, source: str, day: dt.date, seen: SeenIds
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(payments, rejects) of whole lines starting at line number `first`."""
    if not layout.problem and _plain(blob):
        cells = _split_fast(blob, layout)
        height = blob.count(b"\n") + (not blob.endswith(b"\n"))
        if cells is not None and cells.height == height:
            frame = cells.with_columns(
                pl.int_range(height, dtype=pl.Int64).alias("_row"),
                pl.int_range(first, first + height, dtype=pl.Int64).alias("_line"),
            )
            return _typed(frame, day, seen, source, lambda: blob.split(b"\n"), [])

    # Line by line: blank lines, bad bytes or rows pyarrow would not take one per line.
    lines, numbers = [], []
    for k, line in enumerate(blob.split(b"\n")):
        if line.strip():
            lines.append(line)
            numbers.append(first + k)
    rows = list(range(len(lines)))
    if layout.problem:
        return _empty_payments(), _row_rejects(source, lines, numbers, rows, layout.problem)
    rejects = []
    bad = [k for k in rows if not is_text(lines[k])]
    if bad:
        rejects.append(_row_rejects(source, lines, numbers, bad, "bad_encoding"))
        rows = sorted(set(rows) - set(bad))
    cells = _split_fast(b"\n".join(lines[k] for k in rows), layout)
    if cells is None or cells.height != len(rows):
        cells, malformed = _split_slow(lines, rows, layout)
        for reason, bad in malformed.items():
            rejects.append(_row_rejects(source, lines, numbers, bad, reason))
        rows = sorted(set(rows) - {k for bad in malformed.values() for k in bad})
    frame = cells.with_columns(
        pl.Series("_row", rows, dtype=pl.Int64),
        pl.Series("_line", [numbers[k] for k in rows], dtype=pl.Int64),
    )
    return _typed(frame, day, seen, source, lambda: lines, rejects)


def _plain(blob: bytes) -> bool:
    """Text (UTF-8, no NUL) and no CR but in CRLF: then pyarrow counts a row for each line unless a
    line is blank or a quote spans lines, which the caller sees as a short row count."""
    if b"\x00" in blob or (b"\r" in blob and blob.count(b"\r") != blob.count(b"\r\n")):
        return False
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _typed(
    frame: pl.DataFrame,
    day: dt.date,
    seen: SeenIds,
    source: str,
    lines: Callable[[], list[bytes]],
    rejects: list[pl.DataFrame],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validates the cells (`_row` indexes `lines()`, which give rejects their text) and
    adds the rejects to those found before."""
    payments, value_rejects = _validate(frame, day, seen)
    if not value_rejects.is_empty():
        text = lines()
        texts = [_text(text[k]) for k in value_rejects["_row"].to_list()]
        rejects.append(
            value_rejects.with_columns(
                pl.lit(source, pl.String).alias("file"),
                pl.coalesce("raw", pl.Series(texts, dtype=pl.String)).str.slice(0, RAW_CHARS),
            ).select(pl.col(c).cast(t) for c, t in REJECT_SCHEMA.items())
        )
    if not rejects:
        return payments, _empty_rejects()
    return payments, pl.concat(rejects).sort("line")


def _split_fast(blob: bytes, layout: _Layout) -> pl.DataFrame | None:
    """The documented columns as text, a row per line, by pyarrow's C++ parser; None when a
    row has the wrong number of fields (the caller also checks the row count: pyarrow lets a
    quoted value span lines, we do not)."""
    names = [f"f{k}" for k in range(layout.width)]
    wanted = {target: names[k] for target, k in layout.position.items()}
    malformed = False

    def on_invalid(_row: object) -> str:
        nonlocal malformed
        malformed = True
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(blob),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=max(len(blob), 1 << 16) + 1
            ),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=False, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(wanted.values(), pa.string()),
                include_columns=sorted(set(wanted.values())),
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid:
        return None
    if malformed:
        return None
    columns = {target: table.column(name) for target, name in wanted.items()}
    if any(mark in blob for mark in _PADDING):
        for target, column in columns.items():
            trimmed = pacompute.ascii_trim_whitespace(column)
            columns[target] = pacompute.if_else(
                pacompute.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed
            )
    return _cells(columns, table.num_rows, layout)


def _split_slow(
    lines: list[bytes], rows: list[int], layout: _Layout
) -> tuple[pl.DataFrame, dict[str, list[int]]]:
    """Like _split_fast, line by line with the csv module: (cells of the well-formed rows,
    reason -> rows that are not)."""
    values: dict[str, list[str | None]] = {target: [] for target in layout.position}
    malformed: dict[str, list[int]] = {
        "line_too_long": [],
        "malformed_row": [],
        "bad_field_count": [],
    }
    for k in rows:
        fields, problem = split_line(lines[k])
        if fields is None or problem:
            malformed.setdefault(problem or "malformed_row", []).append(k)
            continue
        if len(fields) != layout.width:
            malformed["bad_field_count"].append(k)
            continue
        for target, position in layout.position.items():
            values[target].append(fields[position].strip(_WHITESPACE) or None)
    height = len(rows) - sum(map(len, malformed.values()))
    return _cells(values, height, layout), {r: b for r, b in malformed.items() if b}


def _cells(
    columns: dict[str, pa.ChunkedArray | pa.Array | list[str | None]], height: int, layout: _Layout
) -> pl.DataFrame:
    """Trimmed text cells (empty as null) named as PAYMENT_COLUMNS, constants filled in."""
    return pl.DataFrame(
        {
            c: pl.Series(c, columns[c], dtype=pl.String)
            if c in columns
            else pl.Series(c, [layout.constants.get(c)] * height, dtype=pl.String)
            for c in PAYMENT_COLUMNS
        }
    )


def _parse_ts(text: pl.Series) -> pl.Series:
    """`ts` text -> Datetime(us, UTC), null when it is not an ISO 8601 moment we accept.
    A chunk written in one style (all with an offset, or all without) is parsed by Arrow's
    ISO 8601 cast in one go; anything else value by value, by regex."""
    shortest = text.str.len_bytes().min()
    if shortest is not None and shortest >= len("YYYY-MM-DDTHH:MM"):  # type: ignore[operator]
        arrow = text.to_arrow()
        for target in (pa.timestamp("us", "UTC"), pa.timestamp("us")):
            try:
                parsed = pacompute.cast(arrow, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            series = pl.Series("_ts", parsed)
            return series if target.tz else series.dt.replace_time_zone("UTC")
    return _parse_ts_slowly(text).dt.replace_time_zone("UTC").alias("_ts")


def _parse_ts_slowly(text: pl.Series) -> pl.Series:
    """Any accepted ISO 8601 spelling, value by value, by regex (naive result, in UTC)."""
    parts = (
        pl.DataFrame({"_t": text}).select(pl.col("_t").str.extract_groups(_TS_PATTERN)).unnest("_t")
    )
    parts.columns = ["date", "hm", "sec", "frac", "sign", "hh", "mm"]
    local = pl.concat_str("date", pl.lit(" "), "hm", pl.col("sec").fill_null(":00")).str.strptime(
        pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False
    )
    micros = pl.col("frac").str.pad_end(6, "0").str.slice(0, 6).cast(pl.Int64).fill_null(0)
    hours = pl.col("hh").cast(pl.Int64).fill_null(0)
    minutes = pl.col("mm").cast(pl.Int64).fill_null(0)
    offset = pl.when(pl.col("sign") == "-").then(-1).otherwise(1) * (hours * 60 + minutes)
    utc = local + pl.duration(microseconds=micros) - pl.duration(minutes=offset)
    return parts.select(
        pl.when((hours <= 23) & (minutes <= 59)).then(utc).otherwise(None).alias("_ts")
    ).to_series()


def _validate(
    frame: pl.DataFrame, day: dt.date, seen: SeenIds
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(payments, rejects with `_row`) of text cells with `_row` and `_line`. The checks are
    numpy masks, so a chunk costs little beyond its rows; reasons are spelled out only for
    the rows that fail."""
    ts = _parse_ts(frame["ts"])
    numbers = frame.select(pl.col("amount", *_COORDINATES).cast(pl.Float64, strict=False))
    value = {c: numbers[c].to_numpy() for c in numbers.columns}  # null -> NaN
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**6
    micros = ts.dt.epoch("us").fill_null(start - 1).to_numpy()
    with np.errstate(invalid="ignore"):
        checks = {
            "missing_transaction_id": frame["transaction_id"].is_null().to_numpy(),
            "missing_account_id": frame["account_id"].is_null().to_numpy(),
            "unparseable_ts": ts.is_null().to_numpy(),
            "ts_outside_day": ts.is_not_null().to_numpy()
            & ((micros < start) | (micros >= start + 86_400 * 10**6)),
            "unparseable_amount": ~np.isfinite(value["amount"]),
            "non_positive_amount": np.isfinite(value["amount"]) & (value["amount"] <= 0),
            "out_of_range_amount": np.isfinite(value["amount"]) & (value["amount"] > AMOUNT_MAX),
            "non_usd": (frame["currency"].str.to_uppercase() != "USD").fill_null(True).to_numpy(),
        }
        for c, limit in _COORDINATES.items():
            given = frame[c].is_not_null().to_numpy()
            checks[f"unparseable_{c}"] = given & ~np.isfinite(value[c])
            checks[f"out_of_range_{c}"] = np.isfinite(value[c]) & (np.abs(value[c]) > limit)
    code = np.zeros(frame.height, dtype=np.int64)
    for bit, mask in enumerate(checks.values()):
        code |= mask.astype(np.int64) << bit

    # Repeats: the first otherwise-valid row of an id wins, in this file or an earlier one.
    ok = np.flatnonzero(code == 0)
    ids = frame["transaction_id"].gather(ok)
    repeat = seen.earlier(ids) | ~ids.is_first_distinct().to_numpy()
    seen.add(ids.filter(pl.Series(~repeat)))
    names = [*checks, "duplicate_transaction_id"]
    code[ok[repeat]] = 1 << (len(names) - 1)

    keep = pl.Series(code == 0)
    payments = pl.DataFrame(
        {
            "transaction_id": frame["transaction_id"],
            "account_id": frame["account_id"],
            "ts": ts,
            "amount": numbers["amount"],
            "currency": pl.Series(["USD"] * frame.height, dtype=pl.String),
            "merchant": frame["merchant"],
            "category": frame["category"],
            **{c: numbers[c] for c in _COORDINATES},
        }
    ).filter(keep)
    failed = np.flatnonzero(code)
    return payments, _value_rejects(frame, failed, code[failed], names)


def _value_rejects(
    frame: pl.DataFrame, rows: np.ndarray, codes: np.ndarray, names: list[str]
) -> pl.DataFrame:
    """Reject rows (`_row` kept for the caller to find their text) of the failed rows, whose
    codes have bit k set for reason names[k]."""
    spelled = {
        int(c): [name for bit, name in enumerate(names) if int(c) >> bit & 1]
        for c in np.unique(codes)
    }
    reasons = [spelled[int(c)] for c in codes]
    failed = frame[rows]
    raw_columns = {column: failed[column].to_list() for column in set(_RAW_VALUE.values())}
    raw = [
        raw_columns[_RAW_VALUE[why[0]]][k] if len(why) == 1 and why[0] in _RAW_VALUE else None
        for k, why in enumerate(reasons)
    ]
    return pl.DataFrame(
        {
            "line": failed["_line"],
            "transaction_id": failed["transaction_id"],
            "reason": pl.Series([";".join(why) for why in reasons], dtype=pl.String),
            "raw": pl.Series(raw, dtype=pl.String),
            "_row": failed["_row"],
        }
    )
