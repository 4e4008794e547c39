"""Soak: `streamguard serve` for a long time with cameras that come and go.

    python benchmarks/soak.py [--minutes 10] [--restart-every 120]

Runs `serve` (default mode's detection and tracking; protection in solid magenta so a bare
face is unmistakable) with two file cameras played in a loop and one RTSP camera (Debian's
GStreamer RTSP server) that is killed and restarted every `--restart-every` seconds. Every
10 s it samples the serve process's RSS, open file descriptors and threads, the streams'
metrics (frames, drops, reconnects, fail-closed), and one protected frame of each stream from
ZeroMQ. A face detector looks at it; each hit (score >= 0.6) is compared with the cameras'
source faces by fine detail: a match is a bare face, anything else a false alarm of the checker
(BlazeFace now and then scores a patch of the noise background); both kinds are saved. Targets: RSS and fd count flat after
warm-up (slope within noise), every camera restart reconnected, 0 bare frames.
Writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))
WORK = ROOT / "benchmarks" / ".work" / "soak"
GST = Path("/usr/bin/python3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port: int) -> dict[str, dict[str, float]]:
    """{stream: {metric: value}} from serve's /metrics (counters without their _total)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.type not in ("counter", "gauge"):
            continue
        for sample in family.samples:
            if sample.name in (family.name, f"{family.name}_total"):
                out.setdefault(sample.labels["stream"], {})[
                    family.name.removeprefix("streamguard_")] = sample.value
    return out


def looks_like(image: np.ndarray, box, crops: list[np.ndarray]) -> bool:
    """Is what the detector found one of the cameras' faces, bare? The hit's 24 px grey
    thumbnail against each source face (the crops' central face box, three margins): a
    normalized correlation >= 0.35 says face. Measured on the soak's own clips: bare faces
    0.49-1.0 (their first 300 frames, every 50th), the background false alarm 0.13. Leaning
    low: a doubt counts as bare."""
    import cv2
    from media import CROP_CONTEXT

    def thumb(grey: np.ndarray) -> np.ndarray:
        t = cv2.resize(grey, (24, 24), interpolation=cv2.INTER_AREA)
        return (t - t.mean()) / (t.std() + 1e-6)

    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    region = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    if min(region.shape[:2]) < 4:
        return False
    seen = thumb(cv2.cvtColor(region, cv2.COLOR_RGB2GRAY).astype(np.float32))
    for crop in crops:
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
        side = grey.shape[0]
        for margin in (-0.04, 0.0, 0.04):
            m = max(int(side * ((1 - 1 / CROP_CONTEXT) / 2 + margin)), 0)
            if float((seen * thumb(grey[m:side - m, m:side - m])).mean()) >= 0.35:
                return True
    return False


def proc_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    field = {ln.split(":")[0]: ln.split(":")[1].strip() for ln in status.splitlines()}
    return {"rss_mb": int(field["VmRSS"].split()[0]) / 1024, "threads": int(field["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    if len(ts) < 3:
        return 0.0
    return float(np.polyfit(np.array(ts) / 3600, np.array(ys), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--restart-every", type=float, default=120.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    args = ap.parse_args()

    import zmq

    from machine import describe
    from media import Sprite, face_crops, write_clip
    from streamguard.detect.mediapipe import BlazeFace
    from videotruth import MAGENTA

    WORK.mkdir(parents=True, exist_ok=True)
    crops = face_crops()
    clips = []
    for i in range(3):
        path = WORK / f"cam{i}.mp4"
        if not path.exists():
            # 640x360 at 15 fps: three cameras leave the 2-core dev VM some room
            write_clip(path, [Sprite(crops[i], 80 + 20 * i, (40, 40), (1.5, 0.6)),
                              Sprite(crops[i + 1], 50, (420, 220), (-1.0, -0.4))],
                       width=640, height=360, n_frames=300, fps=15, gop=15)
        clips.append(path)
    rtsp_port, metrics_port = free_port(), free_port()
    zmq_ports = [free_port() for _ in range(3)]
    config = WORK / "soak.toml"
    config.write_text(f"""
[protect]
mode = "solid"
solid_color = {list(MAGENTA)}

[live]
metrics_port = {metrics_port}
reconnect_initial_s = 0.5
reconnect_max_s = 2.0

[[streams]]
name = "file0"
input = "{clips[0]}"
loop = true
zmq = "tcp://127.0.0.1:{zmq_ports[0]}"

[[streams]]
name = "file1"
input = "{clips[1]}"
loop = true
zmq = "tcp://127.0.0.1:{zmq_ports[1]}"

[[streams]]
name = "rtsp"
input = "rtsp://127.0.0.1:{rtsp_port}/cam"
zmq = "tcp://127.0.0.1:{zmq_ports[2]}"
""")

    def start_camera() -> subprocess.Popen:
        cam = subprocess.Popen([str(GST), str(ROOT / "tests" / "rtsp_server.py"),
                                str(rtsp_port), str(clips[2])], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        cam.stdout.readline()
        return cam

    camera = start_camera()
    serve = subprocess.Popen([sys.executable, "-m", "streamguard", "serve", "--config",
                              str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    ctx = zmq.Context.instance()
    subs = []
    for port in zmq_ports:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 4)
        sub.connect(f"tcp://127.0.0.1:{port}")
        subs.append(sub)
    finder = BlazeFace("full_range", 0.5)
    samples, restarts, bare = [], 0, 0
    t0 = time.time()
    next_restart = t0 + args.restart_every
    false_alarms = 0
    try:
        while time.time() - t0 < args.minutes * 60:
            time.sleep(min(10, max(args.minutes * 60 - (time.time() - t0), 0.5)))
            now = time.time()
            if now >= next_restart:
                camera.kill()
                camera.wait(10)
                time.sleep(2)
                camera = start_camera()
                restarts += 1
                next_restart = now + args.restart_every
            row = {"t_s": round(now - t0, 1), **proc_sample(serve.pid), "streams": metrics(
                metrics_port)}
            for name, sub in zip(("file0", "file1", "rtsp"), subs):
                if sub.poll(1000):
                    parts = sub.recv_multipart()
                    while sub.poll(0):  # the newest frame
                        parts = sub.recv_multipart()
                    header, buf = parts
                    h = json.loads(header)
                    image = np.frombuffer(buf, np.uint8).reshape(h["shape"])
                    boxes, score = finder(image)
                    flagged = [b for b, sc in zip(boxes, score) if sc >= 0.6]
                    if flagged:  # a bare face, or the detector seeing one in the noise
                        import cv2

                        real = any(looks_like(image, b, crops) for b in flagged)
                        bare += real
                        false_alarms += not real
                        kind = "bare" if real else "false-alarm"
                        cv2.imwrite(str(WORK / f"{kind}-{name}-{h['index']}.png"),
                                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            row["bare_frames"] = bare
            row["checker_false_alarms"] = false_alarms
            samples.append(row)
            s = row["streams"]
            print(f"{row['t_s']:7.0f} s  rss {row['rss_mb']:7.1f} MB  fds {row['fds']:4d}  "
                  f"threads {row['threads']:3d}  out "
                  f"{'/'.join(str(int(s.get(n, {}).get('frames_out', 0))) for n in s)}  "
                  f"drops {sum(v.get('dropped', 0) for v in s.values()):.0f}  "
                  f"reconnects(rtsp) {s.get('rtsp', {}).get('reconnects', 0):.0f}  bare {bare}",
                  flush=True)
    finally:
        serve.terminate()
        serve.communicate(timeout=60)
        camera.kill()
        finder.close()
        for sub in subs:
            sub.close(0)
    warm = [r for r in samples if r["t_s"] >= 60]
    ts = [r["t_s"] for r in warm]
    summary = {
        "minutes": args.minutes, "camera_restarts": restarts, "bare_frames": bare,
        "checker_false_alarms": false_alarms,
        "rss_mb_first_last": [warm[0]["rss_mb"], warm[-1]["rss_mb"]] if warm else None,
        "rss_slope_mb_per_hour": round(slope_per_hour(ts, [r["rss_mb"] for r in warm]), 2),
        "fds_slope_per_hour": round(slope_per_hour(ts, [r["fds"] for r in warm]), 2),
        "threads_last": samples[-1]["threads"] if samples else None,
        "final_streams": samples[-1]["streams"] if samples else {},
    }
    print(json.dumps(summary, indent=1))
    Path(args.out).write_text(json.dumps({"machine": describe(), "summary": summary,
                                          "samples": samples}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
