"""A real RTSP server for the live tests: Debian's GStreamer RTSP server (run it with
/usr/bin/python3, which has `gi`). Serves an mp4 (H.264 + AAC) at rtsp://127.0.0.1:PORT/cam,
optionally behind basic auth; an H.265 clip with --h265; --loss P drops each video RTP packet
with probability P (GStreamer's netsim after the payloader: packet loss as a lossy network
gives it, for clients on UDP or TCP).

    /usr/bin/python3 tests/rtsp_server.py PORT CLIP.mp4 [USER:PASSWORD] [--h265] [--loss P]
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    argv = sys.argv[1:]
    loss = 0.0
    if "--loss" in argv:
        at = argv.index("--loss")
        loss = float(argv[at + 1])
        del argv[at:at + 2]
    args = [a for a in argv if a != "--h265"]
    video = "h265" if "--h265" in argv else "h264"
    pay = (f"rtp{video}pay pt=96 config-interval=1 ! netsim drop-probability={loss} name=pay0"
           if loss else f"rtp{video}pay name=pay0 pt=96 config-interval=1")
    port, clip = args[0], args[1]
    creds = args[2] if len(args) > 2 else None
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{clip}" ! qtdemux name=d '
        f"d.video_0 ! queue ! {video}parse ! {pay} "
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )")
    factory.set_shared(True)
    if creds:
        user, password = creds.split(":", 1)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role(user, "media.factory.access", True)
        perms.add_permission_for_role(user, "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
