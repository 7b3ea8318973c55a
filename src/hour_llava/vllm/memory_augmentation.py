# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""MemAug and the memory repository for the vLLM plugin, in plain torch.

The plugin runs in vLLM's own environment (an older transformers), where `hour_llava.modeling` does not import, so
this is a second, inference-only implementation of `hour_llava/modeling/memory.py` and `memory_augmentation.py`:
uniform spatial forgetting (what eval mode does), `numpy.linspace` frame choices as the reference, and non-causal
grouped-query attention through `torch.nn.functional.scaled_dot_product_attention`. The weights keep the names of
the transformers model, so checkpoints load unchanged. MemAug stays replicated under tensor parallelism: it is small
next to the language model and reads the whole memory anyway.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class MemAugSettings:
    """The config fields MemAug and forgetting read (see `HourLlavaConfig` for their meaning)."""

    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    depth: int
    rope_theta: float
    partial_rotary_factor: float
    layer_norm_eps: float
    memory_position_mode: str
    video_pool_size: int
    spatial_keep_tokens: int
    temporal_downsample: int
    max_kept_frames: int
    min_video_frames: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def num_kept_frames(self, num_frames: int) -> int:
        effective = max(int(num_frames), self.min_video_frames)
        return max(1, min(self.max_kept_frames, effective // self.temporal_downsample))

    def num_video_tokens(self, num_frames: int) -> int:
        """Decayed video tokens of a video of `num_frames` decoded frames: the placeholder length."""
        return self.num_kept_frames(num_frames) * (self.spatial_keep_tokens + 1)


@dataclass
class VideoMemory:
    """One video's memory repository `(T*(g*g+1), D)` and decayed tokens `(n*(k+1), D)`, with their position ids."""

    repository: torch.Tensor
    repository_position_ids: torch.Tensor
    decayed: torch.Tensor
    decayed_position_ids: torch.Tensor


def build_video_memory(frame_tokens: torch.Tensor, newline: torch.Tensor, settings: MemAugSettings) -> VideoMemory:
    """Memory repository and decayed tokens of one video from its projected frame tokens `(T, g*g, D)`.

    Short videos are stretched to `min_video_frames` by duplication; temporal forgetting keeps
    `num_kept_frames(T)` evenly spread frames and spatial forgetting the uniform sub-grid (`[::2, ::2]` for 16 of 64).
    """
    num_frames = frame_tokens.shape[0]
    if num_frames < settings.min_video_frames:
        stretch = np.linspace(0, num_frames - 1, settings.min_video_frames, dtype=int)
        frame_tokens = frame_tokens[torch.as_tensor(stretch, device=frame_tokens.device)]
    effective, tokens_per_frame, hidden = frame_tokens.shape
    stride = tokens_per_frame + 1
    newlines = newline.to(frame_tokens.dtype).expand(effective, 1, hidden)
    memory = torch.cat([frame_tokens, newlines], dim=1).reshape(effective * stride, hidden)

    kept = torch.as_tensor(
        np.linspace(0, effective - 1, settings.num_kept_frames(num_frames), dtype=int), device=frame_tokens.device
    )
    grid = settings.video_pool_size
    step = grid // round(settings.spatial_keep_tokens**0.5)
    rows = torch.arange(0, grid, step, device=frame_tokens.device)
    spatial = (rows[:, None] * grid + rows[None, :]).flatten()
    decayed = torch.cat([frame_tokens[kept][:, spatial], newlines[: len(kept)]], dim=1).reshape(-1, hidden)
    token_ids = torch.cat([spatial, spatial.new_tensor([tokens_per_frame])])
    decayed_position_ids = (kept[:, None] * stride + token_ids[None, :]).flatten()
    repository_position_ids = torch.arange(memory.shape[0], device=memory.device)
    return VideoMemory(memory, repository_position_ids, decayed, decayed_position_ids)


class RotaryEmbedding(nn.Module):
    """NeoX rotary embedding on the first `partial_rotary_factor` of each head's dims, angles in fp32."""

    def __init__(self, settings: MemAugSettings):
        super().__init__()
        self.rotary_dim = int(settings.head_dim * settings.partial_rotary_factor)
        self.base = settings.rope_theta

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        exponents = torch.arange(0, self.rotary_dim, 2, device=position_ids.device, dtype=torch.float32)
        inv_freq = 1.0 / (self.base ** (exponents / self.rotary_dim))
        angles = position_ids.to(torch.float32)[:, None] * inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first `cos.shape[-1]` dims of `x` `(heads, seq, head_dim)`, in fp32, and keep the others."""
    rotary_dim = cos.shape[-1]
    compute = torch.promote_types(x.dtype, torch.float32)
    x_rot, x_pass = x[..., :rotary_dim].to(compute), x[..., rotary_dim:]
    first, second = x_rot.chunk(2, dim=-1)
    x_rot = x_rot * cos.to(compute) + torch.cat([-second, first], dim=-1) * sin.to(compute)
    return torch.cat([x_rot.to(x.dtype), x_pass], dim=-1)


class MemAugAttention(nn.Module):
    """Non-causal grouped-query attention; `qkv_proj` for self-attention, `q_proj` + `kv_proj` for cross-attention."""

    def __init__(self, settings: MemAugSettings, is_cross_attention: bool):
        super().__init__()
        self.num_heads, self.num_kv_heads = settings.num_attention_heads, settings.num_key_value_heads
        self.head_dim = settings.head_dim
        self.query_dim = self.num_heads * self.head_dim
        self.kv_dim = 2 * self.num_kv_heads * self.head_dim
        self.is_cross_attention = is_cross_attention
        if is_cross_attention:
            self.q_proj = nn.Linear(settings.hidden_size, self.query_dim)
            self.kv_proj = nn.Linear(settings.hidden_size, self.kv_dim)
        else:
            self.qkv_proj = nn.Linear(settings.hidden_size, self.query_dim + self.kv_dim)
        self.o_proj = nn.Linear(self.query_dim, settings.hidden_size)

    def forward(self, hidden: torch.Tensor, keys_from: torch.Tensor, query_rope, key_rope) -> torch.Tensor:
        if self.is_cross_attention:
            query, key_value = self.q_proj(hidden), self.kv_proj(keys_from)
        else:
            query, key_value = self.qkv_proj(hidden).split([self.query_dim, self.kv_dim], dim=-1)
        key, value = key_value.chunk(2, dim=-1)
        query = rotate(query.view(-1, self.num_heads, self.head_dim).transpose(0, 1), *query_rope)
        key = rotate(key.view(-1, self.num_kv_heads, self.head_dim).transpose(0, 1), *key_rope)
        value = value.view(-1, self.num_kv_heads, self.head_dim).transpose(0, 1)
        # enable_gqa: the memory's keys and values are not repeated per query head (7x for the 7B model's 28/4
        # heads, 3 GB for an hour of memory).
        output = F.scaled_dot_product_attention(
            query[None], key[None], value[None], scale=self.head_dim**-0.5, enable_gqa=True
        )[0]
        return self.o_proj(output.transpose(0, 1).reshape(hidden.shape[0], self.query_dim))


class MemAugMLP(nn.Module):
    def __init__(self, settings: MemAugSettings):
        super().__init__()
        self.fc1 = nn.Linear(settings.hidden_size, settings.intermediate_size)
        self.fc2 = nn.Linear(settings.intermediate_size, settings.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(hidden)))


class MemAugLayer(nn.Module):
    """Post-LN block: self-attention over the query, cross-attention into the memory, MLP."""

    def __init__(self, settings: MemAugSettings):
        super().__init__()
        eps = settings.layer_norm_eps
        self.self_attn = MemAugAttention(settings, is_cross_attention=False)
        self.self_attn_layer_norm = nn.LayerNorm(settings.hidden_size, eps=eps)
        self.cross_attn = MemAugAttention(settings, is_cross_attention=True)
        self.cross_attn_layer_norm = nn.LayerNorm(settings.hidden_size, eps=eps)
        self.mlp = MemAugMLP(settings)
        self.final_layer_norm = nn.LayerNorm(settings.hidden_size, eps=eps)

    def forward(self, hidden: torch.Tensor, memory: torch.Tensor, query_rope, memory_rope) -> torch.Tensor:
        hidden = self.self_attn_layer_norm(hidden + self.self_attn(hidden, hidden, query_rope, query_rope))
        hidden = self.cross_attn_layer_norm(hidden + self.cross_attn(hidden, memory, query_rope, memory_rope))
        return self.final_layer_norm(hidden + self.mlp(hidden))


class MemoryAugmentation(nn.Module):
    """MemAug: refines `[text before ; decayed video ; text after]` against one video's memory repository."""

    def __init__(self, settings: MemAugSettings):
        super().__init__()
        self.settings = settings
        self.layers = nn.ModuleList([MemAugLayer(settings) for _ in range(settings.depth)])
        self.rotary_emb = RotaryEmbedding(settings)

    def refine(self, video: VideoMemory, text_before: torch.Tensor, text_after: torch.Tensor) -> torch.Tensor:
        """The refined decayed video tokens `(n*(k+1), D)` for one video and its question's text embeddings.

        Query positions: text before counts from 0, video tokens keep their memory ids shifted past that text, text
        after continues past the whole memory span (reference spec 4.1). Memory keys carry no offset in the
        "reference" mode, the same offset as the video queries in "aligned" mode.
        """
        if not self.layers:
            return video.decayed
        dtype, device = text_before.dtype, text_before.device
        num_before, memory_length = text_before.shape[0], video.repository.shape[0]
        query = torch.cat([text_before, video.decayed.to(dtype), text_after])
        query_positions = torch.cat([
            torch.arange(num_before, device=device),
            video.decayed_position_ids + num_before,
            torch.arange(text_after.shape[0], device=device) + num_before + memory_length,
        ])
        memory_positions = video.repository_position_ids
        if self.settings.memory_position_mode == "aligned":
            memory_positions = memory_positions + num_before
        memory = video.repository.to(dtype)
        query_rope = self.rotary_emb(query_positions, dtype)
        memory_rope = self.rotary_emb(memory_positions, dtype)
        for layer in self.layers:
            query = layer(query, memory, query_rope, memory_rope)
        return query[num_before : num_before + video.decayed.shape[0]]
