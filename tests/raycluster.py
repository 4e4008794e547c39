"""A Ray cluster on loopback for tests and benchmarks: each node one `ray start --block`
process group, stopped by its own pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray

RAY = str(Path(sys.executable).with_name("ray"))
# a loopback test cluster: no auth token, and a dead node is noticed within ~3 s
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "1000",
               "RAY_health_check_failure_threshold": "3", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One `ray start --block` process group; stopped by its own pid only."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None):
        env = {**os.environ, **CLUSTER_ENV, **(env or {})}
        self.log = open(log, "wb")
        self.proc = subprocess.Popen([RAY, "start", "--block", "--num-cpus", "1", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()


def alive_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"])


def wait_nodes(n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while alive_nodes() != n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster did not reach {n} alive nodes")
        time.sleep(0.5)


class LoopbackCluster:
    """A head node (1 CPU) plus worker nodes (1 CPU each), all on this machine; the calling
    process is connected as the driver."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.address = f"127.0.0.1:{free_port()}"
        self.nodes: list[Node] = []
        self._old = {k: os.environ.get(k) for k in CLUSTER_ENV}

    def start(self) -> LoopbackCluster:
        os.environ.update(CLUSTER_ENV)
        port = self.address.rsplit(":", 1)[1]
        head = Node(["--head", "--port", port, "--include-dashboard=false",
                     "--disable-usage-stats"], self.logs / "head.log")
        self.nodes.append(head)
        deadline = time.monotonic() + 60
        while True:
            try:
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
                return self
            except Exception:
                if time.monotonic() > deadline or head.proc.poll() is not None:
                    self.stop()
                    raise
                time.sleep(1)

    def add_worker(self) -> Node:
        node = Node(["--address", self.address], self.logs / f"worker{len(self.nodes)}.log")
        self.nodes.append(node)
        wait_nodes(alive_nodes() + 1)
        return node

    def stop(self) -> None:
        try:
            ray.shutdown()
        finally:  # the nodes go whatever happened to the driver
            for node in reversed(self.nodes):
                node.kill(signal.SIGTERM)
        for k, v in self._old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
