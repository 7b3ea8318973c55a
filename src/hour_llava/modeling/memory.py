# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""The memory repository and forgetting, as small pure functions (tensor in, tensor out).

Hour-LLaVA keeps every 1-FPS frame's pooled tokens (plus a newline token per frame) as a *memory repository*, and
feeds the language model only a *decayed* subset: 16 of 64 tokens per frame (spatial forgetting) from one frame in
four, at most 512 frames (temporal forgetting). MemAug then lets the decayed tokens read back from the full memory.

Frame choices use `numpy.linspace(..., dtype=int)` exactly as the reference does: its float rounding decides which
frames survive, and the released checkpoints were trained on those frames.
"""

from dataclasses import dataclass

import numpy as np
import torch


def upsample_frame_indices(num_frames: int, min_frames: int) -> np.ndarray:
    """Indices that stretch a video shorter than `min_frames` to `min_frames` frames by duplication."""
    if num_frames < 1:
        raise ValueError(f"A video needs at least one frame, got num_frames={num_frames}.")
    if num_frames >= min_frames:
        return np.arange(num_frames)
    return np.linspace(0, num_frames - 1, min_frames, dtype=int)


def temporal_keep_indices(num_frames: int, num_kept: int) -> np.ndarray:
    """Frames kept by temporal forgetting: `num_kept` evenly spread frames, the first and (for two or more) the last.

    The reference appends the last frame "if missing", which never happens for `num_kept >= 2`; for a single kept
    frame we keep just the first, so the token count stays `num_kept * (k + 1)` as the processor computes it.
    """
    return np.linspace(0, num_frames - 1, num_kept, dtype=int)


def kept_source_frames(num_frames: int, min_frames: int, num_kept: int) -> np.ndarray:
    """The decoded frames whose tokens survive temporal forgetting: sorted, each once.

    Forgetting picks among the upsampled frames; a picked duplicate counts as the decoded frame it copies.
    """
    upsampled = upsample_frame_indices(num_frames, min_frames)
    return np.unique(upsampled[temporal_keep_indices(len(upsampled), num_kept)])


def uniform_spatial_indices(grid_size: int, num_keep: int) -> torch.Tensor:
    """Raster indices of an evenly strided sub-grid: `[::2, ::2]` keeps 16 of an 8x8 grid."""
    stride = grid_size // round(num_keep**0.5)
    rows = torch.arange(0, grid_size, stride)
    return (rows[:, None] * grid_size + rows[None, :]).flatten()


def random_spatial_indices(
    num_frames: int, grid_size: int, num_keep: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per frame, `num_keep` random token indices in ascending order, shape `(num_frames, num_keep)`.

    Drawn on the CPU (from `generator`, or torch's default CPU generator) so that a seed gives the same tokens on
    every device, like the reference's `torch.rand(T, 64).topk(16, largest=False)` followed by a sort.
    """
    scores = torch.rand(num_frames, grid_size * grid_size, generator=generator)
    return scores.topk(num_keep, dim=1, largest=False).indices.sort(dim=1).values


@dataclass
class MediaMemory:
    """One video's or image's memory (MemAug's keys) and decayed tokens (its query rows), with their 1D position ids.

    Attributes:
        repository: `(M, D)` the memory repository.
        repository_position_ids: `(M,)` its position ids.
        decayed: `(K, D)` the tokens that survive forgetting (what the language model gets, once refined).
        decayed_position_ids: `(K,)` their ids, in the same space as the repository's.
    """

    repository: torch.Tensor
    repository_position_ids: torch.Tensor
    decayed: torch.Tensor
    decayed_position_ids: torch.Tensor

    @property
    def position_span(self) -> int:
        """How far the MemAug query's ids move on past these tokens: one past their largest id, as the reference's
        running maximum does."""
        return int(self.decayed_position_ids.max()) + 1


@dataclass
class VideoMemory(MediaMemory):
    """One video's memory repository and its decayed tokens, with their 1D position ids.

    Attributes:
        repository: `(T * (g*g + 1), D)` every frame's pooled tokens followed by a newline (the memory repository).
        repository_position_ids: `(T * (g*g + 1),)` = `arange`: token `(t, s)` has id `t * (g*g + 1) + s`.
        decayed: `(n * (k + 1), D)` the tokens that survive forgetting, each kept frame ending in a newline.
        decayed_position_ids: `(n * (k + 1),)` the same ids as those tokens have in the repository.
        kept_frames: `(n,)` the repository frames temporal forgetting kept, ascending.
        source_frames: `(T,)` the decoded frame each repository frame holds (short videos are upsampled by
            duplicating frames, so a decoded frame may fill several repository frames).
    """

    kept_frames: torch.Tensor
    source_frames: torch.Tensor

    @property
    def position_span(self) -> int:
        """The whole repository (spec 4.1 step 5: text after the video continues at `n0 + T * 65`)."""
        return self.repository.shape[0]

    def kept_source_frames(self) -> torch.Tensor:
        """The decoded frames whose tokens survive forgetting, ascending, each once."""
        return self.source_frames[self.kept_frames].unique()

    def per_source_frame(self, token_weights: torch.Tensor) -> torch.Tensor:
        """Sum weights over the repository's tokens, `(T * (g*g + 1),)`, per decoded frame: `(num_decoded_frames,)`."""
        per_frame = token_weights.reshape(len(self.source_frames), -1).sum(-1)
        num_decoded = int(self.source_frames.max()) + 1
        return per_frame.new_zeros(num_decoded).index_add_(0, self.source_frames, per_frame)


def assemble_video_memory(
    frame_tokens: torch.Tensor,
    newline: torch.Tensor,
    spatial_indices: torch.Tensor,
    kept_frames: np.ndarray,
    source_frames: np.ndarray | None = None,
) -> VideoMemory:
    """The memory repository and the decayed tokens of one video.

    Args:
        frame_tokens: `(T, g*g, D)` projected tokens of every (already upsampled) frame.
        newline: `(D,)` the newline embedding appended after each frame.
        spatial_indices: `(k,)` shared or `(T, k)` per-frame indices of the tokens spatial forgetting keeps.
        kept_frames: indices of the frames temporal forgetting keeps.
        source_frames: `(T,)` the decoded frame each of the `T` frames copies (`upsample_frame_indices`); every
            frame is its own when omitted.
    """
    num_frames, tokens_per_frame, hidden = frame_tokens.shape
    stride = tokens_per_frame + 1  # one newline per frame
    newlines = newline.to(frame_tokens.dtype).expand(num_frames, 1, hidden)
    repository = torch.cat([frame_tokens, newlines], dim=1).reshape(num_frames * stride, hidden)
    repository_position_ids = torch.arange(num_frames * stride, device=frame_tokens.device)

    kept = torch.as_tensor(kept_frames, dtype=torch.long, device=frame_tokens.device)
    spatial_indices = spatial_indices.to(frame_tokens.device)
    if spatial_indices.dim() == 1:
        spatial_indices = spatial_indices.expand(num_frames, -1)
    spatial_indices = spatial_indices[kept]  # (n, k)
    kept_tokens = frame_tokens[kept].gather(1, spatial_indices.unsqueeze(-1).expand(-1, -1, hidden))
    decayed = torch.cat([kept_tokens, newlines[: len(kept)]], dim=1).reshape(-1, hidden)
    newline_index = torch.full_like(spatial_indices[:, :1], tokens_per_frame)
    decayed_position_ids = (kept[:, None] * stride + torch.cat([spatial_indices, newline_index], dim=1)).flatten()
    source = np.arange(num_frames) if source_frames is None else source_frames
    source = torch.as_tensor(source, dtype=torch.long, device=frame_tokens.device)
    return VideoMemory(repository, repository_position_ids, decayed, decayed_position_ids, kept, source)


def memaug_query_position_ids(
    num_text_before: int, decayed_position_ids: torch.Tensor, repository_length: int, num_text_after: int
) -> torch.Tensor:
    """Position ids of the MemAug query `[text before ; decayed video ; text after]` (reference spec 4.1 step 5).

    Text before the video counts from 0; video tokens keep their memory ids shifted past that text; text after the
    video continues after the whole repository span.
    """
    ids, _ = interleaved_query_position_ids(
        [num_text_before, num_text_after], [decayed_position_ids], [repository_length]
    )
    return ids


def interleaved_query_position_ids(
    text_lengths: list[int], media_position_ids: list[torch.Tensor], media_spans: list[int]
) -> tuple[torch.Tensor, list[int]]:
    """Position ids of the MemAug query `[text 0 ; media 0 ; text 1 ; ... ; media k-1 ; text k]`, and each media's
    offset (reference spec 4.1 step 5, and §4.2 for several images).

    Ids run on from one past the largest id so far: a text segment counts up from there, a media's decayed tokens
    keep their memory ids shifted to start there, and the next segment starts `media_spans[i]` past that shift.
    """
    if len(text_lengths) != len(media_position_ids) + 1 or len(media_spans) != len(media_position_ids):
        raise ValueError(
            f"{len(text_lengths)} text segments cannot interleave {len(media_position_ids)} media: they need one "
            "more text segment (possibly empty) than media."
        )
    device = media_position_ids[0].device if media_position_ids else None
    next_id, parts, offsets = 0, [], []
    for index, num_text in enumerate(text_lengths):
        parts.append(torch.arange(num_text, device=device) + next_id)
        next_id += num_text
        if index < len(media_position_ids):
            offsets.append(next_id)
            parts.append(media_position_ids[index].to(device) + next_id)
            next_id += media_spans[index]
    return torch.cat(parts), offsets


__all__ = [
    "MediaMemory",
    "VideoMemory",
    "assemble_video_memory",
    "kept_source_frames",
    "interleaved_query_position_ids",
    "memaug_query_position_ids",
    "random_spatial_indices",
    "temporal_keep_indices",
    "uniform_spatial_indices",
    "upsample_frame_indices",
]
