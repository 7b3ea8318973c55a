"""Opening user media (`hour_llava.processing.media_access`): a local file as that file alone, a URL read once.

Every opener goes through it: the video processor (and so the pipeline, the training collator, the feature cache and
`hour-llava ask`). Servers here listen on 127.0.0.1 only.
"""

import gc
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from training_helpers import instruction_sample, processor, training_rows, write_json  # noqa: F401 (fixtures)
from video_fixtures import level_frames, serve_directory, write_video

from hour_llava import HourLlavaVideoProcessor
from hour_llava.processing import media_access
from hour_llava.processing.media_access import UnsafeMediaError, open_media_bytes
from hour_llava.processing.video_container import ContainerVideo
from hour_llava.processing.video_decoding import decode_video
from hour_llava.training import HourLlavaDataCollator


@pytest.fixture
def folders(tmp_path):
    """`inside/` (the data folder a user points us at) and `outside/private.mp4` (a video that must stay unread)."""
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    write_video(outside / "private.mp4", level_frames(24), fps=10, codec="mpeg4")
    return inside, outside


def hls_playlist(path: Path, entry: str) -> Path:
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.4,\n{entry}\n#EXT-X-ENDLIST\n")
    return path


@contextmanager
def recording_server(handler_body):
    """A server on 127.0.0.1 whose GET handler is `handler_body(handler)`; yields (base URL, list of paths asked)."""
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            handler_body(self)

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def send_headers(handler, content_type: str, length: int | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()


def send_file(handler, data: bytes, content_type: str = "video/mp4") -> None:
    send_headers(handler, content_type, len(data))
    handler.wfile.write(data)


# ----------------------------------------------------------------------------------------------------------------------
# A playlist is not a video
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", ["relative", "file_url", "absolute"])
def test_hls_playlist_pointing_outside_the_folder_is_refused(folders, entry):
    inside, outside = folders
    private = outside / "private.mp4"
    target = {"relative": "../outside/private.mp4", "file_url": private.as_uri(), "absolute": str(private)}[entry]
    playlist = hls_playlist(inside / "x.m3u8", target)
    with pytest.raises(UnsafeMediaError, match=r"x\.m3u8.*'hls'.*playlist"):
        decode_video(playlist, size=(32, 32))
    with pytest.raises(UnsafeMediaError, match=r"x\.m3u8"):
        HourLlavaVideoProcessor(size={"height": 32, "width": 32})(str(playlist))


def test_hls_playlist_pointing_to_a_host_sends_it_nothing(folders):
    inside, outside = folders
    data = (outside / "private.mp4").read_bytes()
    with recording_server(lambda handler: send_file(handler, data)) as (base_url, requests):
        playlist = hls_playlist(inside / "remote.m3u8", f"{base_url}/private.mp4")
        with pytest.raises(UnsafeMediaError, match=r"remote\.m3u8.*'hls'"):
            decode_video(playlist, size=(32, 32))
    assert requests == []


def test_uploaded_bytes_holding_a_playlist_are_refused(folders):
    """A server's upload (vLLM's video loader) opens its bytes under the same single-file rules as a local file."""
    inside, outside = folders
    assert open_media_bytes((outside / "private.mp4").read_bytes()).streams.video
    playlist = hls_playlist(inside / "upload.m3u8", (outside / "private.mp4").as_uri()).read_bytes()
    with pytest.raises(ValueError, match="single-file video"):
        open_media_bytes(playlist)


def test_playlist_content_behind_a_video_name_is_not_followed(folders):
    """FFmpeg itself does not detect HLS behind another extension; this guards that it stays unread."""
    inside, _ = folders
    disguised = hls_playlist(inside / "holiday.mp4", "../outside/private.mp4")
    with pytest.raises(ValueError, match=r"holiday\.mp4.*as a video"):
        decode_video(disguised, size=(32, 32))


def test_concat_list_is_refused(folders):
    inside, outside = folders
    listing = inside / "list.txt"
    listing.write_text(f"ffconcat version 1.0\nfile '{outside / 'private.mp4'}'\n")
    with pytest.raises(UnsafeMediaError, match=r"list\.txt.*'concat'"):
        decode_video(listing, size=(32, 32))


def test_image_sequence_pattern_is_refused_and_says_how_to_pass_frames(folders):
    inside, _ = folders
    for index in range(1, 4):
        Image.fromarray(np.full((16, 16, 3), 60 * index, np.uint8)).save(inside / f"img{index:03d}.png")
    pattern = inside / "img%03d.png"
    shutil.copy(inside / "img001.png", pattern)  # a file with that literal name exists
    with pytest.raises(ValueError, match=r"img%03d\.png.*is an image \(image2\).*\"url\": \["):
        decode_video(pattern, size=(16, 16))


def test_a_protocol_looking_file_name_is_a_file_name(tmp_path):
    """`concat:a|b` would be FFmpeg's concat protocol; here it is the name of a file in the working folder."""
    write_video(tmp_path / "a.mp4", level_frames(5), fps=5)
    name = "concat:a.mp4|a.mp4"
    shutil.copy(tmp_path / "a.mp4", tmp_path / name)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        frames, metadata = decode_video(name, size=(16, 16), min_frames=0)
    finally:
        os.chdir(cwd)
    assert metadata.total_num_frames == 5  # one copy of the file, not two concatenated


def test_ordinary_containers_still_open(tmp_path):
    frames = level_frames(6)
    for name, codec in [("a.mp4", "libx264"), ("b.mkv", "mpeg4"), ("c.webm", "libvpx-vp9"), ("d.ts", "libx264")]:
        path = write_video(tmp_path / name, frames, fps=6, codec=codec)
        decoded, _ = decode_video(path, size=(32, 32), min_frames=0)
        assert len(decoded) == 1, name


def test_training_rows_cannot_escape_the_video_root_through_a_playlist(folders, processor, caplog):
    inside, outside = folders
    root = inside / "data"
    (root / "videos" / "src").mkdir(parents=True)
    hls_playlist(root / "videos" / "src" / "escape.m3u8", "../../../../outside/private.mp4")
    write_json(root / "rows.json", [instruction_sample("escape", "escape.m3u8", [("What?", "Nothing.")])])
    collator = HourLlavaDataCollator(processor)
    with caplog.at_level(logging.WARNING, logger="hour_llava.training.collator"):
        batch = collator(training_rows(root, "rows.json"))
    assert "pixel_values_videos" not in batch
    [warning] = [record.getMessage() for record in caplog.records if "escape" in record.getMessage()]
    assert "row 'escape': unreadable video" in warning and "escape.m3u8" in warning and "'hls'" in warning


def test_no_other_module_opens_media_with_av_open():
    """Readers of user media go through `media_access`; other `av.open` calls may only write files."""
    package = Path(media_access.__file__).parents[1]
    found = subprocess.run(
        ["grep", "-rn", "--include=*.py", "av.open(", str(package)], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    readers = [line for line in found if "media_access.py" not in line and '"w"' not in line]
    assert readers == []
    assert any("media_access.py" in line for line in found)


# ----------------------------------------------------------------------------------------------------------------------
# URLs: read once, one timeout, no endless streams
# ----------------------------------------------------------------------------------------------------------------------
def test_a_url_is_downloaded_once_and_decodes_like_the_file(tmp_path):
    path = write_video(tmp_path / "clip.mp4", level_frames(30), fps=10)
    expected, expected_metadata = decode_video(path, size=(32, 32), min_frames=0)
    data = path.read_bytes()
    with recording_server(lambda handler: send_file(handler, data)) as (base_url, requests):
        frames, metadata = decode_video(f"{base_url}/clip.mp4", size=(32, 32), min_frames=0)
    np.testing.assert_array_equal(frames, expected)
    assert metadata.timestamps == expected_metadata.timestamps
    assert requests == ["/clip.mp4"]


def test_the_downloaded_file_is_removed_with_the_video(tmp_path):
    data = write_video(tmp_path / "clip.mp4", level_frames(10), fps=10).read_bytes()
    with recording_server(lambda handler: send_file(handler, data)) as (base_url, _):
        source = ContainerVideo(f"{base_url}/clip.mp4")
    local = source.path
    assert os.path.isfile(local) and local != source.source
    del source
    gc.collect()
    assert not os.path.exists(local)


def test_a_stalled_server_times_out_once(tmp_path):
    release = threading.Event()

    def stall(handler):
        send_headers(handler, "video/mp4")  # then nothing
        release.wait(10)

    with recording_server(stall) as (base_url, requests):
        start = time.monotonic()
        with pytest.raises(ValueError, match=r"clip\.mp4.*no data for 0\.5 s"):
            ContainerVideo(f"{base_url}/clip.mp4", url_timeout=0.5)
        elapsed = time.monotonic() - start
        release.set()
    assert elapsed < 3 and requests == ["/clip.mp4"]


def test_an_endless_stream_is_cut_at_the_size_cap(tmp_path):
    stop = threading.Event()

    def endless(handler):
        send_headers(handler, "video/mp2t")
        block = bytes(64 * 1024)
        try:
            while not stop.is_set():
                handler.wfile.write(block)
        except OSError:
            pass

    def downloads() -> set[str]:
        return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("hour-llava-")}

    before = downloads()
    with recording_server(endless) as (base_url, _):
        with pytest.raises(ValueError, match=r"live\.ts.*more than 1000000 bytes.*live or endless"):
            ContainerVideo(f"{base_url}/live.ts", max_url_bytes=1_000_000)
        stop.set()
    assert downloads() <= before  # the partial download is gone


def test_an_announced_size_over_the_cap_is_refused_before_downloading(tmp_path):
    data = bytes(2_000_000)
    with recording_server(lambda handler: send_file(handler, data)) as (base_url, _):
        with pytest.raises(ValueError, match=r"big\.mp4.*2000000 bytes, more than"):
            ContainerVideo(f"{base_url}/big.mp4", max_url_bytes=1_000_000)


def test_a_streaming_playlist_url_is_refused(tmp_path):
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nsegment0.ts\n"
    with recording_server(lambda h: send_file(h, playlist, "application/vnd.apple.mpegurl")) as (base_url, _):
        with pytest.raises(ValueError, match=r"index\.m3u8.*streaming playlist"):
            decode_video(f"{base_url}/index.m3u8")


def test_a_downloaded_playlist_is_refused_like_a_local_one(tmp_path):
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n"
    with recording_server(lambda handler: send_file(handler, playlist, "text/plain")) as (base_url, _):
        with pytest.raises(UnsafeMediaError, match="'hls'"):
            decode_video(f"{base_url}/index.m3u8")


@pytest.mark.parametrize("url", ["rtsp://127.0.0.1:1/live", "rtmp://127.0.0.1:1/app/stream", "udp://127.0.0.1:1"])
def test_live_stream_urls_are_refused(url):
    with pytest.raises(ValueError, match="live stream"):
        decode_video(url)


def test_other_url_schemes_are_refused():
    with pytest.raises(ValueError, match=r"only local files and http\(s\) URLs.*ftp://"):
        decode_video("ftp://127.0.0.1/clip.mp4")


def test_http_errors_name_the_url_and_status(tmp_path):
    with serve_directory(tmp_path) as base_url:
        with pytest.raises(ValueError, match=r"gone\.mp4.*HTTP 404"):
            decode_video(f"{base_url}/gone.mp4")
