"""Write frames to a video file with PyAV: synthetic videos for the quickstart, the demo and the benchmarks."""

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float = 1.0, codec: str = "libx264", crf: int = 18
) -> Path:
    """Encode `frames` (each H x W x 3 uint8, all the same size) to `path`, one at a time.

    Frames are consumed lazily, so a generator can write an hour of video without holding it in memory. The file
    appears only when complete (written under a temporary name, then renamed), so an interrupted write never leaves a
    truncated video that looks valid.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    stream = None
    with av.open(str(partial), "w", format=_container_format(path)) as container:
        for array in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = array.shape[:2]
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": str(crf), "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        if stream is None:
            raise ValueError(f"No frames were given to write {path}.")
        container.mux(stream.encode())
    partial.replace(path)
    return path


def _container_format(path: Path) -> str:
    return {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}.get(path.suffix.lower(), "mp4")
