# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`HourLlavaDataCollator`: training rows (see `hour_llava.training.data`) -> Hour-LLaVA model inputs for `SFTTrainer`.

Per row, the collator

1. gets the video: decoded by the processor's video processor (1 FPS, resized, normalised), or, with a feature cache,
   its pooled vision features read from disk (no decoding, no vision tower);
2. renders the chat with the processor's template and expands `<video>` with the processor's own
   `replace_video_token` (the decayed-token count and the time instruction, from the frame count and duration);
3. tokenizes, and takes the processor's `memaug_query_mask` (system and user text only, as the checkpoints trained);
4. builds the labels: **only the tokens inside the template's `{% generation %}` spans are supervised**, that is
   every assistant turn's content and its closing `<|im_end|>`; the `<|im_start|>assistant\\n` header, the newline
   after `<|im_end|>`, the system and user turns, the video tokens and the padding are -100.

Cached and decoded videos go through the same text path, so both give the same `input_ids` for the same frames.

A row whose video is missing or cannot be decoded (or has no cached features, or is longer than `max_length`) is
skipped with one warning line and counted in `skipped_rows`; with `on_bad_video="raise"` it raises instead. A batch
whose every row was skipped becomes a one-token batch without supervised tokens, so the step computes a zero loss.
"""

import bisect
import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import av
import torch
from transformers.utils.chat_template_utils import render_jinja_template

from ..processing.video_decoding import sample_frame_indices
from .feature_cache import feature_cache_path, load_video_features


logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
BAD_VIDEO_POLICIES = ("skip", "raise")
# What decoding or reading a broken file raises (PyAV's errors, truncated or foreign files); anything else is a bug.
VIDEO_READ_ERRORS = (OSError, ValueError, RuntimeError, EOFError, av.error.FFmpegError)


class UnusableRowError(ValueError):
    """A row that cannot be trained on at collation time: `reason` is short (it keys the skip counts), the message
    names the row and gives the details."""

    def __init__(self, row_name: str, reason: str, details: str):
        super().__init__(f"{row_name}: {reason} ({details})")
        self.reason = reason


@dataclass
class VideoTimeline:
    """What the time instruction needs of a video, for cached features (duck-types the processor's metadata)."""

    duration: float
    timestamps: list[float]

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)


@dataclass
class EncodedRow:
    input_ids: list[int]
    labels: list[int]
    memaug_query_mask: list[int]
    visual: torch.Tensor | None  # (T, 3, S, S) pixels or (T, g*g, C) pooled features


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
    """

    def __init__(
        self,
        processor,
        feature_cache_dir: str | os.PathLike | None = None,
        video_kwargs: dict[str, Any] | None = None,
        on_bad_video: str = "skip",
        max_length: int | None = None,
    ):
        if on_bad_video not in BAD_VIDEO_POLICIES:
            raise ValueError(f"on_bad_video={on_bad_video!r} is not one of {BAD_VIDEO_POLICIES}.")
        self.processor = processor
        self.feature_cache_dir = feature_cache_dir
        self.video_kwargs = dict(video_kwargs or {})
        self.on_bad_video = on_bad_video
        self.max_length = max_length
        self.pad_token_id = processor.tokenizer.pad_token_id
        self.skipped_rows: Counter[str] = Counter()
        # Turned on by `HourLlavaSFTTrainer`, which removes the count from the batch before the forward pass.
        self.report_skipped_rows = False

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
            batch["num_skipped_rows"] = torch.tensor(skipped)
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
        visual, timeline = self.load_video(row, name) if row.get("video") else (None, None)
        messages = _clean_messages(row["messages"])
        (prompt,), (spans,) = render_jinja_template(
            conversations=[messages],
            chat_template=self.processor.chat_template,
            return_assistant_tokens_mask=True,
            **self.processor.tokenizer.special_tokens_map,
        )
        replacements = []
        if visual is not None:
            video_inputs = {"video_num_frames": [len(visual)], "video_metadata": [timeline]}
            replacements.append(self.processor.replace_video_token(video_inputs, 0))
        (text,), (offsets,) = self.processor.get_text_with_replacements([prompt], videos_replacements=replacements)
        tokens = self.processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        input_ids = tokens["input_ids"]
        if self.max_length is not None and len(input_ids) > self.max_length:
            raise UnusableRowError(name, "longer than max_length", f"{len(input_ids)} > {self.max_length} tokens")
        supervised = _tokens_in_spans(tokens["offset_mapping"], _shift_spans(spans, offsets))
        labels = [token if keep else IGNORE_INDEX for token, keep in zip(input_ids, supervised)]
        query_mask = self.processor.memaug_query_mask([input_ids])[0]
        return EncodedRow(input_ids, labels, query_mask, visual)

    def load_video(self, row: dict, name: str) -> tuple[torch.Tensor, Any]:
        """The row's frames (or cached pooled features) and its timeline (duration and frame timestamps)."""
        if self.feature_cache_dir is not None:
            return self.load_cached_features(row, name)
        path = row.get("video_path")
        if not path or not os.path.isfile(path):
            raise UnusableRowError(name, "missing video", f"no file at {path}")
        try:
            processed = self.processor.video_processor(path, return_metadata=True, **self.video_kwargs)
        except VIDEO_READ_ERRORS as error:
            raise UnusableRowError(name, "unreadable video", f"{path}: {error}") from error
        return processed["pixel_values_videos"], processed["video_metadata"][0]

    def load_cached_features(self, row: dict, name: str) -> tuple[torch.Tensor, VideoTimeline]:
        path = feature_cache_path(self.feature_cache_dir, row["video"])
        if not path.is_file():
            details = f"no file at {path}; run hour-llava extract-features"
            raise UnusableRowError(name, "missing cached features", details)
        try:
            cached = load_video_features(path)
        except ValueError as error:
            raise UnusableRowError(name, "unreadable cached features", str(error)) from error
        keep = sample_frame_indices(
            cached.timestamps.numpy(), fps=None, min_frames=0, max_frames=self.video_kwargs.get("max_frames")
        )
        timestamps = cached.timestamps[keep].tolist()
        return cached.pooled_video_features[keep], VideoTimeline(cached.duration, timestamps)


def _clean_messages(messages: list[dict]) -> list[dict]:
    """Drop the `None` fields that Arrow adds to content items (`{"type": "video", "text": None}`)."""
    cleaned = []
    for message in messages:
        content = [{key: value for key, value in item.items() if value is not None} for item in message["content"]]
        cleaned.append({"role": message["role"], "content": content})
    return cleaned


def _shift_spans(spans: list[tuple[int, int]], replacements: list[dict]) -> list[tuple[int, int]]:
    """Character spans of the rendered prompt moved past the expanded video placeholders before them."""
    ends = [replacement["span"][1] for replacement in replacements]
    # `new_span` already includes the growth of earlier replacements, so these are running totals
    gained = [0] + [replacement["new_span"][1] - replacement["span"][1] for replacement in replacements]
    return [tuple(char + gained[bisect.bisect_right(ends, char)] for char in span) for span in spans]


def _tokens_in_spans(offset_mapping: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[bool]:
    """For each token, whether its characters overlap one of `spans`."""
    return [any(start < stop and end > begin for begin, stop in spans) for start, end in offset_mapping]


__all__ = ["HourLlavaDataCollator", "IGNORE_INDEX", "UnusableRowError", "VideoTimeline"]
