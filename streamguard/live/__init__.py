"""`streamguard serve`: live camera feeds in, only protected frames out.

`stream` (one camera's threads, and `serve`), `pool` (detection spread over worker processes)
and `worker` (the worker process). Inputs and outputs live in `streamguard.io`, metrics in
`streamguard.report`.
"""

from streamguard.live.stream import LiveStream, serve

__all__ = ["LiveStream", "serve"]
