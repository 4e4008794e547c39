"""One strict, typed config: `config.toml` -> validated, frozen models.

Unknown keys are rejected by name, every field is described and bounded, and the CLI overrides
dotted keys (`--set detect.tile_every=3`). Each stage receives its own section.
The repository's `config.toml` lists the defaults below with a comment each (a test keeps them
equal).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from streamguard.config.sections import (  # noqa: F401 - the sections are part of this API
    _Section,
    DetectConfig,
    TrackConfig,
    ProtectConfig,
    EncodeConfig,
    PipelineConfig,
    StreamConfig,
    LiveConfig,
    RayConfig,
)
from streamguard.errors import ConfigError


class Config(_Section):
    detect: DetectConfig = DetectConfig()
    track: TrackConfig = TrackConfig()
    protect: ProtectConfig = ProtectConfig()
    encode: EncodeConfig = EncodeConfig()
    pipeline: PipelineConfig = PipelineConfig()
    live: LiveConfig = LiveConfig()
    ray: RayConfig = RayConfig()
    streams: list[StreamConfig] = Field(default_factory=list,
                                        description="Cameras for `streamguard serve`.")

    @model_validator(mode="after")
    def _tracks_outlive_tiled_passes(self) -> Config:
        if self.detect.tile_every > self.track.max_missed + 1:
            raise ValueError(
                f"track.max_missed ({self.track.max_missed}) must be at least "
                f"detect.tile_every - 1 ({self.detect.tile_every - 1}), or faces only the tiled "
                "pass finds would go unprotected between tiled passes"
            )
        return self

    @model_validator(mode="after")
    def _skipped_frames_are_looked_back(self) -> Config:
        skipped = self.detect.every - 1
        short = [f"{name} ({value})" for name, value in (
            ("track.lookback", self.track.lookback), ("live.lookback", self.live.lookback))
            if value < skipped]
        if short:
            raise ValueError(
                f"detect.every = {self.detect.every} skips {skipped} frame(s) between "
                f"detections: {' and '.join(short)} must be at least {skipped}, or a face "
                "appearing on a skipped frame goes out bare until the next detection")
        return self

    @model_validator(mode="after")
    def _budgeted_frames_are_looked_back(self) -> Config:
        skipped = self.live.budget_max_every - 1
        if self.live.frame_budget and self.live.lookback < skipped:
            raise ValueError(
                f"live.budget_max_every = {self.live.budget_max_every} may skip {skipped} "
                f"frame(s) between detections: live.lookback ({self.live.lookback}) must be at "
                f"least {skipped}")
        if self.pipeline.realtime and self.track.lookback < skipped:
            raise ValueError(
                f"pipeline.realtime may skip {skipped} frame(s) between detections: "
                f"track.lookback ({self.track.lookback}) must be at least {skipped}")
        return self

    @model_validator(mode="after")
    def _segments_see_the_lookback(self) -> Config:
        if self.ray.context_frames < self.track.lookback:
            raise ValueError(
                f"ray.context_frames ({self.ray.context_frames}) must be at least track.lookback "
                f"({self.track.lookback}), or a face first seen just after a cut would miss "
                "its look-back frames before it"
            )
        return self


def format_validation_error(err: ValidationError, origin: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown config key '{key}'"
    return f"{origin}: {key}: {first['msg']}"


def parse_value(text: str) -> Any:
    """Parse an override value as TOML (numbers, bools, arrays, quoted strings) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _known_key(model: type[BaseModel], parts: list[str]) -> bool:
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            # a leaf; a dict-valued leaf (encode.options) accepts any sub-key
            return i == len(parts) - 1 or ann == dict[str, str]
    return False


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key=value` overrides with dotted keys; unknown keys are rejected by name."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        parts = key.split(".")
        if not _known_key(Config, parts):
            raise ConfigError(f"--set: unknown config key '{key}'")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set: '{key}' is not a section")
        node[parts[-1]] = parse_value(raw.strip())
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a TOML config (or the defaults) and apply `--set` overrides."""
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if overrides:
        data = apply_overrides(data, overrides)
        origin = f"{origin} + --set"
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None
