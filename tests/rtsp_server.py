"""A real RTSP server for the live tests: Debian's GStreamer RTSP server (run it with
/usr/bin/python3, which has `gi`). Serves an mp4 (H.264 + AAC) at rtsp://127.0.0.1:PORT/cam,
optionally behind basic auth.

    /usr/bin/python3 tests/rtsp_server.py PORT CLIP.mp4 [USER:PASSWORD]
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, clip = sys.argv[1], sys.argv[2]
    creds = sys.argv[3] if len(sys.argv) > 3 else None
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{clip}" ! qtdemux name=d '
        "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 "
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
