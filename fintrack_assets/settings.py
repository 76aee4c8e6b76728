"""Every environment variable the code location reads, parsed and validated in one place.

A bad value fails at load time with one line that names the variable and what it accepts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fintrack_assets.core.calendar import EPOCH
from fintrack_assets.core.universe import parse_universe_spec

MARKET_DATA_SOURCES = ("synthetic", "yfinance", "polygon")
FRAUD_SCORERS = ("local", "http")


class SettingsError(ValueError):
    """A bad environment value; the message is one line naming the variable."""


@dataclass(frozen=True)
class Secret:
    """A value that prints as *** so it never reaches a log, metadata or an exception."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    lake_url: str
    warehouse_url: Secret
    market_data: str
    polygon_api_key: Secret | None
    polygon_url: str
    universe: str
    start_date: dt.date
    fraud_scorer: str
    fraud_api_url: str | None
    fraud_api_token: Secret | None
    alert_webhook_url: str | None
    s3_storage_options: Mapping[str, str] = field(repr=False)

    @property
    def warehouse_backend(self) -> str:
        return "postgresql" if self.warehouse_url.value.startswith("postgres") else "duckdb"

    @property
    def warehouse_display(self) -> str:
        return redact_url(self.warehouse_url.value)

    @property
    def lake_is_s3(self) -> bool:
        return self.lake_url.startswith("s3://")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else default

        market_data = _choice(
            get("FINTRACK_MARKET_DATA", "synthetic"), "FINTRACK_MARKET_DATA", MARKET_DATA_SOURCES
        )
        polygon_key = get("POLYGON_API_KEY")
        if market_data == "polygon" and not polygon_key:
            raise SettingsError(
                "POLYGON_API_KEY is required when FINTRACK_MARKET_DATA=polygon: "
                "set it to your Polygon.io API key"
            )
        polygon_url = get("FINTRACK_POLYGON_URL", "https://api.polygon.io")
        assert polygon_url is not None
        if (
            urlsplit(polygon_url).scheme not in ("http", "https")
            or not urlsplit(polygon_url).netloc
        ):
            raise SettingsError(
                "FINTRACK_POLYGON_URL must be an http:// or https:// URL, "
                f"got {redact_url(polygon_url)!r}"
            )
        fraud_scorer = _choice(
            get("FINTRACK_FRAUD_SCORER", "local"), "FINTRACK_FRAUD_SCORER", FRAUD_SCORERS
        )
        fraud_api_url = get("FINTRACK_FRAUD_API_URL")
        if fraud_api_url is not None and urlsplit(fraud_api_url).scheme not in ("http", "https"):
            raise SettingsError(
                "FINTRACK_FRAUD_API_URL must be an http:// or https:// URL, "
                f"got {redact_url(fraud_api_url)!r}"
            )
        if fraud_scorer == "http" and not fraud_api_url:
            raise SettingsError(
                "FINTRACK_FRAUD_API_URL is required when FINTRACK_FRAUD_SCORER=http: "
                "set it to the ML API's base URL"
            )
        universe = get("FINTRACK_UNIVERSE", "sample")
        assert universe is not None
        try:
            parse_universe_spec(universe)
        except ValueError as exc:
            raise SettingsError(
                f"FINTRACK_UNIVERSE={universe!r} is not valid ({exc}); it accepts sample, sp500, "
                "a comma list like AAPL,MSFT, a CSV path, or synthetic:N"
            ) from None
        return cls(
            lake_url=_lake_url(get("FINTRACK_LAKE_URL", ".fintrack/lake")),
            warehouse_url=Secret(
                _warehouse_url(
                    get("FINTRACK_WAREHOUSE_URL", "duckdb:///.fintrack/warehouse.duckdb")
                )
            ),
            market_data=market_data,
            polygon_api_key=Secret(polygon_key) if polygon_key else None,
            polygon_url=polygon_url.rstrip("/"),
            universe=universe,
            start_date=_start_date(get("FINTRACK_START_DATE", "2020-01-02")),
            fraud_scorer=fraud_scorer,
            fraud_api_url=fraud_api_url,
            fraud_api_token=Secret(token) if (token := get("FINTRACK_FRAUD_API_TOKEN")) else None,
            alert_webhook_url=_http_url(
                get("FINTRACK_ALERT_WEBHOOK_URL"), "FINTRACK_ALERT_WEBHOOK_URL"
            ),
            s3_storage_options=_s3_storage_options(env),
        )


def _choice(value: str | None, name: str, allowed: tuple[str, ...]) -> str:
    assert value is not None
    if value.lower() not in allowed:
        raise SettingsError(f"{name}={value!r} is not valid; it accepts {', '.join(allowed)}")
    return value.lower()


def _lake_url(value: str | None) -> str:
    assert value is not None
    if value.startswith("s3://"):
        bucket = urlsplit(value).netloc
        if not bucket:
            raise SettingsError(
                f"FINTRACK_LAKE_URL={value!r} names no bucket; use s3://bucket/prefix"
            )
        return value.rstrip("/")
    if "://" in value:
        raise SettingsError(
            f"FINTRACK_LAKE_URL={value!r} is not valid; it accepts a local path or s3://bucket/prefix"
        )
    return str(Path(value).expanduser().resolve())


def _warehouse_url(value: str | None) -> str:
    assert value is not None
    parts = urlsplit(value)
    if parts.scheme == "duckdb":
        path = value.removeprefix("duckdb:///")
        if path == value or path in ("", ":memory:"):
            raise SettingsError(
                "FINTRACK_WAREHOUSE_URL needs a database file: duckdb:///relative/file.duckdb "
                "or duckdb:////absolute/file.duckdb"
            )
        return "duckdb:///" + str(Path(path).expanduser().resolve())
    if parts.scheme in ("postgresql", "postgres") and parts.hostname and parts.path.strip("/"):
        return value
    raise SettingsError(
        f"FINTRACK_WAREHOUSE_URL={redact_url(value)!r} is not valid; it accepts "
        "duckdb:///path/file.duckdb or postgresql://user:pass@host:port/db"
    )


def _start_date(value: str | None) -> dt.date:
    assert value is not None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise SettingsError(
            f"FINTRACK_START_DATE={value!r} is not valid; it accepts a date YYYY-MM-DD"
        ) from None
    if day < EPOCH:
        raise SettingsError(
            f"FINTRACK_START_DATE={value!r} is before the session epoch; it accepts a date "
            f"from {EPOCH} on"
        )
    return day


def _s3_storage_options(env: Mapping[str, str]) -> dict[str, str]:
    """The standard AWS_* variables, passed explicitly to delta-rs' object store."""
    options = {
        key: env[key]
        for key in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_PROFILE",
        )
        if env.get(key)
    }
    options["AWS_REGION"] = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


def _http_url(value: str | None, name: str) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {redact_url(value)!r}")
    return value


def redact_url(url: str) -> str:
    """The URL as logs, metadata and errors may show it: a password, a bare `token@host` and
    every query value (any of them may be the credential) become ***."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None and not parts.query:
        return url  # unchanged: urlunsplit would drop the empty authority of duckdb:////x
    host = parts.netloc.rpartition("@")[2]
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    elif parts.username is not None:
        netloc = f"***@{host}"
    query = urlencode(
        [(key, "***") for key, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*"
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def get_settings() -> Settings:
    """Settings from the process environment; raises SettingsError on a bad value."""
    return Settings.from_env()
