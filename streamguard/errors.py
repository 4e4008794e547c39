"""The streamguard error family.

Every error a user can cause is a `StreamguardError` that also inherits the matching builtin,
so callers can catch either. Each class carries the process exit code the CLI uses for it:
distinct codes let scripts tell "wrong path" from "broken file" from "cannot write output".
"""


class StreamguardError(Exception):
    """Base of every error streamguard raises on purpose."""

    exit_code = 1


class ConfigError(StreamguardError, ValueError):
    """A config file, key or value is invalid."""

    exit_code = 2


class InputNotFoundError(StreamguardError, FileNotFoundError):
    """An input path does not exist."""

    exit_code = 3


class NoVideosError(StreamguardError, FileNotFoundError):
    """A folder given as input holds no video files."""

    exit_code = 4


class NotAVideoError(StreamguardError, ValueError):
    """The input is empty, not a media file, or has no video stream."""

    exit_code = 5


class CorruptMediaError(StreamguardError, ValueError):
    """The input is a media file but is truncated or damaged."""

    exit_code = 6


class UnsupportedCodecError(StreamguardError, ValueError):
    """No decoder (input) or encoder (output) exists for the codec."""

    exit_code = 7


class OutputError(StreamguardError, OSError):
    """The output path cannot be written."""

    exit_code = 8


class ModelUnavailableError(StreamguardError, RuntimeError):
    """A model file or trained weights are missing, corrupt or not yet shipped."""

    exit_code = 9


class PipelineError(StreamguardError, RuntimeError):
    """A pipeline stage failed or stalled; no output was finalized."""

    exit_code = 10


class EngineError(StreamguardError, RuntimeError):
    """An inference backend failed to build or load."""

    exit_code = 11


class MissingDependencyError(StreamguardError, ImportError):
    """An optional extra (e.g. `streamguard[ray]`) is needed for what was asked."""

    exit_code = 12


class ClusterError(StreamguardError, RuntimeError):
    """The Ray cluster cannot be reached, or lost every worker."""

    exit_code = 13
