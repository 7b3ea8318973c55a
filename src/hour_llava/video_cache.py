# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""A bounded cache of pooled vision features, so a second question about a video skips decoding and the ViT.

Hour-LLaVA's memory repository is built from the video's pooled SigLIP features (before the projector); with them
cached, another question costs only the projector, MemAug and the language model. Entries are keyed by what the
features depend on: the file's identity (path, size, modification time) or the frames' content, plus the sampling
and preprocessing settings. Least recently used entries are evicted beyond a count or a byte budget.

This module is copied next to checkpoints saved with the pipeline (`trust_remote_code=True`), so it imports only pip
packages.
"""

import hashlib
import os
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch


DEFAULT_MAX_VIDEOS = 8
DEFAULT_MAX_BYTES = 4 * 2**30  # an hour of so400m features (3600 x 64 x 1152) is 1.06 GB in fp32, 0.53 GB in bf16


class VideoFeatureCache:
    """LRU cache of encoded videos, bounded by `max_videos` entries and `max_bytes` of features.

    An entry is what `HourLlavaVideoProcessor.encode_video` returns (any object with `pooled_features` and
    `metadata`): the processor takes it back as the video. An entry larger than `max_bytes` is not stored.
    `max_videos=0` disables caching. `hits` and `misses` count lookups, for benchmarks and tests.
    """

    def __init__(self, max_videos: int = DEFAULT_MAX_VIDEOS, max_bytes: int | None = DEFAULT_MAX_BYTES):
        if max_videos < 0 or (max_bytes is not None and max_bytes < 0):
            raise ValueError(f"max_videos={max_videos} and max_bytes={max_bytes} must not be negative.")
        self.max_videos = max_videos
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        return sum(feature_bytes(entry) for entry in self._entries.values())

    def entries(self) -> list:
        """The cached videos, least recently used first."""
        return list(self._entries.values())

    def get(self, key: Hashable | None):
        """The entry for `key` (now the most recently used), or None; a None key never hits."""
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry

    def put(self, key: Hashable | None, entry) -> None:
        """Store `entry` under `key`, then evict least recently used entries beyond the limits."""
        too_big = self.max_bytes is not None and feature_bytes(entry) > self.max_bytes
        if key is None or self.max_videos == 0 or too_big:
            return
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_videos or (self.max_bytes is not None and self.nbytes > self.max_bytes):
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def feature_bytes(entry) -> int:
    return entry.pooled_features.numel() * entry.pooled_features.element_size()


def settings_key(settings: Mapping[str, Any]) -> tuple:
    """A hashable, order-independent form of the sampling/preprocessing settings the features depend on."""
    return tuple(sorted((name, repr(value)) for name, value in settings.items() if value is not None))


def video_cache_key(video: Any, settings: Mapping[str, Any]) -> Hashable | None:
    """Identity of `video` plus `settings`, or None when the video cannot be identified cheaply and safely.

    Files are identified by resolved path, size and modification time (a rewritten file gets a new key); URLs by
    the URL; arrays, tensors and lists of frames by a hash of their content.
    """
    settings_part = settings_key(settings)
    if isinstance(video, (str, os.PathLike)):
        location = os.fspath(video)
        if location.startswith(("http://", "https://")):
            return ("url", location, settings_part)
        try:
            status = os.stat(location)
        except OSError:
            return None  # the processor reports the missing file
        return ("file", os.path.realpath(location), status.st_size, status.st_mtime_ns, settings_part)
    digest = content_digest(video)
    return None if digest is None else ("frames", digest, settings_part)


def content_digest(frames: Any) -> str | None:
    """A BLAKE2 digest of a video's frames with their shapes: the same for a `(T, H, W, C)` array or tensor and the
    list of its frames (arrays, tensors or PIL images); None for anything else."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    if isinstance(frames, (list, tuple)):
        digests = [frame_digest(frame) for frame in frames]
        if not digests or any(digest is None for digest in digests):
            return None
        return hashlib.blake2b("".join(digests).encode(), digest_size=16).hexdigest()
    return frame_digest(frames)


def frame_digest(frame: Any) -> str | None:
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    elif hasattr(frame, "tobytes") and hasattr(frame, "mode") and hasattr(frame, "size"):  # a PIL image
        frame = np.asarray(frame)
    if not isinstance(frame, np.ndarray):
        return None
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{frame.shape}{frame.dtype}".encode())
    digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()


__all__ = ["VideoFeatureCache", "content_digest", "feature_bytes", "settings_key", "video_cache_key"]
