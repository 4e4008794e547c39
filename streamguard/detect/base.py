"""Face detection: the Detector protocol, a registry, and the tiled detector (whole frame,
overlapping tiles, track windows; the geometry it uses is in `detect.geometry`).

A detector turns an (H, W, 3) uint8 RGB image into `Faces`. Whole frames are squashed to a
small model input, so faces under ~8 % of the frame width vanish; the tiled pass re-runs the
model on overlapping tiles (every `tile_every`-th frame) and merges everything with NMS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import cv2
import numpy as np

from streamguard.config import DetectConfig
from streamguard.detect.geometry import (
    bordered_tiles, box_iou, drop_parts, edge_boxes, near_edge, nms, padded_crop,
    scaled_about_centre, tile_pyramid, turn_image, unturn_boxes, within_frame,
)
from streamguard.detect.still import StillPictures
from streamguard.detect.views import (
    DIM_UNTIL, Light, NearMisses, TurnMemory, brightened, grey_of, held_rolled, light_of,
    one_turn_per_face, with_roll,
)
from streamguard.detect.windows import packed, window_boxes
from streamguard.frames import Faces, PlanarImage
from streamguard.registry import Registry

# A box model: RGB image -> (xyxy (N, 4) float32 in image pixels, score (N,) float32), and
# optionally each face's roll (N,) in degrees, counter-clockwise as seen
BoxModel = Callable[[np.ndarray], tuple[np.ndarray, ...]]


class Detector(Protocol):
    def detect(self, image: np.ndarray, index: int, around: np.ndarray | None = None) -> Faces:
        """Faces in an RGB image; `index` is the frame number (decides the tiled pass);
        `around` (N, 4): where tracked faces are expected (worth a closer look). A detector
        may also take `span`: how many frames this look stands for (`detect.every`, the
        frame budget), so that what it spreads over frames comes round in as many frames."""

    def close(self) -> None: ...


DETECTORS: Registry[Callable[[DetectConfig], Detector]] = Registry("detector")
register_detector = DETECTORS.register


class TiledDetector:
    """Full-frame pass every frame, plus overlapping tiles spread over `tile_every` frames,
    plus a window around each track the full-frame pass cannot see.

    - Each frame runs ceil(tiles / tile_every) tiles in round-robin order, so every tile is
      revisited at least every `tile_every` frames while the per-frame cost stays even (no
      latency spike every k-th frame, which matters for live streams). Tiles on the frame's
      border reach `edge_padding` of their side past it, mirrored, so faces cut by the edge
      are found.
    - Track windows (`around`): a square of `window_scale` face sizes around each small
      (under ~12 % of the frame width) or edge track the full-frame pass did not find this
      frame, mirrored past the edge; up to four windows are packed into one image.
    - Tiles and windows go to the model in one call where it takes a batch.
    - A tile whose picture has not changed since it was last looked at (`still_tiles`) gets
      what was found there then, without a model call, for a bounded number of turns; the
      full-frame pass likewise on a frame that has not changed.
    - Turned views (`turned_every`): the whole frame and every tile turned by one, two and
      three quarter turns, spread over frames like the tiles, find faces turned in the image
      plane; a face found turned has its track window cut turned the same way every frame.
      A turned view unsure of something where no face was found looks again on the next
      few frames (`NearMisses`), so a face scored about the threshold is not a round late.
    - A dark or flat frame (`low_light`) is shown to the models with its levels stretched,
      and its tiles are smaller (`dim_tile_side`): a small face in low contrast and sensor
      noise is found only when the model sees it larger. An infrared frame's turned views go
      to the night model (`night_model`: CenterFace), which finds the small turned night
      faces BlazeFace does not.
    - Faces at the frame's edge count from `edge_min_score`: half and corner faces score low.
    """

    # px, the picture track windows are packed in (1 or 2 x 2): the full-range model's input
    # side, so the windows are resampled once, straight to what the model sees
    WINDOW_CANVAS = 192
    FULL_FRAME_SEES = 0.12  # faces wider than this share of the frame: the full-frame pass
    # The largest face (share of the frame's longer side) the full-frame pass can miss, so
    # tiles overlap by at least that much: on pasted faces it found 12 of 15 at 140 px and all
    # from 160 px at 1080p (0.083), all from 120 px at 720p (0.094); under it, a face on a
    # tile seam was found by neither (a 140 px face bare for 90 frames at 1080p)
    FULL_FRAME_MIN_FACE = 0.09
    EDGE_GROWTH = 0.3  # per side, for boxes of faces found across the frame's edge
    THUMBNAIL_SIDE = 1280  # px, longer side of the full-frame pass's picture of a planar frame

    def __init__(self, full_frame: BoxModel, tiles: BoxModel, cfg: DetectConfig,
                 helper_tiles: BoxModel | None = None, night: BoxModel | None = None):
        """`helper_tiles`: a second instance of the tiles model. Given, the full-frame pass,
        the track windows and a share of the tiles run on a helper thread while the caller's
        thread runs the other tiles (the models release the GIL; the results are exactly
        those run in turn). `night`: the model for the turned views of infrared (dim and
        grey) frames (`detect.night_model`; None: the tiles model)."""
        self._full_frame = full_frame
        self._tiles = tiles
        self._helper_tiles = helper_tiles
        self._night = night
        self.cfg = cfg
        self._helper = None
        if helper_tiles is not None:
            from concurrent.futures import ThreadPoolExecutor

            self._helper = ThreadPoolExecutor(1, thread_name_prefix="streamguard-full-frame")
        self._size: tuple[int, int] | None = None  # the frame size the grids are cut for
        self._grids: dict[int, list[tuple[int, int, int, int]]] = {}  # per tile side
        self._dim = False  # this round of tiles is cut for a dim frame (`dim_tile_side`)
        self._infrared = False  # ... and is grey: the night model takes its turned views
        self._index = 0  # the frame count detect() was last called with
        self.start_over()

    def start_over(self) -> None:
        """A new file or segment: what was seen before is forgotten (turned faces, still
        tiles) and its first frame is looked at in every view. The models stay loaded."""
        self._first = True  # the next frame is the first: looked at in every view
        self._turns = TurnMemory(forget_after=max(30, 2 * self.cfg.turned_every))
        self._stills = StillPictures(self.cfg.still_tiles)  # unchanged pictures: no look
        self._window_turn = 0  # where the next frame's windows start, when they take turns
        self._turned_clock = 0  # frames the looks so far stood for: paces the turned views
        self._near = NearMisses()  # turned views that nearly found a face: looked at again

    def _grid_of(self, width: int, height: int, dim: bool | None = None,
                 ) -> list[tuple[int, int, int, int]]:
        """The tiles of a frame of this size: of the round's grid (`dim`: None), or of the
        dim frames' or the others' grid."""
        side = self.cfg.tile_max_side
        if (self._dim if dim is None else dim) and self.cfg.dim_tile_side:
            side = min(side, self.cfg.dim_tile_side)
        if self._size != (width, height):
            self._size = (width, height)
            self._grids.clear()
            self._stills.clear()
        if side not in self._grids:
            self._grids[side] = bordered_tiles(
                tile_pyramid(width, height, side, self.cfg.tile_overlap,
                             self.FULL_FRAME_MIN_FACE), width, height, self.cfg.edge_padding)
        return self._grids[side]

    def _set_round(self, light: Light | None, index: int, image=None) -> None:
        """At the start of each round of tiles, whether it is cut for a dim frame: a round
        keeps one grid, so every tile of it is looked at. Dim until the levels span DIM_UNTIL,
        so a scene at the edge does not switch grids every round. And whether it is an
        infrared picture (dim and grey), whose turned views the night model takes."""
        every = self.cfg.tile_every
        if light is None or (every and index % every and self._size is not None):
            return
        self._dim = light.dim or (self._dim and light.span < DIM_UNTIL)
        self._infrared = (self._dim and self._night is not None and image is not None
                          and grey_of(image))

    def tiles_for(self, width: int, height: int, index: int) -> list[tuple[int, int, int, int]]:
        """The tiles frame `index` runs (border tiles reach past the frame)."""
        grid = self._grid_of(width, height)
        every = self.cfg.tile_every
        if not every or not grid:
            return []
        per_frame = -(-len(grid) // every)
        start = (index % every) * per_frame
        tiles = grid[start:start + per_frame]
        if (index // every) % 2:
            # every other round, border tiles show the frame as it is: a face mostly inside
            # but near a corner or an edge, doubled by its mirror image, was not found (a
            # 60 px face in a corner missed for 21 frames); a half face needs the mirror
            tiles = [within_frame(tile, width, height) for tile in tiles]
        return tiles

    def first_views(self, width: int, height: int,
                    ) -> list[tuple[int, tuple[int, int, int, int] | None]]:
        """What the first frame is looked at in, all at once: every tile, border tiles both
        mirrored and as they are, and the whole frame turned (a face there from the first
        frame has no look-back: a 60 px corner face found on frame 18 of a live stream was
        bare on frames 0-2). One slower frame (0.1 s at 720p, 2 cores). Not the turned
        tiles: 0.15 s more at 720p, 1.5 s at 4K, and their wrong-side finds of small
        upright faces, with no track to hold them, set a 44 px face's box off its place."""
        grid = self._grid_of(width, height) if self.cfg.tile_every else []
        tiles = list(dict.fromkeys(
            [*grid, *(within_frame(tile, width, height) for tile in grid)]))
        turned = [(q, None) for q in (1, 2, 3)] if self.cfg.turned_every else []
        return [(0, tile) for tile in tiles] + turned

    def _turned_views(self, width: int, height: int,
                      ) -> list[tuple[int, tuple[int, int, int, int] | None]]:
        # the daylight grid, whatever the light: the turned views' cost stays bounded at night
        return [(q, region) for region in [None, *self._grid_of(width, height, dim=False)]
                for q in (1, 2, 3)]

    def turned_for(self, width: int, height: int, index: int, span: int = 1,
                   ) -> list[tuple[int, tuple[int, int, int, int] | None]]:
        """The turned views a look at frame `index` takes: (quarter turns clockwise, tile or
        None for the whole frame), every one within `turned_every` frames. A look standing
        for `span` frames takes the views of all of them (at every 3rd frame, one frame's
        views a look, a face turned 135 degrees was found after the look-back, 9 frames bare)."""
        every = self.cfg.turned_every
        if not every:
            return []
        views = self._turned_views(width, height)
        # spread evenly: view i on the frames where i * every // len(views) comes round
        turns = {t % every for t in range(index, index + max(span, 1))}
        return [view for i, view in enumerate(views) if i * every // len(views) in turns]

    def windows_for(self, width: int, height: int, around: np.ndarray | None,
                    seen: np.ndarray | None = None,
                    ) -> list[tuple[tuple[int, int, int, int], np.ndarray, int]]:
        """(square window, expected box, quarter turns) around each expected box the
        full-frame pass cannot see: small faces, faces at the frame's edge and faces found
        turned (their window is turned the same way), unless the full-frame pass found a
        face there this frame (`seen`: its boxes; edge faces always get their window, where
        the mirrored border completes them)."""
        if around is None or not len(around) or not self.cfg.track_windows:
            return []
        expected = np.asarray(around, np.float64).reshape(-1, 4)
        confirmed = np.zeros(len(expected), bool)
        if seen is not None and len(seen):
            confirmed = box_iou(expected.astype(np.float32), seen).max(axis=1) >= 0.5
        quarters = self._turns.quarter_of(expected, self._index)
        edge = near_edge(expected, width, height)
        out = []
        for box, found, quarter, at_edge in zip(expected, confirmed, quarters.tolist(), edge):
            x0, y0, x1, y1 = box
            side = max(x1 - x0, y1 - y0)
            # a face found turned always gets its window, turned: the upright passes find
            # it on some looks only, and then boxed off its place
            if not at_edge and not quarter and (found or side >= self.FULL_FRAME_SEES * width):
                continue
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                continue
            half = max(side * self.cfg.window_scale, 48) / 2
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            out.append(((int(cx - half), int(cy - half), int(cx + half), int(cy + half)), box,
                        quarter))
        return out

    def _take_turns(self, windows: list) -> list:
        """At most `max_windows` windows this frame: windows of faces found turned or rolled
        first (up to all but one), the others rotating in track order through what is left
        (tracks keep their order frame to frame)."""
        cap = self.cfg.max_windows
        if not cap or len(windows) <= cap:
            return windows
        # faces found turned or rolled are looked at every frame (the upright passes box
        # them off their place), up to all slots but one; the others take turns
        turned = [w for w in windows if w[2]][:cap - 1]
        others = [w for w in windows if not w[2]] + [w for w in windows if w[2]][cap - 1:]
        left = cap - len(turned)
        start = self._window_turn % len(others)
        self._window_turn = start + left
        return turned + (others[start:] + others[:start])[:left]

    def _window_canvases(self, image: np.ndarray, windows) -> list[tuple[np.ndarray, list]]:
        """The windows packed into the model's inputs (`windows.packed`); on a dim frame a
        face found turned has its window alone."""
        return packed(image, windows, self.WINDOW_CANVAS, turned_alone=self._dim)

    def _run_tiles_model(self, images: list[np.ndarray], model: BoxModel | None = None,
                         ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The tiles model (or `model`) on each image, in one call where it takes a batch:
        (xyxy, score, roll) each (roll 0 from a model that reads none)."""
        model = model or self._tiles
        if not images:
            return []
        batch = getattr(model, "batch", None)
        found = batch(images) if batch is not None else [model(img) for img in images]
        return [with_roll(result) for result in found]

    def _full_frame_pass(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole frame through the full-frame model. A frame kept in its planes
        (`frames.PlanarImage`) hands over a picture of at most THUMBNAIL_SIDE px, converted
        from its planes by OpenCV (the model squashes its input to under 200 px anyway). At
        640 px a fast face entering through an edge was boxed late in the recall tests: up to
        1280 px the model sees what the RGB path shows it."""
        if not isinstance(image, PlanarImage):
            return with_roll(self._full_frame(image))
        small, scale = image.thumbnail(self.THUMBNAIL_SIDE)
        xyxy, score, roll = with_roll(self._full_frame(small))
        return xyxy * np.float32(scale), score, roll

    # relative cost of the detector inputs, for sharing them between the two threads: a
    # tile is one model call; the full frame also shrinks a whole frame first; a window
    # picture also crops and shrinks up to four windows
    TILE_COST, FULL_FRAME_COST, CANVAS_COST = 1.0, 1.1, 1.35

    def _helper_share(self, tiles: int, canvases: int) -> int:
        """How many tiles the helper thread takes, on top of the full-frame pass and the track
        windows (which wait for the full-frame pass): the split that finishes soonest."""
        own = self.FULL_FRAME_COST + self.CANVAS_COST * canvases
        return min(range(tiles + 1), key=lambda k: max(own + k * self.TILE_COST,
                                                       (tiles - k) * self.TILE_COST))

    def _windows_pass(self, image: np.ndarray, around: np.ndarray | None, seen: np.ndarray,
                      model: BoxModel | None = None) -> tuple[list, list]:
        """The track windows that the full-frame pass's boxes (`seen`) leave to look at, packed
        into pictures and run: (canvases, what the model found in each)."""
        height, width = image.shape[:2]
        canvases = self._window_canvases(image, self._take_turns(
            self.windows_for(width, height, around, seen)))
        return canvases, self._run_tiles_model([canvas for canvas, _ in canvases], model)

    def _full_frame_or_again(self, image: np.ndarray,
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The full-frame pass, or what it found when it last ran if the frame has not changed
        since (`still_tiles`: at most that many frames in a row). A frame kept in its planes
        always runs it (its picture would cost a conversion)."""
        if isinstance(image, PlanarImage):
            return self._full_frame_pass(image)
        return self._stills.whole(image, self._full_frame_pass)

    TURNED_WHOLE_SIDE = 384  # px: the whole frame is shrunk to about this before it is turned
    # score a turned view's find must win by: a face turned a quarter or more scores ~0.9 in
    # the view that shows it upright and 0.5-0.75 in the others; an upright face from the
    # side scores up to what its upright view does, for a small face
    TURNED_HANDICAP = 0.1
    TURNED_GROWTH = 1.15  # a turned face's box, about its centre

    def _picture(self, image: np.ndarray, light: Light | None) -> np.ndarray:
        """What the models see of the frame: brightened when it is dark or flat
        (`low_light`; a frame kept in its planes as it is)."""
        if not self.cfg.low_light or not isinstance(image, np.ndarray):
            return image
        return brightened(image, light)

    def _whole_shrink(self, width: int, height: int) -> int:
        return max(1, max(width, height) // self.TURNED_WHOLE_SIDE)

    def _view(self, picture: np.ndarray, quarter: int, region) -> np.ndarray:
        """A tile (or the whole frame, shrunk by a whole factor) turned `quarter` times."""
        if region is not None:
            return turn_image(padded_crop(picture, *region), quarter)
        height, width = picture.shape[:2]
        k = self._whole_shrink(width, height)
        small = picture if k == 1 else cv2.resize(
            np.asarray(picture[:height - height % k, :width - width % k]),
            (width // k, height // k), interpolation=cv2.INTER_AREA)
        return turn_image(small, quarter)

    def _unview(self, xyxy: np.ndarray, quarter: int, region, width: int, height: int,
                ) -> np.ndarray:
        """Boxes found in a view (`_view`) mapped back onto the frame."""
        if region is None:
            k = self._whole_shrink(width, height)
            return unturn_boxes(xyxy, quarter, width // k, height // k) * np.float32(k)
        x0, y0, x1, y1 = region
        return unturn_boxes(xyxy, quarter, x1 - x0, y1 - y0) + np.array(
            [x0, y0, x0, y0], np.float32)

    def detect(self, image: np.ndarray, index: int, around: np.ndarray | None = None,
               span: int = 1) -> Faces:
        """`span`: the frames this look stands for (their turned views: `turned_for`)."""
        height, width = image.shape[:2]
        self._index = index
        clock, self._turned_clock = self._turned_clock, self._turned_clock + max(span, 1)
        light = light_of(image) if self.cfg.low_light or self.cfg.dim_tile_side else None
        self._set_round(light, index, image)
        picture = self._picture(image, light)
        if self._first:
            views, self._first = self.first_views(width, height), False
        else:
            views = [(0, tile) for tile in self.tiles_for(width, height, index)]
            views += self.turned_for(width, height, clock, span)
            views += self._near.again(views)
        crops = [self._view(picture, q, region) for q, region in views]
        means, found_again = self._stills.again(views, crops)
        look = [i for i, again in enumerate(found_again) if again is None]
        # the night model takes the turned views of an infrared frame (detect.centerface)
        night = [i for i in look if self._infrared and views[i][0]]
        look = [i for i in look if not (self._infrared and views[i][0])]
        (xyxy, score, roll), (canvases, in_windows), looked = self._look_at_tiles(
            picture, [crops[i] for i in look], around, width, height,
            [crops[i] for i in night])
        found = list(found_again)
        for i, result in zip(look + night, looked):
            found[i] = result
            self._stills.remember(views[i], means[i], result)
        boxes, scores, rolls, quarters = [xyxy], [score], [roll], [np.zeros(len(xyxy), np.int64)]
        near = []  # turned views with unsure finds off the edge: looked at again if no face
        for i, ((q, region), (v_xyxy, v_score, v_roll)) in enumerate(zip(views, found)):
            v_xyxy = self._unview(v_xyxy, q, region, width, height)
            # the tiles model's unsure finds count at the frame's edge only (not the night's)
            if i not in night and (unsure := v_score < self.cfg.min_score).any():
                keep = ~unsure | near_edge(v_xyxy, width, height)
                if q and not keep.all():
                    near.append(((q, region), v_xyxy[~keep]))
                v_xyxy, v_score, v_roll = v_xyxy[keep], v_score[keep], v_roll[keep]
            boxes.append(v_xyxy)
            scores.append(v_score)
            rolls.append(v_roll)  # the roll off the nearest quarter turn: the same turned
            quarters.append(np.full(len(v_xyxy), q, np.int64))
        if canvases:
            # a window confirms its track's face with sure finds only (xyxy, score, roll)
            in_windows = [tuple(a[f[1] >= self.cfg.min_score] for a in f) for f in in_windows]
            for found_in_windows, into in zip(window_boxes(in_windows, canvases),
                                              (boxes, scores, rolls, quarters)):
                into.append(found_in_windows)
        xyxy = np.concatenate(boxes).astype(np.float32)
        score = np.concatenate(scores).astype(np.float32)
        roll, quarter = np.concatenate(rolls), np.concatenate(quarters)
        xyxy, score, kept = edge_boxes(xyxy, score, width, height, self.EDGE_GROWTH)
        roll, quarter = roll[kept], quarter[kept]
        # a turned view must be clearly surer than the upright ones to win: BlazeFace also
        # finds an upright face from the side, less surely and boxed off its place
        rank = score - self.TURNED_HANDICAP * (quarter != 0)
        keep = nms(xyxy, rank, self.cfg.nms_iou)
        # a kept box holds the most rolled face any input saw there (the full-frame pass, a
        # face of a dozen model pixels, reads no roll a tile reads plainly)
        grown, read = held_rolled(xyxy, roll, keep, self.cfg.nms_iou,
                                  at_least=self._turns.roll_of(xyxy[keep]))
        xyxy, score, quarter = grown, score[keep], quarter[keep]
        keep = one_turn_per_face(xyxy, rank[keep], quarter)
        xyxy, score, quarter, read = xyxy[keep], score[keep], quarter[keep], read[keep]
        keep = drop_parts(xyxy)
        xyxy, score, quarter, read = xyxy[keep], score[keep], quarter[keep], read[keep]
        self._turns.learn(xyxy, quarter, index, read, score)
        if near:  # most looks have none: no work on them
            tracked = np.reshape(around if around is not None else [], (-1, 4))
            self._near.learn(near, np.concatenate([xyxy, tracked]))
        # a turned face's box, from a view turned back or from the upright views' off-place
        # find, is less sure of the face's extent: it grows a little
        turned = (quarter != 0) | (self._turns.quarter_of(xyxy) > 0)
        if turned.any():
            xyxy = scaled_about_centre(xyxy, np.where(turned, self.TURNED_GROWTH, 1.0))
        return Faces.from_boxes(xyxy, score)

    def _look_at_tiles(self, image: np.ndarray, crops: list, around: np.ndarray | None,
                       width: int, height: int, night_crops: list = ()):
        """The full-frame pass, the track windows, the model on `crops` and the night model
        on `night_crops`: ((xyxy, score, roll), (canvases, found in each), found in each
        crop, then in each night crop)."""
        if self._helper is not None and (crops or night_crops):
            # the helper thread: the full-frame pass, then the track windows (they depend on
            # it), then a share of the tiles; this thread: the other tiles. The windows' count
            # is not known before the full-frame pass: at most what the tracks ask for.
            cap = self.cfg.max_windows
            asked = len(self.windows_for(width, height, around))
            asked = min(asked, cap) if cap else asked
            k = self._helper_share(len(crops), -(-asked // 4))

            def helper_work():
                full = self._full_frame_or_again(image)
                windows = self._windows_pass(image, around, full[0], self._helper_tiles)
                return full, windows, self._run_tiles_model(crops[:k], self._helper_tiles)

            helper = self._helper.submit(helper_work)
            mine = self._run_tiles_model(crops[k:])
            at_night = self._run_tiles_model(list(night_crops), self._night)
            (xyxy, score, roll), (canvases, in_windows), found = helper.result()
            found += mine
        else:
            xyxy, score, roll = self._full_frame_or_again(image)
            found = self._run_tiles_model(crops)
            at_night = self._run_tiles_model(list(night_crops), self._night)
            canvases, in_windows = self._windows_pass(image, around, xyxy)
        return (xyxy, score, roll), (canvases, in_windows), found + at_night

    def close(self) -> None:
        """Stop the helper thread (a detection hung in native code is left behind)."""
        if self._helper is not None:
            self._helper.shutdown(wait=False, cancel_futures=True)

