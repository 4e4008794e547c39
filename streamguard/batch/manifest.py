"""A batch's memory of finished work: rerun a job and nothing finished is redone.

One JSON file in the output folder (`.streamguard-manifest.json`) with, per output: the input's
and the output's SHA-256, size and modification time, and a digest of every setting that
changes the output (detection, tracking, protection, encoding, streamguard's version). An
output is skipped only when all of these still match (a file with its recorded size and
modification time is not re-hashed): a changed input, a changed setting, an edited or missing
output is done again. The file is rewritten atomically after each finished output, so an interrupted
job loses at most the outputs in flight (which are never left under their final names).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from streamguard import __version__
from streamguard.assets import sha256_file
from streamguard.config import Config

NAME = ".streamguard-manifest.json"
def settings_digest(cfg: Config) -> str:
    """What decides an output's pixels (not how the work is spread: pipeline, ray, live)."""
    relevant = {k: cfg.model_dump(mode="json")[k] for k in ("detect", "track", "protect", "encode")}
    relevant["version"] = __version__
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


class Manifest:
    def __init__(self, folder: str | Path, cfg: Config):
        self.path = Path(folder) / NAME
        self.settings = settings_digest(cfg)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._entries = dict(data.get("outputs", {}))
            except (json.JSONDecodeError, OSError, AttributeError):
                self._entries = {}  # unreadable: everything is simply done again

    def _key(self, dst: Path) -> str:
        return os.path.relpath(dst.resolve(), self.path.parent.resolve())

    def finished(self, src: Path, dst: Path) -> bool:
        """True when `dst` is a finished output of this exact input and these settings.

        Files whose size and modification time are as recorded are taken as unchanged (a rerun
        over a large archive does not re-read it); any other file is hashed, so a touched but
        identical file still counts as finished and a changed one does not."""
        entry = self._entries.get(self._key(dst))
        if not entry or entry.get("settings") != self.settings or not dst.is_file():
            return False
        si, so = src.stat(), dst.stat()
        if si.st_size != entry.get("input_size") or so.st_size != entry.get("output_size"):
            return False
        if (si.st_mtime_ns, so.st_mtime_ns) == (entry.get("input_mtime_ns"),
                                                entry.get("output_mtime_ns")):
            return True
        return (sha256_file(src) == entry.get("input_sha256")
                and sha256_file(dst) == entry.get("output_sha256"))

    def record(self, src: Path, dst: Path, frames: int) -> None:
        si, so = src.stat(), dst.stat()
        entry = {
            "input": str(src), "input_size": si.st_size, "input_mtime_ns": si.st_mtime_ns,
            "input_sha256": sha256_file(src), "output_size": so.st_size,
            "output_mtime_ns": so.st_mtime_ns, "output_sha256": sha256_file(dst),
            "settings": self.settings, "frames": frames,
        }
        with self._lock:
            self._entries[self._key(dst)] = entry
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        doc = {"version": 1, "outputs": self._entries}
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
