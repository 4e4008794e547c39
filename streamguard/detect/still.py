"""What the tiled detector remembers of the pictures it looked at, so an unchanged one costs
no model call (`detect.still_tiles`).

A tile (or the whole frame) is still when no block's mean colour moved by more than
`LEVELS` in any colour since it was last looked at: H.264 noise on a still background moves
8 px block means by 0-2 levels (99th percentile <= 5 on the real clips); a 24 px face
appearing moves several blocks by tens of levels. A still picture gets what was found in it
then, for at most `still_tiles` turns in a row, and is looked at again after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from streamguard.detect.geometry import block_means

Found = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy, score, roll


@dataclass
class _Looked:
    """A picture as it was when it was last looked at: its block means, what the model found
    in it, and how many turns since were skipped because it had not changed."""

    means: np.ndarray
    found: Found
    skipped: int = 0


class StillPictures:
    """Block means and finds of the tiles (keyed by their view) and of the whole frame."""

    LEVELS = 6
    BLOCK = 8  # px, a tile's blocks
    # the whole frame is compared in coarser blocks: the full-frame pass only sees faces over
    # ~9 % of the frame's side (115 px at 720p), which cover several such blocks whole
    FRAME_BLOCK = 16

    def __init__(self, turns: int):
        self.turns = turns  # detect.still_tiles: 0 = always look
        self._views: dict[tuple, _Looked] = {}
        self._whole: _Looked | None = None

    def clear(self) -> None:
        self._views.clear()

    def again(self, views: list, crops: list) -> tuple[list, list]:
        """(block means of each crop, or None when not kept; what was found in each view
        whose picture has not changed since it was last looked at, or None: those to look
        at)."""
        if not self.turns:
            return [None] * len(views), [None] * len(views)
        means, again = [], []
        for view, crop in zip(views, crops):
            now = block_means(crop, self.BLOCK)
            last = self._views.get(view)
            means.append(now)
            again.append(last.found if self._unchanged(last, now) else None)
        return means, again

    def remember(self, view: tuple, means: np.ndarray | None, found: Found) -> None:
        if means is not None:
            self._views[view] = _Looked(means, found)

    def whole(self, image: np.ndarray, look: Callable[[np.ndarray], Found]) -> Found:
        """`look(image)`, or what it found when the frame was last looked at and has not
        changed since."""
        if not self.turns:
            return look(image)
        now = block_means(image, self.FRAME_BLOCK)
        if self._unchanged(self._whole, now):
            return self._whole.found
        found = look(image)
        self._whole = _Looked(now, found)
        return found

    def _unchanged(self, last: _Looked | None, now: np.ndarray) -> bool:
        """Whether a picture (`now`, its block means) is still what it was when last looked
        at, and may be skipped once more; the skip is counted."""
        still = (last is not None and last.skipped < self.turns
                 and last.means.shape == now.shape
                 and cv2.norm(last.means, now, cv2.NORM_INF) <= self.LEVELS)
        if still:
            last.skipped += 1
        return still
