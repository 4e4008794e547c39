"""Heads that show no frontal face: is MediaPipe's person detector fit to find them? (issue 25)

BlazeFace finds faces, not heads: a person in profile, looking down or turned away shows it
little or nothing. The one person model a registry package here ships is MediaPipe's pose
detector (`pose_detection.tflite`, the first stage of BlazePose, in the same mediapipe 0.10.21
wheel as the face models). It is an SSD like BlazeFace (224 px input, 2,254 anchors) that
finds a person and regresses four points: the mid-hips, a point past the whole body, the
mid-shoulders and a point past the upper body. MediaPipe runs it to start tracking one
person's pose. The head lies on the line from the mid-shoulders to the upper-body point; this
cuts a head box there (centre HEAD_AT of the way along, side HEAD_SIDE of its length).

Measured on the registry's real pictures and clips, whose faces are all frontal, so the faces
the default detector finds stand in for the heads:
- people: how many of the pictured people the pose detector finds (a group photo of five),
  on the whole picture and, like the face detector, on tiles too (it finds one person per
  input);
- placement: on frames where both find someone, whether the pose head box holds the face's
  centre, and its IoU with the face box grown to a head (x1.6);
- false persons: pose detections on `no_face.mp4` (a title card) and on the face clip's
  frames after the person left;
- its cost per call.

Not measured, and why: no footage of heads without a frontal face can be obtained here
(ENVIRONMENT.md: the only real face video shows one frontal face; the photo packages hold
frontal faces), so recall on such heads, the point of the exercise, cannot be read. This
says whether the detector is fit to try at all.

    python benchmarks/heads.py   # writes benchmarks/results/heads.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))

from machine import describe  # noqa: E402

from streamguard.assets import asset_path  # noqa: E402
from streamguard.detect.geometry import box_iou, scaled_about_centre  # noqa: E402
from streamguard.detect.ssd import ModelSpec, letterbox, ssd_anchors, weighted_nms  # noqa: E402

# MediaPipe's pose_detection graph: 224 px input, anchors on strides 8, 16, 32, 32, 32 with an
# interpolated anchor each (2,254 in all, checked against the model's output at load)
POSE = ModelSpec(224, (8, 16, 32, 32, 32), True)
HEAD_AT = 0.4  # the head's centre, of the way from the mid-shoulders to the upper-body point
HEAD_SIDE = 0.4  # the head box's side, of that length
HEAD_OF_FACE = 1.6  # a face box grown to the head around it


class PoseDetector:
    """MediaPipe's pose detector on LiteRT: RGB image -> (head boxes xyxy, scores)."""

    def __init__(self, min_score: float = 0.5):
        from ai_edge_litert.interpreter import Interpreter

        self._it = Interpreter(model_path=str(asset_path("pose_detection.tflite")),
                               num_threads=1)
        self._it.allocate_tensors()
        self._input = self._it.get_input_details()[0]["index"]
        outputs = sorted(self._it.get_output_details(), key=lambda d: d["shape"][-1])
        self._scores, self._boxes = outputs[0]["index"], outputs[1]["index"]
        self._anchors = ssd_anchors(POSE)
        assert len(self._anchors) == outputs[0]["shape"][1], "anchors do not match the model"
        self._logit = float(np.log(min_score / (1 - min_score)))

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale, px, py = letterbox(image, POSE.input_side, self._it.tensor(self._input)()[0])
        self._it.invoke()
        logits = self._it.get_tensor(self._scores)[0, :, 0]
        reg = self._it.get_tensor(self._boxes)[0]
        hits = np.flatnonzero(logits >= self._logit)
        if not len(hits):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        side = POSE.input_side
        points = reg[hits, 4:12].reshape(-1, 4, 2) / side + self._anchors[hits, None, :]
        shoulders, upper = points[:, 2], points[:, 3]
        centre = shoulders + HEAD_AT * (upper - shoulders)
        half = HEAD_SIDE * np.linalg.norm(upper - shoulders, axis=1, keepdims=True) / 2
        heads = np.concatenate([centre - half, centre + half], axis=1) * side
        heads = (heads - np.array([px, py, px, py], np.float32)) / np.float32(scale)
        score = 1 / (1 + np.exp(-logits[hits]))
        return weighted_nms(heads.astype(np.float32), score.astype(np.float32), 0.3)


class TiledPose:
    """The pose detector on the whole picture and on overlapping square tiles (sides of the
    shorter side and 0.7 of it, half a side apart), merged: it finds one person per input."""

    def __init__(self, pose: PoseDetector):
        self._pose = pose

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        boxes, scores = [], []
        for side in (None, min(h, w), int(min(h, w) * 0.7)):
            if side is None:
                regions = [(0, 0, w, h)]
            else:
                step = side // 2
                regions = [(x, y, x + side, y + side)
                           for y in range(0, max(h - side, 0) + 1, step)
                           for x in range(0, max(w - side, 0) + 1, step)]
            for x0, y0, x1, y1 in regions:
                b, s = self._pose(image[y0:y1, x0:x1])
                boxes.append(b + np.array([x0, y0, x0, y0], np.float32))
                scores.append(s)
        return weighted_nms(np.concatenate(boxes), np.concatenate(scores), 0.3)


def frames_of(path: Path, every: int):
    import av

    with av.open(str(path)) as c:
        for i, vf in enumerate(c.decode(video=0)):
            if i % every == 0:
                yield vf.to_ndarray(format="rgb24")


def measure(name: str, images, faces_of, pose: PoseDetector) -> dict:
    row = {"source": name, "frames": 0, "faces": 0, "frames_with_face": 0,
           "pose_found": 0, "pose_on_face_frames": 0, "head_holds_face": 0, "head_iou": [],
           "pose_without_face": 0, "ms": []}
    for image in images:
        faces = faces_of(image)
        start = time.perf_counter()
        heads, _ = pose(image)
        row["ms"].append((time.perf_counter() - start) * 1000)
        row["frames"] += 1
        row["faces"] += len(faces)
        row["pose_found"] += len(heads)
        if len(faces):
            row["frames_with_face"] += 1
            if len(heads):
                row["pose_on_face_frames"] += 1
                centre = (faces[:, :2] + faces[:, 2:]) / 2
                held = ((centre[None, :, 0] > heads[:, None, 0])
                        & (centre[None, :, 0] < heads[:, None, 2])
                        & (centre[None, :, 1] > heads[:, None, 1])
                        & (centre[None, :, 1] < heads[:, None, 3]))
                row["head_holds_face"] += int(held.any(axis=0).sum())
                grown = scaled_about_centre(faces, HEAD_OF_FACE)
                row["head_iou"].append(float(box_iou(heads, grown).max(axis=1).max()))
        elif len(heads):
            row["pose_without_face"] += len(heads)
    row["head_iou"] = round(float(np.median(row["head_iou"])), 2) if row["head_iou"] else None
    row["ms"] = round(float(np.median(row["ms"])), 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--every", type=int, default=3, help="every n-th frame of the clips")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "heads.json"))
    args = ap.parse_args()

    from streamguard.config import load_config
    from streamguard.detect import create_detector

    cfg = load_config(None, [])
    pose = PoseDetector()
    rows = []
    stills = ["multi_face.jpg", "single_face.jpg", "obama.jpg", "biden.jpg"]
    clips = ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov", "no_face.mp4"]
    runs = [(name, pose) for name in stills + clips]
    runs[len(stills):len(stills)] = [(f"{name} (tiles)", TiledPose(pose)) for name in stills]
    for label, finder in runs:
        name = label.split(" ")[0]
        detector = create_detector(cfg.detect)  # a fresh one per run: its first look
        count = iter(range(10**9))

        def faces_of(image, detector=detector, count=count):
            return detector.detect(image, next(count)).xyxy

        if name in stills:
            images = [cv2.cvtColor(cv2.imread(str(asset_path(name))), cv2.COLOR_BGR2RGB)]
        else:
            images = frames_of(asset_path(name), args.every)
        rows.append(measure(label, images, faces_of, finder))
        detector.close()
    print(f"{'source':28} {'frames':>6} {'faces':>6} {'pose':>5} {'pose|face':>9} "
          f"{'holds':>5} {'IoU':>5} {'false':>5} {'ms':>6}")
    for r in rows:
        print(f"{r['source']:28} {r['frames']:6d} {r['faces']:6d} {r['pose_found']:5d} "
              f"{r['pose_on_face_frames']:9d} {r['head_holds_face']:5d} "
              f"{r['head_iou'] if r['head_iou'] is not None else '-':>5} "
              f"{r['pose_without_face']:5d} {r['ms']:6.2f}")
    Path(args.out).write_text(json.dumps({
        "machine": describe(), "every": args.every, "head_at": HEAD_AT, "head_side": HEAD_SIDE,
        "rows": rows,
        "columns": {"faces": "faces the default detector found (all frontal: the heads)",
                    "pose": "pose detections (score >= 0.5)",
                    "pose|face": "frames with a face where the pose detector found someone",
                    "holds": "faces whose centre a pose head box holds",
                    "IoU": "median best IoU of a pose head box with a face grown to a head",
                    "false": "pose detections on frames with no face"}}, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
