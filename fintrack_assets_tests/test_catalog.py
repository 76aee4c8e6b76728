"""What the launchpad and the asset catalog show: described config fields, choices as enums,
each asset's real storage (kinds, table name, URI without credentials), owner, description and
code reference."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetsDefinition,
    CodeReferencesMetadataValue,
    DagsterInvalidConfigError,
    Definitions,
    LocalFileCodeReference,
    UrlCodeReference,
    validate_run_config,
)
from dagster._config import ConfigType, ConfigTypeKind

from fintrack_assets.catalog import GitSource, catalog, warehouse_storage
from fintrack_assets.definitions import build_defs, domains
from fintrack_assets.defs.risk.assets import RISK_ASSET_KEYS
from fintrack_assets.settings import Settings

PACKAGE = Path(__file__).resolve().parents[1] / "fintrack_assets"
SILVER = [f"silver_ohlcv_{n}d" for n in (3, 5, 8, 13, 21, 34)]
LAKE_ASSETS = {"raw_ohlcv", "bronze_ohlcv", "bronze_ohlcv_rejects", *SILVER, "treasury_yields"}
WAREHOUSE_ASSETS = {
    "symbol_universe",
    "company_fundamentals",
    "portfolio_trades",
    "portfolio_trades_rejects",
    "holdings_daily",
    "holdings_monthly",
    "payment_transactions",
    "payment_transaction_rejects",
    "fraud_predictions",
    "fraud_prediction_failures",
    *RISK_ASSET_KEYS,
}
OUR_RESOURCES = {"lake", "warehouse", "market_data", "alert_webhook", "fraud_scorer"}
CHOICES = {
    ("ops", "holdings_daily", "method"): {"average", "fifo"},
    ("ops", "maintain_lake_tables", "tables"): {
        "raw_ohlcv",
        "bronze_ohlcv",
        "bronze_ohlcv_rejects",
        *SILVER,
    },
    ("resources", "fraud_scorer", "kind"): {"local", "http"},
    ("resources", "market_data", "source"): {"synthetic", "yfinance", "polygon"},
}


def duckdb_defs(tmp_path: Path) -> Definitions:
    return build_defs(
        Settings.from_env(
            {
                "FINTRACK_WAREHOUSE_URL": f"duckdb:///{tmp_path}/wh.duckdb",
                "FINTRACK_LAKE_URL": str(tmp_path / "lake"),
            }
        )
    )


POSTGRES_ENV = {
    "FINTRACK_WAREHOUSE_URL": "postgresql://alice:s3cret@db.example:6543/fintrack_prod"
    "?sslmode=require&application_name=tok3n",
    "FINTRACK_LAKE_URL": "s3://acme-lake/prod",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY": "wJalrEXAMPLESECRET",
}
CREDENTIALS = ["alice", "s3cret", "tok3n", "sslmode", "AKIAEXAMPLEKEY", "wJalrEXAMPLESECRET"]


def config_fields(defs: Definitions) -> dict[tuple[str, str, str], Any]:
    """(section, op or resource, field) -> its config field, over every job's launchpad."""
    jobs = [job.name for job in defs.jobs or []] + ["__ASSET_JOB"]
    found: dict[tuple[str, str, str], Any] = {}
    for name in jobs:
        root = defs.resolve_job_def(name).run_config_schema.config_type
        for section in ("ops", "resources"):
            for node, node_field in root.fields[section].config_type.fields.items():  # type: ignore[attr-defined]
                if section == "resources" and node not in OUR_RESOURCES:
                    continue
                config = node_field.config_type.fields.get("config")
                if config is None or config.config_type.kind != ConfigTypeKind.STRICT_SHAPE:
                    continue
                for field_name, field in config.config_type.fields.items():
                    found[(section, node, field_name)] = field
    return found


def innermost(config_type: ConfigType) -> ConfigType:
    while config_type.kind in (ConfigTypeKind.NONEABLE, ConfigTypeKind.ARRAY):
        config_type = config_type.inner_type  # type: ignore[attr-defined]
    return config_type


def test_the_launchpad_describes_every_config_field(tmp_path: Path) -> None:
    fields = config_fields(duckdb_defs(tmp_path))
    # Every op config class and resource of the project is reached.
    ops = {node for section, node, _ in fields if section == "ops"}
    assert ops >= {
        "symbol_universe",
        "raw_ohlcv",
        "bronze_ohlcv",
        "portfolio_trades",
        "holdings_daily",
        "payment_transactions",
        "fraud_predictions",
        "portfolio_risk",
        "maintain_lake_tables",
    }
    assert {node for section, node, _ in fields if section == "resources"} == OUR_RESOURCES
    for name in ("universe", "retention_hours", "dry_run", "tables", "method"):
        assert any(key[2] == name for key in fields)
    undescribed = sorted(key for key, field in fields.items() if not field.description)
    assert undescribed == []


def test_string_choices_are_enums_that_list_their_values(tmp_path: Path) -> None:
    fields = config_fields(duckdb_defs(tmp_path))
    for key, values in CHOICES.items():
        config_type = innermost(fields[key].config_type)
        assert config_type.kind == ConfigTypeKind.ENUM, key
        assert {v.config_value for v in config_type.enum_values} == values, key  # type: ignore[attr-defined]


def test_existing_run_configs_still_work_and_a_wrong_choice_is_refused(tmp_path: Path) -> None:
    defs = duckdb_defs(tmp_path)
    daily = defs.resolve_job_def("daily_market_job")
    config = {"ops": {"holdings_daily": {"config": {"method": "fifo"}}}}
    assert validate_run_config(daily, config)["ops"]["holdings_daily"]["config"] == {
        "method": "fifo"
    }
    with pytest.raises(DagsterInvalidConfigError, match=r"'average', 'fifo'.* got lifo"):
        validate_run_config(daily, {"ops": {"holdings_daily": {"config": {"method": "lifo"}}}})
    maintenance = defs.resolve_job_def("lake_maintenance")
    tables = {"ops": {"maintain_lake_tables": {"config": {"tables": ["bronze_ohlcv"]}}}}
    resolved = validate_run_config(maintenance, tables)
    assert resolved["ops"]["maintain_lake_tables"]["config"]["tables"] == ["bronze_ohlcv"]


def decorator_line(path: Path, line_number: int) -> str:
    return path.read_text().splitlines()[line_number - 1].strip()


def function_after(path: Path, line_number: int) -> str:
    """The name of the first function defined at or after `line_number`."""
    for line in path.read_text().splitlines()[line_number - 1 :]:
        if line.strip().startswith("def "):
            return line.strip().removeprefix("def ").split("(")[0]
    raise AssertionError(f"no function after {path}:{line_number}")


def test_duckdb_and_local_lake_catalog(tmp_path: Path) -> None:
    graph = duckdb_defs(tmp_path).resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == WAREHOUSE_ASSETS | LAKE_ASSETS

    for name in keys:
        node = graph.get(next(k for k in graph.get_all_asset_keys() if k.to_user_string() == name))
        metadata = node.metadata
        if name in WAREHOUSE_ASSETS:
            assert node.kinds == {"polars", "duckdb"}, name
            assert metadata["dagster/table_name"] == f"wh.fintrack.{name}"
            assert metadata["dagster/storage_kind"] == "duckdb"
            assert metadata["dagster/uri"] == f"duckdb://{tmp_path}/wh.duckdb/wh.fintrack.{name}"
        else:
            assert node.kinds == {"polars", "deltalake"}, name
            assert metadata["dagster/table_name"] == f"{tmp_path}/lake/{name}"
            assert metadata["dagster/storage_kind"] == "deltalake"
            assert metadata["dagster/uri"] == f"file://{tmp_path}/lake/{name}"
        assert node.owners == ["team:fintrack-data"], name
        assert node.description and len(node.description) > 20, name

        references = metadata["dagster/code_references"]
        assert isinstance(references, CodeReferencesMetadataValue)
        (reference,) = references.code_references
        assert isinstance(reference, LocalFileCodeReference)
        source = Path(reference.file_path)
        # A domain's assets live in its assets.py; the market's fundamentals and rates in
        # their own module beside it.
        assert source.name in ("assets.py", "fundamentals.py"), name
        assert source.parent.parent == PACKAGE / "defs", name
        assert reference.line_number is not None
        assert decorator_line(source, reference.line_number).startswith(("@asset(", "@multi")), name

    def referenced(name: str) -> tuple[str, str]:
        node = graph.get(next(k for k in graph.get_all_asset_keys() if k.to_user_string() == name))
        (reference,) = node.metadata["dagster/code_references"].code_references
        path = Path(reference.file_path)
        return path.parent.name, function_after(path, reference.line_number)

    assert referenced("symbol_universe") == ("market", "symbol_universe")
    assert referenced("bronze_ohlcv_rejects") == ("market", "bronze_ohlcv")
    assert referenced("holdings_daily") == ("portfolio", "holdings_daily")
    assert referenced("silver_ohlcv_21d") == ("silver", "silver_ohlcv")
    assert referenced("fraud_prediction_failures") == ("payments", "fraud_predictions")


def test_postgres_and_s3_catalog_names_the_backend_and_no_credential() -> None:
    graph = build_defs(Settings.from_env(POSTGRES_ENV)).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        name = key.to_user_string()
        node = graph.get(key)
        metadata = node.metadata
        if name in WAREHOUSE_ASSETS:
            assert node.kinds == {"polars", "postgres"}, name
            assert metadata["dagster/table_name"] == f"fintrack_prod.fintrack.{name}"
            assert metadata["dagster/storage_kind"] == "postgres"
            assert (
                metadata["dagster/uri"]
                == f"postgres://db.example:6543/fintrack_prod.fintrack.{name}"
            )
        else:
            assert node.kinds == {"polars", "deltalake", "s3"}, name
            assert metadata["dagster/table_name"] == f"s3://acme-lake/prod/{name}"
            assert metadata["dagster/uri"] == f"s3://acme-lake/prod/{name}"
        assert node.owners == ["team:fintrack-data"]
        shown = repr(dict(metadata)) + repr(node.kinds) + repr(node.tags)
        assert not [secret for secret in CREDENTIALS if secret in shown], name


@pytest.mark.parametrize(
    ("url", "namespace", "database"),
    [
        ("postgresql://u:pw@db.internal/analytics", "postgres://db.internal:5432", "analytics"),
        ("postgres://u@[::1]:5433/a%20b", "postgres://[::1]:5433", "a b"),
    ],
)
def test_warehouse_namespace_defaults_the_port_and_keeps_ipv6_hosts(
    url: str, namespace: str, database: str
) -> None:
    metadata = warehouse_storage(url).metadata(AssetKey("holdings_daily"))
    assert metadata["dagster/table_name"] == f"{database}.fintrack.holdings_daily"
    assert metadata["dagster/uri"] == f"{namespace}/{database}.fintrack.holdings_daily"


def test_code_references_link_into_the_repository_without_a_warning(tmp_path: Path) -> None:
    settings = Settings.from_env({"FINTRACK_LAKE_URL": str(tmp_path / "lake")})
    assets = [a for a in domains().assets or [] if isinstance(a, AssetsDefinition)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        linked = catalog(
            assets, settings, GitSource("https://github.com/acme/fintrack/", "release-1")
        )
        local = catalog(assets, settings)
    assert [str(w.message) for w in caught] == []

    def references(assets: list[AssetsDefinition]) -> dict[str, Any]:
        return {
            spec.key.to_user_string(): spec.metadata["dagster/code_references"].code_references[0]
            for assets_def in assets
            for spec in assets_def.specs
        }

    urls, files = references(linked), references(local)
    assert urls.keys() == files.keys() == WAREHOUSE_ASSETS | LAKE_ASSETS
    for name, url in urls.items():
        assert isinstance(url, UrlCodeReference)
        path = Path(files[name].file_path).relative_to(PACKAGE.parent)
        assert url.url == (
            f"https://github.com/acme/fintrack/tree/release-1/{path}#L{files[name].line_number}"
        )
    assert urls["holdings_daily"].url.startswith(
        "https://github.com/acme/fintrack/tree/release-1/fintrack_assets/defs/portfolio/assets.py#L"
    )
