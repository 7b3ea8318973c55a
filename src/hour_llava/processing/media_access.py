# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""How user-supplied media is opened: a local file as that file alone, a URL read once.

Every reader of videos in hour-llava (the video processor, and through it the pipeline, the training collator, the
feature cache, `hour-llava ask`) opens files with `open_local_media` and fetches URLs with `download_media`:

- FFmpeg opens only the `file` protocol, and only demuxers whose media is inside the one file
  (`ALLOWED_DEMUXERS`). Playlists and multi-file formats (HLS `.m3u8`, `ffconcat` lists, image sequences by pattern,
  SDP) would make FFmpeg open other files or hosts named inside them, so a "video" in a data folder could read a file
  outside it or reach any host; they are refused with an `UnsafeMediaError` naming the file and the format.
- A http(s) URL is downloaded once to a temporary file, capped in size, with one stall timeout, and then opened as a
  local file under the same rules. Live streams (rtsp, rtmp, udp, ..., HLS/DASH playlists, endless responses) are
  refused with a message instead of growing memory forever.

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import errno
import io
import os
import re
import tempfile
from urllib.parse import urlparse

import av
from huggingface_hub.utils import httpx
from tqdm.auto import tqdm


# Demuxers that read their media from the opened file itself. Anything else FFmpeg would pick is refused: notably
# `hls`, `concat`, `image2` (patterns), `sdp`/`rtp`/`rtsp`, `lavfi` and capture devices, which open other resources.
ALLOWED_DEMUXERS = (
    "mov",  # mp4, m4a, 3gp, 3g2, mj2
    "matroska",  # mkv, webm
    "avi",
    "mpegts",
    "mpeg",
    "mpegvideo",
    "flv",
    "live_flv",
    "ogg",
    "asf",
    "nut",
    "mxf",
    "dv",
    "rm",
    "wtv",
    "gif",
    "apng",
    "ivf",
    "obu",
    "h264",
    "hevc",
    "vvc",
    "m4v",
    "vc1",
    "mjpeg",
    "mpjpeg",
    "yuv4mpegpipe",
    # Audio-only containers: allowed so that an audio file gets the "no video stream" error, not a format refusal.
    "mp3",
    "wav",
    "aac",
    "flac",
)
LOCAL_OPEN_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(ALLOWED_DEMUXERS)}

URL_TIMEOUT_SECONDS = 60.0
MAX_DOWNLOAD_BYTES = 8 * 1024**3  # an hour of 1080p H.264 at ~8 Mbit/s is ~3.6 GB
DOWNLOAD_CHUNK_BYTES = 1024**2
DOWNLOAD_SCHEMES = ("http", "https")
LIVE_STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "rtp", "srt", "udp", "tcp", "mms", "mmsh", "rist")
PLAYLIST_CONTENT_TYPES = (
    "application/vnd.apple.mpegurl",
    "application/x-mpegurl",
    "audio/mpegurl",
    "audio/x-mpegurl",
    "application/dash+xml",
)
URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class UnsafeMediaError(ValueError):
    """A media file FFmpeg would read as a playlist or multi-file format, which opens resources named inside it."""


def is_url(source: str) -> bool:
    return URL_PATTERN.match(source) is not None


def open_local_media(path: str) -> av.container.InputContainer:
    """Open the local media file `path` as that file alone (see the module docstring), or raise naming it.

    The path goes to FFmpeg as `file:<absolute path>`, so that a name such as `concat:a.mp4|b.mp4` or `subfile,...`
    is a file name and never a protocol.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Video file not found: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory, not a video file.")
    url = "file:" + os.path.abspath(path)
    try:
        return av.open(url, mode="r", options=LOCAL_OPEN_OPTIONS)
    except av.FFmpegError as error:
        refused = refused_demuxer(url) if error.errno == errno.EINVAL else None
        if refused is not None and (refused == "image2" or refused.endswith("_pipe")):
            raise ValueError(
                f"{path!r} is an image ({refused}), not a video. A video made of frame files is a list of them: "
                '{"type": "video", "url": ["f0.jpg", ...]} in a chat, or videos=[[["f0.jpg", ...]]] (a sample\'s '
                "list of videos holds the list, as in transformers)."
            ) from error
        if refused is not None:
            raise UnsafeMediaError(
                f"{path!r} is read by FFmpeg as {refused!r}, a playlist or multi-file format that opens other files "
                "or URLs named inside it; it is refused so that only this file is read. Pass the video file itself "
                f"(allowed formats: {', '.join(ALLOWED_DEMUXERS)})."
            ) from error
        raise ValueError(f"Could not open {path!r} as a video: {error}") from error


def open_media_bytes(data: bytes) -> av.container.InputContainer:
    """Open an in-memory video (an upload a server received) under the rules of a local file: single-file formats
    only, so bytes holding a playlist cannot make FFmpeg open the files or hosts it names."""
    try:
        return av.open(io.BytesIO(data), mode="r", options=LOCAL_OPEN_OPTIONS)
    except av.FFmpegError as error:
        raise ValueError(f"The video ({len(data)} bytes) cannot be read as a single-file video: {error}") from error


def refused_demuxer(url: str) -> str | None:
    """The demuxer FFmpeg picked for `url` when it refused it for not being allowed, else None.

    FFmpeg says which format it refused only in its log, which PyAV keeps silent by default; the open is repeated
    with the log on, and refused again before the demuxer reads anything.
    """
    previous_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        av.open(url, mode="r", options=LOCAL_OPEN_OPTIONS).close()
    except av.FFmpegError as error:
        _, name, message = getattr(error, "log", None) or (None, None, "")
        return name if "not on whitelist" in message else None
    finally:
        av.logging.set_level(previous_level)
    return None


def download_media(url: str, timeout: float = URL_TIMEOUT_SECONDS, max_bytes: int = MAX_DOWNLOAD_BYTES) -> str:
    """Download `url` once into a temporary file and return its path (the caller deletes it).

    `timeout` bounds connecting and every wait for data, so a stalled server costs one `timeout`. More than
    `max_bytes` (announced or received) is refused: a live or endless stream would otherwise never end.
    """
    check_downloadable(url)
    suffix = re.sub(r"[^A-Za-z0-9.]", "", os.path.splitext(urlparse(url).path)[1])[:16]
    handle, path = tempfile.mkstemp(prefix="hour-llava-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            _stream_to(file, url, timeout, max_bytes)
    except BaseException:
        os.unlink(path)
        raise
    return path


def check_downloadable(url: str) -> None:
    """Refuse URLs that are not plain http(s) downloads, naming what they are."""
    scheme = urlparse(url).scheme.lower()
    if scheme in LIVE_STREAM_SCHEMES:
        raise ValueError(
            f"{url!r} is a live stream ({scheme}://), which has no end to sample from; record it to a file first."
        )
    if scheme not in DOWNLOAD_SCHEMES:
        raise ValueError(f"{url!r}: only local files and http(s) URLs are read as videos, not {scheme}:// URLs.")


def _stream_to(file, url: str, timeout: float, max_bytes: int) -> None:
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            _check_response(response, url, max_bytes)
            announced = int(response.headers.get("content-length") or 0) or None
            received = 0
            with tqdm(total=announced, unit="B", unit_scale=True, desc=f"Downloading {url}", leave=False) as bar:
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                    received += len(chunk)
                    if received > max_bytes:
                        raise ValueError(
                            f"{url!r} sent more than {max_bytes} bytes without ending; a live or endless stream is "
                            "refused (record a finite file first, or download it yourself and pass the path)."
                        )
                    file.write(chunk)
                    bar.update(len(chunk))
    except httpx.TimeoutException as error:
        raise ValueError(f"{url!r} sent no data for {timeout:g} s ({type(error).__name__}); giving up.") from error
    except httpx.HTTPError as error:
        raise ValueError(f"Could not download {url!r}: {error}") from error


def _check_response(response, url: str, max_bytes: int) -> None:
    if response.status_code >= 400:
        raise ValueError(f"Could not download {url!r}: HTTP {response.status_code} {response.reason_phrase}.")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in PLAYLIST_CONTENT_TYPES:
        raise ValueError(
            f"{url!r} is a streaming playlist ({content_type}), live or made of other URLs; pass a video file's URL."
        )
    announced = int(response.headers.get("content-length") or 0)
    if announced > max_bytes:
        raise ValueError(f"{url!r} is {announced} bytes, more than the {max_bytes} bytes a video download may take.")


__all__ = ["UnsafeMediaError", "download_media", "is_url", "open_local_media"]
