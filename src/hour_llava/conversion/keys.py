# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Key renaming from the layouts we convert (the authors', llava-hf's LLaVA-OneVision, SigLIP, Qwen2) to ours.

Every rule is a regex over the whole source key and its replacement; the first rule that matches wins. Keys that no
rule matches are *unexpected*: conversion stops and lists them rather than silently dropping weights.
"""

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from .sources import ConversionError, shape_of


Rule = tuple[str, str]

# The authors' MemAug block names (spec section 8) -> ours (docs/design.md).
MEMAUG_MODULE_NAMES = {
    "self_attn.Wqkv": "self_attn.qkv_proj",
    "self_attn.Wo": "self_attn.o_proj",
    "cross_attn.Wq": "cross_attn.q_proj",
    "cross_attn.Wkv": "cross_attn.kv_proj",
    "cross_attn.Wo": "cross_attn.o_proj",
    "mlp.0": "mlp.fc1",
    "mlp.2": "mlp.fc2",
    "norm1": "self_attn_layer_norm",
    "norm2": "cross_attn_layer_norm",
    "norm3": "final_layer_norm",
}

AUTHORS_RULES: list[Rule] = [
    (r"^model\.vision_tower\.vision_tower\.vision_model\.", "model.vision_tower."),
    (r"^model\.mm_projector\.0\.", "model.multi_modal_projector.linear_1."),
    (r"^model\.mm_projector\.2\.", "model.multi_modal_projector.linear_2."),
    (r"^model\.image_newline$", "model.image_newline"),
    *[
        (
            rf"^model\.vision_resampler\.layers\.(\d+)\.{re.escape(theirs)}\.",
            rf"model.memory_augmentation.layers.\1.{ours}.",
        )
        for theirs, ours in MEMAUG_MODULE_NAMES.items()
    ],
    (r"^model\.(embed_tokens|layers|norm)\.", r"model.language_model.\1."),
    (r"^lm_head\.", "lm_head."),
]

# llava-hf's LLaVA-OneVision: the pre-5.x names the Hub checkpoints use, the 4.5x names and the 5.x native names.
LLAVA_ONEVISION_RULES: list[Rule] = [
    (r"^(model\.)?vision_tower\.vision_model\.", "model.vision_tower."),
    (r"^(model\.)?vision_tower\.", "model.vision_tower."),
    (r"^(model\.)?multi_modal_projector\.", "model.multi_modal_projector."),
    (r"^(model\.)?image_newline$", "model.image_newline"),
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    (r"^model\.language_model\.", "model.language_model."),
    (r"^lm_head\.", "lm_head."),
]

# A full SigLIP (`SiglipModel`: vision and text towers) or a bare `SiglipVisionModel`; only the vision side is kept.
SIGLIP_RULES: list[Rule] = [
    (r"^(vision_model\.)?(embeddings|encoder|post_layernorm|head)\.", r"model.vision_tower.\2."),
]
SIGLIP_IGNORED = (r"^text_model\.", r"^logit_(scale|bias)$")

QWEN2_RULES: list[Rule] = [
    (r"^model\.", "model.language_model."),
    (r"^lm_head\.", "lm_head."),
]

# Buffers some older checkpoints saved although the model recomputes them.
RECOMPUTED_BUFFERS = (r"(^|\.)rotary_emb\.inv_freq$", r"(^|\.)position_ids$")


@dataclass
class RenamedTensors:
    """Tensors under our names, with the source name of each (for error messages) and what could not be placed."""

    tensors: dict[str, Any] = field(default_factory=dict)  # tensors or lazy safetensors slices
    source_names: dict[str, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def drop(self, key: str) -> None:
        self.tensors.pop(key)
        self.dropped.append(self.source_names.pop(key))


def rename_tensors(
    tensors: dict[str, Any], rules: list[Rule], ignored: tuple[str, ...] = (), into: RenamedTensors | None = None
) -> RenamedTensors:
    """Rename `tensors` with the first matching rule of `rules`; keys matching `ignored` are dropped on purpose."""
    result = into if into is not None else RenamedTensors()
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    ignored_patterns = [re.compile(pattern) for pattern in (*ignored, *RECOMPUTED_BUFFERS)]
    for key, tensor in tensors.items():
        target = next((pattern.sub(repl, key, count=1) for pattern, repl in compiled if pattern.search(key)), None)
        if target is None:
            if any(pattern.search(key) for pattern in ignored_patterns):
                result.dropped.append(key)
            else:
                result.unmatched.append(key)
            continue
        if target in result.tensors:
            raise ConversionError(f"Source keys {result.source_names[target]!r} and {key!r} both map to {target!r}.")
        result.tensors[target] = tensor
        result.source_names[target] = key
    return result


def drop_unused_vision_weights(renamed: RenamedTensors, num_kept_layers: int | None = None) -> None:
    """Drop what Hour-LLaVA's vision tower does not have: SigLIP's pooling head, its `post_layernorm` (the reference
    reads the last layer's output before it), and, with `num_kept_layers`, the encoder layers from that one on."""
    layer_key = re.compile(r"^model\.vision_tower\.encoder\.layers\.(\d+)\.")
    for key in list(renamed.tensors):
        match = layer_key.match(key)
        unused_layer = match is not None and num_kept_layers is not None and int(match.group(1)) >= num_kept_layers
        if key.startswith(("model.vision_tower.head.", "model.vision_tower.post_layernorm.")) or unused_layer:
            renamed.drop(key)


def collapse_layer_indices(keys: list[str]) -> list[str]:
    """`x.layers.2.w`, `x.layers.3.w` -> `x.layers.{2..3}.w`, so hundreds of per-layer keys read as a few lines."""
    groups: dict[str, list[int]] = {}
    for key in keys:
        match = re.search(r"\.(\d+)\.", key)
        if match is None:
            groups.setdefault(key, [])
            continue
        groups.setdefault(f"{key[: match.start()]}.{{}}.{key[match.end() :]}", []).append(int(match.group(1)))
    lines = []
    for pattern, indices in groups.items():
        if not indices:
            lines.append(pattern)
            continue
        indices = sorted(indices)
        if len(indices) == 1:
            span = str(indices[0])
        elif indices == list(range(indices[0], indices[-1] + 1)):
            span = f"{{{indices[0]}..{indices[-1]}}}"
        else:
            span = "{" + ", ".join(map(str, indices)) + "}"
        lines.append(pattern.replace("{}", span, 1))
    return lines


def _listing(title: str, items: list[str], limit: int = 25) -> str:
    shown = "\n".join(f"  {item}" for item in items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}):\n{shown}{more}"


def check_tensors_fit(
    renamed: RenamedTensors,
    expected_shapes: dict[str, torch.Size],
    source: str,
    fresh_prefixes: tuple[str, ...] = (),
    optional_keys: tuple[str, ...] = (),
) -> None:
    """Raise a `ConversionError` listing missing, unexpected and mis-shaped keys, unless everything fits.

    `fresh_prefixes` are parts the target starts from scratch (MemAug when building from LLaVA-OneVision), so their
    absence is expected; `optional_keys` may be absent (a tied `lm_head.weight`).
    """
    missing = [
        key
        for key in expected_shapes
        if key not in renamed.tensors and not key.startswith(fresh_prefixes) and key not in optional_keys
    ]
    unexpected = collapse_layer_indices(renamed.unmatched) + [
        f"{renamed.source_names[key]} (-> {key})" for key in renamed.tensors if key not in expected_shapes
    ]
    mismatched = [
        f"{renamed.source_names[key]} (-> {key}): checkpoint {shape_of(tensor)}, expected {tuple(expected_shapes[key])}"
        for key, tensor in renamed.tensors.items()
        if key in expected_shapes and shape_of(tensor) != tuple(expected_shapes[key])
    ]
    problems = [
        _listing(title, items)
        for title, items in (
            ("Missing keys (no source tensor for them)", collapse_layer_indices(missing)),
            ("Unexpected keys in the source", unexpected),
            ("Shape mismatches", mismatched),
        )
        if items
    ]
    if problems:
        raise ConversionError(f"The checkpoint {source} does not fit the Hour-LLaVA config:\n" + "\n".join(problems))


__all__ = [
    "AUTHORS_RULES",
    "LLAVA_ONEVISION_RULES",
    "MEMAUG_MODULE_NAMES",
    "QWEN2_RULES",
    "SIGLIP_IGNORED",
    "SIGLIP_RULES",
    "RenamedTensors",
    "check_tensors_fit",
    "drop_unused_vision_weights",
    "rename_tensors",
]
