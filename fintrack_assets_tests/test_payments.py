"""Payment landing CSVs -> typed payments, streamed; each bad row rejected with its reason."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import polars as pl
import pytest

from fintrack_assets.core.payments import (
    PAYMENT_SCHEMA,
    REJECT_SCHEMA,
    SPARKOV_MAPPING,
    SeenIds,
    read_payments,
    reject_counts,
)

HEADER = (
    "transaction_id,account_id,ts,amount,currency,merchant,category,lat,lon,merch_lat,merch_lon"
)
GOOD = "g1,a1,2025-07-03T10:00:00Z,12.50,USD,shop,grocery_pos,40.7,-74.0,40.8,-74.1"
DAY = dt.date(2025, 7, 3)
UTC = dt.UTC


def csv(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


def read(
    content: bytes,
    source: str = "a.csv",
    day: dt.date = DAY,
    chunk_rows: int = 5000,
    seen: SeenIds | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    chunks = list(read_payments(content, source, day, chunk_rows, seen))
    assert chunks, "read_payments always yields at least one pair"
    for valid, rejects in chunks:
        assert valid.schema == PAYMENT_SCHEMA
        assert rejects.schema == REJECT_SCHEMA
    return pl.concat([c[0] for c in chunks]), pl.concat([c[1] for c in chunks])


def row(**changes: str) -> str:
    """GOOD with some fields replaced (by column name)."""
    values = dict(zip(HEADER.split(","), GOOD.split(","), strict=True)) | {"transaction_id": "b1"}
    return ",".join((values | changes).values())


@pytest.mark.parametrize(
    ("line", "reason", "raw"),
    [
        (row(transaction_id=""), "missing_transaction_id", None),
        (row(transaction_id="   "), "missing_transaction_id", None),
        (row(account_id=""), "missing_account_id", None),
        (row(ts="03/07/2025 10:00"), "unparseable_ts", "03/07/2025 10:00"),
        (row(ts="2025-02-30T10:00:00Z"), "unparseable_ts", "2025-02-30T10:00:00Z"),
        (row(ts="2025-07-03"), "unparseable_ts", "2025-07-03"),
        (row(ts="2025-07-03T10:00:00+25:00"), "unparseable_ts", "2025-07-03T10:00:00+25:00"),
        (row(ts=""), "unparseable_ts", None),
        (row(ts="2025-07-04T00:00:00Z"), "ts_outside_day", "2025-07-04T00:00:00Z"),
        (row(ts="2025-07-02T23:59:59.999999Z"), "ts_outside_day", "2025-07-02T23:59:59.999999Z"),
        # 23:30 at UTC-1 is 00:30 UTC the next day; 01:00 at UTC+2 is 23:00 UTC the day before.
        (row(ts="2025-07-03T23:30:00-01:00"), "ts_outside_day", "2025-07-03T23:30:00-01:00"),
        (row(ts="2025-07-03 01:00:00+0200"), "ts_outside_day", "2025-07-03 01:00:00+0200"),
        (row(amount="ten"), "unparseable_amount", "ten"),
        (row(amount=""), "unparseable_amount", None),
        (row(amount="nan"), "unparseable_amount", "nan"),
        (row(amount="inf"), "unparseable_amount", "inf"),
        (row(amount="0"), "non_positive_amount", "0"),
        (row(amount="-3.5"), "non_positive_amount", "-3.5"),
        (row(amount="1e308"), "out_of_range_amount", "1e308"),
        (row(amount="1e20"), "out_of_range_amount", "1e20"),
        (row(amount="1000000.01"), "out_of_range_amount", "1000000.01"),
        (row(currency="EUR"), "non_usd", "EUR"),
        (row(currency=""), "non_usd", None),
        (row(lat="north"), "unparseable_lat", "north"),
        (row(lon="x"), "unparseable_lon", "x"),
        (row(merch_lat="NaN"), "unparseable_merch_lat", "NaN"),
        (row(merch_lon="1e999"), "unparseable_merch_lon", "1e999"),
        (row(lat="90.5"), "out_of_range_lat", "90.5"),
        (row(merch_lon="-180.01"), "out_of_range_merch_lon", "-180.01"),
        (GOOD.replace("g1", "b1") + ",extra", "bad_field_count", None),
        (GOOD.replace("g1", "b1").rsplit(",", 1)[0], "bad_field_count", None),
        ('b1,a1,"2025-07-03T10:00:00Z,1,USD,m,c,1,2,3,4', "malformed_row", None),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason(line: str, reason: str, raw: str | None):
    valid, rejects = read(csv(GOOD, line, GOOD.replace("g1", "g2")))
    assert valid["transaction_id"].to_list() == ["g1", "g2"]
    assert rejects.select("file", "line", "reason").rows() == [("a.csv", 3, reason)]
    # The offending value when the row has one value-level reason, else the row's text.
    assert rejects["raw"].to_list() == [raw if raw is not None else line]


def test_a_row_with_several_problems_names_each_and_keeps_its_text():
    line = "b1,a1,2025-07-04T10:00:00Z,-1,EUR,shop,c,95,-74,40,-74"
    _, rejects = read(csv(GOOD, line))
    assert rejects.row(0, named=True) == {
        "file": "a.csv",
        "line": 3,
        "transaction_id": "b1",
        "reason": "ts_outside_day;non_positive_amount;non_usd;out_of_range_lat",
        "raw": line,
    }
    assert reject_counts(rejects) == {
        "non_positive_amount": 1,
        "non_usd": 1,
        "out_of_range_lat": 1,
        "ts_outside_day": 1,
    }


def test_raw_is_cut_to_200_characters():
    long = "x" * 500
    _, rejects = read(csv(row(amount=long), row(merchant=long, amount="-1", currency="EUR")))
    assert rejects["raw"].str.len_chars().to_list() == [200, 200]
    assert rejects["raw"][0] == "x" * 200


def test_valid_rows_are_typed_trimmed_and_in_file_order():
    content = csv(
        ' t2 , a2 , 2025-07-03 23:59:59.999999 ,7, usd ,"Joe\'s, Deli",food_dining,,,,',
        "t1,a1,2025-07-03T12:00:00+02:00,1e2,USD,m,c,-33.9,151.2,-33.8,151.3",
        "t3,a1,2025-07-03T00:00Z,0.01,Usd,m,,1,2,3,4",
    )
    valid, rejects = read(content)
    assert rejects.is_empty()
    assert valid.rows() == [
        (
            "t2",
            "a2",
            dt.datetime(2025, 7, 3, 23, 59, 59, 999999, tzinfo=UTC),
            7.0,
            "USD",
            "Joe's, Deli",
            "food_dining",
            None,
            None,
            None,
            None,
        ),
        (
            "t1",
            "a1",
            dt.datetime(2025, 7, 3, 10, 0, tzinfo=UTC),
            100.0,
            "USD",
            "m",
            "c",
            -33.9,
            151.2,
            -33.8,
            151.3,
        ),
        (
            "t3",
            "a1",
            dt.datetime(2025, 7, 3, tzinfo=UTC),
            0.01,
            "USD",
            "m",
            None,
            1.0,
            2.0,
            3.0,
            4.0,
        ),
    ]


SPELLINGS = {
    "2025-07-03T10:00:00Z": dt.datetime(2025, 7, 3, 10, tzinfo=UTC),
    "2025-07-03 10:00:00": dt.datetime(2025, 7, 3, 10, tzinfo=UTC),
    "2025-07-03T10:00:00": dt.datetime(2025, 7, 3, 10, tzinfo=UTC),
    "2025-07-03t10:00:00z": dt.datetime(2025, 7, 3, 10, tzinfo=UTC),
    "2025-07-03T10:00": dt.datetime(2025, 7, 3, 10, tzinfo=UTC),
    "2025-07-03T12:30:00+02:30": dt.datetime(2025, 7, 3, 10, tzinfo=UTC),
    "2025-07-03T12:00:00+0200": dt.datetime(2025, 7, 3, 10, tzinfo=UTC),
    "2025-07-03T07:00:00-03": dt.datetime(2025, 7, 3, 10, tzinfo=UTC),
    "2025-07-03T10:00:00.5Z": dt.datetime(2025, 7, 3, 10, 0, 0, 500000, tzinfo=UTC),
    "2025-07-03T10:00:00.123456Z": dt.datetime(2025, 7, 3, 10, 0, 0, 123456, tzinfo=UTC),
    "2025-07-03T10:00:00.123456789Z": dt.datetime(2025, 7, 3, 10, 0, 0, 123456, tzinfo=UTC),
    "2025-07-03T10:00:00,25+00:00": dt.datetime(2025, 7, 3, 10, 0, 0, 250000, tzinfo=UTC),
}


def _quoted(text: str) -> str:
    return f'"{text}"' if "," in text else text


@pytest.mark.parametrize(("text", "expected"), SPELLINGS.items())
def test_each_iso_8601_spelling_alone_and_mixed_gives_the_same_moment(text, expected):
    # Alone, a chunk has one spelling (parsed in one go when Arrow can); mixed with every
    # other spelling it is parsed value by value. Both must agree.
    alone, _ = read(csv(row(ts=_quoted(text))))
    mixed, rejects = read(
        csv(*(row(transaction_id=f"t{k}", ts=_quoted(s)) for k, s in enumerate(SPELLINGS)))
    )
    assert rejects.is_empty()
    assert alone["ts"].to_list() == [expected]
    assert mixed["ts"][list(SPELLINGS).index(text)] == expected


def test_a_file_missing_a_column_rejects_every_row_and_an_empty_one_names_the_file():
    header = HEADER.replace(",currency", "").replace(",merch_lon", "")
    content = csv(
        "t1,a1,2025-07-03T10:00:00Z,1,m,c,1,2,3",
        "",
        "t2,a1,2025-07-03T10:00:00Z,1,m,c,1,2,3",
        header=header,
    )
    valid, rejects = read(content)
    assert valid.is_empty()
    assert rejects.select("line", "reason").rows() == [
        (2, "missing_column:currency;missing_column:merch_lon"),
        (4, "missing_column:currency;missing_column:merch_lon"),
    ]
    assert rejects["raw"][0] == "t1,a1,2025-07-03T10:00:00Z,1,m,c,1,2,3"
    # No rows to blame: one reject with a null line stands for the file.
    _, rejects = read(csv(header=header))
    assert rejects.select("file", "line", "reason").rows() == [
        ("a.csv", None, "missing_column:currency;missing_column:merch_lon")
    ]


def test_empty_and_header_only_files():
    for content in (b"", b"\n\n  \n"):
        valid, rejects = read(content, source="e.csv")
        assert valid.is_empty()
        assert rejects.select("file", "line", "reason").rows() == [("e.csv", None, "empty_file")]
    valid, rejects = read(csv())
    assert valid.is_empty() and rejects.is_empty()


SPARKOV_HEADER = (
    ",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,street,city,state,"
    "zip,lat,long,city_pop,job,dob,trans_num,unix_time,merch_lat,merch_long,is_fraud"
)
SPARKOV_ROWS = [
    '0,2019-01-01 00:00:18,2703186189652095,"fraud_Rippin, Kub and Mann",misc_net,4.97,Jennifer,'
    "Banks,F,561 Perry Cove,Moravian Falls,NC,28654,36.0788,-81.1781,3495,"
    '"Psychologist, counselling",1988-03-09,0b242abb623afc578575680df30655b9,1325376018,'
    "36.011293,-82.048315,0",
    "1,2019-01-01 00:00:44,630423337322,fraud_Heller Gutmann and Zieme,grocery_pos,107.23,"
    "Stephanie,Gill,F,43039 Riley Greens Suite 393,Orient,WA,99160,48.8878,-118.2105,149,"
    "Special educational needs teacher,1978-06-21,1f76529f8574734946361c461b024d99,1325376044,"
    "49.159047,-118.186462,0",
    "2,2019-01-02 00:00:01,630423337322,fraud_X,grocery_pos,1.00,S,G,F,1 Rd,Orient,WA,99160,"
    "48.8878,-118.2105,149,Teacher,1978-06-21,late,1325376044,49.1,-118.1,0",
]


def test_a_sparkov_file_loads_as_it_is():
    valid, rejects = read(csv(*SPARKOV_ROWS, header=SPARKOV_HEADER), day=dt.date(2019, 1, 1))
    assert valid.rows() == [
        (
            "0b242abb623afc578575680df30655b9",
            "2703186189652095",
            dt.datetime(2019, 1, 1, 0, 0, 18, tzinfo=UTC),
            4.97,
            "USD",
            "fraud_Rippin, Kub and Mann",
            "misc_net",
            36.0788,
            -81.1781,
            36.011293,
            -82.048315,
        ),
        (
            "1f76529f8574734946361c461b024d99",
            "630423337322",
            dt.datetime(2019, 1, 1, 0, 0, 44, tzinfo=UTC),
            107.23,
            "USD",
            "fraud_Heller Gutmann and Zieme",
            "grocery_pos",
            48.8878,
            -118.2105,
            49.159047,
            -118.186462,
        ),
    ]
    assert rejects.select("line", "transaction_id", "reason").rows() == [
        (4, "late", "ts_outside_day")
    ]
    assert set(SPARKOV_MAPPING.values()) == set(PAYMENT_SCHEMA) - {"currency"}


def test_a_sparkov_file_without_a_mapped_column_names_it_in_sparkov_terms():
    header = SPARKOV_HEADER.replace(",merch_long", ",merch_longitude")
    _, rejects = read(csv(*SPARKOV_ROWS[:1], header=header), day=dt.date(2019, 1, 1))
    assert rejects.select("line", "reason").rows() == [(2, "missing_column:merch_long")]


def test_documented_columns_win_over_sparkov_ones():
    header = HEADER + ",trans_num,cc_num,trans_date_trans_time,amt"
    valid, rejects = read(csv(GOOD + ",x,y,2019-01-01 00:00:00,9", header=header))
    assert rejects.is_empty()
    assert valid.select("transaction_id", "amount").rows() == [("g1", 12.5)]


def test_non_utf8_bytes_reject_their_row_only():
    bad = row(merchant="caf\xe9").encode("latin-1")
    content = csv(GOOD)[:-1] + b"\n" + bad + b"\n" + GOOD.replace("g1", "g2").encode() + b"\n"
    valid, rejects = read(content)
    assert valid["transaction_id"].to_list() == ["g1", "g2"]
    assert rejects.select("line", "reason").rows() == [(3, "bad_encoding")]
    assert "caf\ufffd" in rejects["raw"][0]


def test_a_nul_byte_rejects_its_row_only_and_never_reaches_a_table():
    """UTF-8 as it is, but no text file holds a NUL and PostgreSQL text cannot store one."""
    content = csv(GOOD, row(merchant="a\x00b"), GOOD.replace("g1", "g2"))
    valid, rejects = read(content)
    assert valid["transaction_id"].to_list() == ["g1", "g2"]
    assert rejects.select("line", "reason").rows() == [(3, "bad_encoding")]
    assert "\x00" not in rejects["raw"][0] and "a\ufffdb" in rejects["raw"][0]


def test_amounts_up_to_the_ceiling_are_accepted():
    valid, rejects = read(csv(row(transaction_id="c1", amount="1000000"), GOOD))
    assert rejects.is_empty() and valid["amount"].to_list() == [1_000_000.0, 12.5]


def test_a_non_utf8_header_rejects_every_row_as_bad_encoding():
    content = HEADER.replace("merchant", "march\xe9").encode("latin-1") + b"\n"
    content += (GOOD + "\n" + GOOD.replace("g1", "g2") + "\n").encode()
    valid, rejects = read(content)
    assert valid.is_empty()
    assert rejects.select("line", "reason").rows() == [(2, "bad_encoding"), (3, "bad_encoding")]


def test_repeats_in_a_file_and_across_files_of_a_day_are_rejected():
    seen = SeenIds()
    first = csv(GOOD, row(transaction_id="d1"), row(transaction_id="d2", amount="-1"))
    second = csv(row(transaction_id="g1"), row(transaction_id="d2"), row(transaction_id="d1"))
    a_valid, a_rejects = read(first, "a.csv", seen=seen)
    b_valid, b_rejects = read(second, "b.csv", seen=seen)
    assert a_valid["transaction_id"].to_list() == ["g1", "d1"]
    assert a_rejects.select("line", "reason").rows() == [(4, "non_positive_amount")]
    # d2 was rejected in a.csv, so it did not claim the id: b.csv's d2 is kept.
    assert b_valid["transaction_id"].to_list() == ["d2"]
    assert b_rejects.select("file", "line", "transaction_id", "reason", "raw").rows() == [
        ("b.csv", 2, "g1", "duplicate_transaction_id", "g1"),
        ("b.csv", 4, "d1", "duplicate_transaction_id", "d1"),
    ]
    assert sorted(seen) == ["d1", "d2", "g1"] and len(seen) == 3
    # Without a shared set, each file is deduplicated on its own.
    valid, rejects = read(csv(GOOD, GOOD))
    assert valid.height == 1
    assert rejects.select("line", "reason").rows() == [(3, "duplicate_transaction_id")]


def test_line_numbers_count_blank_lines_crlf_and_a_bom():
    text = "\r\n".join(["", HEADER, GOOD, "", "  ", row(amount="x"), GOOD.replace("g1", "g2")])
    valid, rejects = read(b"\xef\xbb\xbf" + text.encode())
    assert valid["transaction_id"].to_list() == ["g1", "g2"]
    assert rejects.select("line", "reason", "raw").rows() == [(6, "unparseable_amount", "x")]


def test_a_last_line_without_newline_is_read():
    valid, _ = read(csv(GOOD)[:-1])
    assert valid["transaction_id"].to_list() == ["g1"]


def _mixed_file(rows: int) -> bytes:
    lines = []
    for k in range(rows):
        if k % 7 == 3:
            lines.append(row(transaction_id=f"t{k}", amount="-1"))
        elif k % 11 == 5:
            lines.append("")
        elif k % 13 == 6:
            lines.append(row(transaction_id=f"t{k - 1}"))  # a repeat of the row before
        else:
            lines.append(row(transaction_id=f"t{k}", amount=f"{k + 1}.25"))
    return csv(*lines)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 10, 64])
def test_chunks_hold_at_most_chunk_rows_and_together_equal_one_read(chunk_rows):
    content = _mixed_file(150)
    whole_valid, whole_rejects = read(content, chunk_rows=10_000)
    chunks = list(read_payments(content, "a.csv", DAY, chunk_rows))
    assert len(chunks) >= 150 // chunk_rows
    for valid, rejects in chunks:
        assert valid.height + rejects.height <= chunk_rows
    assert pl.concat([c[0] for c in chunks]).equals(whole_valid)
    assert pl.concat([c[1] for c in chunks]).equals(whole_rejects)
    # The expected split, worked out from how _mixed_file builds its rows.
    expected_bad = [(k + 2, "non_positive_amount") for k in range(150) if k % 7 == 3]
    expected_bad += [
        (k + 2, "duplicate_transaction_id")
        for k in range(150)
        if k % 13 == 6 and k % 7 != 3 and k % 11 != 5 and (k - 1) % 7 != 3 and (k - 1) % 11 != 5
    ]
    assert sorted(whole_rejects.select("line", "reason").rows()) == sorted(expected_bad)
    blank = sum(1 for k in range(150) if k % 11 == 5 and k % 7 != 3)
    assert whole_valid.height + whole_rejects.height == 150 - blank


class _Stream(io.RawIOBase):
    """A byte stream that records how far it has been read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        self.position += len(chunk)
        return chunk


def test_the_file_is_streamed_not_read_whole():
    lines = [row(transaction_id=f"t{k}", amount="1") for k in range(60_000)]
    content = csv(*lines)  # about 5 MB
    stream = _Stream(content)
    chunks = read_payments(stream, "big.csv", DAY, chunk_rows=1000)
    valid, rejects = next(chunks)
    assert valid.height == 1000 and rejects.is_empty()
    assert stream.position < len(content) / 2
    total = valid.height + sum(v.height for v, _ in chunks)
    assert total == 60_000
    assert stream.position == len(content)


def test_reject_counts_and_chunk_rows_validation():
    _, rejects = read(csv(row(amount="x"), row(transaction_id="b2", amount="x;"), row(currency="")))
    assert reject_counts(rejects) == {"non_usd": 1, "unparseable_amount": 2}
    assert reject_counts(rejects.head(0)) == {}
    with pytest.raises(ValueError, match="chunk_rows"):
        next(read_payments(csv(GOOD), "a.csv", DAY, 0))


@pytest.mark.parametrize("hasher", ["polars", "colliding"])
def test_seen_ids_match_a_set_of_strings_even_when_hashes_collide(hasher):
    """SeenIds against a plain set on random ids added in batches; with a hash that maps
    every id to its length (collisions everywhere), only the stored text decides."""
    rng = np.random.default_rng(7)
    seen = (
        SeenIds()
        if hasher == "polars"
        else SeenIds(lambda ids: ids.str.len_bytes().cast(pl.UInt64).to_numpy())
    )
    reference: set[str] = set()
    for _ in range(60):
        batch = [f"t{n}" for n in rng.integers(0, 400, size=int(rng.integers(0, 40)))]
        ids = pl.Series(batch, dtype=pl.String)
        expected = [tid in reference for tid in batch]
        assert seen.earlier(ids).tolist() == expected
        new = sorted(set(batch) - reference)
        seen.add(pl.Series(new, dtype=pl.String))
        reference.update(new)
    assert len(seen) == len(reference) and set(seen) == reference
    assert "never" not in seen
