"""Payments through Dagster: landing files in, transactions and rejects, features from prior
history only, scores from a real local HTTP API (or the shipped model), failures recorded;
on a local lake + DuckDB and on an S3 lake (moto server) + PostgreSQL."""

import datetime as dt
import math
import os

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, SkipReason, build_sensor_context

from fintrack_assets.defs.payments.sensors import payment_files_sensor
from fintrack_assets.resources.fraud_scorers import FraudScorer
from fintrack_assets.resources.landing import LandingZone
from fintrack_assets_tests.fraud_api_stub import Answer, FraudApiStub, score_one
from fintrack_assets_tests.helpers import QUIET, Platform

DAY, NEXT = dt.date(2025, 3, 2), dt.date(2025, 3, 3)  # a Sunday: people pay on Sundays
HEADER = (
    "transaction_id,account_id,ts,amount,currency,merchant,category,lat,lon,merch_lat,merch_lon"
)
GOOD = f"""{HEADER}
t1,A,2025-03-02T10:00:00Z,20.00,USD,shop1,grocery,40.0,-74.0,40.0,-74.0
t2,A,2025-03-02T10:30:00Z,30.00,USD,shop1,grocery,40.0,-74.0,40.0,-74.0
bad1,A,2025-03-02T11:00:00Z,-5,USD,shop1,grocery,40.0,-74.0,40.0,-74.0
t3,A,2025-03-02T23:15:00Z,500.00,USD,shop2,electronics,40.0,-74.0,41.0,-74.0
bad2,A,2025-03-03T01:00:00Z,5,USD,shop1,grocery,40.0,-74.0,40.0,-74.0
t4,B,2025-03-02T12:00:00Z,15.50,usd,shop1,grocery,,,,
t1,B,2025-03-02T13:00:00Z,5,USD,shop1,grocery,,,,
bad3,B,yesterday,5,USD,shop1,grocery,,,,
bad4,B,2025-03-02T14:00:00Z,abc,USD,shop1,grocery,,,,
bad5,B,2025-03-02T14:00:00Z,5,EUR,shop1,grocery,,,,
"""
SPARKOV_HEADER = (
    ",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,street,city,state,"
    "zip,lat,long,city_pop,job,dob,trans_num,unix_time,merch_lat,merch_long,is_fraud"
)
SPARKOV_ROW = (
    "0,2025-03-02 09:00:00,A,fraud_shop3,misc_net,12.34,Jane,Doe,F,1 Main St,Springfield,NY,"
    "10001,40.0,-74.0,1000,Engineer,1980-01-01,s1,1740906000,40.0,-74.0,0"
)
SPARKOV = f"{SPARKOV_HEADER}\n{SPARKOV_ROW}\n"
BAD_ENCODING = f"{HEADER}\n".encode() + (b"bad6,B,2025-03-02T15:00:00Z,5,USD,caf\xe9,grocery,,,,\n")
MISSING_AMOUNT = (
    "transaction_id,account_id,ts,currency,merchant,category,lat,lon,merch_lat,merch_lon\n"
    "bad7,B,2025-03-02T16:00:00Z,USD,x,misc,,,,\n"
)
NEXT_DAY = f"""{HEADER}
t5,A,2025-03-03T00:30:00Z,40.00,USD,shop1,grocery,40.0,-74.0,40.0,-74.0
"""
VALID = ["s1", "t1", "t2", "t3", "t4", "t5"]
REJECTS = {
    ("bad1", "non_positive_amount"),
    ("bad2", "ts_outside_day"),
    ("t1", "duplicate_transaction_id"),
    ("bad3", "unparseable_ts"),
    ("bad4", "unparseable_amount"),
    ("bad5", "non_usd"),
}
FILE_REJECTS = {  # rows rejected for their file's fault: (file, line, reason)
    ("date=2025-03-02/c.csv", 2, "bad_encoding"),
    ("date=2025-03-02/d.csv", 2, "missing_column:amount"),
}
# One degree of latitude on a sphere of 6371.0088 km.
DEGREE_KM = 6371.0088 * math.pi / 180
# Features worked out by hand from the rows above: windows are [ts - width, ts), one account's
# earlier transactions only (s1 09:00 12.34 fraud_shop3; t1 10:00 20 shop1; t2 10:30 30 shop1;
# t3 23:15 500 shop2; t5 next day 00:30 40 shop1). z-score of t2: prior 12.34 and 20, mean
# 16.17, sample std 7.66 / sqrt(2).
HAND = {
    "s1": dict(log_amount=math.log1p(12.34), first_time_merchant=1.0),
    "t1": dict(log_amount=math.log1p(20), count_1h=1, sum_1h=12.34, count_24h=1, sum_24h=12.34,
               count_7d=1, sum_7d=12.34, first_time_merchant=1.0),
    "t2": dict(log_amount=math.log1p(30), amount_zscore_30d=(30 - 16.17) / (7.66 / math.sqrt(2)),
               count_1h=1, sum_1h=20, count_24h=2, sum_24h=32.34, count_7d=2, sum_7d=32.34),
    "t3": dict(log_amount=math.log1p(500), count_24h=3, sum_24h=62.34, count_7d=3, sum_7d=62.34,
               first_time_merchant=1.0, is_night=1.0, distance_km=DEGREE_KM),
    "t4": dict(log_amount=math.log1p(15.5), first_time_merchant=1.0),
    "t5": dict(log_amount=math.log1p(40), count_24h=4, sum_24h=562.34, count_7d=4, sum_7d=562.34,
               is_night=1.0),
}  # fmt: skip
JOB_ASSETS = {
    "payment_transactions",
    "payment_transaction_rejects",
    "fraud_predictions",
    "fraud_prediction_failures",
}


def _expected_score(transaction_id: str) -> float:
    features = HAND[transaction_id]
    if transaction_id == "t3":
        # z-score of 500 against s1, t1, t2: mean 20.78, sample std by hand below.
        prior = [12.34, 20.0, 30.0]
        mean = sum(prior) / 3
        std = math.sqrt(sum((x - mean) ** 2 for x in prior) / 2)
        features = {**features, "amount_zscore_30d": (500 - mean) / std}
    if transaction_id == "t5":
        prior = [12.34, 20.0, 30.0, 500.0]
        mean = sum(prior) / 4
        std = math.sqrt(sum((x - mean) ** 2 for x in prior) / 3)
        features = {**features, "amount_zscore_30d": (40 - mean) / std}
    return score_one(features)[0]


@pytest.fixture
def stub():
    with FraudApiStub() as server:
        yield server


def _platform(request, tmp_path, monkeypatch, stub: FraudApiStub, batch_size: int) -> Platform:
    lake, warehouse = request.param.split("+")
    env = {"FINTRACK_UNIVERSE": "AAPL"}
    if lake == "local":
        env["FINTRACK_LAKE_URL"] = str(tmp_path / "lake")
    else:
        env["FINTRACK_LAKE_URL"] = f"s3://{request.getfixturevalue('s3_bucket')}/lake"
        env["AWS_ENDPOINT_URL"] = request.getfixturevalue("s3_endpoint")
    if warehouse == "duckdb":
        env["FINTRACK_WAREHOUSE_URL"] = f"duckdb:///{tmp_path}/warehouse.duckdb"
    else:
        env["FINTRACK_WAREHOUSE_URL"] = request.getfixturevalue("postgres_url")
    scorer = FraudScorer(
        kind="http", api_url=stub.url, batch_size=batch_size, max_attempts=2, backoff_seconds=0.01
    )
    platform = Platform(env, monkeypatch, resources={"fraud_scorer": scorer})
    zone = LandingZone(platform.settings.lake_url, platform.settings.s3_storage_options)
    zone.write("payment_transactions", "a.csv", GOOD.encode(), DAY)
    zone.write("payment_transactions", "b_sparkov.csv", SPARKOV.encode(), DAY)
    zone.write("payment_transactions", "c.csv", BAD_ENCODING, DAY)
    zone.write("payment_transactions", "d.csv", MISSING_AMOUNT.encode(), DAY)
    zone.write("payment_transactions", "a.csv", NEXT_DAY.encode(), NEXT)
    return platform


@pytest.fixture(params=["local+duckdb", "s3+postgresql"])
def platform(request, tmp_path, monkeypatch, stub) -> Platform:
    return _platform(request, tmp_path, monkeypatch, stub, batch_size=2)


def _payments(platform: Platform, first: dt.date, last: dt.date, shard_rows: int | None = None):
    job = platform.defs.resolve_job_def("payments_job")
    tags = {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
    config = {} if shard_rows is None else {"shard_rows": shard_rows}
    return platform._run(job, tags, {**QUIET, "ops": {"fraud_predictions": {"config": config}}})


@pytest.mark.parametrize("shard_rows", [None, 2])
def test_files_to_scored_transactions_with_hand_worked_features(platform, stub, shard_rows):
    """With shard_rows 2, DAY's 5 payments go in 3 account shards, read from the warehouse
    once and split into shard files: the same features."""
    run = _payments(platform, DAY, NEXT, shard_rows)
    assert run.success
    assert run.partitions == {a: {DAY.isoformat(), NEXT.isoformat()} for a in JOB_ASSETS}
    payments = platform.warehouse_frame("payment_transactions")
    assert sorted(payments["transaction_id"]) == VALID
    s1 = payments.filter(pl.col("transaction_id") == "s1").row(0, named=True)
    assert (s1["account_id"], s1["amount"], s1["currency"], s1["lon"]) == ("A", 12.34, "USD", -74.0)
    rejects = platform.warehouse_frame("payment_transaction_rejects")
    by_row = rejects.filter(pl.col("file").str.ends_with("a.csv"))
    assert set(by_row.select("transaction_id", "reason").iter_rows()) == REJECTS
    by_file = rejects.filter(~pl.col("file").str.ends_with("a.csv"))
    assert set(by_file.select("file", "line", "reason").iter_rows()) == FILE_REJECTS
    bad4 = rejects.filter(pl.col("transaction_id") == "bad4").row(0, named=True)
    assert (bad4["file"], bad4["line"]) == ("date=2025-03-02/a.csv", 10)
    assert run.asset_checks[("payment_transactions", "reject_share")] is False  # 8 of 14
    assert run.asset_checks[("payment_transactions", "contract")] is True

    predictions = platform.warehouse_frame("fraud_predictions").sort("transaction_id")
    assert predictions["transaction_id"].to_list() == VALID
    for row in predictions.iter_rows(named=True):
        assert row["fraud_score"] == pytest.approx(_expected_score(row["transaction_id"]))
        assert row["model_version"] == "stub-logistic-1"
    assert predictions.filter(pl.col("transaction_id") == "t5")["date"][0] == NEXT
    assert platform.warehouse_frame("fraud_prediction_failures").is_empty()
    assert run.asset_checks[("fraud_predictions", "no_failed_batches")] is True
    metadata = run.metadata["fraud_predictions"]
    assert metadata["run/processed"].value == 6 and metadata["run/failed"].value == 0
    if shard_rows is None:
        # The range is scored day by day: 5 rows on the first day in batches of 2, 1 on the next.
        assert sorted(stub.batch_sizes) == [1, 1, 2, 2]
    else:
        assert metadata["run/shards"].value == 3 + 1


def test_a_day_scored_alone_equals_the_range_and_reruns_change_no_row_count(platform):
    assert _payments(platform, DAY, NEXT).success
    ranged = platform.warehouse_frame("fraud_predictions").sort("transaction_id")
    counts = {
        table: platform.warehouse_frame(table).height
        for table in ("payment_transactions", "payment_transaction_rejects", "fraud_predictions")
    }
    assert _payments(platform, NEXT, NEXT).success  # t5 alone: its history is stored now
    assert _payments(platform, DAY, DAY).success
    again = platform.warehouse_frame("fraud_predictions").sort("transaction_id")
    assert again["fraud_score"].to_list() == pytest.approx(ranged["fraud_score"].to_list())
    assert again["transaction_id"].to_list() == ranged["transaction_id"].to_list()
    assert {table: platform.warehouse_frame(table).height for table in counts} == counts


@pytest.mark.parametrize("platform", ["local+duckdb"], indirect=True)
def test_a_failing_batch_is_recorded_and_the_next_run_scores_it(platform, stub):
    # Batches of 2 in file order: [t1, t2] [t3, t4] (a.csv), then [s1] (b_sparkov.csv).
    stub.script = lambda call: (
        Answer(status=500, body=b'{"detail": "model crashed"}') if call.key == "t3" else None
    )
    run = _payments(platform, DAY, DAY)
    failures = platform.warehouse_frame("fraud_prediction_failures")
    predictions = platform.warehouse_frame("fraud_predictions")
    assert sorted(failures["transaction_id"]) == ["t3", "t4"]
    assert "HTTP 500" in failures["error"][0] and failures["attempts"].to_list() == [2, 2]
    assert sorted(predictions["transaction_id"]) == ["s1", "t1", "t2"]
    assert run.asset_checks[("fraud_predictions", "no_failed_batches")] is False
    assert run.metadata["fraud_predictions"]["run/failed"].value == 2

    stub.script = None
    assert _payments(platform, DAY, DAY).success
    assert platform.warehouse_frame("fraud_prediction_failures").is_empty()
    predictions = platform.warehouse_frame("fraud_predictions")
    assert sorted(predictions["transaction_id"]) == ["s1", "t1", "t2", "t3", "t4"]


@pytest.mark.parametrize("platform", ["local+duckdb"], indirect=True)
def test_a_dead_api_fails_every_batch_and_loses_nothing(platform, stub):
    stub.stop()
    run = _payments(platform, DAY, DAY)
    assert run.success
    assert platform.warehouse_frame("fraud_predictions").is_empty()
    failures = platform.warehouse_frame("fraud_prediction_failures")
    assert sorted(failures["transaction_id"]) == ["s1", "t1", "t2", "t3", "t4"]
    assert run.asset_checks[("fraud_predictions", "no_failed_batches")] is False


def test_the_shipped_model_scores_through_dagster(tmp_path, monkeypatch):
    pytest.importorskip("fintrack_assets.core.fraud_model")
    from fintrack_assets.core.fraud_model import FraudModel

    platform = Platform(
        {
            "FINTRACK_UNIVERSE": "AAPL",
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
            "FINTRACK_FRAUD_SCORER": "local",
        },
        monkeypatch,
    )
    LandingZone(str(tmp_path / "lake")).write("payment_transactions", "a.csv", GOOD.encode(), DAY)
    assert _payments(platform, DAY, DAY).success
    predictions = platform.warehouse_frame("fraud_predictions")
    assert sorted(predictions["transaction_id"]) == ["t1", "t2", "t3", "t4"]
    assert predictions["fraud_score"].is_between(0, 1).all()
    assert set(predictions["model_version"]) == {FraudModel.load().model_version}


def test_the_sensor_requests_each_changed_day_once(tmp_path, monkeypatch):
    platform = Platform(
        {
            "FINTRACK_UNIVERSE": "AAPL",
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
        },
        monkeypatch,
    )
    zone = LandingZone(str(tmp_path / "lake"))
    lake = platform.defs.resources["lake"]
    instance = DagsterInstance.ephemeral()

    def tick(cursor: str | None):
        context = build_sensor_context(
            instance=instance, cursor=cursor, resources={"lake": lake}, definitions=platform.defs
        )
        return payment_files_sensor(context), context.cursor

    assert isinstance(tick(None)[0], SkipReason)
    a = zone.write("payment_transactions", "a.csv", GOOD.encode(), DAY)
    zone.write("payment_transactions", "b.csv", SPARKOV.encode(), DAY)
    zone.write("payment_transactions", "a.csv", NEXT_DAY.encode(), NEXT)
    zone.write("payment_transactions", "stray.csv", NEXT_DAY.encode())  # no day folder
    first, _ = tick(None)
    assert sorted(r.partition_key for r in first.run_requests) == ["2025-03-02", "2025-03-03"]
    keys = {r.partition_key: r.run_key for r in first.run_requests}
    again, _ = tick(first.cursor)
    assert isinstance(again, SkipReason)  # nothing new: nothing requested

    # The same file uploaded again with new content (a later modification time).
    later = os.stat(a).st_mtime + 5
    os.utime(a, (later, later))
    changed, _ = tick(first.cursor)
    [request] = changed.run_requests
    assert request.partition_key == "2025-03-02" and request.run_key != keys["2025-03-02"]
    # A later tick from an old cursor builds the same run key: Dagster's run-key memory (not
    # the cursor alone) keeps a file from ever triggering twice.
    assert tick(first.cursor)[0].run_requests[0].run_key == request.run_key
    assert isinstance(tick(changed.cursor)[0], SkipReason)


def test_the_job_selects_the_four_payment_assets(tmp_path, monkeypatch):
    platform = Platform(
        {
            "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/warehouse.duckdb",
        },
        monkeypatch,
    )
    job = platform.defs.resolve_job_def("payments_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == JOB_ASSETS
    assert platform.defs.resolve_sensor_def("payment_files_sensor").job_name == "payments_job"
    assert AssetKey("fraud_predictions") in platform.defs.resolve_asset_graph().get_all_asset_keys()


def test_the_payment_contract_refuses_what_the_reader_never_passes():
    from fintrack_assets.schemas import PaymentTransaction, contract_failures

    row = {
        "transaction_id": "t1",
        "account_id": "A",
        "ts": dt.datetime(2025, 3, 2, 10, tzinfo=dt.UTC),
        "amount": 20.0,
        "currency": "USD",
        "merchant": "shop1",
        "category": "grocery",
        "lat": 40.0,
        "lon": -74.0,
        "merch_lat": None,
        "merch_lon": None,
        "date": DAY,
    }
    schema = {
        **{c: pl.String for c in ("transaction_id", "account_id", "currency", "merchant")},
        "category": pl.String,
        "ts": pl.Datetime("us", "UTC"),
        **{c: pl.Float64 for c in ("amount", "lat", "lon", "merch_lat", "merch_lon")},
        "date": pl.Date,
    }
    good = pl.DataFrame([row], schema=schema)
    assert contract_failures(PaymentTransaction, good) is None
    for bad in ({"amount": -1.0}, {"currency": "EUR"}, {"date": NEXT}, {"lat": 91.0}):
        assert (
            contract_failures(
                PaymentTransaction, good.with_columns(**{k: pl.lit(v) for k, v in bad.items()})
            )
            is not None
        ), bad
    assert contract_failures(PaymentTransaction, pl.concat([good, good])) is not None
