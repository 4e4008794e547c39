"""`serve`'s HTTP endpoint (`live.http_port`): a status page, its JSON, protected previews and
Prometheus metrics, on the standard library's threading HTTP server.

    /                      the status page: one card per stream (state, fps, drops, latency,
                           fail-closed frames, faces, a live protected preview); no external
                           assets, everything comes from here
    /api/streams           every stream's state as JSON
    /api/streams/NAME      one stream (404 JSON when there is no such stream)
    /preview/NAME.jpg      the stream's latest output frame as a reduced JPEG: taken from what
                           the outputs get, after protection (or a placeholder), never before
    /metrics               Prometheus metrics (prometheus_client)

It binds to 127.0.0.1 unless configured; bound elsewhere it requires `live.http_token`
(`Authorization: Bearer TOKEN`, or `?token=TOKEN` for a browser). Camera URLs are shown with
their credentials redacted.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np

from streamguard.errors import ConfigError
from streamguard.io.camera import redact
from streamguard.report import metrics_text

log = logging.getLogger(__name__)

PREVIEW_WIDTH = 480  # previews are reduced: a status page, not a second output


def stream_state(stream: Any) -> dict[str, Any]:
    """What the page and /api/streams show of one LiveStream."""
    snap = stream.snapshot()
    camera = stream.camera
    if snap["connected"]:
        state = "connected"
    elif snap["frames_in"] == 0 and not snap["last_error"]:
        state = "starting"
    else:
        state = "reconnecting"
    return {
        "name": stream.scfg.name, "input": redact(stream.scfg.input), "state": state,
        "reason": snap["last_error"] if state != "connected" else "",
        "retry_in_s": round(camera.retry_in(), 1) if state == "reconnecting" else None,
        "placeholder": state != "connected" and snap["placeholders"] > 0,
        "fps": snap["fps_out"], "frames_in": snap["frames_in"],
        "frames_out": snap["frames_out"], "dropped": snap["dropped"],
        "latency_p50_ms": snap["latency_p50_ms"], "latency_p99_ms": snap["latency_p99_ms"],
        "processing_p99_ms": snap["processing_p99_ms"],
        "failed_closed": snap["failed_closed"], "damaged": snap["frames_damaged"],
        "faces": snap["faces"], "reconnects": snap["reconnects"],
        "worker_restarts": snap["worker_restarts"],
        "schedule": snap["schedule"], "schedule_s": snap["schedule_s"],
        "output_failures": snap["output_failures"], "output_error": snap["output_error"],
    }


def preview_jpeg(image: np.ndarray) -> bytes:
    h, w = image.shape[:2]
    if w > PREVIEW_WIDTH:
        image = cv2.resize(image, (PREVIEW_WIDTH, max(1, round(h * PREVIEW_WIDTH / w))),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 75])
    return buf.tobytes() if ok else b""


class StatusServer:
    """The endpoint over `streams()` (the live list: `serve` replaces a restarted stream)."""

    def __init__(self, streams: Callable[[], list[Any]], host: str, port: int, token: str = ""):
        page = resources.files("streamguard.live").joinpath("status.html").read_bytes()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                if token and not server.authorized(self.headers.get("Authorization", ""),
                                                    parse_qs(url.query)):
                    self.reply(401, {"error": "a token is required (Authorization: Bearer "
                                              "TOKEN or ?token=TOKEN)"})
                    return
                path = unquote(url.path)
                by_name = {s.scfg.name: s for s in streams()}
                if path == "/":
                    self.send(200, page, "text/html; charset=utf-8")
                elif path == "/metrics":
                    body = metrics_text({n: s.snapshot() for n, s in by_name.items()})
                    self.send(200, body, "text/plain; version=0.0.4; charset=utf-8")
                elif path == "/api/streams":
                    self.reply(200, [stream_state(s) for s in by_name.values()])
                elif path.startswith("/api/streams/"):
                    name = path[len("/api/streams/"):]
                    if name in by_name:
                        self.reply(200, stream_state(by_name[name]))
                    else:
                        self.reply(404, {"error": f"no stream named '{name}'"})
                elif path.startswith("/preview/") and path.endswith(".jpg"):
                    name = path[len("/preview/"):-len(".jpg")]
                    if name not in by_name:
                        self.reply(404, {"error": f"no stream named '{name}'"})
                        return
                    image = by_name[name].preview()
                    if image is None:
                        self.reply(503, {"error": "no frame yet"})
                    else:
                        self.send(200, preview_jpeg(image), "image/jpeg")
                else:
                    self.reply(404, {"error": f"no page at {path}"})

            def reply(self, status: int, doc: Any) -> None:
                self.send(status, json.dumps(doc).encode(), "application/json")

            def send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                log.debug("http: " + args[0], *args[1:])

        self.token = token
        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"live.http_port {port} on {host} is already in use") from None
            raise ConfigError(f"cannot serve HTTP on {host}:{port} ({exc.strerror})") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http",
                                        daemon=True)
        self._thread.start()

    def authorized(self, header: str, query: dict[str, list[str]]) -> bool:
        given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        given = given or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
