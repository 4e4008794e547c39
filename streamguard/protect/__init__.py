"""Face protection: `build_protector(cfg.protect)` gives the `(image, faces) -> image`
function of the configured mode; `protect_whole_frame` is the fail-closed path.

`pixelize` is the one mosaic operator (shared with training), `modes` the mode registry with
mosaic / blur / solid, `adversarial` the shipped generators on top of the mosaic.
"""

from __future__ import annotations

from streamguard.config import ProtectConfig
from streamguard.protect.locked import TrackLock
from streamguard.protect.modes import (
    MODES, CellProtector, Protector, protect_whole_frame, register_mode,
)


def _load_adversarial() -> None:
    # registered on first use: the adversarial modes load torch, which mosaic users never need
    from streamguard.protect import adversarial  # noqa: F401


def available_modes() -> list[str]:
    _load_adversarial()
    return MODES.names()


def build_protector(cfg: ProtectConfig) -> Protector:
    """The protection function of `cfg.mode`; modes with weights refuse to build without them.

    Stateless: every call samples its faces anew. Video goes through `build_video_protector`."""
    if cfg.mode.startswith("adversarial"):
        _load_adversarial()
    return MODES.lookup(cfg.mode)(cfg)


def build_video_protector(cfg: ProtectConfig) -> Protector:
    """The protector for consecutive frames of one video: with `lock = "track"` the mosaic
    modes keep one grid and held colours per face track (`protect.locked`); call it in
    display order, and `reset()` it (when it has one) between videos."""
    protector = build_protector(cfg)
    if cfg.lock == "track" and isinstance(protector, CellProtector):
        return TrackLock(protector, cfg)
    return protector


__all__ = ["CellProtector", "Protector", "TrackLock", "available_modes", "build_protector",
           "build_video_protector", "protect_whole_frame", "register_mode"]
