"""Serve one MP4 (H.264 + AAC) over RTSP with GStreamer's gst-rtsp-server, for the live tests.

Runs under the system ``python3`` (Debian's ``python3-gi`` and ``gir1.2-gst-rtsp-server-1.0``,
installed by ``make setup``), not the project's virtualenv:
``/usr/bin/python3 rtsp_server.py FILE PORT`` serves ``rtsp://127.0.0.1:PORT/clip`` and
prints ``ready``. Each client gets its own pipeline from the file's start; at the end of the
file the server sends RTCP BYE, which ends the client's stream.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402 - after require_version


def main() -> None:
    """Serve ``argv[1]`` on ``127.0.0.1:argv[2]`` until killed."""
    path, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{path}" ! qtdemux name=d '
        "d.video_0 ! queue ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "d.audio_0 ! queue ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/clip", factory)
    server.attach(None)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
