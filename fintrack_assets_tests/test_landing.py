"""The landing zone lists and reads the same way on a local folder and on S3 (moto server)."""

import datetime as dt
import os
from collections.abc import Callable

import boto3
import pytest

from fintrack_assets.resources.landing import LandingFile, LandingZone

Put = Callable[[str, bytes], None]


@pytest.fixture(params=["local", "s3"])
def zone(request, tmp_path) -> tuple[LandingZone, Put, str]:
    """(zone, put(relative key under the lake, content), root of full paths)."""
    if request.param == "local":
        lake = tmp_path / "lake"

        def put_local(key: str, content: bytes) -> None:
            target = lake / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

        return LandingZone(str(lake)), put_local, str(lake.resolve())
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    def put_s3(key: str, content: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"lake/{key}", Body=content)

    options = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1"}
    return LandingZone(f"s3://{bucket}/lake/", options), put_s3, f"s3://{bucket}/lake"


def test_lists_csv_files_of_the_dataset_sorted_and_reads_them(zone):
    landing, put, root = zone
    before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    put("landing/portfolio_trades/b.csv", b"second,file\n")
    put("landing/portfolio_trades/a.csv", b"trade_id\nt1\n")
    put("landing/portfolio_trades/notes.txt", b"not a csv")
    put("landing/portfolio_trades/archive/old.csv", b"not listed: nested")
    put("landing/payment_transactions/p.csv", b"another dataset")
    put("portfolio_trades/x.csv", b"outside landing/")

    files = landing.list_files("portfolio_trades")
    folder = f"{root}/landing/portfolio_trades"
    assert [(f.path, f.size, f.etag) for f in files] == [
        (f"{folder}/a.csv", 12, None),
        (f"{folder}/b.csv", 12, None),
    ]
    assert all(f.mtime.tzinfo == dt.UTC and f.mtime > before for f in files)
    assert [f.name for f in files] == ["a.csv", "b.csv"]
    assert landing.read_csv(files[0]) == b"trade_id\nt1\n"
    assert landing.read_csv(files[1]) == b"second,file\n"
    assert landing.folder("portfolio_trades") == folder


def test_missing_folder_is_empty(zone):
    landing, put, _ = zone
    assert landing.list_files("portfolio_trades") == []
    put("landing/other/a.csv", b"x")
    assert landing.list_files("portfolio_trades") == []


def test_day_folders_list_alone_or_all_together_and_stream(zone):
    landing, put, root = zone
    put("landing/payment_transactions/date=2025-03-02/b.csv", b"id\n2\n")
    put("landing/payment_transactions/date=2025-03-02/a.csv", b"id\n1\n")
    put("landing/payment_transactions/date=2025-03-03/a.csv", b"id\n3\n")
    put("landing/payment_transactions/loose.csv", b"id\n4\n")
    put("landing/payment_transactions/date=2025-13-01/x.csv", b"no such day")
    folder = f"{root}/landing/payment_transactions"

    day = landing.list_files("payment_transactions", dt.date(2025, 3, 2))
    assert [f.path for f in day] == [
        f"{folder}/date=2025-03-02/a.csv",
        f"{folder}/date=2025-03-02/b.csv",
    ]
    every = landing.list_files("payment_transactions", recursive=True)
    assert [landing.day_of(f) for f in every] == [
        dt.date(2025, 3, 2),
        dt.date(2025, 3, 2),
        dt.date(2025, 3, 3),
        None,  # date=2025-13-01 is no day
        None,  # not in a day folder
    ]
    with landing.open(day[1]) as stream:
        assert stream.read(3) == b"id\n" and stream.read() == b"2\n"
    path = landing.write("payment_transactions", "c.csv", b"id\n5\n", dt.date(2025, 3, 4))
    assert path == f"{folder}/date=2025-03-04/c.csv"
    assert landing.list_files("payment_transactions", dt.date(2025, 3, 4))[0].size == 5


@pytest.mark.parametrize("dataset", ["../secrets", "Trades", "a/b", "", "1abc", "a-b", "a.csv"])
def test_dataset_names_are_validated_before_touching_a_path(tmp_path, dataset):
    with pytest.raises(ValueError, match="invalid landing dataset"):
        LandingZone(str(tmp_path)).list_files(dataset)


def test_reads_only_files_of_the_zone(tmp_path):
    (tmp_path / "secret.csv").write_bytes(b"no")
    landing = LandingZone(str(tmp_path / "lake"))
    now = dt.datetime.now(dt.UTC)
    for path in [str(tmp_path / "secret.csv"), f"{tmp_path}/lake/landing/../../secret.csv"]:
        with pytest.raises(ValueError, match="is not a file of the landing zone"):
            landing.read_csv(LandingFile(path, 2, now, None))


def test_credentials_never_show(s3_endpoint, s3_bucket):
    options = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
    }
    landing = LandingZone(f"s3://{s3_bucket}/lake", options)
    assert repr(landing) == f"LandingZone('s3://{s3_bucket}/lake')"
    assert landing.list_files("portfolio_trades") == []  # explicit keys work too
    ghost = LandingFile(
        f"s3://{s3_bucket}/lake/landing/portfolio_trades/ghost.csv",
        1,
        dt.datetime.now(dt.UTC),
        None,
    )
    with pytest.raises(OSError) as failure:
        landing.read_csv(ghost)
    assert "ghost.csv" in str(failure.value)
    assert options["AWS_SECRET_ACCESS_KEY"] not in str(failure.value)
    assert options["AWS_ACCESS_KEY_ID"] not in str(failure.value)
