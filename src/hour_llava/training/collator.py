# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`HourLlavaDataCollator`: training rows (see `hour_llava.training.data`) -> Hour-LLaVA model inputs for `SFTTrainer`.

Per row, the collator puts the row's video into its chat (the file, decoded by the processor; or, with a feature
cache, the pooled vision features read from disk as an `EncodedVideo`, so no decoding and no vision tower), or its
images (opened here, so a missing or unreadable file is named), and calls the processor's `apply_chat_template`,
which expands `<video>` (the decayed-token count and the time instruction) and `<image>`,
tokenizes, builds `memaug_query_mask` (system and user text only, as the checkpoints trained) and marks the
assistant tokens. Cached and decoded videos take the same path, so they give the same `input_ids`.

**Only the tokens inside the template's `{% generation %}` spans are supervised**: every assistant turn's content and
its closing `<|im_end|>`. The `<|im_start|>assistant\n` header, the newline after `<|im_end|>`, the system and user
turns, the video tokens and the padding are -100.

**Images and random forgetting.** With `image_forgetting="random"` (what `HourLlavaSFTTrainer` sets when the model
config's `spatial_sampling_type` is "random", as in every training stage) the processor draws which image tokens are
kept, from a generator seeded by the training seed and the row's id, and the batch carries the draw
(`image_kept_indices`, `image_kept_lengths`) for the model, so the `<image>` placeholders match the model's tokens
exactly. Seeding per row makes the draw the same wherever the row is collated: in any dataloader worker, on any
rank, and after a resume; a row keeps its draw across epochs.

A row whose video or image is missing or cannot be read (or whose cached features are missing, unreadable or hold
NaN or infinite values, or that is longer than `max_length`) is skipped with one warning line and counted in
`skipped_rows`; with `on_bad_video="raise"` it raises instead. A batch whose every row was skipped becomes a
one-token batch without supervised tokens, so the step computes a zero loss. Cached features written with another vision tower or other
decoding settings (a fingerprint mismatch, see `HourLlavaSFTTrainer`) are an error, never a skip: the whole cache is
then wrong.
"""

import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import av
import torch
from PIL import Image

from .feature_cache import FeatureCacheMismatchError, check_fingerprint, feature_cache_path, load_video_features


logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
BAD_VIDEO_POLICIES = ("skip", "raise")
# What decoding or reading a broken file raises (PyAV's errors, truncated or foreign files); anything else is a bug.
VIDEO_READ_ERRORS = (OSError, ValueError, RuntimeError, EOFError, av.error.FFmpegError)
# What opening a broken image raises (unknown format, truncated data, a decompression bomb).
IMAGE_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
IMAGE_FORGETTING = ("uniform", "random")
# The processor's image outputs, concatenated over the rows of a batch (`batch_num_images` is rebuilt per row).
IMAGE_INPUT_KEYS = ("pixel_values", "image_num_crops", "image_sizes", "image_kept_indices", "image_kept_lengths")
# The batch key under which the collator reports how many rows it skipped, when `report_skipped_rows` is on;
# `HourLlavaSFTTrainer` pops it before the forward pass.
SKIPPED_ROWS_KEY = "num_skipped_rows"


class UnusableRowError(ValueError):
    """A row that cannot be trained on at collation time: `reason` is short (it keys the skip counts), the message
    names the row and gives the details."""

    def __init__(self, row_name: str, reason: str, details: str):
        super().__init__(f"{row_name}: {reason} ({details})")
        self.reason = reason


@dataclass
class EncodedRow:
    input_ids: list[int]
    labels: list[int]
    memaug_query_mask: list[int]
    visual: torch.Tensor | None  # (T, 3, S, S) pixels or (T, g*g, C) pooled features
    image_inputs: dict[str, torch.Tensor] | None = None  # the processor's `IMAGE_INPUT_KEYS` for the row's images


class HourLlavaDataCollator:
    """Collate training rows into `input_ids`, `attention_mask`, `labels`, `memaug_query_mask` and the video inputs.

    Args:
        processor (`HourLlavaProcessor`):
            The processor of the model being trained (its token counts must match the model config).
        feature_cache_dir (`str`, *optional*):
            Read pooled features from `hour-llava extract-features` output instead of decoding videos; the batch
            then carries `pooled_video_features` instead of `pixel_values_videos`.
        video_kwargs (`dict`, *optional*):
            Options for the video processor, e.g. `{"max_frames": 512}` (a frame cap, also applied to cached
            features by the same uniform selection).
        on_bad_video (`str`, *optional*, defaults to `"skip"`):
            `"skip"` a row whose video is missing or unreadable (one warning each, counted), or `"raise"`.
        max_length (`int`, *optional*):
            Skip (or raise on) rows with more tokens; truncation would cut through video tokens or answers.
        image_forgetting (`str`, *optional*):
            `"random"` (draw the kept image tokens here, seeded, and pass them to the model) or `"uniform"`.
            `HourLlavaSFTTrainer` sets it from the model config's `spatial_sampling_type` when it is None;
            otherwise None means uniform.
        seed (`int`, *optional*):
            The training seed random image forgetting is seeded from (with each row's id); `HourLlavaSFTTrainer`
            sets it to `args.seed` when it is None.
    """

    def __init__(
        self,
        processor,
        feature_cache_dir: str | os.PathLike | None = None,
        video_kwargs: dict[str, Any] | None = None,
        on_bad_video: str = "skip",
        max_length: int | None = None,
        image_forgetting: str | None = None,
        seed: int | None = None,
    ):
        if on_bad_video not in BAD_VIDEO_POLICIES:
            raise ValueError(f"on_bad_video={on_bad_video!r} is not one of {BAD_VIDEO_POLICIES}.")
        if image_forgetting is not None and image_forgetting not in IMAGE_FORGETTING:
            raise ValueError(f"image_forgetting={image_forgetting!r} is not one of {IMAGE_FORGETTING}.")
        self.processor = processor
        self.feature_cache_dir = feature_cache_dir
        self.video_kwargs = dict(video_kwargs or {})
        self.on_bad_video = on_bad_video
        self.max_length = max_length
        self.image_forgetting = image_forgetting
        self.seed = seed
        self.pad_token_id = processor.tokenizer.pad_token_id
        self.skipped_rows: Counter[str] = Counter()
        # Turned on by `HourLlavaSFTTrainer`, which removes the count from the batch before the forward pass.
        self.report_skipped_rows = False
        # Set by `HourLlavaSFTTrainer` when training starts: the fingerprint every cached file must carry.
        self.expected_fingerprint: str | None = None

    @property
    def video_settings(self) -> dict:
        """What decides the decoded frames, as `StreamingVideoEncoder.settings` (part of the cache fingerprint)."""
        return {**self.processor.video_processor.to_dict(), **self.video_kwargs}

    # ------------------------------------------------------------------------------------------------------------
    # Batch
    # ------------------------------------------------------------------------------------------------------------
    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        encoded, skipped = [], 0
        for row in rows:
            try:
                encoded.append(self.encode_row(row))
            except UnusableRowError as error:
                if self.on_bad_video == "raise":
                    raise
                logger.warning("Skipping %s", error)
                self.skipped_rows[error.reason] += 1
                skipped += 1
        batch = self.pad(encoded) if encoded else self.empty_batch()
        if self.report_skipped_rows:
            batch[SKIPPED_ROWS_KEY] = torch.tensor(skipped)
        return batch

    def pad(self, encoded: list[EncodedRow]) -> dict[str, torch.Tensor]:
        """Right-pad the rows; concatenate their videos' frames (or features) in row order."""
        length = max(len(row.input_ids) for row in encoded)

        def padded(values: list[list[int]], fill: int) -> torch.Tensor:
            return torch.tensor([row + [fill] * (length - len(row)) for row in values], dtype=torch.long)

        batch = {
            "input_ids": padded([row.input_ids for row in encoded], self.pad_token_id),
            "attention_mask": padded([[1] * len(row.input_ids) for row in encoded], 0),
            "labels": padded([row.labels for row in encoded], IGNORE_INDEX),
            "memaug_query_mask": padded([row.memaug_query_mask for row in encoded], 0),
        }
        visuals = [row.visual for row in encoded if row.visual is not None]
        if visuals:
            key = "pooled_video_features" if self.feature_cache_dir is not None else "pixel_values_videos"
            batch[key] = torch.cat(visuals)
            batch["video_num_frames"] = torch.tensor([len(visual) for visual in visuals], dtype=torch.long)
        if any(row.image_inputs for row in encoded):
            batch.update(concatenated_image_inputs([row.image_inputs for row in encoded]))
        return batch

    def empty_batch(self) -> dict[str, torch.Tensor]:
        """One padding token, attended but not supervised: a zero loss that keeps every rank stepping together."""
        one = torch.ones(1, 1, dtype=torch.long)
        return {
            "input_ids": one * self.pad_token_id,
            "attention_mask": one,
            "labels": one * IGNORE_INDEX,
            "memaug_query_mask": one * 0,
        }

    # ------------------------------------------------------------------------------------------------------------
    # Row
    # ------------------------------------------------------------------------------------------------------------
    def encode_row(self, row: dict) -> EncodedRow:
        """Token ids, labels, MemAug query mask and video tensor of one row; `UnusableRowError` if it cannot be."""
        name = f"row {row.get('id')!r}"
        messages = _clean_messages(row["messages"])
        video = self.video_of(row, name) if row.get("video") else None
        if video is not None:
            messages = _with_video(messages, video)
        images = self.images_of(row, name) if row.get("image_paths") else []
        if images:
            messages = _with_images(messages, images, name)
        try:
            encoded = self.processor.apply_chat_template(
                messages,
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
                processor_kwargs={**self.video_kwargs, **(self.image_kwargs(row) if images else {})},
            )
        except VIDEO_READ_ERRORS as error:
            if video is None:
                raise
            raise UnusableRowError(name, "unreadable video", f"{row.get('video_path')}: {error}") from error
        input_ids = encoded["input_ids"][0]
        if self.max_length is not None and len(input_ids) > self.max_length:
            raise UnusableRowError(name, "longer than max_length", f"{len(input_ids)} > {self.max_length} tokens")
        labels = [token if supervised else IGNORE_INDEX for token, supervised in zip(input_ids, encoded["assistant_masks"][0])]
        visual = encoded.get("pooled_video_features", encoded.get("pixel_values_videos"))
        image_inputs = None
        if images:
            image_inputs = {key: torch.as_tensor(encoded[key]) for key in IMAGE_INPUT_KEYS if key in encoded}
        return EncodedRow(input_ids, labels, encoded["memaug_query_mask"][0], visual, image_inputs)

    def images_of(self, row: dict, name: str) -> list[Image.Image]:
        """The row's images, read in full now so that a missing or broken file skips the row by name."""
        images = []
        for path in row["image_paths"]:
            if not os.path.isfile(path):
                raise UnusableRowError(name, "missing image", f"no file at {path}")
            try:
                with Image.open(path) as image:
                    image.load()
            except IMAGE_READ_ERRORS as error:
                raise UnusableRowError(name, "unreadable image", f"{path}: {error}") from error
            images.append(image)
        return images

    def image_kwargs(self, row: dict) -> dict[str, Any]:
        """The processor's image options for a row: a random draw seeded by the training seed and the row's id."""
        if self.image_forgetting != "random":
            return {}
        return {"image_forgetting": "random", "generator": row_generator(self.seed, row.get("id"))}

    def video_of(self, row: dict, name: str) -> Any:
        """The row's video as the processor takes it: its file path, or its cached features (an `EncodedVideo`)."""
        if self.feature_cache_dir is not None:
            return self.load_cached_features(row, name)
        path = row.get("video_path")
        if not path or not os.path.isfile(path):
            raise UnusableRowError(name, "missing video", f"no file at {path}")
        return path

    def load_cached_features(self, row: dict, name: str):
        path = feature_cache_path(self.feature_cache_dir, row["video"])
        if not path.is_file():
            details = f"no file at {path}; run hour-llava extract-features"
            raise UnusableRowError(name, "missing cached features", details)
        try:
            cached = load_video_features(path)
        except ValueError as error:
            raise UnusableRowError(name, "unreadable cached features", str(error)) from error
        if self.expected_fingerprint is not None:
            check_fingerprint(cached.header, self.expected_fingerprint, path)
        if not torch.isfinite(cached.pooled_features).all():
            details = f"{path} holds NaN or infinite values; recompute it with hour-llava extract-features --overwrite"
            raise UnusableRowError(name, "non-finite cached features", details)
        return cached


def _clean_messages(messages: list[dict]) -> list[dict]:
    """Drop the `None` fields that Arrow adds to content items (`{"type": "video", "text": None}`)."""
    cleaned = []
    for message in messages:
        content = [{key: value for key, value in item.items() if value is not None} for item in message["content"]]
        cleaned.append({"role": message["role"], "content": content})
    return cleaned


def row_generator(seed: int | None, row_id: Any) -> torch.Generator:
    """A CPU generator seeded from `(seed, row_id)`: the same draw for a row wherever and whenever it is collated."""
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def concatenated_image_inputs(rows: list[dict[str, torch.Tensor] | None]) -> dict[str, torch.Tensor]:
    """The image inputs of a batch: each key concatenated over the rows with images, in row order, and
    `batch_num_images` (one count per row, 0 for rows without images)."""
    with_images = [inputs for inputs in rows if inputs]
    batch = {
        key: torch.cat([inputs[key] for inputs in with_images])
        for key in IMAGE_INPUT_KEYS
        if all(key in inputs for inputs in with_images)
    }
    counts = [len(inputs["image_num_crops"]) if inputs else 0 for inputs in rows]
    batch["batch_num_images"] = torch.tensor(counts, dtype=torch.long)
    return batch


def _with_images(messages: list[dict], images: list[Any], name: str) -> list[dict]:
    """`messages` with `images` in their image blocks, in order."""
    remaining = iter(images)
    filled = [
        {
            **message,
            "content": [
                {**item, "image": next(remaining, None)} if item["type"] == "image" else item
                for item in message["content"]
            ],
        }
        for message in messages
    ]
    blocks = sum(item["type"] == "image" for message in messages for item in message["content"])
    if blocks != len(images):
        raise UnusableRowError(name, "image count mismatch", f"{len(images)} images for {blocks} image blocks")
    return filled


def _with_video(messages: list[dict], video: Any) -> list[dict]:
    """`messages` with `video` in its (first) video block, for the processor to decode or pass through."""
    return [
        {**message, "content": [{**item, "video": video} if item["type"] == "video" else item for item in message["content"]]}
        for message in messages
    ]


__all__ = ["FeatureCacheMismatchError", "HourLlavaDataCollator", "IGNORE_INDEX", "SKIPPED_ROWS_KEY", "UnusableRowError"]
