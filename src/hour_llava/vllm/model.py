# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Hour-LLaVA as a vLLM model: vLLM's SigLIP and Qwen2, our memory repository, forgetting and MemAug.

The language model is vLLM's `Qwen2ForCausalLM` (its parallel layers, so `--tensor-parallel-size` shards it, and its
paged KV cache). The video side runs once per video item, in `embed_multimodal`: uint8 frames are normalised and sent
through SigLIP `vision_chunk_size` frames at a time, pooled to `video_pool_size`^2 tokens, projected, closed by the
newline embedding into the memory repository, forgotten down to the decayed tokens (uniform spatial forgetting, as
in eval mode), and refined by MemAug with the question's text. SigLIP, the projector and MemAug stay replicated on
every tensor-parallel rank.
"""

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F
from vllm.config import VllmConfig
from vllm.model_executor.layers.activation import get_act_fn
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal, SupportsPP
from vllm.model_executor.models.siglip import SiglipVisionModel
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    init_vllm_registered_model,
    maybe_prefix,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.sequence import IntermediateTensors

from ..processing.video_decoding import SIGLIP_MEAN, SIGLIP_STD
from .configuration import HourLlavaVllmConfig
from .memory_augmentation import MemoryAugmentation, build_video_memory
from .processing import HourLlavaDummyInputsBuilder, HourLlavaMultiModalProcessor, HourLlavaProcessingInfo


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """`(n, H, W, 3)` uint8 -> `(n, 3, H, W)` float32 in [-1, 1], with the same float operations as
    `video_decoding.frames_to_pixel_values`, so the pixels equal those of our transformers processor bit for bit."""
    pixels = torch.empty((frames.shape[0], 3, *frames.shape[1:3]), dtype=torch.float32, device=frames.device)
    pixels.copy_(frames.permute(0, 3, 1, 2))
    mean = torch.tensor(SIGLIP_MEAN, dtype=torch.float64)
    std = torch.tensor(SIGLIP_STD, dtype=torch.float64)
    scale, shift = (1 / 255) / std, -mean / std
    scale, shift = scale.float().to(frames.device), shift.float().to(frames.device)
    return pixels.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))


class HourLlavaMultiModalProjector(nn.Module):
    def __init__(self, config: HourLlavaVllmConfig):
        super().__init__()
        text_hidden = config.text_config.hidden_size
        self.linear_1 = nn.Linear(config.vision_config.hidden_size, text_hidden)
        self.act = get_act_fn(config.projector_hidden_act)
        self.linear_2 = nn.Linear(text_hidden, text_hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


@MULTIMODAL_REGISTRY.register_processor(
    HourLlavaMultiModalProcessor, info=HourLlavaProcessingInfo, dummy_inputs=HourLlavaDummyInputsBuilder
)
class HourLlavaForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsPP):
    """vLLM model for checkpoints saved by `hour_llava` (`architectures: ["HourLlavaForConditionalGeneration"]`)."""

    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            "model.language_model.": "language_model.model.",
            "lm_head.": "language_model.lm_head.",
            "model.vision_tower.": "vision_tower.vision_model.",
            "model.multi_modal_projector.": "multi_modal_projector.",
            "model.image_newline": "image_newline",
            "model.memory_augmentation.": "memory_augmentation.",
        }
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("video"):
            return "<video>"
        raise ValueError(f"Hour-LLaVA takes videos only, not {modality!r}.")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config: HourLlavaVllmConfig = vllm_config.model_config.hf_config
        self.config = config
        self.memaug_settings = config.memaug_settings()
        with self._mark_tower_model(vllm_config, "video"):
            self.vision_tower = SiglipVisionModel(
                config.vision_config,
                vllm_config.quant_config,
                require_post_norm=False,  # Hour-LLaVA reads SigLIP's last layer before its post-layernorm
                prefix=maybe_prefix(prefix, "vision_tower"),
            )
            self.multi_modal_projector = HourLlavaMultiModalProjector(config)
            self.image_newline = nn.Parameter(torch.empty(config.text_config.hidden_size))
            self.memory_augmentation = MemoryAugmentation(self.memaug_settings)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=config.text_config,
                prefix=maybe_prefix(prefix, "language_model"),
                architectures=["Qwen2ForCausalLM"],
            )
        self.make_empty_intermediate_tensors = self.language_model.model.make_empty_intermediate_tensors

    # ------------------------------------------------------------------------------------------------------------------
    # Video -> refined video tokens
    # ------------------------------------------------------------------------------------------------------------------
    def pool_frame_features(self, patch_features: torch.Tensor) -> torch.Tensor:
        """Bilinear pooling of each frame's square patch grid to `video_pool_size`^2 tokens."""
        num_frames, num_patches, channels = patch_features.shape
        side = int(num_patches**0.5)
        grid = patch_features.view(num_frames, side, side, channels).permute(0, 3, 1, 2)
        size = self.config.video_pool_size
        pooled = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
        return pooled.permute(0, 2, 3, 1).reshape(num_frames, size * size, channels)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Projected frame tokens `(T, g*g, D)` of uint8 frames `(T, H, W, 3)`, `vision_chunk_size` frames at a time,
        so an hour of frames never goes through the vision tower (or exists as float pixels) at once."""
        pooled = []
        for chunk in frames.split(self.config.vision_chunk_size):
            pixels = normalize_frames(chunk).to(self.vision_tower.dtype)
            pooled.append(self.pool_frame_features(self.vision_tower(pixels)))
        pooled = torch.cat(pooled)
        return self.multi_modal_projector(pooled.to(self.multi_modal_projector.linear_1.weight.dtype))

    def embed_video(self, frames: torch.Tensor, query_ids: torch.Tensor, num_before: int) -> torch.Tensor:
        """The refined decayed video tokens of one video for one question (its MemAug query ids)."""
        memory = build_video_memory(self.encode_frames(frames), self.image_newline, self.memaug_settings)
        text = self.language_model.embed_input_ids(query_ids.to(frames.device))
        return self.memory_augmentation.refine(memory, text[:num_before], text[num_before:])

    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        frames = kwargs.get("video_frames")
        if frames is None:
            return []
        query_ids = kwargs["memaug_query_ids"]
        num_before = kwargs["memaug_query_num_before"]
        return tuple(
            self.embed_video(video, ids, int(before))
            for video, ids, before in zip(_per_item(frames), _per_item(query_ids), _per_item(num_before))
        )

    # ------------------------------------------------------------------------------------------------------------------
    # Language model
    # ------------------------------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor | IntermediateTensors:
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)


def _per_item(value) -> list:
    """A batched field as one entry per item (vLLM stacks equal shapes into one tensor, keeps others as a list)."""
    return list(value) if isinstance(value, (list, tuple)) else list(value.unbind(0))
