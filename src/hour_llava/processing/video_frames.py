# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""In-memory frames as a `VideoSource`: PIL images, HxWx3 arrays, THWC/TCHW arrays or tensors, or image files.

A video given as a list of frame files or URLs (`{"type": "video", "url": ["f0.jpg", "f1.jpg", ...]}`) is loaded
with transformers' `load_image`, as transformers' own processors load them, and then treated as in-memory frames.
The frames go through the same sampling and resizing code as decoded files, so both paths give the same pixels.

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import os
from collections.abc import Generator, Sequence

import av
import numpy as np
import torch
from PIL import Image
from transformers.image_utils import load_image

from .media_access import URL_TIMEOUT_SECONDS
from .video_sampling import DEFAULT_SAMPLING_FPS
from .video_source import DEFAULT_FRAME_SIZE, DecodeState, FrameScaler, IndexedFrame, VideoSource


class InMemoryVideo(VideoSource):
    """Frames already decoded: a list of PIL images or HxWx3 arrays, or a THWC/TCHW array or tensor.

    They carry no clock. With `video_fps` (their frame rate) they are timed `i / video_fps` and sampled like a file;
    without it they are taken as already sampled at the requested rate, `fps` (frame `i` at `i / fps`), so the 1-FPS
    rule keeps them all.
    """

    def __init__(
        self,
        frames,
        video_fps: float | None = None,
        fps: float | None = DEFAULT_SAMPLING_FPS,
        source: str | None = None,
    ):
        self.source = source
        self.frames = _as_frame_list(frames)
        if not self.frames:
            raise ValueError(f"{self.name} has no frames.")
        self.height, self.width = self.frames[0].shape[:2]
        self.average_fps = float(video_fps or fps or DEFAULT_SAMPLING_FPS)
        self.frame_times = np.arange(len(self.frames), dtype=np.float64) / self.average_fps
        self.duration = len(self.frames) / self.average_fps

    @classmethod
    def from_files(
        cls,
        files: Sequence[str | os.PathLike],
        video_fps: float | None = None,
        fps: float | None = DEFAULT_SAMPLING_FPS,
    ) -> "InMemoryVideo":
        """Frames loaded from image files or URLs, one per entry, in order (EXIF orientation applied)."""
        names = [os.fspath(file) for file in files]
        frames = [load_image(name, timeout=URL_TIMEOUT_SECONDS) for name in names]
        return cls(frames, video_fps=video_fps, fps=fps, source=f"{names[0]} ... ({len(names)} frame files)")

    def iter_indexed_frames(
        self, indices, size=DEFAULT_FRAME_SIZE, resample=3
    ) -> Generator[IndexedFrame, None, DecodeState]:
        scaler = FrameScaler(size, resample)
        for index in indices:
            frame = av.VideoFrame.from_ndarray(self.frames[int(index)], format="rgb24")
            yield int(index), float(self.frame_times[int(index)]), scaler(frame)
        return DecodeState(frames_decoded=len(indices))


def is_frame_file_list(video) -> bool:
    """Whether `video` is a video given as a list of frame files or URLs (`["f0.jpg", "f1.jpg", ...]`)."""
    return (
        isinstance(video, (list, tuple))
        and len(video) > 0
        and all(isinstance(frame, (str, os.PathLike)) for frame in video)
    )


def _as_frame_list(frames) -> list[np.ndarray]:
    """Uint8 `(height, width, 3)` RGB arrays from PIL images, arrays or tensors (THWC or TCHW, uint8 or [0, 1])."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"A video array must have 4 dims (THWC or TCHW), got shape {tuple(frames.shape)}.")
        if frames.shape[-1] not in (1, 3, 4) and frames.shape[1] in (1, 3, 4):
            frames = frames.transpose(0, 2, 3, 1)
        frames = list(frames)
    return [_as_rgb_uint8(frame, position) for position, frame in enumerate(frames)]


def _as_rgb_uint8(frame, position: int) -> np.ndarray:
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3:
        raise ValueError(f"Frame {position} has shape {frame.shape}; expected (height, width, channels).")
    if frame.shape[-1] not in (1, 3, 4) and frame.shape[0] in (1, 3, 4):
        frame = frame.transpose(1, 2, 0)
    if frame.dtype != np.uint8:
        scale = 255.0 if frame.size and float(frame.max()) <= 1.0 else 1.0
        frame = np.clip(np.rint(frame.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


__all__ = ["InMemoryVideo", "is_frame_file_list"]
