"""Every environment variable the code location reads, parsed and validated in one place.

A bad value fails when definitions are built (or a `fintrack` command starts) with one line that
names the variable and what it accepts. Nothing here reads the environment on import.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from fintrack_assets.core.calendar import EPOCH
from fintrack_assets.core.universe import parse_universe_spec

MarketDataSource = Literal["synthetic", "yfinance", "polygon"]
FraudScorerKind = Literal["local", "http"]
MARKET_DATA_SOURCES: tuple[str, ...] = get_args(MarketDataSource)
FRAUD_SCORERS: tuple[str, ...] = get_args(FraudScorerKind)
DEFAULT_START_DATE = dt.date(2020, 1, 2)
DEFAULT_POLYGON_URL = "https://api.polygon.io"


class SettingsError(ValueError):
    """A bad environment value; the message is one line naming the variable."""


@dataclass(frozen=True)
class Secret:
    """A value that prints as *** so it never reaches a log, metadata or an exception."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    @property
    def shown(self) -> str:
        return "***"


@dataclass(frozen=True)
class SecretUrl(Secret):
    """A URL whose user, password, path and query may carry a credential (a webhook's path, an
    API's `?token=`): it prints as scheme://host:port/… only."""

    def __repr__(self) -> str:
        return f"SecretUrl({self.shown!r})"

    __str__ = __repr__

    @property
    def shown(self) -> str:
        return redact_url(self.value)


@dataclass(frozen=True)
class Settings:
    lake_url: str
    warehouse_url: SecretUrl
    market_data: str
    polygon_api_key: Secret | None
    polygon_url: SecretUrl
    universe: str
    start_date: dt.date
    fraud_scorer: str
    fraud_api_url: SecretUrl | None
    fraud_api_token: Secret | None
    alert_webhook_url: SecretUrl | None
    s3_storage_options: Mapping[str, str] = field(repr=False)
    market_data_rate_limit: int | None = None
    """FINTRACK_MARKET_DATA_RATE_LIMIT: requests a minute the provider may be sent (None:
    unlimited)."""
    s3_role_declared: bool = False
    """FINTRACK_S3_INSTANCE_ROLE=true, or a role the platform declares (EKS, ECS): the lake's
    credentials come from the environment delta-rs runs in, not from variables."""

    @property
    def warehouse_backend(self) -> str:
        return "postgresql" if self.warehouse_url.value.startswith("postgres") else "duckdb"

    @property
    def warehouse_display(self) -> str:
        return self.warehouse_url.shown

    @property
    def lake_display(self) -> str:
        return redact_url(self.lake_url)

    def shown(self) -> list[tuple[str, str]]:
        """Every variable the code reads and what it resolved to, secrets masked: what
        `fintrack settings` prints."""

        def show(value: Secret | str | None) -> str:
            if value is None:
                return "-"
            return value.shown if isinstance(value, Secret) else value

        aws = self.s3_storage_options
        return [
            ("FINTRACK_LAKE_URL", self.lake_display),
            ("FINTRACK_WAREHOUSE_URL", self.warehouse_display),
            ("FINTRACK_MARKET_DATA", self.market_data),
            (
                RATE_LIMIT,
                "-"
                if self.market_data_rate_limit is None
                else f"{self.market_data_rate_limit}/min",
            ),
            ("POLYGON_API_KEY", show(self.polygon_api_key)),
            ("FINTRACK_POLYGON_URL", show(self.polygon_url)),
            ("FINTRACK_UNIVERSE", self.universe),
            ("FINTRACK_START_DATE", self.start_date.isoformat()),
            ("FINTRACK_FRAUD_SCORER", self.fraud_scorer),
            ("FINTRACK_FRAUD_API_URL", show(self.fraud_api_url)),
            ("FINTRACK_FRAUD_API_TOKEN", show(self.fraud_api_token)),
            ("FINTRACK_ALERT_WEBHOOK_URL", show(self.alert_webhook_url)),
            (
                "AWS_ENDPOINT_URL",
                redact_url(aws["AWS_ENDPOINT_URL"]) if "AWS_ENDPOINT_URL" in aws else "-",
            ),
            ("AWS_REGION", aws["AWS_REGION"]),
            ("AWS_PROFILE", aws.get("AWS_PROFILE", "-")),
            (S3_INSTANCE_ROLE, "true" if self.s3_role_declared else "-"),
            *((name, "***" if name in aws else "-") for name in AWS_SECRETS),
        ]

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
        polygon_url = _http_url(
            get("FINTRACK_POLYGON_URL", DEFAULT_POLYGON_URL), "FINTRACK_POLYGON_URL"
        )
        assert polygon_url is not None
        fraud_scorer = _choice(
            get("FINTRACK_FRAUD_SCORER", "local"), "FINTRACK_FRAUD_SCORER", FRAUD_SCORERS
        )
        fraud_api_url = _http_url(get("FINTRACK_FRAUD_API_URL"), "FINTRACK_FRAUD_API_URL")
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
                "sp500_pit, all, a comma list like AAPL,MSFT, a CSV path, or synthetic:N"
            ) from None
        return cls(
            lake_url=_lake_url(get("FINTRACK_LAKE_URL", ".fintrack/lake")),
            warehouse_url=SecretUrl(
                _warehouse_url(
                    get("FINTRACK_WAREHOUSE_URL", "duckdb:///.fintrack/warehouse.duckdb")
                )
            ),
            market_data=market_data,
            polygon_api_key=Secret(polygon_key) if polygon_key else None,
            polygon_url=SecretUrl(polygon_url.rstrip("/")),
            universe=universe,
            start_date=_start_date(get("FINTRACK_START_DATE", DEFAULT_START_DATE.isoformat())),
            fraud_scorer=fraud_scorer,
            fraud_api_url=SecretUrl(fraud_api_url) if fraud_api_url else None,
            fraud_api_token=Secret(token) if (token := get("FINTRACK_FRAUD_API_TOKEN")) else None,
            alert_webhook_url=SecretUrl(webhook)
            if (
                webhook := _http_url(
                    get("FINTRACK_ALERT_WEBHOOK_URL"), "FINTRACK_ALERT_WEBHOOK_URL"
                )
            )
            else None,
            s3_storage_options=_s3_storage_options(env),
            market_data_rate_limit=_rate_limit(get(RATE_LIMIT)),
            s3_role_declared=_flag(get(S3_INSTANCE_ROLE, "false"), S3_INSTANCE_ROLE)
            or any(get(name) for name in ROLE_VARIABLES),
        )._checked_s3_credentials()

    def _checked_s3_credentials(self) -> Settings:
        """An S3 lake without credentials would load, then fail each write after delta-rs has
        spent a minute asking a metadata service that is not there: say so now instead."""
        if not self.lake_is_s3:
            return self
        aws = self.s3_storage_options
        key, secret = "AWS_ACCESS_KEY_ID" in aws, "AWS_SECRET_ACCESS_KEY" in aws
        if key != secret:
            have, missing = (
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if key
                else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            )
            raise SettingsError(f"{missing} is required with {have} for an s3:// FINTRACK_LAKE_URL")
        if not (key or "AWS_PROFILE" in aws or self.s3_role_declared):
            raise SettingsError(
                f"FINTRACK_LAKE_URL={self.lake_display} needs S3 credentials: set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or "
                f"{S3_INSTANCE_ROLE}=true where an instance or task role provides them"
            )
        return self


RATE_LIMIT = "FINTRACK_MARKET_DATA_RATE_LIMIT"


def _rate_limit(value: str | None) -> int | None:
    """Requests per minute: a whole number >= 1 (`5`, `5/min`), or unset for unlimited."""
    if value is None:
        return None
    number = value.lower().removesuffix("/min").strip()
    if not (number.isascii() and number.isdigit()) or int(number) < 1:
        raise SettingsError(
            f"{RATE_LIMIT}={value!r} is not valid; it accepts a whole number of requests per "
            "minute >= 1 (5 for Polygon's free tier), or unset for unlimited"
        )
    return int(number)


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


AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
S3_INSTANCE_ROLE = "FINTRACK_S3_INSTANCE_ROLE"
ROLE_VARIABLES = (
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
"""What EKS (IRSA) and ECS set for a pod's or task's role: a role declared by the platform."""


def _flag(value: str | None, name: str) -> bool:
    assert value is not None
    if value.lower() in ("false", "0", "no"):
        return False
    if value.lower() in ("true", "1", "yes"):
        return True
    raise SettingsError(f"{name}={value!r} is not valid; it accepts true or false")


def _s3_storage_options(env: Mapping[str, str]) -> dict[str, str]:
    """The standard AWS_* variables, passed explicitly to delta-rs' object store."""
    options = {
        key: env[key] for key in (*AWS_SECRETS, "AWS_ENDPOINT_URL", "AWS_PROFILE") if env.get(key)
    }
    options["AWS_REGION"] = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


def _http_url(value: str | None, name: str) -> str | None:
    if value is not None and (
        urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname
    ):
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {redact_url(value)!r}")
    return value


def redact_url(url: str) -> str:
    """The URL as logs, metadata, errors and the CLI may show it: scheme://host:port/…, since
    the user, password, path (a webhook's `/services/T000/B000/SECRET`) and query (`?token=`)
    may each be the credential. A local path or a DuckDB file (no host) is shown as it is."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    try:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # an unparseable port: show no part of the authority
        host, port = "***", ""
    if ":" in host:
        host = f"[{host}]"
    masked = (parts.path.strip("/"), parts.query, parts.fragment, parts.username, parts.password)
    return f"{parts.scheme}://{host}{port}{'/…' if any(masked) else ''}"


def get_settings() -> Settings:
    """Settings from the process environment; raises SettingsError on a bad value."""
    return Settings.from_env()
