import pytest

from fintrack_assets.settings import Secret, Settings, SettingsError, redact_url


def test_defaults_are_the_embedded_platform(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.lake_url == str(tmp_path / ".fintrack" / "lake")
    assert settings.warehouse_url.value == f"duckdb:///{tmp_path}/.fintrack/warehouse.duckdb"
    assert settings.warehouse_backend == "duckdb"
    assert settings.market_data == "synthetic"
    assert settings.universe == "sample"
    assert settings.start_date.isoformat() == "2020-01-02"
    assert settings.fraud_scorer == "local"
    assert settings.market_data_rate_limit is None  # unlimited
    assert dict(settings.shown())["FINTRACK_MARKET_DATA_RATE_LIMIT"] == "-"


@pytest.mark.parametrize("value", ["5", " 5 ", "5/min", "5/MIN"])
def test_a_rate_limit_is_requests_per_minute(value):
    settings = Settings.from_env({"FINTRACK_MARKET_DATA_RATE_LIMIT": value})
    assert settings.market_data_rate_limit == 5
    assert dict(settings.shown())["FINTRACK_MARKET_DATA_RATE_LIMIT"] == "5/min"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        (
            {"FINTRACK_MARKET_DATA": "bloomberg"},
            ["FINTRACK_MARKET_DATA", "synthetic, yfinance, polygon"],
        ),
        ({"FINTRACK_MARKET_DATA": "polygon"}, ["POLYGON_API_KEY"]),
        ({"FINTRACK_LAKE_URL": "gs://bucket/lake"}, ["FINTRACK_LAKE_URL", "s3://bucket/prefix"]),
        ({"FINTRACK_LAKE_URL": "s3://"}, ["FINTRACK_LAKE_URL", "bucket"]),
        ({"FINTRACK_WAREHOUSE_URL": "mysql://x@h/db"}, ["FINTRACK_WAREHOUSE_URL", "postgresql://"]),
        ({"FINTRACK_WAREHOUSE_URL": "duckdb://"}, ["FINTRACK_WAREHOUSE_URL"]),
        ({"FINTRACK_START_DATE": "01/02/2020"}, ["FINTRACK_START_DATE", "YYYY-MM-DD"]),
        ({"FINTRACK_START_DATE": "1999-12-31"}, ["FINTRACK_START_DATE", "2000-01-03"]),
        ({"FINTRACK_UNIVERSE": "synthetic:zero"}, ["FINTRACK_UNIVERSE", "synthetic:N"]),
        ({"FINTRACK_UNIVERSE": "synthetic:0"}, ["FINTRACK_UNIVERSE"]),
        ({"FINTRACK_UNIVERSE": "/no/such/universe.csv"}, ["FINTRACK_UNIVERSE", "no universe CSV"]),
        ({"FINTRACK_UNIVERSE": "../../etc"}, ["FINTRACK_UNIVERSE"]),
        ({"FINTRACK_UNIVERSE": "AAPL,A';DROP TABLE x;--"}, ["FINTRACK_UNIVERSE", "invalid symbol"]),
        ({"FINTRACK_FRAUD_SCORER": "remote"}, ["FINTRACK_FRAUD_SCORER", "local, http"]),
        ({"FINTRACK_FRAUD_SCORER": "http"}, ["FINTRACK_FRAUD_API_URL"]),
        ({"FINTRACK_FRAUD_API_URL": "ftp://x"}, ["FINTRACK_FRAUD_API_URL"]),
        ({"FINTRACK_POLYGON_URL": "api.polygon.io"}, ["FINTRACK_POLYGON_URL"]),
        ({"FINTRACK_MARKET_DATA_RATE_LIMIT": "0"}, ["FINTRACK_MARKET_DATA_RATE_LIMIT", ">= 1"]),
        ({"FINTRACK_MARKET_DATA_RATE_LIMIT": "-5"}, ["FINTRACK_MARKET_DATA_RATE_LIMIT"]),
        ({"FINTRACK_MARKET_DATA_RATE_LIMIT": "2.5"}, ["FINTRACK_MARKET_DATA_RATE_LIMIT", "whole"]),
        ({"FINTRACK_MARKET_DATA_RATE_LIMIT": "fast"}, ["FINTRACK_MARKET_DATA_RATE_LIMIT"]),
        ({"FINTRACK_MARKET_DATA_RATE_LIMIT": "²"}, ["FINTRACK_MARKET_DATA_RATE_LIMIT"]),
    ],
)
def test_a_bad_value_fails_with_one_line_naming_the_variable(env, names):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_secrets_never_print():
    settings = Settings.from_env(
        {
            "FINTRACK_MARKET_DATA": "polygon",
            "POLYGON_API_KEY": "pk_live_SECRET",
            "FINTRACK_WAREHOUSE_URL": "postgresql://app:hunter2@db:5432/fintrack",
        }
    )
    printed = repr(settings) + str(settings.polygon_api_key) + settings.warehouse_display
    assert "pk_live_SECRET" not in printed
    assert "hunter2" not in printed
    assert settings.warehouse_display == "postgresql://db:5432/…"
    assert repr(Secret("x")) == "Secret('***')"


def test_a_bad_postgres_url_never_echoes_its_password():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"FINTRACK_WAREHOUSE_URL": "postgresql://app:hunter2@/"})
    assert "hunter2" not in str(raised.value)
    assert redact_url("postgresql://u:p@h/d") == "postgresql://h/…"


def test_a_bad_fraud_api_url_never_echoes_a_token():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"FINTRACK_FRAUD_API_URL": "ftp://tok3n@api/v1?key=s3cret&x=1"})
    assert "tok3n" not in str(raised.value) and "s3cret" not in str(raised.value)
    assert "'ftp://api/…'" in str(raised.value)
    assert redact_url("duckdb:////abs/w.duckdb") == "duckdb:////abs/w.duckdb"


def test_s3_lake_and_endpoint():
    settings = Settings.from_env(
        {
            "FINTRACK_LAKE_URL": "s3://bucket/lake/",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_PROFILE": "minio",
        }
    )
    assert settings.lake_url == "s3://bucket/lake"
    assert settings.lake_is_s3
    assert settings.s3_storage_options["AWS_ALLOW_HTTP"] == "true"
    assert settings.s3_storage_options["AWS_REGION"] == "us-east-1"


@pytest.mark.parametrize("spec", ["all", "sp500_pit", "sp500", "sample", "synthetic:5400"])
def test_every_named_universe_is_accepted(spec):
    assert Settings.from_env({"FINTRACK_UNIVERSE": spec}).universe == spec


def test_a_misspelt_universe_lists_the_named_ones():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"FINTRACK_UNIVERSE": "sp500 pit"})
    assert "sample, sp500, sp500_pit, all," in str(raised.value)
