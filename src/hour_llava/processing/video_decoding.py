# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Video decoding for Hour-LLaVA with PyAV: 1-FPS sampling fused with resizing.

Hour-LLaVA reads a video at one frame per second, so an hour is 3600 frames. Decoding them all at full resolution
first (as generic loaders do) holds gigabytes of pixels the model never sees. Here a video is opened as a
`VideoSource` whose frame times are known before decoding, the sampling policy picks frames from those times, and
only the picked frames are decoded and scaled to the model's size, a chunk at a time.

The parts live in siblings, re-exported here:
- `video_sampling`: which frames to read (pure: frame times in, indices out);
- `media_access`: how files and URLs may be opened (one file alone; a URL downloaded once);
- `video_source`: metadata, frame scaling, model-ready chunks, the `DecodeState` a read returns;
- `video_container`: PyAV I/O for files and URLs (`ContainerVideo`);
- `video_frames`: frames already in memory or given as image files (`InMemoryVideo`).

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import os
from collections.abc import Iterator

import numpy as np

from .media_access import UnsafeMediaError, is_url
from .video_container import ContainerVideo
from .video_frames import InMemoryVideo, is_frame_file_list
from .video_sampling import DEFAULT_MIN_FRAMES, DEFAULT_SAMPLING_FPS, sample_frame_indices
from .video_source import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_FRAME_SIZE,
    SIGLIP_MEAN,
    SIGLIP_STD,
    DecodeState,
    FrameScaler,
    HourLlavaVideoMetadata,
    Returning,
    VideoChunk,
    VideoSource,
    frames_to_pixel_values,
)


def open_video(video, video_fps: float | None = None, fps: float | None = DEFAULT_SAMPLING_FPS) -> VideoSource:
    """A `VideoSource` for a path, a http(s) URL, a list of frame files or URLs, or in-memory frames.

    `video_fps` is the frame rate of in-memory frames (files know their own); `fps` is the sampling rate, used to time
    in-memory frames that come without `video_fps`.
    """
    if isinstance(video, (str, os.PathLike)):
        return ContainerVideo(video)
    if is_frame_file_list(video):
        return InMemoryVideo.from_files(video, video_fps=video_fps, fps=fps)
    return InMemoryVideo(video, video_fps=video_fps, fps=fps)


def open_and_sample(video, video_fps: float | None = None, **sampling) -> tuple[VideoSource, np.ndarray]:
    """`open_video` and the indices `sample_frame_indices(**sampling)` picks (fps, min/max_frames, num_frames)."""
    source = open_video(video, video_fps=video_fps, fps=sampling.get("fps", DEFAULT_SAMPLING_FPS))
    return source, source.sample(**sampling)


def decode_video(
    video, size: tuple[int, int] | None = DEFAULT_FRAME_SIZE, resample=3, video_fps: float | None = None, **sampling
) -> tuple[np.ndarray, HourLlavaVideoMetadata]:
    """Sample and decode a video: `(T, height, width, 3)` uint8 frames and their metadata (times, duration).

    `size` is `(height, width)`, or `None` for the native size. `sampling` holds `sample_frame_indices`' options
    (`fps=1.0`, `min_frames=128`, `max_frames=None`, `num_frames=None`).
    """
    source, indices = open_and_sample(video, video_fps, **sampling)
    return source.decode(indices, size=size, resample=resample)


def iter_video_chunks(
    video,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    size: tuple[int, int] | None = DEFAULT_FRAME_SIZE,
    resample=3,
    video_fps: float | None = None,
    pixel_options: dict | None = None,
    **sampling,
) -> Iterator[VideoChunk]:
    """Stream a video's sampled frames as model-ready `VideoChunk`s (SigLIP normalisation unless overridden).

    Peak memory is one chunk of pixels, whatever the video's length. `pixel_options` go to `frames_to_pixel_values`;
    `sampling` to `sample_frame_indices`. The generator returns the metadata of the decoded frames.
    """
    source, indices = open_and_sample(video, video_fps, **sampling)
    return (
        yield from source.iter_chunks(
            indices, chunk_size=chunk_size, size=size, resample=resample, **(pixel_options or {})
        )
    )


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_FRAME_SIZE",
    "DEFAULT_MIN_FRAMES",
    "DEFAULT_SAMPLING_FPS",
    "SIGLIP_MEAN",
    "SIGLIP_STD",
    "ContainerVideo",
    "DecodeState",
    "FrameScaler",
    "HourLlavaVideoMetadata",
    "InMemoryVideo",
    "Returning",
    "UnsafeMediaError",
    "VideoChunk",
    "VideoSource",
    "decode_video",
    "frames_to_pixel_values",
    "is_url",
    "iter_video_chunks",
    "open_and_sample",
    "open_video",
    "sample_frame_indices",
]
