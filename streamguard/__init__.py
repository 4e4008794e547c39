"""streamguard: real-time video face anonymization that fails closed."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamguard")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"


def __getattr__(name: str):
    # the library API loads MediaPipe and PyAV; import it only when asked for
    if name in ("Anonymizer", "anonymize_frame"):
        from streamguard import api

        return getattr(api, name)
    if name in ("Config", "load_config"):
        from streamguard import config

        return getattr(config, name)
    raise AttributeError(f"module 'streamguard' has no attribute '{name}'")


__all__ = ["Anonymizer", "Config", "__version__", "anonymize_frame", "load_config"]
