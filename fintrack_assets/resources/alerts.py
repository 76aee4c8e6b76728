"""Run-failure alerts: always a log line; when FINTRACK_ALERT_WEBHOOK_URL is set, also a JSON
POST to it, retried with exponential backoff and jitter. An alert that cannot be delivered is
logged, never raised: the sensor must keep watching."""

import logging

from dagster import ConfigurableResource
from pydantic import Field

from fintrack_assets.resources.http import HttpClient, HttpPolicy, RequestFailed
from fintrack_assets.settings import redact_url

LOGGER = logging.getLogger(__name__)


class AlertWebhook(ConfigurableResource):
    url: str | None = Field(default=None, repr=False, description="Where alerts are POSTed.")
    attempts: int = Field(default=4, description="Attempts per alert, the first included.")
    backoff_seconds: float = Field(default=0.5, description="Backoff base; doubles per retry.")
    timeout_seconds: float = Field(default=10.0, description="Per attempt.")

    def send(self, payload: dict[str, object], log: logging.Logger | None = None) -> bool:
        """POSTs `payload` through the platform's one HTTP client (its retries, and httpx's
        request lines showing the URL redacted: a webhook's path is its secret); True when
        the webhook took it (or there is none to call)."""
        log = log or LOGGER
        if not self.url:
            return True
        shown = redact_url(self.url)
        policy = HttpPolicy(
            workers=1,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
            max_backoff_seconds=self.backoff_seconds * 16,
        )
        client = HttpClient(self.url, policy)
        try:
            client.request("POST", self.url, json=payload)
        except RequestFailed as error:
            log.error(f"alert not delivered to {shown}: {error}")
            return False
        finally:
            client.close()
        log.info(f"alert delivered to {shown}")
        return True
