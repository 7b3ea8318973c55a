"""The pipeline's feature cache: LRU bounds and what makes two videos the same entry."""

import os

import numpy as np
import torch

from hour_llava.processing import EncodedVideo
from hour_llava.video_cache import VideoFeatureCache, video_cache_key


def entry(num_frames: int) -> EncodedVideo:
    return EncodedVideo(torch.zeros(num_frames, 4, 5), metadata=None)  # 80 bytes a frame


def test_least_recently_used_entries_go_first():
    cache = VideoFeatureCache(max_videos=2, max_bytes=None)
    cache.put("a", entry(1))
    cache.put("b", entry(1))
    assert cache.get("a") is not None  # now "b" is the least recently used
    cache.put("c", entry(1))
    assert "b" not in cache and "a" in cache and "c" in cache
    assert (cache.hits, cache.misses) == (1, 0)
    assert cache.get("b") is None and cache.misses == 1


def test_byte_budget_bounds_the_cache():
    cache = VideoFeatureCache(max_videos=10, max_bytes=200)
    cache.put("a", entry(1))
    cache.put("b", entry(1))
    cache.put("c", entry(1))  # 240 bytes > 200: "a" goes
    assert [key for key in ("a", "b", "c") if key in cache] == ["b", "c"] and cache.nbytes == 160
    cache.put("huge", entry(3))  # larger than the whole budget: not stored, nothing evicted for it
    assert "huge" not in cache and len(cache) == 2
    disabled = VideoFeatureCache(max_videos=0)
    disabled.put("a", entry(1))
    assert len(disabled) == 0


def test_keys_follow_the_file_its_content_and_the_settings(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x" * 10)
    key = video_cache_key(str(video), {"fps": 1})
    assert key == video_cache_key(video, {"fps": 1, "max_frames": None})  # Path or str; unset options ignored
    assert key != video_cache_key(str(video), {"fps": 2})
    os.utime(video, ns=(0, os.stat(video).st_mtime_ns + 10**9))
    assert key != video_cache_key(str(video), {"fps": 1})  # modified: a new key
    assert video_cache_key(str(tmp_path / "missing.mp4"), {}) is None
    assert video_cache_key("https://example.com/v.mp4", {})[0] == "url"

    frames = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    assert video_cache_key(frames, {}) == video_cache_key(frames.copy(), {}) == video_cache_key(list(frames), {})
    assert video_cache_key(frames, {}) == video_cache_key(torch.from_numpy(frames), {})
    changed = frames.copy()
    changed[0, 0, 0, 0] ^= 1
    assert video_cache_key(changed, {}) != video_cache_key(frames, {})
    assert video_cache_key(object(), {}) is None
