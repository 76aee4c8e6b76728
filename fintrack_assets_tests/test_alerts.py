"""The run-failure alert: a real failed run, a real local webhook that fails before it
succeeds, and a dead one."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    job,
    op,
)

from fintrack_assets.defs.ops.sensors import run_failure_alert
from fintrack_assets.resources.alerts import AlertWebhook


class _Hook(ThreadingHTTPServer):
    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.failures = failures
        self.bodies: list[dict] = []
        self.statuses: list[int] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Hook

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = 503 if len(self.server.statuses) < self.server.failures else 200
        self.server.statuses.append(status)
        if status == 200:
            self.server.bodies.append(body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def hook(request):
    server = _Hook(failures=request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@op
def breaks() -> None:
    raise RuntimeError("the market data provider is down")


@job
def fragile():
    breaks()


def _failure_context(instance: DagsterInstance):
    result = fragile.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    [failure] = [
        e.dagster_event
        for e in instance.all_logs(result.run_id)
        if e.dagster_event and e.dagster_event.event_type == DagsterEventType.RUN_FAILURE
    ]
    return build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()


@pytest.mark.parametrize("hook", [2], indirect=True)
def test_a_failed_run_is_posted_after_retries(hook, capsys):
    url = f"http://127.0.0.1:{hook.server_address[1]}/alerts?token=s3cret"
    webhook = AlertWebhook(url=url, backoff_seconds=0.01)
    with DagsterInstance.ephemeral() as instance:
        context = _failure_context(instance)
        run_failure_alert(context, alert_webhook=webhook)
    assert hook.statuses == [503, 503, 200]
    [body] = hook.bodies
    assert body["job"] == "fragile" and body["run_id"] == context.dagster_run.run_id
    assert "Steps failed: ['breaks']" in body["error"] and body["partition"] == ""
    logged = capsys.readouterr().err
    assert "alert delivered to http://127.0.0.1" in logged and "s3cret" not in logged


def test_a_dead_webhook_is_logged_not_raised(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    webhook = AlertWebhook(url=f"http://127.0.0.1:{port}/alerts", attempts=2, backoff_seconds=0.01)
    with DagsterInstance.ephemeral() as instance:
        run_failure_alert(_failure_context(instance), alert_webhook=webhook)
    assert "alert not delivered" in capsys.readouterr().err


def test_without_a_webhook_the_alert_is_a_log_line(capsys):
    with DagsterInstance.ephemeral() as instance:
        run_failure_alert(_failure_context(instance), alert_webhook=AlertWebhook())
    assert "ALERT: fintrack: run" in capsys.readouterr().err


@pytest.mark.parametrize("hook", [1], indirect=True)
def test_httpx_request_lines_never_show_the_webhooks_secret_path(hook, caplog):
    """A Slack-style webhook's path is its credential; httpx logs every request's URL at INFO
    (before the platform's one HTTP client, the alert's went out whole)."""
    url = f"http://127.0.0.1:{hook.server_address[1]}/services/T000/B000/SECRET"
    caplog.set_level("INFO", logger="httpx")
    assert AlertWebhook(url=url, backoff_seconds=0.01).send({"text": "x"})
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(lines) == 2, lines  # the 503, then the 200
    assert all("SECRET" not in line and "B000" not in line for line in lines), lines
    assert all(f"http://127.0.0.1:{hook.server_address[1]}/…" in line for line in lines), lines
