"""The console around a command: FFmpeg's and the native libraries' stderr chatter filtered
out, and log records as JSON lines (`--log-format json`). Nothing here prints: `cli` does."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading

# native libraries' chatter (MediaPipe/LiteRT via absl and glog), shown only with -v
_NATIVE_NOISE = re.compile(rb"^(WARNING: Logging before InitGoogle\(\)|[IWE]\d{4} [\d:. ]+\d+ "
                           rb"\S+\.cc:\d+\]|INFO: \[\S+\.cc:\d+\])")


@contextlib.contextmanager
def native_noise_filtered(enabled: bool):
    """Route file descriptor 2 through a thread that drops the native libraries' log lines
    and passes everything else (our one-line errors, warnings, tracebacks) on unchanged. Such
    lines come at unpredictable moments (LiteRT logs an alignment notice at the first input it
    has to copy), so silencing around calls cannot catch them all."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def forward() -> None:
        # native loggers write whole lines; a piece without its newline (a progress bar's
        # "\r" update) is passed on at once, not held back
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                pieces = chunk.split(b"\n")
                kept = [p + b"\n" for p in pieces[:-1] if not _NATIVE_NOISE.match(p)]
                if pieces[-1] and not _NATIVE_NOISE.match(pieces[-1]):
                    kept.append(pieces[-1])
                if kept:
                    os.write(original, b"".join(kept))

    thread = threading.Thread(target=forward, name="streamguard-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer is gone (unless a child holds it)
        thread.join(2.0)
        os.close(original)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
               "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)
