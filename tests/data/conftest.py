"""Fixtures for the data tests: a real HTTP server on 127.0.0.1 and zips in every layout."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

Handler = Callable[["_RequestHandler", int], None]  # (handler, hit number from 1)


@dataclass
class Server:
    """A local web server whose routes the test defines; it records every request."""

    base: str
    routes: dict[str, Handler] = field(default_factory=dict)
    log: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes sent per path

    def url(self, path: str) -> str:
        return self.base + path

    def requests_to(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.log if p == path]


class _RequestHandler(BaseHTTPRequestHandler):
    server_state: Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        state = self.server_state
        path = self.path
        state.log.append((path, dict(self.headers.items())))
        state.hits[path] = state.hits.get(path, 0) + 1
        route = state.routes.get(path.split("?")[0])
        if route is None:
            self.send_error(404)
            return
        route(self, state.hits[path])

    # Helpers the routes use.
    def send_body(
        self,
        data: bytes,
        *,
        ctype: str = "application/zip",
        honour_range: bool = True,
        cut_after: int | None = None,
        etag: str | None = None,
    ) -> None:
        """Serve `data` (honouring Range), or declare it whole and hang up after `cut_after`."""
        start = 0
        header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != etag:
            header = None  # RFC 9110: the file changed, so send all of it
        if header and honour_range and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        payload = body if cut_after is None else body[:cut_after]
        self.wfile.write(payload)
        self.wfile.flush()
        state = self.server_state
        state.sent[self.path] = state.sent.get(self.path, 0) + len(payload)
        if cut_after is not None:
            self.close_connection = True

    def send_status(self, code: int, headers: dict[str, str] | None = None) -> None:
        body = f"status {code}\n".encode()
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_server() -> Iterator[Server]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
    state = Server(base=f"http://127.0.0.1:{server.server_address[1]}")
    handler_class = type("H", (_RequestHandler,), {"server_state": state})
    server.RequestHandlerClass = handler_class
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _isolated_network_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real Kaggle credentials, tiny back-off, the Kaggle endpoint unset."""
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "CXR_COVID_KAGGLE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_BACKOFF", "0.001")
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_RETRIES", "4")
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_TIMEOUT", "5")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
