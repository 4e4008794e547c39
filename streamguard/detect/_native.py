"""Native libraries' chatter kept off stderr."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

_stderr_lock = threading.Lock()


@contextlib.contextmanager
def native_stderr_silenced():
    """Silence stderr at the file-descriptor level: LiteRT's C++ logging ignores GLOG settings
    and prints model-loading chatter on create, first call and close. Python-level logging
    from other threads during these few milliseconds is lost too, so keep the window short."""
    with _stderr_lock:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
