"""The input's colour description, kept from decode to encode.

PyAV decodes a frame to RGB with the matrix and range its tags declare (BT.709 for most HD
footage). The encoder must go back to YUV with the same matrix and tag its stream the same,
or the output's colours shift: before, every output was converted with BT.601 and left
untagged, so a BT.709 input came out with its luma up to 19 levels off (and a player reading
the planes as BT.709 showed it so).

`Colour.of(stream or frame)` reads the tags; `rgb_to_yuv420(rgb, colour)` converts for a
yuv420p encoder (one OpenCV matrix transform and a 2 x 2 chroma average, ~4x faster than
swscale's RGB -> yuv420p, chroma closer to the original); `tag(...)` sets the tags on an
encoder's context or on a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

UNSPECIFIED = 2  # FFmpeg's AVCOL_*_UNSPECIFIED for colorspace, primaries and trc
RANGE_LIMITED, RANGE_FULL = 1, 2  # AVCOL_RANGE_MPEG / AVCOL_RANGE_JPEG

# AVCOL_SPC_* -> (Kr, Kb); unspecified and anything else: BT.601, swscale's default
_KR_KB = {1: (0.2126, 0.0722),  # BT.709
          4: (0.30, 0.11),  # FCC
          5: (0.299, 0.114), 6: (0.299, 0.114),  # BT.470BG, SMPTE 170M (BT.601)
          7: (0.212, 0.087),  # SMPTE 240M
          9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}  # BT.2020
_BT601 = (0.299, 0.114)
# the colorspaces swscale converts with (PyAV's Colorspace), for formats other than yuv420p
_SWSCALE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


@dataclass(frozen=True)
class Colour:
    """AVCOL_* codes as the input declared them (UNSPECIFIED when it did not)."""

    colorspace: int = UNSPECIFIED
    primaries: int = UNSPECIFIED
    trc: int = UNSPECIFIED

    @classmethod
    def of(cls, item: Any) -> Colour:
        """From a video stream (its codec context) or a decoded frame."""
        ctx = getattr(item, "codec_context", item)

        def code(name: str) -> int:
            try:
                return int(getattr(ctx, name) or UNSPECIFIED)
            except (AttributeError, TypeError, ValueError):
                return UNSPECIFIED

        return cls(code("colorspace"), code("color_primaries"), code("color_trc"))

    @property
    def kr_kb(self) -> tuple[float, float]:
        return _KR_KB.get(self.colorspace, _BT601)

    def tag(self, target: Any, color_range: int = RANGE_LIMITED) -> None:
        """Write these tags (and `color_range`) on an encoder context or a frame; a code left
        unspecified stays so."""
        target.color_range = color_range
        for name, value in (("colorspace", self.colorspace),
                            ("color_primaries", self.primaries), ("color_trc", self.trc)):
            if value != UNSPECIFIED:
                setattr(target, name, value)

    @property
    def swscale_colorspace(self) -> int | None:
        return _SWSCALE.get(self.colorspace)


def _matrix(colour: Colour) -> np.ndarray:
    """3 x 4 affine map from RGB (0-255) to limited-range Y, Cb, Cr (BT.601 etc. matrices)."""
    kr, kb = colour.kr_kb
    kg = 1 - kr - kb
    y = np.array([kr, kg, kb])
    cb = (np.array([0, 0, 1]) - y) / (2 * (1 - kb))
    cr = (np.array([1, 0, 0]) - y) / (2 * (1 - kr))
    m = np.stack([y * 219 / 255, cb * 224 / 255, cr * 224 / 255])
    return np.concatenate([m, np.array([[16], [128], [128]])], axis=1).astype(np.float32)


_MATRICES: dict[tuple[float, float], np.ndarray] = {}


def rgb_to_yuv420(rgb: np.ndarray, colour: Colour) -> np.ndarray:
    """(H, W, 3) uint8 RGB with even sides -> I420 (H * 3 / 2, W) uint8, limited range, with
    the input's matrix; chroma is the mean of each 2 x 2 block. BT.601 (and unspecified, as
    swscale reads it) goes through OpenCV's own RGB -> I420 (0.2 ms at 720p), other matrices
    through one affine transform (1.5 ms; swscale took 3.6)."""
    h, w = rgb.shape[:2]
    rgb = np.ascontiguousarray(rgb)
    if colour.kr_kb == _BT601:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    m = _MATRICES.get(colour.kr_kb)
    if m is None:
        m = _MATRICES[colour.kr_kb] = _matrix(colour)
    yuv = cv2.transform(rgb, m)  # rounded and saturated to uint8
    flat = np.empty(h * w * 3 // 2, np.uint8)  # Y, then U, then V, each row after row
    q = h * w // 4
    cv2.extractChannel(yuv, 0, dst=flat[:h * w].reshape(h, w))
    half = cv2.resize(yuv, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    cv2.extractChannel(half, 1, dst=flat[h * w:h * w + q].reshape(h // 2, w // 2))
    cv2.extractChannel(half, 2, dst=flat[h * w + q:].reshape(h // 2, w // 2))
    return flat.reshape(h * 3 // 2, w)
