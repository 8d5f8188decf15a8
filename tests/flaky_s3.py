"""A real S3 endpoint that fails on purpose: an HTTP proxy in front of moto's server that drops
the connection (no response at all, as a network fault or a restarting endpoint does) for the
requests whose path contains `drop`, `times` times (forever if None), and forwards the rest."""

from __future__ import annotations

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FlakyS3:
    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.drop: str | None = None
        self.times: int | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._should_drop(self.path):
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                conn = http.client.HTTPConnection(*proxy.target, timeout=60)
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                response = conn.getresponse()
                data = response.read()
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                # A HEAD answer has no body but the object's length.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _should_drop(self, path: str) -> bool:
        with self._lock:
            if self.drop is None or self.drop not in path:
                return False
            if self.times is not None and self.dropped >= self.times:
                return False
            self.dropped += 1
            return True

    def fail(self, path_part: str | None, times: int | None = None) -> None:
        """Drop requests for paths containing `path_part` (None: drop nothing)."""
        with self._lock:
            self.drop, self.times, self.dropped = path_part, times, 0

    def __enter__(self) -> "FlakyS3":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
