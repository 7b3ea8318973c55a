# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Latency of a second question about the same video: the pipeline reuses the video's cached pooled features.

The first question decodes the video at 1 FPS and runs every sampled frame through the vision tower; the second
question about the same file only runs the projector, MemAug and the language model. This script measures both in
one run with a small (randomly initialised, offline) model and a synthetic video of several minutes.

```bash
python benchmarks/memory_reuse.py --minutes 5
```
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import pipeline

from hour_llava import HourLlavaProcessor
from hour_llava.pipelines import TASK
from hour_llava.tiny import tiny_model, tiny_tokenizer
from hour_llava.video_cache import feature_bytes
from hour_llava.video_writing import write_video


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="Length of the synthetic video")
    parser.add_argument("--video-fps", type=float, default=4.0, help="Frame rate the video is written at")
    parser.add_argument("--video-size", type=int, default=192, help="Side of the written frames, in pixels")
    parser.add_argument("--questions", type=int, default=3, help="Questions asked after the first one")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser.parse_args()


def synthetic_frames(minutes: float, fps: float, size: int) -> Iterator[np.ndarray]:
    """A drifting colour gradient with noise, so that every frame differs and costs real decoding."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for index in range(round(minutes * 60 * fps)):
        shift = index * 3 % size
        red = np.roll(ramp, shift)[None, :].repeat(size, 0)
        green = np.roll(ramp, -shift)[:, None].repeat(size, 1)
        blue = np.full((size, size), index % 256, dtype=np.float32)
        frame = np.stack([red, green, blue], axis=-1) + rng.normal(0, 8, (size, size, 3))
        yield np.clip(frame, 0, 255).astype(np.uint8)


SMALL_VISION_CONFIG = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 6, "num_attention_heads": 2,
                       "image_size": 384, "patch_size": 14}
SMALL_TEXT_CONFIG = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4,
                     "num_key_value_heads": 2}
SMALL_MODEL_FIELDS = {"video_pool_size": 8, "spatial_keep_tokens": 16, "min_video_frames": 128, "memaug_depth": 4,
                      "vision_chunk_size": 64}


def small_model(vision_config: dict | None = None, text_config: dict | None = None, **overrides):
    """A model small enough for a CPU yet shaped like the released ones where cost is concerned: a SigLIP-like
    384px/14 tower (so400m's 27x27 patches, pooled to 8x8) but 128 wide and 6 deep, a 4-layer 256-wide language
    model, a 4-block MemAug, 16 of 64 tokens kept per frame, short videos upsampled to 128 frames.

    `vision_config`, `text_config` and `overrides` change those settings (other benchmarks reuse this model)."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(
        tokenizer,
        vision_config={**SMALL_VISION_CONFIG, **(vision_config or {})},
        text_config={**SMALL_TEXT_CONFIG, **(text_config or {})},
        **{**SMALL_MODEL_FIELDS, **overrides},
    )
    return model, HourLlavaProcessor.from_model_config(model.config, tokenizer)


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = small_model()
    pipe = pipeline(TASK, model=model, processor=processor, device="cpu")
    generation = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens, "do_sample": False}

    with tempfile.TemporaryDirectory() as directory:
        frames = synthetic_frames(args.minutes, args.video_fps, args.video_size)
        video = str(write_video(Path(directory) / "synthetic.mp4", frames, fps=args.video_fps))
        pipe(video, "Warm-up question?", max_new_tokens=1, max_frames=4)  # first-call overheads, another cache key
        first = timed(lambda: pipe(video, "What happens first?", **generation))
        later = [timed(lambda i=i: pipe(video, f"Question number {i}: what happens then?", **generation))
                 for i in range(args.questions)]

    entry = max(pipe.video_cache.entries(), key=lambda cached: cached.num_frames)  # not the warm-up's
    second = statistics.median(later)
    print(f"video: {args.minutes:g} min, {entry.num_frames} frames sampled at 1 FPS, {args.video_size}px at "
          f"{args.video_fps:g} fps; model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; "
          f"torch threads: {torch.get_num_threads()}; 1-minute load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"cached features: {feature_bytes(entry) / 2**20:.1f} MiB; cache hits {pipe.video_cache.hits}, "
          f"misses {pipe.video_cache.misses}")
    print("| first question (decode + vision + MemAug + LLM) | later question (median of "
          f"{args.questions}) | ratio |")
    print("|---|---|---|")
    print(f"| {first:.2f} s | {second:.2f} s | {first / second:.1f}x |")


if __name__ == "__main__":
    main()
