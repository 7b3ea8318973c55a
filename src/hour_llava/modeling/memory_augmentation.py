# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""MemAug: the memory-augmentation module that lets decayed video tokens read back from the full memory.

Each block is post-LN: self-attention over the query (text + decayed video tokens), cross-attention from the query
into the unchanged memory repository, then a 4x GELU MLP. Attention is non-causal, grouped-query, with a NeoX-style
rotary embedding on the first half of every head's dims. Attention runs through transformers' attention interface,
so `attn_implementation` picks eager, sdpa or flash_attention_2; with sdpa and no mask, PyTorch's flash kernels never
build the full query-by-memory score matrix, which an hour of video (234,000 memory tokens) would not fit.
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_hour_llava import HourLlavaConfig


class HourLlavaMemAugRotaryEmbedding(nn.Module):
    """1D rotary embedding for MemAug, evaluated in fp32.

    The inverse frequencies are computed on the fly rather than kept in a buffer, so casting the model to bf16 never
    degrades the angles of positions near 2.3e5 (an hour of memory).
    """

    def __init__(self, config: HourLlavaConfig):
        super().__init__()
        self.rotary_dim = config.memaug_rotary_dim
        self.base = config.memaug_rope_theta

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        exponents = torch.arange(0, self.rotary_dim, 2, device=position_ids.device, dtype=torch.float32)
        inv_freq = 1.0 / (self.base ** (exponents / self.rotary_dim))
        freqs = position_ids.to(torch.float32)[..., None] * inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        # The reference casts the fp32 angles' cos/sin to the activation dtype before applying them.
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_partial_rotary_pos_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first `cos.shape[-1]` dims of each head of `x` (batch, heads, seq, head_dim); keep the rest.

    The product is taken in fp32 and cast back, as flash-attn's rotary kernel does.
    """
    rotary_dim = cos.shape[-1]
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    x_rot, x_pass = x[..., :rotary_dim].to(compute_dtype), x[..., rotary_dim:]
    cos, sin = cos.unsqueeze(1).to(compute_dtype), sin.unsqueeze(1).to(compute_dtype)
    x_rot = (x_rot * cos + rotate_half(x_rot) * sin).to(x.dtype)
    return torch.cat([x_rot, x_pass], dim=-1)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class HourLlavaMemAugAttention(nn.Module):
    """Non-causal grouped-query attention; self-attention when `is_cross_attention` is False.

    Self-attention projects queries, keys and values with one fused `qkv_proj` (the reference's `Wqkv`, order
    `[Q | K | V]`); cross-attention projects the query with `q_proj` and the memory with a fused `kv_proj` (`Wkv`,
    order `[K | V]`). Every projection has a bias.
    """

    def __init__(self, config: HourLlavaConfig, is_cross_attention: bool, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_cross_attention = is_cross_attention
        self.is_causal = False
        hidden_size = config.text_config.hidden_size
        self.num_heads = config.memaug_num_attention_heads
        self.num_key_value_heads = config.memaug_num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.head_dim = config.memaug_head_dim
        self.scaling = self.head_dim**-0.5
        self.query_dim = self.num_heads * self.head_dim
        self.key_value_dim = 2 * self.num_key_value_heads * self.head_dim
        if is_cross_attention:
            self.q_proj = nn.Linear(hidden_size, self.query_dim)
            self.kv_proj = nn.Linear(hidden_size, self.key_value_dim)
        else:
            self.qkv_proj = nn.Linear(hidden_size, self.query_dim + self.key_value_dim)
        self.o_proj = nn.Linear(self.query_dim, hidden_size)

    def _project(self, hidden_states: torch.Tensor, key_value_states: torch.Tensor):
        if self.is_cross_attention:
            query, key_value = self.q_proj(hidden_states), self.kv_proj(key_value_states)
        else:
            query, key_value = self.qkv_proj(hidden_states).split([self.query_dim, self.key_value_dim], dim=-1)
        key, value = key_value.chunk(2, dim=-1)
        return query, key, value

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor,
        query_position_embeddings: tuple[torch.Tensor, torch.Tensor],
        key_position_embeddings: tuple[torch.Tensor, torch.Tensor],
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, query_len, _ = hidden_states.shape
        key_len = key_value_states.shape[1]
        query, key, value = self._project(hidden_states, key_value_states)
        query = query.view(batch, query_len, self.num_heads, self.head_dim).transpose(1, 2)
        key = key.view(batch, key_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value = value.view(batch, key_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        query = apply_partial_rotary_pos_emb(query, *query_position_embeddings)
        key = apply_partial_rotary_pos_emb(key, *key_position_embeddings)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self, query, key, value, None, scaling=self.scaling, dropout=0.0, is_causal=False, **kwargs
        )
        attn_output = self.o_proj(attn_output.reshape(batch, query_len, -1).contiguous())
        return attn_output, attn_weights


class HourLlavaMemAugMLP(nn.Module):
    def __init__(self, config: HourLlavaConfig):
        super().__init__()
        hidden_size = config.text_config.hidden_size
        self.fc1 = nn.Linear(hidden_size, config.memaug_intermediate_size)
        self.act = ACT2FN["gelu"]  # exact (erf) GELU, as nn.GELU() in the reference
        self.fc2 = nn.Linear(config.memaug_intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class HourLlavaMemAugLayer(GradientCheckpointingLayer):
    """One post-LN MemAug block: `x = LN(x + SelfAttn(x))`, `x = LN(x + CrossAttn(x, memory))`, `x = LN(x + MLP(x))`."""

    def __init__(self, config: HourLlavaConfig, layer_idx: int):
        super().__init__()
        hidden_size = config.text_config.hidden_size
        eps = config.memaug_layer_norm_eps
        self.self_attn = HourLlavaMemAugAttention(config, is_cross_attention=False, layer_idx=layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.cross_attn = HourLlavaMemAugAttention(config, is_cross_attention=True, layer_idx=layer_idx)
        self.cross_attn_layer_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp = HourLlavaMemAugMLP(config)
        self.final_layer_norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        memory: torch.Tensor,
        query_position_embeddings: tuple[torch.Tensor, torch.Tensor],
        memory_position_embeddings: tuple[torch.Tensor, torch.Tensor],
        output_attentions: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Refined query states, and the cross-attention weights `(batch, heads, query, memory)` when
        `output_attentions` is set and the attention implementation returns them (eager does, sdpa does not)."""
        # `[0]`: eager attention returns its weights; holding them through the cross-attention would keep a
        # query x query x heads matrix alive for nothing.
        attn_output = self.self_attn(
            hidden_states, hidden_states, query_position_embeddings, query_position_embeddings,
            output_attentions=output_attentions, **kwargs,
        )[0]
        hidden_states = self.self_attn_layer_norm(hidden_states + attn_output)
        attn_output, cross_attn_weights = self.cross_attn(
            hidden_states, memory, query_position_embeddings, memory_position_embeddings,
            output_attentions=output_attentions, **kwargs,
        )
        if not output_attentions:
            cross_attn_weights = None  # a query x memory x heads matrix: let it go before the MLP
        hidden_states = self.cross_attn_layer_norm(hidden_states + attn_output)
        return self.final_layer_norm(hidden_states + self.mlp(hidden_states)), cross_attn_weights


class HourLlavaMemoryAugmentation(nn.Module):
    """A stack of MemAug blocks; every block reads the same, never-updated memory repository."""

    def __init__(self, config: HourLlavaConfig):
        super().__init__()
        self.layers = nn.ModuleList([HourLlavaMemAugLayer(config, i) for i in range(config.memaug_depth)])
        self.rotary_emb = HourLlavaMemAugRotaryEmbedding(config)

    def forward(
        self,
        query_states: torch.Tensor,
        memory: torch.Tensor,
        query_position_ids: torch.Tensor,
        memory_position_ids: torch.Tensor,
        output_attentions: bool = False,
        **kwargs,
    ) -> BaseModelOutput:
        """Refine `query_states` (batch, query_len, hidden) against `memory` (batch, memory_len, hidden).

        Position ids are `(batch, len)` integer tensors. `last_hidden_state` has the shape of `query_states`;
        with `output_attentions`, `attentions` holds each block's cross-attention weights into the memory
        (`(batch, heads, query_len, memory_len)`; eager attention only: sdpa and flash never build them).
        """
        query_position_embeddings = self.rotary_emb(query_position_ids, query_states.dtype)
        memory_position_embeddings = self.rotary_emb(memory_position_ids, memory.dtype)
        hidden_states, cross_attentions = query_states, []
        for layer in self.layers:
            hidden_states, weights = layer(
                hidden_states, memory, query_position_embeddings, memory_position_embeddings,
                output_attentions=output_attentions, **kwargs,
            )
            if weights is not None:
                cross_attentions.append(weights)
        return BaseModelOutput(
            last_hidden_state=hidden_states, attentions=tuple(cross_attentions) if output_attentions else None
        )


__all__ = ["HourLlavaMemoryAugmentation", "HourLlavaMemAugLayer", "HourLlavaMemAugAttention"]
