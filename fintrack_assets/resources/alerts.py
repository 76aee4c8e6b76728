"""Run-failure alerts: always a log line; when FINTRACK_ALERT_WEBHOOK_URL is set, also a JSON
POST to it, retried with exponential backoff and jitter. An alert that cannot be delivered is
logged, never raised: the sensor must keep watching."""

import logging

import httpx
from dagster import ConfigurableResource
from pydantic import Field
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from fintrack_assets.resources.fetching import Retryable, retry_after, retry_wait
from fintrack_assets.settings import redact_url

LOGGER = logging.getLogger(__name__)


class AlertWebhook(ConfigurableResource):
    url: str | None = Field(default=None, repr=False, description="Where alerts are POSTed.")
    attempts: int = Field(default=4, description="Attempts per alert, the first included.")
    backoff_seconds: float = Field(default=0.5, description="Backoff base; doubles per retry.")
    timeout_seconds: float = Field(default=10.0, description="Per attempt.")

    def send(self, payload: dict[str, object], log: logging.Logger | None = None) -> bool:
        """POSTs `payload`; True when the webhook took it (or there is none to call)."""
        log = log or LOGGER
        if not self.url:
            return True
        shown = redact_url(self.url)
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=retry_wait(self.backoff_seconds, self.backoff_seconds * 16),
            retry=retry_if_exception_type(Retryable),
            reraise=True,
        )
        try:
            with httpx.Client(timeout=self.timeout_seconds) as client:
                retrying(self._post, client, payload)
        except (Retryable, httpx.HTTPStatusError) as error:
            log.error(f"alert not delivered to {shown}: {error}")
            return False
        log.info(f"alert delivered to {shown}")
        return True

    def _post(self, client: httpx.Client, payload: dict[str, object]) -> None:
        assert self.url is not None
        try:
            response = client.post(self.url, json=payload)
        except httpx.TransportError as error:
            raise Retryable(f"{type(error).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(f"HTTP {response.status_code}", retry_after(response))
        if response.status_code >= 400:
            raise httpx.HTTPStatusError(
                f"HTTP {response.status_code} (not retried)",
                request=response.request,
                response=response,
            )
