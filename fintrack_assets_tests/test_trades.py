"""Landing CSV -> portfolio trades: each bad row rejected with its reasons, none lost."""

import datetime as dt

import pandera.errors
import polars as pl
import pytest

from fintrack_assets.core.trades import (
    REJECT_SCHEMA,
    TRADED_SCHEMA,
    parse_trades,
    reject_counts,
    validate_trades,
)
from fintrack_assets.schemas import PortfolioTrade

HEADER = "trade_id,portfolio_id,date,symbol,action,quantity,price,fees,currency"
GOOD = "g1,p1,2025-07-03,MSFT,BUY,5,400,1,USD"
KNOWN = ["AAPL", "MSFT"]


def csv(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


def run(content: bytes, source: str = "a.csv") -> tuple[pl.DataFrame, pl.DataFrame]:
    """parse + validate, both stages' rejects together (they share one schema)."""
    parsed, parse_rejects = parse_trades(content, source)
    valid, rejects = validate_trades(parsed, KNOWN)
    return valid, pl.concat([parse_rejects, rejects])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("b1,p1,2025-07-03,AAPL,HOLD,1,10,0,USD", "unknown_action"),
        ("b1,p1,2025-07-03,,BUY,1,10,0,USD", "unknown_symbol"),
        ("b1,p1,2025-07-03,ZZZZ,SELL,1,10,0,USD", "unknown_symbol"),
        ("b1,p1,2025-07-03,CASH,BUY,1,10,0,USD", "unknown_symbol"),
        ("b1,p1,2025-07-03,AAPL,DEPOSIT,100,,0,USD", "unknown_symbol"),
        ("b1,p1,2025-07-04,AAPL,BUY,1,10,0,USD", "non_session_date"),  # Independence Day
        ("b1,p1,2025-07-05,AAPL,BUY,1,10,0,USD", "non_session_date"),  # a Saturday
        ("b1,p1,,AAPL,BUY,1,10,0,USD", "non_session_date"),
        ("b1,p1,2025-07-03,AAPL,BUY,1,10,0,EUR", "non_usd"),
        ("b1,p1,2025-07-03,AAPL,BUY,1,10,0,", "non_usd"),
        ("b1,p1,2025-07-03,AAPL,BUY,0,10,0,USD", "non_positive_quantity"),
        ("b1,p1,2025-07-03,AAPL,SELL,-3,10,0,USD", "non_positive_quantity"),
        ("b1,p1,2025-07-03,,WITHDRAWAL,,,0,USD", "non_positive_quantity"),
        ("b1,p1,2025-07-03,AAPL,BUY,1,0,0,USD", "non_positive_price"),
        ("b1,p1,2025-07-03,AAPL,SELL,1,,0,USD", "non_positive_price"),
        ("b1,p1,2025-07-03,,DEPOSIT,100,2,0,USD", "cash_price_not_one"),
        ("b1,p1,2025-07-03,AAPL,BUY,1,10,-0.5,USD", "negative_fees"),
        (",p1,2025-07-03,AAPL,BUY,1,10,0,USD", "missing_trade_id"),
        ("b1,,2025-07-03,AAPL,BUY,1,10,0,USD", "missing_portfolio_id"),
        ("b1,p1,03/07/2025,AAPL,BUY,1,10,0,USD", "unparseable_date"),
        ("b1,p1,2025-02-30,AAPL,BUY,1,10,0,USD", "unparseable_date"),
        ("b1,p1,2025-07-03,AAPL,BUY,1O,10,0,USD", "unparseable_quantity"),
        ("b1,p1,2025-07-03,AAPL,BUY,1,nan,0,USD", "unparseable_price"),
        ("b1,p1,2025-07-03,AAPL,BUY,1,10,1;5,USD", "unparseable_fees"),
        ("b1,p1,2025-07-03,AAPL,BUY,1,10,0,USD,extra", "bad_field_count"),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason(line, reason):
    valid, rejects = run(csv(GOOD, line))
    assert valid["trade_id"].to_list() == ["g1"]
    assert rejects.select("line", "reason").rows() == [(3, reason)]
    assert rejects.schema == REJECT_SCHEMA


def test_a_row_with_several_problems_names_each():
    valid, rejects = run(csv(GOOD, "b1,p1,2025-07-05,TSLA,BUY,-1,10,-2,eur"))
    assert valid.height == 1
    assert rejects["reason"].to_list() == [
        "unknown_symbol;non_session_date;non_usd;non_positive_quantity;negative_fees"
    ]
    assert reject_counts(rejects) == {
        "negative_fees": 1,
        "non_positive_quantity": 1,
        "non_session_date": 1,
        "non_usd": 1,
        "unknown_symbol": 1,
    }
    # A row that cannot be typed names every cell that failed, in column order.
    _, rejects = run(csv("b2,p1,yesterday,AAPL,BUY,ten,10,free,USD"))
    assert rejects["reason"].to_list() == ["unparseable_date;unparseable_quantity;unparseable_fees"]


def test_rejects_keep_the_input_values():
    _, rejects = run(csv(GOOD, "b1,p1,2025-07-03,AAPL,BUY,1,10,-0.5,USD"), source="in/x.csv")
    assert rejects.row(0, named=True) == {
        "trade_id": "b1",
        "portfolio_id": "p1",
        "date": "2025-07-03",
        "symbol": "AAPL",
        "action": "BUY",
        "quantity": "1.0",
        "price": "10.0",
        "fees": "-0.5",
        "currency": "USD",
        "source_file": "in/x.csv",
        "line": 3,
        "reason": "negative_fees",
    }


def test_valid_rows_are_normalised_and_sorted():
    content = csv(
        " t3 , p2 ,2025-07-07, aapl ,sell,2,210.5,,usd",
        "t2,p1,2025-07-07,CASH,fee,3.5,,0.25, Usd ",
        "t1,p1,2025-07-03,,DEPOSIT,1000,1,0,USD",
        "t0,p1,2025-07-07,MSFT,BUY,1.5,400,1,USD",
    )
    valid, rejects = run(content, source="s3://b/landing/portfolio_trades/a.csv")
    assert rejects.is_empty()
    assert valid.schema == TRADED_SCHEMA
    src = "s3://b/landing/portfolio_trades/a.csv"
    assert valid.rows() == [
        ("t1", "p1", dt.date(2025, 7, 3), None, "DEPOSIT", 1000.0, 1.0, 0.0, "USD", src, 4),
        ("t0", "p1", dt.date(2025, 7, 7), "MSFT", "BUY", 1.5, 400.0, 1.0, "USD", src, 5),
        ("t2", "p1", dt.date(2025, 7, 7), None, "FEE", 3.5, 1.0, 0.25, "USD", src, 3),
        ("t3", "p2", dt.date(2025, 7, 7), "AAPL", "SELL", 2.0, 210.5, 0.0, "USD", src, 2),
    ]


def test_duplicates_keep_the_first_by_date_file_and_line_across_files():
    a, _ = parse_trades(
        csv("d1,p1,2025-07-07,AAPL,BUY,1,10,0,USD", "d2,p1,2025-07-03,AAPL,BUY,2,10,0,USD"), "a.csv"
    )
    b, _ = parse_trades(
        csv(
            "d1,p1,2025-07-03,AAPL,BUY,3,10,0,USD",  # earlier date than a.csv's d1: kept
            "d2,p1,2025-07-03,AAPL,BUY,4,10,0,USD",  # same date as a.csv's d2, later file
            "d3,p1,2025-07-03,AAPL,BUY,5,10,0,EUR",  # invalid: does not claim d3
            "d3,p1,2025-07-07,AAPL,BUY,6,10,0,USD",
            "d3,p1,2025-07-07,AAPL,BUY,7,10,0,USD",
        ),
        "b.csv",
    )
    valid, rejects = validate_trades(pl.concat([b, a]), KNOWN)
    assert valid.select("trade_id", "quantity", "source_file").rows() == [
        ("d1", 3.0, "b.csv"),
        ("d2", 2.0, "a.csv"),
        ("d3", 6.0, "b.csv"),
    ]
    assert rejects.select("trade_id", "source_file", "line", "reason").rows() == [
        ("d2", "b.csv", 3, "duplicate_trade_id"),
        ("d3", "b.csv", 4, "non_usd"),
        ("d1", "a.csv", 2, "duplicate_trade_id"),
        ("d3", "b.csv", 6, "duplicate_trade_id"),
    ]


def test_non_utf8_bytes_reject_their_row_only_and_a_non_utf8_header_every_row():
    content = csv(GOOD, "c1,p1,2025-07-03,AAPL,BUY,1,10,0,USD").replace(b"p1", b"p\xe9", 1)
    trades, rejects = parse_trades(content, "latin1.csv")
    assert trades["trade_id"].to_list() == ["c1"]
    assert rejects.select("trade_id", "line", "reason").rows() == [("g1", 2, "bad_encoding")]
    header = HEADER.replace("currency", "curr\xe9ncy").encode("latin-1")
    content = header + b"\n" + csv(GOOD, "c1,p1,2025-07-03,AAPL,BUY,1,10,0,USD", header="")[1:]
    trades, rejects = parse_trades(content, "latin1.csv")
    assert trades.is_empty()
    assert rejects.select("trade_id", "line", "reason").rows() == [
        ("g1", 2, "bad_encoding"),
        ("c1", 3, "bad_encoding"),
    ]
    # A UTF-8 byte-order mark is not an encoding problem.
    trades, rejects = parse_trades(b"\xef\xbb\xbf" + csv(GOOD), "bom.csv")
    assert trades["trade_id"].to_list() == ["g1"] and rejects.is_empty()


def test_missing_column_rejects_every_row():
    header = HEADER.replace(",fees", "").replace(",currency", ",ccy")
    content = csv(
        "m1,p1,2025-07-03,MSFT,BUY,5,400,USD", "m2,p1,2025-07-03,X,BUY,5,400,USD", header=header
    )
    trades, rejects = parse_trades(content, "m.csv")
    assert trades.is_empty()
    assert rejects.select("trade_id", "symbol", "line", "reason").rows() == [
        ("m1", "MSFT", 2, "missing_column:fees;missing_column:currency"),
        ("m2", "X", 3, "missing_column:fees;missing_column:currency"),
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty_file"),
        (b"\n\n", "empty_file"),
        (csv(header=HEADER.replace("symbol,", "")), "missing_column:symbol"),
        ("trade_id,date".encode("utf-16"), "bad_encoding"),  # a header only, mis-encoded
        (b'"trade_id,date\n', "unreadable_csv"),  # a header only, that csv cannot split
    ],
)
def test_a_file_with_no_rows_to_blame_is_one_reject(content, reason):
    trades, rejects = parse_trades(content, "f.csv")
    assert trades.is_empty()
    assert rejects.select("source_file", "line", "reason").rows() == [("f.csv", None, reason)]


def test_line_numbers_count_physical_lines_and_a_line_is_a_row():
    content = csv(
        "", "q1,p1,2025-07-03,AAPL,BUY,1,10,0,USD", '"q\n2",p1,2025-07-03,AAPL,BUY,1,10,0,USD', GOOD
    )
    trades, rejects = parse_trades(content, "q.csv")
    # A quoted value may not span lines: its first line is broken, its second a row of its own.
    assert trades.select("trade_id", "line").rows() == [("q1", 3), ('2"', 5), ("g1", 6)]
    assert rejects.select("trade_id", "line", "reason").rows() == [(None, 4, "malformed_row")]


def test_header_only_file_is_empty_not_rejected():
    trades, rejects = parse_trades(csv(), "h.csv")
    assert trades.is_empty() and rejects.is_empty()
    valid, rejects = validate_trades(trades, KNOWN)
    assert valid.is_empty() and rejects.is_empty()


def test_clean_file_passes_the_contract():
    content = csv(
        "t1,p1,2025-07-02,,DEPOSIT,10000,,,USD",
        "t2,p1,2025-07-03,AAPL,BUY,10,212.44,1,USD",
        "t3,p1,2025-07-07,AAPL,SELL,4,209.95,1,USD",
        "t4,p1,2025-07-07,CASH,FEE,2.5,1,0,USD",
        "t5,p2,2025-07-03,MSFT,BUY,1,498.84,0,USD",
        "t6,p2,2025-07-07,,WITHDRAWAL,100,,0,usd",
    )
    valid, rejects = run(content)
    assert rejects.is_empty()
    assert valid["trade_id"].to_list() == ["t1", "t2", "t3", "t4", "t5", "t6"]
    PortfolioTrade.validate(valid)


def test_the_contract_catches_what_validation_would_not_allow():
    valid, _ = run(csv(GOOD, "t2,p1,2025-07-03,,DEPOSIT,100,,0,USD"))
    with pytest.raises(pandera.errors.SchemaError):
        PortfolioTrade.validate(pl.concat([valid, valid]))  # trade_id no longer unique
    with pytest.raises(pandera.errors.SchemaError):
        PortfolioTrade.validate(valid.with_columns(pl.lit("MSFT").alias("symbol")))
    with pytest.raises(pandera.errors.SchemaError):
        PortfolioTrade.validate(valid.drop("line"))


def _lines_around(bad: bytes) -> bytes:
    """Two good trades, the bad line (line 4), two more: the reject must be line 4 alone."""
    good = [f"k{n},p1,2025-07-03,AAPL,BUY,1,10,0,USD".encode() for n in range(1, 5)]
    return b"\n".join([HEADER.encode(), *good[:2], bad, *good[2:]]) + b"\n"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"x" * 50_000_000, "line_too_long"),  # past the csv module's field limit
        (b'b1,p1,2025-07-03,AAPL,BUY,1,"10,0,USD', "malformed_row"),  # an unbalanced quote
        (bytes(b for b in range(256) if b != ord("\n")), "bad_encoding"),  # binary
        (b"b1,p1,2025-07-03,AAPL,BUY,1,10,0,US\x00D", "bad_encoding"),  # UTF-8, but a NUL
    ],
)
def test_one_bad_line_rejects_that_line_alone_and_keeps_the_rows_around_it(bad, reason):
    valid, rejects = run(_lines_around(bad), "bad.csv")
    assert valid.select("trade_id", "line").sort("line").rows() == [
        ("k1", 2),
        ("k2", 3),
        ("k3", 5),
        ("k4", 6),
    ]
    assert rejects.select("source_file", "line", "reason").rows() == [("bad.csv", 4, reason)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("r1,p1,2025-07-03,AAPL,BUY,1e308,1e308,0,USD", "out_of_range_quantity;out_of_range_price"),
        ("r1,p1,2025-07-03,AAPL,BUY,1000000001,10,0,USD", "out_of_range_quantity"),
        ("r1,p1,2025-07-03,AAPL,BUY,1,1000001,0,USD", "out_of_range_price"),
        ("r1,p1,2025-07-03,AAPL,BUY,1,10,1e20,USD", "out_of_range_fees"),
        ("r1,p1,2025-07-03,,DEPOSIT,1e308,,0,USD", "out_of_range_quantity"),
    ],
)
def test_absurd_numbers_are_out_of_range(line, reason):
    valid, rejects = run(csv(GOOD, line))
    assert valid["trade_id"].to_list() == ["g1"]
    assert rejects.select("trade_id", "reason").rows() == [("r1", reason)]


def test_the_ceilings_themselves_are_accepted():
    valid, rejects = run(csv("c1,p1,2025-07-03,AAPL,BUY,1000000000,1000000,1000000,USD", GOOD))
    assert rejects.is_empty() and valid["trade_id"].to_list() == ["c1", "g1"]
