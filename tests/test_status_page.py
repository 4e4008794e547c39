"""`serve`'s HTTP endpoint: the status page (in headless Chromium), its JSON, the protected
previews, Prometheus metrics, the token rule and one-line errors."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from media import Sprite, write_clip
from streamguard.config import StreamConfig, load_config
from streamguard.errors import ConfigError
from streamguard.live.stream import serve
from test_live import RtspServer, free_port, needs_rtsp, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (`make test` installs it)")


@pytest.fixture(scope="module")
def cam_clip(crops, tmp_path_factory):
    """20 s of 480x270 with one face of 110 px walking slowly, GOP 15, with audio."""
    return write_clip(tmp_path_factory.mktemp("status") / "cam.mp4",
                      [Sprite(crops[1], 110, (120, 60), (0.6, 0.1))], width=480, height=270,
                      n_frames=600, gop=15)


class Served:
    """`serve` running in a thread with its HTTP endpoint on a free port."""

    def __init__(self, streams: list[StreamConfig], *overrides: str, token: str = ""):
        self.port = free_port()
        sets = [f"live.http_port={self.port}", "live.stall_timeout_s=2.0",
                "live.reconnect_initial_s=0.5", "live.reconnect_max_s=2.0", *overrides]
        if token:
            sets += [f'live.http_token="{token}"']
        cfg = load_config(None, sets)
        self.cfg = cfg.model_copy(update={"streams": streams})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve, args=(self.cfg, self.stop), daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        try:
            wait_for(lambda: self.get("/api/streams")[0] != 0, 30, "the HTTP endpoint")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")
        except OSError:
            return 0, b"", ""

    def status(self, path: str) -> tuple[int, object]:
        code, body, kind = self.get(path)
        return code, (json.loads(body) if "json" in kind else body)

    def streams(self) -> dict[str, dict]:
        code, doc = self.status("/api/streams")
        return {s["name"]: s for s in doc} if code == 200 else {}


def file_stream(name: str, clip) -> StreamConfig:
    return StreamConfig(name=name, input=str(clip.path), loop=True)


def test_the_api_shows_each_stream_and_an_unknown_one_is_404_json(cam_clip):
    with Served([file_stream("door", cam_clip), file_stream("hall", cam_clip)]) as srv:
        def both_deliver() -> bool:  # one answer judged whole (an empty one is not "all")
            streams = srv.streams()
            return len(streams) == 2 and all(
                s["state"] == "connected" and s["frames_out"] > 10 for s in streams.values())

        wait_for(both_deliver, 60, "both streams to deliver frames")
        door = srv.status("/api/streams/door")[1]
        assert door["fps"] > 0 and door["faces"] > 0 and door["failed_closed"] == 0
        assert door["damaged"] == 0  # an intact file camera
        assert door["latency_p99_ms"] is not None
        code, body = srv.status("/api/streams/nope")
        assert code == 404 and body == {"error": "no stream named 'nope'"}
        assert srv.status("/preview/nope.jpg")[0] == 404


def test_previews_are_protected_and_change(cam_clip):
    """The preview is what the outputs get: it changes as the clip plays, and a face detector
    (BlazeFace with tiles, as the pipeline runs it) finds no face in it."""
    from streamguard.config import DetectConfig
    from streamguard.detect import create_detector

    with Served([file_stream("door", cam_clip)]) as srv:
        wait_for(lambda: srv.streams().get("door", {}).get("frames_out", 0) > 15, 60,
                 "frames out")
        shots = []
        for _ in range(4):
            code, body, kind = srv.get("/preview/door.jpg")
            assert code == 200 and kind == "image/jpeg"
            shots.append(cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8),
                                                   cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            time.sleep(0.7)
    assert shots[0].shape == (270, 480, 3)
    assert any(not np.array_equal(a, b) for a, b in zip(shots, shots[1:]))
    detector = create_detector(DetectConfig())
    try:
        unprotected = create_detector(DetectConfig())
        first = next(iter(_frames(cam_clip.path)))
        assert len(unprotected.detect(first, 0)) == 1  # the detector does see the bare face
        unprotected.close()
        for i, shot in enumerate(shots):
            assert len(detector.detect(shot, i * 5)) == 0, i
    finally:
        detector.close()


def _frames(path):
    import av

    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="rgb24")


def test_metrics_are_prometheus_client_exposition(cam_clip):
    from prometheus_client.parser import text_string_to_metric_families

    with Served([file_stream("door", cam_clip)]) as srv:
        wait_for(lambda: srv.streams().get("door", {}).get("frames_out", 0) > 10, 60,
                 "frames out")
        code, body, kind = srv.get("/metrics")
    assert code == 200 and kind.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["streamguard_frames_out"].type == "counter"
    (sample,) = [s for s in families["streamguard_frames_out"].samples
                 if s.name.endswith("_total")]
    assert sample.labels == {"stream": "door"} and sample.value > 10
    assert families["streamguard_connected"].samples[0].value == 1
    hist = families["streamguard_latency_ms"]
    assert hist.type == "histogram"
    count = [s for s in hist.samples if s.name.endswith("_count")][0].value
    assert count > 10
    for name in ("dropped", "placeholder_s", "failed_closed", "frames_damaged", "faces",
                 "reconnects", "worker_restarts"):
        assert f"streamguard_{name}" in families, name


def test_off_loopback_the_endpoint_needs_a_token(cam_clip):
    with pytest.raises(ConfigError, match="http_token is required"):
        load_config(None, ["live.http_port=8080", 'live.bind_host="0.0.0.0"'])
    with Served([file_stream("door", cam_clip)], 'live.bind_host="0.0.0.0"',
                token="s3cret") as srv:
        assert srv.get("/api/streams")[0] == 401
        assert srv.get("/metrics")[0] == 401
        assert srv.get("/api/streams", {"Authorization": "Bearer wrong"})[0] == 401
        assert srv.get("/api/streams", {"Authorization": "Bearer s3cret"})[0] == 200
        assert srv.get("/api/streams?token=s3cret")[0] == 200


def test_a_port_in_use_is_one_line_and_exit_2(cam_clip):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "streamguard", "serve", "--input",
                              str(cam_clip.path), "--http-port", str(port), "--duration", "5"],
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"live.http_port {port} on 127.0.0.1 is already in use" in lines[0]


def test_credentials_never_reach_the_page(cam_clip):
    cam = StreamConfig(name="gate", input="rtsp://admin:hunter2@127.0.0.1:9/cam")
    with Served([cam]) as srv:
        wait_for(lambda: srv.streams().get("gate", {}).get("state") == "reconnecting", 30,
                 "the dead camera to be reported")
        _, body, _ = srv.get("/api/streams")
        _, page, _ = srv.get("/")
    assert b"hunter2" not in body and b"hunter2" not in page
    assert json.loads(body)[0]["input"] == "rtsp://admin:***@127.0.0.1:9/cam"


def chromium_dom(url: str, tmp_path: Path, shot: str | None = None) -> str:
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=3000",
            "--window-size=1100,800"]
    if shot:
        subprocess.run([*args, f"--screenshot={tmp_path / shot}", url], capture_output=True,
                       timeout=60, check=True)
    run = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True,
                         timeout=60, check=True)
    return run.stdout


def card_state(dom: str, name: str) -> str:
    part = dom.split(f'data-stream="{name}"', 1)[1]
    return part.split('class="state ', 1)[1].split('"', 1)[0]


@needs_chromium
@needs_rtsp
def test_the_page_in_chromium_shows_each_stream_and_a_dead_camera_reconnecting(
        cam_clip, tmp_path):
    rtsp_port = free_port()
    camera = RtspServer(cam_clip.path, rtsp_port).start()
    try:
        streams = [StreamConfig(name="lobby", input=f"rtsp://127.0.0.1:{rtsp_port}/cam"),
                   file_stream("door", cam_clip)]
        with Served(streams) as srv:
            wait_for(lambda: (lambda got: len(got) == 2 and all(
                         s["state"] == "connected" for s in got.values()))(srv.streams()),
                     60, "both cameras connected")
            url = f"http://127.0.0.1:{srv.port}/"
            dom = chromium_dom(url, tmp_path, shot="status.png")
            assert card_state(dom, "lobby") == "connected"
            assert card_state(dom, "door") == "connected"
            assert "protected preview" in dom and "/preview/lobby.jpg" in dom
            assert (tmp_path / "status.png").stat().st_size > 10_000  # kept as an artifact
            time.sleep(1.5)
            chromium_dom(url, tmp_path, shot="later.png")
            first, later = (cv2.imread(str(tmp_path / n)) for n in ("status.png", "later.png"))
            preview = np.s_[130:350, 40:470]  # inside the first card's picture (lobby)
            assert first[preview].std() > 5  # a picture, not an empty box
            assert np.abs(first[preview].astype(int) - later[preview].astype(int)).mean() > 0.5
            camera.stop()
            t0 = time.time()
            wait_for(lambda: card_state(chromium_dom(url, tmp_path), "lobby") == "reconnecting",
                     20, "the page to show the dead camera reconnecting")
            assert time.time() - t0 < 20
            dom = chromium_dom(url, tmp_path, shot="reconnecting.png")
            assert card_state(dom, "door") == "connected"
    finally:
        camera.stop()
