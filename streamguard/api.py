"""The library entry points for people embedding streamguard in their own code."""

from __future__ import annotations

import numpy as np

from streamguard.config import Config
from streamguard.detect.base import Detector
from streamguard.frames import Faces, Frame
from streamguard.process import FrameProcessor


class Anonymizer:
    """Protect consecutive frames of one video (faces are tracked across calls).

        with Anonymizer() as anon:
            protected = anon(rgb_frame)        # (H, W, 3) uint8 RGB in, new array out
            print(anon.last_faces.xyxy)

    Fails closed like the pipeline: if detection fails, the whole frame comes back protected.
    With `protect.fail_closed = "drop"`, such a frame comes back as None.
    """

    def __init__(self, config: Config | None = None, *, detector: Detector | None = None,
                 bgr: bool = False):
        self._proc = FrameProcessor(config or Config(), detector)
        self._bgr = bgr
        self._index = 0
        self.last_faces = Faces.empty()

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        rgb = image[..., ::-1] if self._bgr else image
        frame = self._proc.analyze(Frame.numbered(self._index, np.ascontiguousarray(rgb)))
        self._index += 1
        self.last_faces = frame.faces if frame.faces is not None else Faces.empty()
        out = self._proc.protect(frame)
        if out is None:
            return None
        return np.ascontiguousarray(out.image[..., ::-1]) if self._bgr else out.image

    @property
    def failed_closed(self) -> int:
        return self._proc.failed_closed

    def close(self) -> None:
        self._proc.close()

    def __enter__(self) -> Anonymizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def anonymize_frame(image: np.ndarray, config: Config | None = None, *,
                    bgr: bool = False) -> np.ndarray | None:
    """Protect every face in one image. For video, use `Anonymizer` (it tracks faces)."""
    with Anonymizer(config, bgr=bgr) as anon:
        return anon(image)
