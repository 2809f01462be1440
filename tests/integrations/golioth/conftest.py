"""A simulator on a local port, clients wired to it, and a tiny HTTP server for odd answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from integrations.golioth.client import GoliothClient
from integrations.golioth.simulator.server import GoliothSimulator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "golioth"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


@pytest.fixture
def golioth_fixture() -> Callable[[str], Any]:
    """Real-shaped Golioth JSON from tests/fixtures/golioth (bytes for non-JSON files)."""

    def load(name: str) -> Any:
        raw = (FIXTURES / name).read_bytes()
        return json.loads(raw) if name.endswith(".json") else raw

    return load


@pytest.fixture
def window() -> tuple[datetime, datetime]:
    """A closed one-hour window, as the sync queries."""
    return T0, T1


@pytest.fixture
def sim() -> Iterator[GoliothSimulator]:
    with GoliothSimulator(seed=7) as simulator:
        yield simulator


@pytest.fixture
def make_client(sim: GoliothSimulator) -> Iterator[Callable[..., GoliothClient]]:
    """Clients on the simulator, with test-sized backoff so retries take milliseconds."""
    clients: list[GoliothClient] = []

    def make(**overrides: Any) -> GoliothClient:
        options: dict[str, Any] = {
            "base_url": sim.base_url,
            "api_key": sim.api_key,
            "project_id": sim.project_id,
            "max_requests_per_second": 1000.0,
            "timeout": 5.0,
            "backoff_factor": 0.005,
        }
        client = GoliothClient(**(options | overrides))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., GoliothClient]) -> GoliothClient:
    return make_client()


@dataclass
class StubServer:
    """Answers every request with `status`/`body`, and keeps what it received."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def make_stub_server() -> Iterator[Callable[[], StubServer]]:
    """Stub servers on local ports, as many as a test needs (a redirect and its target)."""
    servers: list[ThreadingHTTPServer] = []

    def make() -> StubServer:
        stub = StubServer()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _stub_handler(stub))
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        stub.url = f"http://127.0.0.1:{server.server_address[1]}"
        servers.append(server)
        return stub

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stub_server(make_stub_server: Callable[[], StubServer]) -> StubServer:
    return make_stub_server()


def _stub_handler(stub: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            stub.received.append((self.command, self.path, dict(self.headers), body))
            self.send_response(stub.status)
            for name, value in {"Content-Type": "application/json", **stub.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(stub.body)))
            self.end_headers()
            self.wfile.write(stub.body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
