"""What the identity scorecards share: the judges (dlib, FaceNet), rank-1 / verification
scoring against the corpus gallery with Wilson intervals, and the look (would a viewer tell a
protection from a bare mosaic?).

The look budget, set before any look-priced generator was scored:
- PSNR against the bare mosaic with the same grid >= 24 dB: δ within ε = 16/255 per channel;
- a logistic regression on the cells' colour statistics (channel means and spreads, mean jumps
  between neighbouring cells across and down, their ratio) tells the protection from the bare
  mosaic at most 60 % of the time (0.5 = it cannot; the identity-aware generator of the first
  round: 0.89).
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.evaluate import DlibIdentity  # noqa: E402

JUDGE_ENV = ROOT / ".cache" / "judge-tf" / "bin" / "python"
LOOK_BUDGET_DB = 24.0
LOOK_CLASSIFIER_MAX = 0.60


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(max(0.0, c - h), 3), round(min(1.0, c + h), 3)]


def within_look_budget(look: dict) -> bool:
    """look: {"psnr_vs_mosaic", "classifier_accuracy"}."""
    return (look["psnr_vs_mosaic"] >= LOOK_BUDGET_DB
            and look["classifier_accuracy"] <= LOOK_CLASSIFIER_MAX)


def judges(facenet: bool = True) -> list:
    """dlib, plus FaceNet when asked (it needs `make judge-env`: a clear error if missing)."""
    if facenet and not JUDGE_ENV.exists():
        raise SystemExit(f"error: the FaceNet judge needs {JUDGE_ENV.parent.parent} "
                         "(run `make judge-env`), or pass --no-facenet")
    return [DlibJudge()] + ([FaceNetJudge()] if facenet else [])


# -- judges -----------------------------------------------------------------------------------

class FaceNetJudge:
    """FaceNet embeddings computed by benchmarks/judges/facenet_tf.py in .cache/judge-tf."""

    name = "facenet"

    def embed(self, images: np.ndarray, references=None) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
            np.save(src, images)
            run = subprocess.run([str(JUDGE_ENV), str(ROOT / "benchmarks/judges/facenet_tf.py"),
                                  str(src), str(dst)], capture_output=True, text=True)
            if run.returncode:
                raise RuntimeError(f"FaceNet judge failed: {run.stderr.strip()[-300:]}")
            return np.load(dst)


class DlibJudge:
    name = "dlib"

    def __init__(self):
        self.dlib = DlibIdentity()

    def embed(self, images: np.ndarray, references: np.ndarray) -> np.ndarray:
        to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
        return self.dlib.embed(to_t(images), to_t(references))


class Scorer:
    """Rank-1 and verification of embeddings against the corpus gallery, per judge."""

    def __init__(self, judge, gallery: np.ndarray, gallery_ids: np.ndarray):
        self.judge = judge
        self.gallery = judge.embed(gallery, gallery)
        self.ids = gallery_ids
        d = np.linalg.norm(self.gallery[:, None] - self.gallery[None], axis=2)
        self.tau = float(np.quantile(d[gallery_ids[:, None] != gallery_ids[None]], 0.01))

    def score(self, emb: np.ndarray, probe_ids: np.ndarray, own: np.ndarray) -> dict:
        d = np.linalg.norm(emb[:, None] - self.gallery[None], axis=2)
        hits = int((self.ids[d.argmin(1)] == probe_ids).sum())
        ver = int((d[np.arange(len(emb)), own] < self.tau).sum())
        n = len(emb)
        return {"rank1": round(hits / n, 3), "rank1_ci": wilson(hits, n),
                "ver_at_far1": round(ver / n, 3), "ver_ci": wilson(ver, n)}


# -- the look: would a viewer tell the protection from a bare mosaic? -------------------------

def cell_features(crops: np.ndarray, blocks: int) -> np.ndarray:
    """Per crop: the colour statistics a viewer sees in a mosaic: mean and spread of each
    channel over the region's cells, and the mean jump between neighbouring cells across and
    down (striping shows as one much larger than the other)."""
    region = crops[:, 16:112, 16:112].astype(np.float32)
    s = max(1, round(64 / blocks))
    n = 96 // s
    cells = region[:, :n * s, :n * s].reshape(len(crops), n, s, n, s, 3).mean((2, 4))
    across = np.abs(np.diff(cells, axis=2)).mean((1, 2))
    down = np.abs(np.diff(cells, axis=1)).mean((1, 2))
    return np.concatenate([cells.mean((1, 2)), cells.std((1, 2)), across, down,
                           (across / (down + 1e-3)).mean(1, keepdims=True)], 1)


def distinguishable(a: np.ndarray, b: np.ndarray, groups: np.ndarray, folds: int = 4) -> float:
    """Accuracy of a logistic regression telling feature rows `a` from `b` (same groups in
    both: a clip's crops stay in one fold). 0.5 = a viewer's statistics cannot tell them apart."""
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    g = np.concatenate([groups, groups])
    right = 0
    for f in range(folds):
        test = g % folds == f
        mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-6
        xt = np.c_[(x - mu) / sd, np.ones(len(x))]
        w = np.zeros(xt.shape[1])
        for _ in range(500):  # plain gradient descent, L2 0.01
            p = 1 / (1 + np.exp(-xt[~test] @ w))
            w -= 0.5 * (xt[~test].T @ (p - y[~test]) / (~test).sum() + 0.01 * w)
        right += int(((xt[test] @ w > 0) == (y[test] > 0.5)).sum())
    return round(right / len(x), 3)
