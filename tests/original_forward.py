"""Tiny source checkpoints in the layouts we convert, and an Hour-LLaVA forward pass computed from their tensors.

The forward pass uses stock transformers modules (`SiglipVisionModel`, `Qwen2ForCausalLM`) loaded from the original
tensors, `F.linear` for the projector, and the memory, forgetting and query assembly written out here from the
reference spec (sections 3-4), with `reference_memaug` for MemAug. It shares no code with `hour_llava`.
"""

import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer, SiglipVisionConfig, SiglipVisionModel
from tokenizers import pre_tokenizers

from reference_memaug import reference_memaug


VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 4,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
}
TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 300,  # padded past the tokenizer, as Qwen's 152064 embeddings are
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
}
ROPE_THETA = 10000.0
MEMAUG_DEPTH = 2  # in the tiny authors' checkpoints; builds from parts get the reference's 4
# The authors' training settings (spec sections 3-4); the converted config must reproduce them.
POOL, KEEP_STRIDE, MIN_FRAMES, TEMPORAL, MAX_KEPT = 8, 2, 128, 4, 512


def chatml_tokenizer() -> Qwen2Tokenizer:
    """A byte-level Qwen2 tokenizer with ChatML tokens and no `<video>` token, as the authors' checkpoints ship."""
    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=32768)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tokenizer


def random_like(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors far from any initialisation (norm weights around 1), so every mapping error shows."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes.items():
        tensor = 0.1 * torch.randn(shape, generator=generator)
        tensors[name] = tensor + 1 if re.search(r"norm\d?\.weight$", name) else tensor
    return tensors


def vision_config(num_layers: int = VISION["num_hidden_layers"]) -> SiglipVisionConfig:
    return SiglipVisionConfig(**{**VISION, "num_hidden_layers": num_layers}, vision_use_head=False)


def text_config(tie: bool) -> Qwen2Config:
    rope = {"rope_type": "default", "rope_theta": ROPE_THETA}
    return Qwen2Config(**TEXT, tie_word_embeddings=tie, rope_parameters=rope)


def stock_shapes(module: torch.nn.Module) -> dict[str, torch.Size]:
    return {name: tensor.shape for name, tensor in module.state_dict().items()}


def memaug_shapes(hidden: int, heads: int, kv_heads: int, depth: int) -> dict[str, torch.Size]:
    """MemAug tensors in the authors' names (spec section 5), without the `vision_resampler.` prefix."""
    head_dim = hidden // heads
    q, kv = heads * head_dim, 2 * kv_heads * head_dim
    shapes = {}
    for i in range(depth):
        for name, out_features, in_features in (
            ("self_attn.Wqkv", q + kv, hidden),
            ("self_attn.Wo", hidden, q),
            ("cross_attn.Wq", q, hidden),
            ("cross_attn.Wkv", kv, hidden),
            ("cross_attn.Wo", hidden, q),
            ("mlp.0", 4 * hidden, hidden),
            ("mlp.2", hidden, 4 * hidden),
        ):
            shapes[f"layers.{i}.{name}.weight"] = torch.Size([out_features, in_features])
            shapes[f"layers.{i}.{name}.bias"] = torch.Size([out_features])
        for norm in ("norm1", "norm2", "norm3"):
            shapes[f"layers.{i}.{norm}.weight"] = shapes[f"layers.{i}.{norm}.bias"] = torch.Size([hidden])
    return shapes


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + name: tensor for name, tensor in tensors.items()}


def unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix) :]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}


def write_checkpoint_dir(directory: Path, config: dict, tensors: dict[str, torch.Tensor], tokenizer=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, directory / "model.safetensors")
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def write_authors_checkpoint(directory: Path, tie: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny checkpoint as the authors' training saves it: Qwen2 config + `mm_*` fields, their key names."""
    text = text_config(tie)
    vision = random_like(stock_shapes(SiglipVisionModel(vision_config())), seed)
    tensors = {
        **prefixed(vision, "model.vision_tower.vision_tower.vision_model."),
        **random_like(stock_shapes(Qwen2ForCausalLM(text)), seed + 1),
        **prefixed(random_like(memaug_shapes(64, 4, 2, MEMAUG_DEPTH), seed + 2), "model.vision_resampler."),
        **random_like(
            {
                "model.mm_projector.0.weight": torch.Size([64, 32]),
                "model.mm_projector.0.bias": torch.Size([64]),
                "model.mm_projector.2.weight": torch.Size([64, 64]),
                "model.mm_projector.2.bias": torch.Size([64]),
                "model.image_newline": torch.Size([64]),
            },
            seed + 3,
        ),
    }
    if tie:
        tensors.pop("lm_head.weight")
    config = {
        "architectures": ["HourLlavaQwenForCausalLM"],
        "model_type": "hour_llava_qwen",
        **TEXT,
        "rope_theta": ROPE_THETA,
        "rope_scaling": None,
        "tie_word_embeddings": tie,
        "torch_dtype": "float32",
        "use_sliding_window": False,
        "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "vision_tower_pretrained": None,
        "mm_hidden_size": VISION["hidden_size"],
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_projector_type": "mlp2x_gelu",
        "mm_resampler_type": "memaug",
        "memaug_depth": MEMAUG_DEPTH,
        "spatial_sampling_type": "random",
        "mm_patch_merge_type": "spatial_unpad",
        "mm_newline_position": "grid",
        "mm_spatial_pool_mode": "bilinear",
        "mm_spatial_pool_stride": None,
        "image_aspect_ratio": "anyres_max_9",
        "tokenizer_model_max_length": 32768,
        "tokenizer_padding_side": "right",
        "add_time_instruction": True,
        "use_mm_proj": True,
        "vision_config": VISION,
    }
    write_checkpoint_dir(directory, config, tensors, chatml_tokenizer())
    return tensors


LLM_KEYS = r"model\.(embed_tokens|layers|norm)\.|lm_head\."


def authors_parts(tensors: dict[str, torch.Tensor]) -> dict:
    """Split an authors' state dict into what `original_logits` takes."""
    return {
        "vision": unprefixed(tensors, "model.vision_tower.vision_tower.vision_model."),
        "projector": [tensors[f"model.mm_projector.{i}.{kind}"] for i in (0, 2) for kind in ("weight", "bias")],
        "newline": tensors["model.image_newline"],
        "memaug": unprefixed(tensors, "model.vision_resampler."),
        "llm": {name: tensor for name, tensor in tensors.items() if re.match(LLM_KEYS, name)},
    }


def pooled_frame_features(vision: dict, pixels: torch.Tensor, num_layers: int, feature_layer: int) -> torch.Tensor:
    """Stock SigLIP hidden state `feature_layer` (before post_layernorm), 2D-bilinearly pooled to POOL x POOL."""
    tower = SiglipVisionModel(vision_config(num_layers)).eval()
    tower.load_state_dict(vision)
    with torch.no_grad():
        features = tower(pixel_values=pixels, output_hidden_states=True).hidden_states[feature_layer]
    side = int(features.shape[1] ** 0.5)
    grid = features.view(-1, side, side, features.shape[-1]).permute(0, 3, 1, 2)
    pooled = F.interpolate(grid, size=[POOL, POOL], mode="bilinear", align_corners=False)
    return pooled.permute(0, 2, 3, 1).reshape(-1, POOL * POOL, features.shape[-1])


def original_logits(
    parts: dict,
    input_ids: list[int],
    pixels: torch.Tensor,
    query_mask: list[int],
    video_token_id: int,
    tie: bool = False,
    num_vision_layers: int = VISION["num_hidden_layers"],
    feature_layer: int = -1,
) -> torch.Tensor:
    """Logits of one sample (one video) computed straight from the original tensors, following the spec."""
    features = pooled_frame_features(parts["vision"], pixels, num_vision_layers, feature_layer)
    num_frames = features.shape[0]
    if num_frames < MIN_FRAMES:
        features = features[np.linspace(0, num_frames - 1, MIN_FRAMES, dtype=int)]
    w1, b1, w2, b2 = parts["projector"]
    tokens = F.linear(F.gelu(F.linear(features, w1, b1)), w2, b2)  # (T, 64, D)
    frames, hidden = tokens.shape[0], tokens.shape[-1]
    stride = POOL * POOL + 1
    newline = parts["newline"].expand(frames, 1, hidden)
    memory = torch.cat([tokens, newline], dim=1).reshape(-1, hidden)
    memory_ids = torch.arange(frames * stride)
    grid = torch.arange(POOL * POOL).view(POOL, POOL)[::KEEP_STRIDE, ::KEEP_STRIDE].flatten()
    kept = np.linspace(0, frames - 1, min(MAX_KEPT, frames // TEMPORAL), dtype=int)
    video_query = torch.cat([torch.cat([tokens[t, grid], parts["newline"][None]]) for t in kept])
    video_ids = torch.cat([torch.cat([t * stride + grid, torch.tensor([t * stride + POOL * POOL])]) for t in kept])

    llm = Qwen2ForCausalLM(text_config(tie)).eval()
    llm.load_state_dict(parts["llm"], strict=not tie)
    if tie:
        llm.tie_weights()
    ids = torch.tensor(input_ids)
    embeds = llm.get_input_embeddings()(ids).detach()
    positions = (ids == video_token_id).nonzero().flatten()
    start, end = int(positions[0]), int(positions[-1]) + 1
    assert end - start == len(video_query)
    mask = torch.tensor(query_mask, dtype=torch.bool)
    before, after = embeds[:start][mask[:start]], embeds[end:][mask[end:]]
    n0 = before.shape[0]
    query = torch.cat([before, video_query, after])
    query_ids = torch.cat([torch.arange(n0), video_ids + n0, n0 + len(memory) + torch.arange(after.shape[0])])
    depth = len({name.split(".")[1] for name in parts["memaug"]})
    refined = reference_memaug(
        parts["memaug"], depth, TEXT["num_attention_heads"], TEXT["num_key_value_heads"], ROPE_THETA,
        query, memory, query_ids, memory_ids,
    )[n0 : n0 + len(video_query)]
    embeds[start:end] = refined.float()
    with torch.no_grad():
        return llm(inputs_embeds=embeds[None]).logits[0]


def llava_onevision_parts(tensors: dict[str, torch.Tensor], native_names: bool) -> dict:
    """Vision, projector, newline and LLM tensors of an llava-hf checkpoint, split for `original_logits`."""
    model = "model." if native_names else ""
    vision = unprefixed(tensors, f"{model}vision_tower." if native_names else "vision_tower.vision_model.")
    if native_names:
        llm = prefixed(unprefixed(tensors, "model.language_model."), "model.")
        llm["lm_head.weight"] = tensors["lm_head.weight"]
    else:
        llm = unprefixed(tensors, "language_model.")
    return {
        "vision": vision,
        "projector": [
            tensors[f"{model}multi_modal_projector.linear_{i}.{kind}"] for i in (1, 2) for kind in ("weight", "bias")
        ],
        "newline": tensors[f"{model}image_newline"],
        "llm": llm,
    }


def write_llava_onevision_checkpoint(
    directory: Path, native_names: bool = False, num_vision_layers: int = 3, feature_layer: int = -2, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A tiny llava-hf LLaVA-OneVision checkpoint: pre-5.x key names as on the Hub, or the 5.x native ones."""
    vision = random_like(stock_shapes(SiglipVisionModel(vision_config(num_vision_layers))), seed)
    llm = random_like(stock_shapes(Qwen2ForCausalLM(text_config(tie=False))), seed + 1)
    projector = random_like(
        {
            "multi_modal_projector.linear_1.weight": torch.Size([64, 32]),
            "multi_modal_projector.linear_1.bias": torch.Size([64]),
            "multi_modal_projector.linear_2.weight": torch.Size([64, 64]),
            "multi_modal_projector.linear_2.bias": torch.Size([64]),
            "image_newline": torch.Size([64]),
        },
        seed + 2,
    )
    if native_names:
        tensors = {
            **prefixed(vision, "model.vision_tower."),
            **prefixed(projector, "model."),
            **prefixed(unprefixed(llm, "model."), "model.language_model."),
            "lm_head.weight": llm["lm_head.weight"],
        }
    else:
        tensors = {**prefixed(vision, "vision_tower.vision_model."), **projector, **prefixed(llm, "language_model.")}
    tokenizer = chatml_tokenizer()
    tokenizer.add_tokens(["<image>", "<video>"], special_tokens=True)
    config = {
        "architectures": ["LlavaOnevisionForConditionalGeneration"],
        "model_type": "llava_onevision",
        "text_config": {"model_type": "qwen2", **TEXT, "rope_theta": ROPE_THETA, "tie_word_embeddings": False},
        "vision_config": {"model_type": "siglip_vision_model", **VISION, "num_hidden_layers": num_vision_layers},
        "vision_feature_layer": feature_layer,
        "vision_feature_select_strategy": "full",
        "projector_hidden_act": "gelu",
        "image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
        "video_token_index": tokenizer.convert_tokens_to_ids("<video>"),
        "torch_dtype": "float32",
    }
    write_checkpoint_dir(directory, config, tensors, tokenizer)
    return tensors


def write_siglip_checkpoint(directory: Path, num_vision_layers: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny full SigLIP (vision and text towers, pooling head, logit scale/bias) in `SiglipModel`'s key names."""
    from transformers import SiglipConfig, SiglipModel

    config = SiglipConfig(
        vision_config={**VISION, "num_hidden_layers": num_vision_layers},
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 50},
    )
    tensors = random_like(stock_shapes(SiglipModel(config)), seed)
    write_checkpoint_dir(directory, config.to_dict(), tensors)
    return tensors


def write_qwen2_checkpoint(directory: Path, tie: bool = True, seed: int = 1) -> dict[str, torch.Tensor]:
    """A tiny Qwen2 causal LM (tied like Qwen2.5-3B by default) with its ChatML tokenizer."""
    config = text_config(tie)
    tensors = random_like(stock_shapes(Qwen2ForCausalLM(config)), seed)
    if tie:
        tensors.pop("lm_head.weight")
    config_dict = {**config.to_dict(), "architectures": ["Qwen2ForCausalLM"]}
    write_checkpoint_dir(directory, config_dict, tensors, chatml_tokenizer())
    return tensors
