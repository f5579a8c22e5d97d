"""A delaying proxy in front of a real api.py, so a tool call can be caught while it runs.

`SlowApi(api_url, delays={"/api/analytics": 1.5})` forwards every request unchanged and holds
the answer of matching paths back for that many seconds; `started` and `finished` count the
delayed requests, so a test can prove its cut happened mid-call.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class SlowApi:
    def __init__(self, target: str, delays: dict[str, float] | None = None) -> None:
        self.target = target.rstrip("/")
        self.delays = dict(delays or {})
        self.started = 0
        self.finished = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                delay = next((s for p, s in proxy.delays.items() if self.path.startswith(p)), 0.0)
                if delay:
                    with proxy._lock:
                        proxy.started += 1
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                try:
                    r = httpx.request(
                        self.command,
                        proxy.target + self.path,
                        content=body,
                        headers=headers,
                        timeout=30,
                    )
                    status, data, ctype = r.status_code, r.content, r.headers.get("content-type")
                except httpx.HTTPError as e:
                    status, data, ctype = 502, str(e).encode(), "text/plain"
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype or "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller went away (timeout, or it was killed)
                if delay:
                    with proxy._lock:
                        proxy.finished += 1

            do_GET = do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> SlowApi:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
