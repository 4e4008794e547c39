"""Finding and joining the Ray cluster for `anonymize --ray`: the address rules, a fast
reachability probe, and the one-line errors when Ray is missing or the cluster is not there."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from streamguard.errors import ClusterError, MissingDependencyError

log = logging.getLogger(__name__)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "--ray needs Ray: pip install 'streamguard[ray]' (or pip install ray==2.60.0)"
        ) from None
    return ray


def resolve_address(address: str | None) -> str:
    """None/"" = RAY_ADDRESS if set, else a new local cluster; "auto" = RAY_ADDRESS or the
    cluster `ray start` runs on this machine; "local"; or HOST:PORT."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if not address:
        return env or "local"
    if address != "auto":
        return address
    if env:
        return env
    current = Path(os.environ.get("RAY_TMPDIR", "/tmp/ray")) / "ray_current_cluster"
    try:
        return current.read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        raise ClusterError("--ray=auto: no Ray cluster runs here (start one with `ray start "
                           "--head`, or give --ray=HOST:PORT or --ray=local)") from None


def connect(address: str | None) -> Any:
    """Connect to the cluster `resolve_address` names; an unreachable one fails in seconds
    (Ray itself would retry for minutes, e.g. on a stale ray_current_cluster file)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    target = resolve_address(address)
    if target != "local":
        _probe(target)
    try:
        ray.init(address=target, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {target}: "
                           f"{first_line(exc)}") from None
    return ray


def _probe(address: str, timeout_s: float = 5.0) -> None:
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address '{address}' is not HOST:PORT, 'auto' or 'local'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: "
                           f"{exc.strerror or exc}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
