"""The reference MemAug math written out with einsum, independent of the library code (spec section 5).

Tests compare the library's MemAug against this, and conversion tests use it to compute a forward pass straight from
a checkpoint's original tensors.
"""

import math

import torch


def rotate_neox(x: torch.Tensor, positions: torch.Tensor, rotary_dim: int, theta: float) -> torch.Tensor:
    """x: (seq, heads, head_dim). Rotate dims [0, rotary_dim) in NeoX (rotate-half) order, keep the rest.

    The angles and their cos/sin are fp32, as the reference computes them; everything after is exact.
    """
    half = rotary_dim // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (seq, half)
    cos, sin = angles.cos().double()[:, None, :], angles.sin().double()[:, None, :]
    x1, x2, rest = x[..., :half], x[..., half:rotary_dim], x[..., rotary_dim:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)


def attention(q, k, v, q_pos, k_pos, heads, kv_heads, rotary_dim, theta):
    head_dim = q.shape[-1] // heads
    q = rotate_neox(q.view(q.shape[0], heads, head_dim), q_pos, rotary_dim, theta)
    k = rotate_neox(k.view(k.shape[0], kv_heads, head_dim), k_pos, rotary_dim, theta)
    v = v.view(v.shape[0], kv_heads, head_dim)
    group = heads // kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # head h reads kv head h // group
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(head_dim)  # non-causal, no mask
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(q.shape[0], -1)


def linear(x, weights, name):
    return torch.einsum("nd,od->no", x, weights[f"{name}.weight"].double()) + weights[f"{name}.bias"].double()


def layer_norm(x, weights, name, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weights[f"{name}.weight"].double() + weights[f"{name}.bias"].double()


def reference_memaug(weights, depth, heads, kv_heads, theta, x, memory, q_pos, k_pos, eps=1e-5):
    """MemAug from raw tensors named as in the authors' checkpoints (`layers.{i}.self_attn.Wqkv.weight`, ...).

    x: (query_len, D) and memory: (memory_len, D); positions are 1D. Computed in float64.
    """
    head_dim = x.shape[-1] // heads
    rotary_dim = head_dim // 2
    q_size, kv_size = heads * head_dim, kv_heads * head_dim
    x, memory = x.double(), memory.double()
    for i in range(depth):
        layer = f"layers.{i}"
        qkv = linear(x, weights, f"{layer}.self_attn.Wqkv")  # [Q | K | V]
        q, k, v = qkv[:, :q_size], qkv[:, q_size : q_size + kv_size], qkv[:, q_size + kv_size :]
        attn = attention(q, k, v, q_pos, q_pos, heads, kv_heads, rotary_dim, theta)
        x = layer_norm(x + linear(attn, weights, f"{layer}.self_attn.Wo"), weights, f"{layer}.norm1", eps)
        q = linear(x, weights, f"{layer}.cross_attn.Wq")
        kv = linear(memory, weights, f"{layer}.cross_attn.Wkv")  # [K | V], the same raw memory in every layer
        attn = attention(q, kv[:, :kv_size], kv[:, kv_size:], q_pos, k_pos, heads, kv_heads, rotary_dim, theta)
        x = layer_norm(x + linear(attn, weights, f"{layer}.cross_attn.Wo"), weights, f"{layer}.norm2", eps)
        hidden = linear(x, weights, f"{layer}.mlp.0")
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
        x = layer_norm(x + linear(hidden, weights, f"{layer}.mlp.2"), weights, f"{layer}.norm3", eps)
    return x
