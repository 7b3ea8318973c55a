# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""A video to its pooled vision features: the one path shared by the pipeline (on a cache miss) and the feature cache.

It lives outside `modeling/` and `processing/` because it joins the two, which remote code keeps apart. Like
`video_cache.py`, it imports no sibling: a saved pipeline copies `pipelines.py` and the files it imports next to the
checkpoint, and a package import would not resolve there.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch


def encode_video(
    video: Any,
    video_processor,
    model,
    chunk_size: int | None = None,
    watch_chunks: Callable[[Iterable[torch.Tensor]], Iterable[torch.Tensor]] | None = None,
    **decoding,
):
    """Decode `video` and stream it through `model`'s vision tower, `chunk_size` frames at a time.

    Only one chunk of pixels exists at a time, whatever the video's length (an hour of 384x384 float frames is
    6.4 GB). The chunks hold exactly the pixels `processor(videos=...)` returns and the tower sees the same batches
    (`vision_chunk_size` by default), so the features equal `model.get_video_features(pixels).last_hidden_state`.
    Returns an `EncodedVideo`: those features, on the model's device and in its dtype, and the decoded frames'
    metadata.

    Args:
        video: anything the video processor decodes (a path, a URL, frames).
        video_processor: the `HourLlavaVideoProcessor` whose sampling and resizing the model was trained with.
        model: an Hour-LLaVA model (`HourLlavaModel` or `HourLlavaForConditionalGeneration`).
        watch_chunks: optional pass-through over the pixel chunks on their way to the tower (the app takes
            thumbnails and reports progress with it); it must yield every chunk unchanged.
        decoding: video processor options (`fps`, `max_frames`, ...).
    """
    chunk_size = chunk_size or model.config.vision_chunk_size

    def encode_chunks(pixel_chunks: Iterable[torch.Tensor]) -> torch.Tensor:
        return model.get_pooled_video_features(watch_chunks(pixel_chunks) if watch_chunks else pixel_chunks)

    with torch.inference_mode():
        return video_processor.encode_video(video, encode_chunks, chunk_size=chunk_size, **decoding)


__all__ = ["encode_video"]
