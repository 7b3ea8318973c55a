# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Which frames Hour-LLaVA reads: the sampling policy, from frame times alone (no decoding, no I/O).

Kept apart from decoding so that the rule the released checkpoints were trained with (1 FPS on the frames' real
clock, at least 128 frames for short clips) can be read and tested on its own, and reused for frames that were
sampled and encoded earlier (`EncodedVideo`).

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import math
from collections.abc import Sequence

import numpy as np


DEFAULT_SAMPLING_FPS = 1.0
DEFAULT_MIN_FRAMES = 128
# Timestamps are rationals converted to float; this absorbs the rounding when comparing them with whole seconds.
TIME_TOLERANCE = 1e-6


def sample_frame_indices(
    frame_times: Sequence[float] | np.ndarray,
    fps: float | None = DEFAULT_SAMPLING_FPS,
    min_frames: int = DEFAULT_MIN_FRAMES,
    max_frames: int | None = None,
    num_frames: int | None = None,
) -> np.ndarray:
    """Indices of the frames Hour-LLaVA reads, from every frame's time in seconds (ascending, first frame at 0).

    - `num_frames` set: that many frames spread uniformly over the whole video (at most all of them).
    - Otherwise, at `fps` frames per second: the first frame at or after each tick `k / fps`. This follows the
      frames' real times, so variable frame rates and drifting rates such as 29.97 stay on the clock.
    - When that gives fewer than `min_frames`, `min(N, min_frames)` frames spread uniformly over all N frames
      (`np.linspace(0, N - 1, ..., dtype=int)`), the reference rule for short clips.
    - `max_frames` caps the result by uniform selection among the picks. `fps=None` keeps every frame.
    """
    _check_sampling_arguments(fps, min_frames, max_frames, num_frames)
    times = np.asarray(frame_times, dtype=np.float64)
    total = len(times)
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    if num_frames is not None:
        indices = np.linspace(0, total - 1, min(num_frames, total), dtype=np.int64)
    elif fps is None:
        indices = np.arange(total, dtype=np.int64)
    else:
        indices = first_frame_at_each_tick(times, fps)
        if len(indices) < min_frames:
            indices = np.linspace(0, total - 1, min(total, min_frames), dtype=np.int64)
    if max_frames is not None and len(indices) > max_frames:
        indices = indices[np.linspace(0, len(indices) - 1, max_frames, dtype=np.int64)]
    return indices


def first_frame_at_each_tick(times: np.ndarray, fps: float) -> np.ndarray:
    """For each tick `k / fps` up to the last frame, the index of the first frame at or after it (deduplicated)."""
    num_ticks = math.floor(times[-1] * fps + TIME_TOLERANCE) + 1
    ticks = np.arange(num_ticks, dtype=np.float64) / fps
    indices = np.searchsorted(times, ticks - TIME_TOLERANCE, side="left")
    return np.unique(np.minimum(indices, len(times) - 1)).astype(np.int64)


def _check_sampling_arguments(fps, min_frames, max_frames, num_frames) -> None:
    if fps is not None and not fps > 0:
        raise ValueError(f"fps={fps} must be positive (or None to keep every frame).")
    if min_frames is None or min_frames < 0:
        raise ValueError(f"min_frames={min_frames} must be a non-negative integer.")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames={max_frames} must be at least 1 (or None for no cap).")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be at least 1.")


__all__ = ["DEFAULT_MIN_FRAMES", "DEFAULT_SAMPLING_FPS", "first_frame_at_each_tick", "sample_frame_indices"]
