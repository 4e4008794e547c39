"""The `streamguard` command. The only module that prints.

Every error a user can cause ends in one line on stderr (`streamguard: error: ...`) and the
error class's exit code; tracebacks are for bugs only (and are still turned into one line
unless STREAMGUARD_DEBUG=1).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from streamguard import __version__
from streamguard.console import JsonFormatter, native_noise_filtered
from streamguard.errors import InputNotFoundError, NoVideosError, OutputError, StreamguardError
from streamguard.progress import Progress

IMAGE_EXTENSIONS = frozenset(".jpg .jpeg .png .gif .bmp .webp".split())
EXIT_INTERRUPTED = 130  # SIGINT; SIGTERM and SIGHUP exit 128 + their number (143, 129)
EXIT_INTERNAL = 70


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in streamguard's one-line form (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"streamguard: error: {message} (see {self.prog} --help)\n")


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (`timeout`, `docker stop`, systemd, a closed terminal): handled like
    Ctrl-C, so the run stops and deletes its partial output."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> None:
    import signal

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="streamguard",
        description="Protect every face in video: tracked, fail-closed mosaics.",
    )
    parser.add_argument("--version", action="version", version=f"streamguard {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (and third-party native logs, silenced otherwise)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="json: one JSON object per line on stderr (logs, progress, errors)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    anon = sub.add_parser("anonymize", help="protect faces in video files or folders")
    anon.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or folders")
    anon.add_argument("-o", "--output", metavar="OUT",
                      help="output file (one input) or folder; default: next to each input, "
                           "named NAME_anonymized.EXT")
    anon.add_argument("--mode", choices=["mosaic", "adversarial-block", "adversarial-identity",
                                         "adversarial-pixel", "blur", "solid"],
                      help="protection mode (config protect.mode)")
    anon.add_argument("--blocks", type=int, help="mosaic blocks across a face (protect.blocks)")
    anon.add_argument("--config", metavar="TOML", help="config file (default: built-in defaults)")
    anon.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE", help="override a config key, e.g. detect.tile_every=3")
    anon.add_argument("--report", metavar="JSON", help="write a run report")
    anon.add_argument("--no-progress", action="store_true", help="no progress bar")
    anon.add_argument("--on-corrupt", choices=["fail", "skip"],
                      help="a damaged video packet fails the file (default) or is skipped, the "
                           "frames that still decode kept and protected (pipeline.on_corrupt)")
    anon.add_argument("--realtime", action="store_true", help="keep up with the input's frame "
                      "rate: detect on fewer frames when detection is slower (pipeline.realtime)")
    anon.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                      help="run on a Ray cluster: --ray (RAY_ADDRESS, else a new local one), "
                           "--ray=auto (RAY_ADDRESS or the cluster `ray start` runs here), "
                           "--ray=local or --ray=HOST:PORT; long "
                           "videos are split into segments; finished outputs are skipped on "
                           "rerun (needs streamguard[ray])")

    srv = sub.add_parser("serve", help="protect live camera feeds until stopped")
    srv.add_argument("--config", metavar="TOML", help="config with [[streams]] tables")
    srv.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    srv.add_argument("--input", help="one stream: rtsp://, /dev/videoN or a file")
    srv.add_argument("--name", default="cam", help="one stream: its name")
    srv.add_argument("--publish", help="one stream: RTSP URL to publish to")
    srv.add_argument("--zmq", help="one stream: ZeroMQ PUB endpoint to bind")
    srv.add_argument("--record", help="one stream: folder for rolling mp4 segments")
    srv.add_argument("--loop", action="store_true", help="one stream: replay a file input")
    srv.add_argument("--duration", type=float, default=0, help="stop after N seconds (0: never)")
    srv.add_argument("--workers", type=int, help="processes protecting each stream (live.workers)")
    srv.add_argument("--http-port", type=int, metavar="PORT",
                     help="status page, JSON, previews and /metrics on this port (live.http_port)")
    srv.add_argument("--mode", choices=["mosaic", "adversarial-block", "adversarial-identity",
                                        "adversarial-pixel", "blur", "solid"])

    eng = sub.add_parser("engine", help="build, list or clear cached inference engines")
    eng.add_argument("action", choices=["build", "list", "clear"])
    eng.add_argument("names", nargs="*", help="shipped weights to build (default: all)")
    eng.add_argument("--backend", default="auto",
                     help="auto, torch, onnxruntime, compile or tensorrt")
    eng.add_argument("--device", default="cpu", help="cpu or cuda")
    eng.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])

    doc = sub.add_parser("doctor", help="check model files, weights, engines and the config; "
                                        "exit 9 when something is missing")
    doc.add_argument("--config", metavar="TOML", help="config to check (default: built-in)")

    fetch = sub.add_parser("fetch", help="download and verify model files (setup only)")
    fetch.add_argument("names", nargs="*", help="asset names (default: all)")
    for command, run in ((anon, _anonymize), (srv, _serve), (eng, _engine), (doc, _doctor),
                         (fetch, _fetch)):
        command.set_defaults(run=run)  # each command names its handler: no string dispatch
    return parser


_log_format = "text"


def say(level: str, message: str) -> None:
    """The run's last word on stderr (an error, a stop): one line, text or JSON."""
    if _log_format == "json":
        print(json.dumps({"level": level, "logger": "streamguard", "message": message},
                         ensure_ascii=False), file=sys.stderr)
    else:
        print(f"streamguard: {level + ': ' if level == 'error' else ''}{message}",
              file=sys.stderr)


def configure_logging(verbose: int, fmt: str) -> None:
    global _log_format
    _log_format = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else logging.Formatter("streamguard: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING - 10 * min(verbose, 2))
    # progress lines (when stderr is not a terminal) show at the default level
    logging.getLogger("streamguard.progress").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    configure_logging(args.verbose, args.log_format)
    with native_noise_filtered(args.verbose == 0):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.run is _anonymize:
            _stop_on_signals()  # serve stops on them by itself
        return args.run(args)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Stopped):
            import signal

            name = signal.Signals(exc.signum).name
            say("stopped", f"stopped by {name}; no partial output was kept")
            return 128 + exc.signum
        say("stopped", "interrupted; no partial output was kept")
        return EXIT_INTERRUPTED
    except StreamguardError as exc:
        say("error", str(exc))
        return exc.exit_code
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("STREAMGUARD_DEBUG"):
            raise
        say("internal error", f"internal error: {type(exc).__name__}: {exc} "
            "(STREAMGUARD_DEBUG=1 shows the traceback)")
        return EXIT_INTERNAL
    return 2


def _fetch(args: argparse.Namespace) -> int:
    from streamguard.assets import cache_dir, fetch

    paths = fetch(args.names or None)
    print(f"{len(paths)} file(s) verified in {cache_dir()}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """What a run needs, checked: model files (checksums), shipped weights, engines, hardware,
    RTSP support, the config in force. Exit 9 when a file is missing or corrupt."""
    import av

    from streamguard.assets import cache_dir, check
    from streamguard.config import load_config

    bad = 0
    print(f"streamguard {__version__}, model files in {cache_dir()}")
    for name, path, status in check():
        bad += status != "ok"
        print(f"  {status:<8} {name}")
    from streamguard.errors import ModelUnavailableError
    from streamguard.models.weights import available, load_shipped

    print("shipped weights:")
    for name in available():
        try:
            load_shipped(name)
            status = "ok"
        except ModelUnavailableError as exc:
            status, bad = f"BAD ({exc})", bad + 1
        print(f"  {status:<8} {name}")
    import torch

    from streamguard.backends import available_backends

    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    engines = ", ".join(available_backends())
    print(f"hardware: {os.cpu_count()} CPUs, CUDA: {cuda}; torch {torch.__version__}, "
          f"PyAV {av.__version__}; engine backends registered: {engines}")
    rtsp = "rtsp" in av.formats_available
    print(f"RTSP input/publish (FFmpeg rtsp): {'yes' if rtsp else 'NO'}")
    from streamguard.io.encode import gpu_codecs

    print(f"GPU video codecs (NVDEC decode / NVENC encode, usable here): {gpu_codecs()}")
    cfg = load_config(args.config)
    print(f"detector: {cfg.detect.detector} on {cfg.detect.runtime} (device "
          f"{cfg.detect.device}); encoder {cfg.encode.codec}")
    print(f"config: mode {cfg.protect.mode}, {cfg.protect.blocks} blocks, tiles every "
          f"{cfg.detect.tile_every} frames, look-back {cfg.track.lookback} (live "
          f"{cfg.live.lookback}), fail closed: {cfg.protect.fail_closed}")
    if bad:
        say("error", f"{bad} file(s) missing or corrupt; run `streamguard fetch` "
            "(or `make setup`)")
        return 9
    return 0


def _serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from pydantic import ValidationError

    from streamguard.config import StreamConfig, format_validation_error, load_config
    from streamguard.errors import ConfigError
    from streamguard.io.encode import check_options
    from streamguard.live.stream import serve

    overrides = list(args.overrides)
    if args.mode:
        overrides.append(f'protect.mode="{args.mode}"')
    if args.workers is not None:
        overrides.append(f"live.workers={args.workers}")
    if args.http_port is not None:
        overrides.append(f"live.http_port={args.http_port}")
    cfg = load_config(args.config, overrides)
    if args.input:
        try:
            one = StreamConfig(name=args.name, input=args.input, publish=args.publish,
                               zmq=args.zmq, record_dir=args.record, loop=args.loop)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "serve")) from None
        cfg = cfg.model_copy(update={"streams": [*cfg.streams, one]})
    if not cfg.streams:
        raise ConfigError("nothing to serve: give --input or [[streams]] in --config")
    check_options(cfg.live.encode, "live.encode")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration:
        threading.Timer(args.duration, stop.set).start()
    stats = serve(cfg, stop)
    print(json.dumps(stats))
    return 0


def _engine(args: argparse.Namespace) -> int:
    from streamguard.backends import clear_cache, list_cache
    from streamguard.backends.base import engines_dir

    if args.action == "clear":
        print(f"removed {clear_cache()} file(s) from {engines_dir()}")
        return 0
    if args.action == "list":
        entries = list_cache()
        for e in entries:
            print(f"{e.get('file', '?'):<60} {e.get('backend', '?'):<12} {e.get('device', '')}")
        print(f"{len(entries)} engine(s) in {engines_dir()}")
        return 0
    from streamguard.models import model_kind
    from streamguard.models.weights import available, card
    from streamguard.protect.adversarial import cells_engine, image_engine

    for name in args.names or available():
        kind = model_kind(card(name)["model_args"]["name"])
        if name.startswith("blockwise"):
            engine = cells_engine(name, args.backend, args.device)
        else:
            engine = image_engine(name, args.backend, args.device, args.precision)
        print(f"{name} ({kind}): {engine.backend} {engine.info.get('file', '')}")
    return 0


def plan_outputs(inputs: list[str], output: str | None) -> list[tuple[Path, Path]]:
    """(input, output) pairs. Folders are mirrored into the output folder."""
    from streamguard.io.encode import STILL_IMAGES
    from streamguard.io.source import VIDEO_EXTENSIONS, find_videos

    pairs: list[tuple[Path, Path]] = []
    out = Path(output) if output else None
    images_in = all(Path(p).suffix.lower() in IMAGE_EXTENSIONS for p in inputs)
    if (out is not None and out.suffix.lower() in STILL_IMAGES and not out.is_dir()
            and not (len(inputs) == 1 and images_in)):
        kinds = ", ".join(sorted(VIDEO_EXTENSIONS))
        raise OutputError(f"{out}: a still image holds one frame: give a video ({kinds}), "
                          ".gif or a folder for a video input")
    single_file_out = (
        out is not None and len(inputs) == 1 and not Path(inputs[0]).is_dir()
        and out.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS and not out.is_dir()
    )
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputNotFoundError(f"{path}: no such file or folder")
        if path.is_dir():
            root = (out / path.resolve().name) if out else path.with_name(
                f"{path.resolve().name}_anonymized")
            # an output folder inside the input folder holds earlier outputs: never inputs
            videos = [v for v in find_videos(path)
                      if not v.resolve().is_relative_to(root.resolve())]
            if not videos:
                raise NoVideosError(f"{path}: folder holds no video files "
                                    f"({', '.join(sorted(VIDEO_EXTENSIONS))})")
            pairs += [(v, root / v.relative_to(path)) for v in videos]
        elif single_file_out:
            pairs.append((path, out))
        elif out is not None:
            pairs.append((path, out / path.name))
        else:
            pairs.append((path, path.with_name(f"{path.stem}_anonymized{path.suffix}")))
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        key = dst.resolve()
        if key in seen:
            raise OutputError(f"{dst}: two inputs ({seen[key]} and {src}) map to this output")
        if key == src.resolve():
            raise OutputError(f"{dst}: output would overwrite the input")
        seen[key] = src
    return pairs


def _anonymize(args: argparse.Namespace) -> int:
    from streamguard.config import load_config
    from streamguard.pipeline import anonymize_file
    from streamguard.io.encode import check_options
    from streamguard.report import check_report_path, write_reports

    overrides = list(args.overrides)
    for key, value in (("protect.mode", args.mode), ("protect.blocks", args.blocks),
                       ("pipeline.on_corrupt", args.on_corrupt),
                       ("pipeline.realtime", args.realtime or None)):
        if value is not None:  # the flags are config keys: given, they override the config
            overrides.append(f"{key}={json.dumps(value)}")
    cfg = load_config(args.config, overrides)
    pairs = plan_outputs(args.inputs, args.output)
    if args.report:
        check_report_path(args.report)  # before any work: a run that cannot report fails
    check_options(cfg.encode)
    show = not args.no_progress
    if args.ray is not None:
        return _anonymize_ray(args, cfg, pairs, show)
    reports, first_error = [], None
    for src, dst in pairs:
        progress = Progress(src.name, enabled=show)
        try:
            report = anonymize_file(src, dst, cfg, on_progress=progress.update)
        except StreamguardError as exc:
            progress.close()
            if len(pairs) == 1:
                raise
            say("error", str(exc))
            first_error = first_error or exc
            continue
        progress.close()
        reports.append(report)
        closed = _closed(report)
        print(f"{src} -> {dst}: {report.frames} frames, {report.tracks} face tracks"
              f"{closed}, {report.fps:.1f} fps")
    if args.report:
        write_reports(args.report, reports, undo=[r.output for r in reports])
    return first_error.exit_code if first_error else 0



def _closed(report) -> str:
    """The summary line's note of frames protected whole, and why when data was lost."""
    if not report.failed_closed:
        return ""
    damaged = (f" ({report.frames_damaged} damaged by lost video data)"
               if report.frames_damaged else "")
    return f", {report.failed_closed} failed closed{damaged}"


def _anonymize_ray(args: argparse.Namespace, cfg, pairs: list[tuple[Path, Path]],
                   show: bool) -> int:
    from streamguard.batch.cluster import import_ray
    from streamguard.batch.distributed import anonymize_on_ray
    from streamguard.report import write_reports

    import_ray()  # a missing extra is reported before anything else happens
    bar = Progress("cluster", enabled=show)

    def progress(files_done: int, files: int, frames_done: int, frames: int) -> None:
        bar.update(frames_done, frames, f"{files_done}/{files} files")

    def on_file(result) -> None:
        if result.skipped:
            print(f"{result.src} -> {result.dst}: already done (manifest), skipped")
        elif result.error is not None:
            say("error", str(result.error))
        else:
            r = result.report
            closed = _closed(r)
            print(f"{result.src} -> {result.dst}: {r.frames} frames, {r.tracks} face tracks"
                  f"{closed}, {r.fps:.1f} fps")

    try:
        summary = anonymize_on_ray(pairs, cfg, args.ray or None, on_progress=progress,
                                   on_file=on_file)
    finally:
        bar.close()
    done = [f for f in summary.files if f.report]
    print(f"cluster: {len(done)} done, {sum(f.skipped for f in summary.files)} skipped, "
          f"{sum(f.error is not None for f in summary.files)} failed; {summary.segments} "
          f"segments on {summary.workers} workers / {summary.nodes} nodes, "
          f"{summary.retried} rerun; {summary.fps:.1f} fps")
    if args.report:
        write_reports(args.report, [f.report for f in done], extra={"cluster": summary.to_dict()},
                      undo=[str(f.dst) for f in done])
    errors = [f.error for f in summary.files if f.error is not None]
    return errors[0].exit_code if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
