"""The sink's local read-only query endpoint, so analysts reach an embedded store it holds.

chDB allows one process per data directory; while ``inter1-pipeline sink`` runs, it owns
the embedded store. It serves, on ``127.0.0.1`` only:

* ``GET /ping`` -> ``ok``
* ``POST /query?format=JSONEachRow`` with the SQL as body -> the output in that format;
  run with ``readonly=1``, so nothing can be written through it.
* ``POST /insert/reconcile_discrepancies`` with JSONEachRow rows -> inserted into that one
  table (``reconcile`` stores its findings; no other table accepts writes).

The address is written to :func:`endpoint_file` beside the data directory and removed
at stop; :mod:`sinks.warehouse` reads it.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from runtime.errors import PipelineError
from runtime.logs import get_logger
from sinks.store import Store

__all__ = ["WRITABLE_TABLES", "QueryServer", "endpoint_file"]

WRITABLE_TABLES = frozenset({"reconcile_discrepancies"})
_FORMATS = frozenset(
    {"JSONEachRow", "CSVWithNames", "TabSeparatedWithNames", "PrettyCompactMonoBlock"}
)
_log = get_logger("sinks.query_server")


def endpoint_file(data_dir: Path) -> Path:
    """Where the sink holding ``data_dir`` writes its endpoint: ``<data_dir>.endpoint.json``."""
    return data_dir.with_name(data_dir.name + ".endpoint.json")


class QueryServer:
    """Serve :class:`Store` reads over HTTP in a background thread (start/stop idempotent)."""

    def __init__(self, store: Store, host: str, port: int, data_dir: Path | None) -> None:
        self._store = store
        self._host = host
        self._port = port
        self._data_dir = data_dir
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._server is None:
            raise RuntimeError("query server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Bind, serve in a thread, write the endpoint file (embedded store only)."""
        if self._server is not None:
            return
        store = self._store

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, status: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/ping":
                    self._reply(200, b"ok\n")
                else:
                    self._reply(404, b"not found\n")

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    if parts.path == "/query":
                        fmt = parse_qs(parts.query).get("format", ["JSONEachRow"])[0]
                        if fmt not in _FORMATS:
                            self._reply(400, f"unsupported format {fmt}\n".encode())
                            return
                        self._reply(200, store.raw(body.decode("utf-8"), fmt, readonly=True))
                    elif parts.path.startswith("/insert/"):
                        table = parts.path.removeprefix("/insert/")
                        if table not in WRITABLE_TABLES:
                            self._reply(403, f"table {table} is not writable here\n".encode())
                            return
                        rows = [line for line in body.splitlines() if line.strip()]
                        if rows:
                            store.insert_json(table, b"\n".join(rows))
                        self._reply(200, f"{len(rows)}\n".encode())
                    else:
                        self._reply(404, b"not found\n")
                except PipelineError as exc:
                    payload = {"error": type(exc).__name__, "message": str(exc)}
                    self._reply(400, json.dumps(payload).encode(), "application/json")

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sink-query-server", daemon=True
        )
        self._thread.start()
        if self._data_dir is not None:
            target = endpoint_file(self._data_dir)
            temp = target.with_suffix(".tmp")
            temp.write_text(json.dumps({"url": self.url, "pid": os.getpid()}), encoding="utf-8")
            temp.replace(target)
        _log.info("query_endpoint_started", url=self.url)

    def stop(self) -> None:
        """Stop serving and remove the endpoint file (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._data_dir is not None:
            endpoint_file(self._data_dir).unlink(missing_ok=True)
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
