"""The codec floor: decode a file and encode it again at streamguard's encoder settings with
nothing in between (PyAV, decoded frames handed straight to the encoder, audio not copied).

    python benchmarks/codec_floor.py INPUT OUTPUT

What streamguard costs on top of this is what it adds; benchmarks/pipeline.py divides by it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamguard.config import Config  # noqa: E402
from streamguard.io.encode import add_video_stream  # noqa: E402
from streamguard.io.source import VideoSource  # noqa: E402


def main(src: str, dst: str) -> int:
    enc = Config().encode
    with VideoSource(src) as source:  # the stream description streamguard's encoder reads
        info = source.info
    with av.open(src) as inp, av.open(dst, "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vout, _ = add_video_stream(out, Path(dst), enc.codec, info, enc, info.width,
                                   info.height)
        for frame in inp.decode(vin):
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(vout.encode(frame))
        out.mux(vout.encode(None))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python benchmarks/codec_floor.py INPUT OUTPUT")
    raise SystemExit(main(*sys.argv[1:3]))
