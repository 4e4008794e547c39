"""Encoder settings and the frame -> encoder hand-over, one place for every output.

`add_video_stream` decides every encoder setting, so a file, a segment encoded on another
machine, an RTSP publish and a recording all get them from here; `to_video_frame` is the one
conversion of a protected RGB frame into what an encoder takes (padded to an encodable size).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from streamguard.config import EncodeConfig
from streamguard.errors import ConfigError, OutputError, UnsupportedCodecError
from streamguard.frames import PlanarImage
from streamguard.io.colour import RANGE_FULL, RANGE_LIMITED, Colour, rgb_to_yuv420
from streamguard.io.decode import nvdec_usable
from streamguard.io.source import SourceInfo

log = logging.getLogger(__name__)

_NVENC = {"h264_nvenc": "libx264", "hevc_nvenc": "libx265"}
# output extensions whose muxer FFmpeg does not guess from the name
_FORMATS = {".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".m4v": "mp4",
            ".jpg": "image2", ".jpeg": "image2", ".png": "image2", ".bmp": "image2",
            ".webp": "webp", ".gif": "gif"}
# image outputs (an image in, an image out; a GIF holds every frame): encoder, pixel format
IMAGE_ENCODERS = {".jpg": ("mjpeg", "yuvj444p"), ".jpeg": ("mjpeg", "yuvj444p"),
                  ".png": ("png", "rgb24"), ".bmp": ("bmp", "bgr24"),
                  ".webp": ("libwebp", "yuv420p"), ".gif": ("gif", "rgb8")}
STILL_IMAGES = frozenset(ext for ext in IMAGE_ENCODERS if ext != ".gif")


def container_format(path: Path) -> str | None:
    """The FFmpeg muxer name for an output path (None: FFmpeg guesses from the extension)."""
    return _FORMATS.get(path.suffix.lower())


def container_options(path: Path) -> dict[str, str]:
    """Muxer options: a still image is one file, not a numbered sequence."""
    return {"update": "1"} if container_format(path) == "image2" else {}


def resolve_encoder(name: str) -> str:
    """The encoder to use: NVENC only when asked and usable, else its software twin."""
    if name not in av.codecs_available:
        raise UnsupportedCodecError(f"encoder '{name}' is not available in this FFmpeg build")
    try:
        codec = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        raise UnsupportedCodecError(f"'{name}' is not an encoder") from None
    if codec.type != "video":
        raise UnsupportedCodecError(f"'{name}' is not a video encoder")
    if name in _NVENC and not _nvenc_usable(name):
        log.warning("%s is not usable here (no NVIDIA GPU/driver); using %s", name, _NVENC[name])
        return _NVENC[name]
    return name


def check_options(cfg: EncodeConfig, key: str = "encode") -> None:
    """Refuse encoder options the encoder does not know, by name, before any work (FFmpeg
    ignores them silently): a 16 x 16 encoder is opened with them and whatever it left
    unused is named."""
    if not cfg.options:
        return
    codec = resolve_encoder(cfg.codec)
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.time_base = 16, 16, Fraction(1, 30)
    ctx.pix_fmt = cfg.pix_fmt
    ctx.options = dict(cfg.options)
    try:
        ctx.open()
    except (av.error.FFmpegError, ValueError) as exc:
        raise ConfigError(f"{key}.options {dict(cfg.options)}: {codec} refuses them "
                          f"({exc})") from None
    unused = sorted(ctx.options)
    if unused:
        raise ConfigError(f"{key}.options.{unused[0]}: {codec} has no such option")


def gpu_codecs() -> str:
    """Which NVIDIA decoders and encoders this FFmpeg has, and which open here."""
    found = []
    for name in ("h264_cuvid", "hevc_cuvid", "h264_nvenc", "hevc_nvenc"):
        if name not in av.codecs_available:
            continue
        usable = _nvenc_usable(name) if name.endswith("_nvenc") else nvdec_usable(name)
        found.append(f"{name} ({'usable' if usable else 'built in, no GPU/driver'})")
    return ", ".join(found) or "none in this FFmpeg build"


def _nvenc_usable(name: str) -> bool:
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 30)
        ctx.open()
        return True
    except Exception as exc:  # any failure to open the GPU encoder means "not usable"
        log.debug("NVENC probe failed: %s", exc)
        return False


def encodable_size(pix_fmt: str, width: int, height: int) -> tuple[int, int]:
    """The smallest size >= (width, height) the pixel format can hold: chroma-subsampled
    formats (yuv420p: both sides, yuv422p: the width) need even sides."""
    try:
        fmt = av.VideoFormat(pix_fmt, 4, 4)  # 4 x 4 shows the subsampling (1 x 1 hides it)
    except (ValueError, av.error.FFmpegError):
        raise UnsupportedCodecError(f"unknown pixel format '{pix_fmt}'") from None
    chroma = [c for c in fmt.components if c.is_chroma]
    step_w = 2 if chroma and chroma[0].width < 4 else 1
    step_h = 2 if chroma and chroma[0].height < 4 else 1
    # a 1 px side rounds up to 2 too (a 1x1 video failed to open the encoder: exit 8)
    return -(-width // step_w) * step_w, -(-height // step_h) * step_h


def pad_to(image: Any, width: int, height: int) -> Any:
    """Grow an RGB frame to (width, height) by repeating its last column/row (odd sizes)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    return np.pad(image, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


def _yuv(pix_fmt: str) -> bool:
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        return False
    return not fmt.is_rgb and pix_fmt.startswith(("yuv", "nv", "p0", "p2", "p4"))


def _range(pix_fmt: str) -> int:
    return RANGE_FULL if pix_fmt.startswith("yuvj") else RANGE_LIMITED


def tag_stream(stream: Any, pix_fmt: str, colour: Colour) -> None:
    """The input's colour tags on a YUV encoder (the range: the output format's)."""
    if _yuv(pix_fmt):
        colour.tag(stream.codec_context, _range(pix_fmt))


def to_video_frame(image: np.ndarray, width: int, height: int, pts: int | None,
                   time_base: Fraction | None, pix_fmt: str = "yuv420p",
                   colour: Colour = Colour()) -> av.VideoFrame:
    """A protected frame as the encoder takes it: padded to (width, height), timed, in the
    encoder's `pix_fmt`, converted back with the matrix it was decoded with (`colour`, the
    input's tags, which the frame carries). A PlanarImage of that size goes as its planes (no
    conversion); RGB is converted here (yuv420p: `rgb_to_yuv420`; other YUV formats:
    swscale told the matrix and range; RGB formats: left to the encoder)."""
    if isinstance(image, PlanarImage) and image.shape[:2] == (height, width):
        vf = image.to_video_frame()
        colour.tag(vf)
    else:
        rgb = pad_to(np.asarray(image), width, height)
        if pix_fmt == "yuv420p":
            vf = av.VideoFrame.from_ndarray(rgb_to_yuv420(rgb, colour), format="yuv420p")
            colour.tag(vf)
        elif _yuv(pix_fmt):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format=pix_fmt, dst_colorspace=colour.swscale_colorspace,
                dst_color_range=_range(pix_fmt))
            colour.tag(vf, _range(pix_fmt))
        else:
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    vf.pts = pts
    if time_base is not None:
        vf.time_base = time_base
    return vf


def add_video_stream(container: Any, path: Path, codec: str, info: SourceInfo,
                     cfg: EncodeConfig, width: int, height: int, rotation: int = 0,
                     time_base: Fraction | None = None) -> tuple[Any, str]:
    """Add the protected video stream to `container`: returns (stream, codec actually used).

    One place decides every encoder setting, so packets encoded elsewhere (`PacketEncoder`, on
    another machine) carry exactly the headers of the stream they are muxed into.
    """
    ext = path.suffix.lower()
    rate = info.average_rate or 30
    if ext in IMAGE_ENCODERS:
        return _add_image_stream(container, ext, rate, width, height,
                                 time_base or info.time_base)
    if ext == ".avi" and codec == "libx264":
        # FFmpeg reads H.264-in-AVI back one frame late (it guesses pts from dts); AVI's
        # native MPEG-4 Part 2 keeps every timestamp
        log.info("%s: AVI output: encoding MPEG-4 Part 2 instead of H.264", path)
        codec = "mpeg4"
    try:
        video = container.add_stream(codec, rate=rate)
    except ValueError as exc:
        if ext != ".webm":
            raise OutputError(f"{path}: {exc}; choose another encode.codec or an .mkv "
                              "output") from None
        # WebM holds only VP8/VP9/AV1: keep the user's container, switch the codec
        log.warning("%s: WebM cannot hold %s; encoding VP9 instead (slower)", path, codec)
        codec = "libvpx-vp9"
        video = container.add_stream(codec, rate=rate)
    padded = encodable_size(cfg.pix_fmt, width, height)
    if padded != (width, height):
        log.warning("%s: %dx%d frames cannot be encoded as %s; padded to %dx%d by repeating the "
                    "last column/row", path, width, height, cfg.pix_fmt, *padded)
    video.width, video.height = padded
    video.pix_fmt = cfg.pix_fmt
    tag_stream(video, cfg.pix_fmt, info.colour)
    time_base = time_base or info.time_base
    if time_base is not None:
        video.codec_context.time_base = time_base
        video.time_base = time_base
    options = dict(cfg.options)
    if codec in ("libx264", "libx265"):
        options.setdefault("crf", str(cfg.crf))
        options.setdefault("preset", cfg.preset)
    elif codec.endswith("_nvenc"):
        options.setdefault("cq", str(cfg.crf))
    elif codec == "libvpx-vp9":
        options.setdefault("crf", str(min(cfg.crf + 10, 63)))
        options.setdefault("b", "0")
        options.setdefault("deadline", "realtime")
        options.setdefault("cpu-used", "8")
    video.codec_context.options = options
    if ext == ".avi":
        # AVI stores no presentation timestamps: B-frame reordering would scramble them
        video.codec_context.max_b_frames = 0
    if codec == "mpeg4":
        video.codec_context.qscale = 3  # near-transparent quality for MPEG-4 Part 2
    if rotation:
        video.set_display_rotation(rotation)
    for key, value in info.video_metadata.items():
        if key not in ("handler_name", "encoder", "vendor_id"):
            video.metadata[key] = value
    return video, codec


def _add_image_stream(container: Any, ext: str, rate: Any, width: int, height: int,
                      time_base: Fraction | None) -> tuple[Any, str]:
    codec, pix_fmt = IMAGE_ENCODERS[ext]
    if codec not in av.codecs_available:
        raise UnsupportedCodecError(f"this FFmpeg build cannot write {ext} images ({codec})")
    video = container.add_stream(codec, rate=rate)
    video.width, video.height = encodable_size(pix_fmt, width, height)
    video.pix_fmt = pix_fmt
    if time_base is not None:
        video.codec_context.time_base = time_base
        video.time_base = time_base
    return video, codec
