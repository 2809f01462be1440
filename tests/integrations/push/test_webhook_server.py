"""The webhook behind a real gunicorn, started the way README's production command starts it, on
the test database: what only a real HTTP server shows (chunked bodies, its access log)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from integrations.models import DeviceIntegration, WebhookDelivery

ROOT = Path(__file__).resolve().parents[3]
OUTPUT = ROOT / "test-output" / "webhook-server"
SECRET = "whsec-server-0123456789"

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    """The test database, for another process: a file on SQLite, a URL on PostgreSQL."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log

    def send(self, raw: bytes, *, timeout: float = 10) -> bytes:
        """One raw request on its own connection; the answer as sent, up to the close."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer

    def log_text(self) -> str:
        # The access log line is written after the answer: give it a moment.
        time.sleep(0.3)
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(request) -> Iterator[Server]:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    log = OUTPUT / f"{request.node.name}.log"
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        *production_options(),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_listening(port, proc)
        yield Server(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def production_options() -> list[str]:
    """README's production command, its arguments after `gunicorn`, minus --bind/--workers."""
    readme = (ROOT / "README.md").read_text()
    line = next(
        line for line in readme.splitlines() if line.startswith(".venv/bin/gunicorn gsync.wsgi")
    )
    words = line.split("#")[0].split()[1:]
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--bind", "--workers"):
            skip = True
        else:
            kept.append(word)
    return kept


def wait_until_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not listen within 30 s")


@pytest.fixture
def hooked(make_integration) -> DeviceIntegration:
    integration = make_integration("served", webhook_enabled=True)
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def chunked_request(path: str, chunks: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {SECRET}\r\n"
        "Content-Type: application/json\r\nCe-Source: d1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head.encode() + chunks


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- defect 8: a malformed chunked body ----------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [b"2\r\n{}XX0\r\n\r\n", b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{}\r\n0\r\n\r\n"],
    ids=["bad-terminator", "bad-size", "lying-size"],
)
def test_webhook_malformed_chunked_body_is_400_with_one_line_and_kept(server, hooked, chunks):
    answer = server.send(chunked_request(hooked.webhook_path, chunks))

    status, body = status_and_body(answer)
    assert status == 400, answer[:300]
    assert b"application/json" in answer.split(b"\r\n\r\n")[0]
    assert body.startswith(b'{"error": "body could not be read')
    assert b"\n" not in body.strip()
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "failed"
    assert delivery.error.startswith("body could not be read")
    assert "Traceback" not in server.log_text()


def test_webhook_well_formed_chunked_body_is_stored(server, hooked):
    body = b'{"temp": 21.5}'
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    answer = server.send(chunked_request(hooked.webhook_path, chunks))

    assert status_and_body(answer) == (200, b'{"stored": 1, "duplicates": 0}')
    assert hooked.readings.get().telemetry == {"temp": 21.5}


# --- the access log ------------------------------------------------------------------------------


def test_gunicorn_access_log_has_no_webhook_token_or_query_secret(server, hooked):
    token = hooked.webhook_token
    path = f"{hooked.webhook_path}?secret=query-s3cret&sig=abc"
    request = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {SECRET}\r\n"
        "Referer: http://example.com/?api_key=referer-s3cret\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"
    )

    answer = server.send(request.encode())
    server.send(f"GET /webhooks/golioth/{token}/ HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())

    assert status_and_body(answer)[0] == 400
    log = server.log_text()
    assert "POST /webhooks/golioth/[redacted]/?secret=[redacted]&sig=[redacted]" in log
    assert "GET /webhooks/golioth/[redacted]/" in log
    for secret in (token, "query-s3cret", "referer-s3cret", SECRET):
        assert secret not in log
