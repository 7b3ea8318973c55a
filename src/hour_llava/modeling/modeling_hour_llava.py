# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Hour-LLaVA: a memory-augmented video-language model (VideoMarathon, arXiv 2506.05332).

A video's 1-FPS frames go through SigLIP (in chunks), are pooled to 8x8 tokens, projected into the language model's
space and closed by a newline token each: that is the *memory repository*. Forgetting keeps a quarter of the frames
and a quarter of each frame's tokens; MemAug refines those decayed tokens, together with the question, by attending
into the full memory; the refined video tokens take the place of the `<video>` placeholders in the Qwen2 input.

All vision, memory and MemAug work happens in `HourLlavaModel.forward`, because TRL's `SFTTrainer` calls the base
model and the `lm_head` separately. This file is copied next to saved checkpoints for `trust_remote_code=True`
loading, so it imports only pip packages and its sibling modules.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MultimodalBaseModelOutputWithPast,
    MultimodalCausalLMOutputWithPast,
)
from transformers.modeling_utils import slice_logits_to_keep
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults

from .configuration_hour_llava import HourLlavaConfig
from .image_layout import (
    anyres_tile_grid,
    base_grid_position_ids,
    capped_feature_grid,
    multi_image_position_ids,
    rows_closed_by_newlines,
    split_kept_indices,
    tile_memory_position_ids,
    uniform_grid_indices,
    unpadded_feature_grid,
)
from .memory import (
    MediaMemory,
    VideoMemory,
    assemble_video_memory,
    interleaved_query_position_ids,
    random_spatial_indices,
    temporal_keep_indices,
    uniform_spatial_indices,
    upsample_frame_indices,
)
from .memory_augmentation import HourLlavaMemoryAugmentation


logger = logging.get_logger(__name__)

# Written into every saved config so each Auto class resolves to these files when the checkpoint is loaded with
# `trust_remote_code=True` where hour_llava is not installed.
REMOTE_CODE_AUTO_MAP = {
    "AutoConfig": "configuration_hour_llava.HourLlavaConfig",
    "AutoModel": "modeling_hour_llava.HourLlavaModel",
    "AutoModelForImageTextToText": "modeling_hour_llava.HourLlavaForConditionalGeneration",
    "AutoModelForMultimodalLM": "modeling_hour_llava.HourLlavaForConditionalGeneration",
}

# Inputs that only the prefill step reads: generation drops them afterwards, the KV cache holds what they produced.
# (transformers itself drops `pixel_values`, `pixel_values_videos` and `image_sizes` after prefill.)
VIDEO_PREFILL_INPUTS = ("video_num_frames", "pooled_video_features", "memaug_query_mask", "forgetting_generator")
IMAGE_PREFILL_INPUTS = ("image_num_crops", "batch_num_images", "image_kept_indices", "image_kept_lengths")
# Image inputs indexed by image (or crop), not by sample.
PER_IMAGE_INPUTS = ("pixel_values", "image_sizes", "image_num_crops", "image_kept_indices", "image_kept_lengths")


def has_trainable_parameters(*parts: nn.Module | nn.Parameter) -> bool:
    return any(
        p.requires_grad for part in parts for p in ([part] if isinstance(part, nn.Parameter) else part.parameters())
    )


@dataclass
class HourLlavaVideoOutput(BaseModelOutputWithPooling):
    r"""
    The video side of an Hour-LLaVA forward pass (`video_outputs`), or `get_video_features`' output.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(sum_T, g*g, C_vision)`):
            Pooled vision features of every frame, before the projector (what the feature cache stores).
        pooler_output (`torch.FloatTensor` of shape `(sum_T, g*g, D)`):
            The projected frame tokens the memory repository is built from.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The vision tower's hidden states (embeddings, then each layer), every frame: `(sum_T, P, C_vision)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            The vision tower's attention weights per layer, every frame (eager attention only).
        kept_frame_indices (`tuple(torch.LongTensor)`, *optional*):
            Per video, the indices into that video's decoded frames (`0..T-1`) that temporal forgetting kept for the
            language model's input, ascending. Filled by `forward`, not by `get_video_features`.
        memory_attention (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            Per video, shape `(T,)`: the share of MemAug's cross-attention (the decayed-video queries, averaged over
            every block and head) that lands on each decoded frame, upsampled copies folded onto their frame; sums
            to 1. Needs MemAug to run with eager attention (`model.set_attn_implementation("eager")`).
    """

    kept_frame_indices: tuple[torch.LongTensor, ...] | None = None
    memory_attention: tuple[torch.FloatTensor, ...] | None = None


def concat_per_layer(per_chunk: Iterable[tuple[torch.Tensor, ...] | None]) -> tuple[torch.Tensor, ...] | None:
    """Join per-chunk tuples of per-layer tensors along the frame (batch) axis: one tensor per layer."""
    per_chunk = [layers for layers in per_chunk if layers]
    if not per_chunk:
        return None
    return tuple(torch.cat(layer) for layer in zip(*per_chunk))


class HourLlavaPreTrainedModel(PreTrainedModel):
    config: HourLlavaConfig
    base_model_prefix = "model"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["HourLlavaMemAugLayer"]
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False  # per-video loops over data-dependent lengths

    def post_init(self):
        super().post_init()
        # Cards that transformers (`push_to_hub`) and TRL (trainers) write carry these tags.
        self.add_model_tags(["hour-llava", "video-text-to-text"])

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual, with an `auto_map` for every Auto class (entries already present are kept)."""
        self.config.auto_map = {**REMOTE_CODE_AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, HourLlavaModel):
            init.normal_(module.image_newline, mean=0.0, std=1 / math.sqrt(self.config.text_config.hidden_size))

    @torch.no_grad()
    @init.guard_torch_init_functions()
    def initialize_weights(self) -> None:
        """Give every module the init of the model class it belongs to, as for transformers' own models.

        `PreTrainedModel.initialize_weights` has a shortcut for classes defined outside transformers: it marks every
        module without parameters of its own as initialised, for remote code that writes weights in place. That
        skips SigLIP's attention and MLP blocks, whose init sets their Linear layers, so vision-tower weights missing
        from a checkpoint got the wrong distribution. Every init here goes through `transformers.initialization`,
        which never touches a loaded tensor, so the shortcut is not needed.
        """

        def initialize(module: nn.Module, initialize_module) -> None:
            for child in module.children():
                # A sub-model (vision tower, language model) initialises its own modules.
                initialize(child, child._initialize_weights if isinstance(child, PreTrainedModel) else initialize_module)
            initialize_module(module, is_custom_code=False)

        initialize(self, self._initialize_weights)


def warn_no_memaug_query_mask() -> None:
    logger.warning_once(
        "No `memaug_query_mask` was given, so every text token joins the MemAug query. The released checkpoints "
        "were trained without assistant turns and `\\n`/`<|im_start|>`/`<|im_end|>` tokens in the query; "
        "HourLlavaProcessor builds that mask."
    )


class HourLlavaMultiModalProjector(nn.Module):
    """The reference's `mlp2x_gelu`: Linear(vision, text) -> GELU -> Linear(text, text)."""

    def __init__(self, config: HourLlavaConfig):
        super().__init__()
        text_hidden = config.text_config.hidden_size
        self.linear_1 = nn.Linear(config.vision_config.hidden_size, text_hidden)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(text_hidden, text_hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class HourLlavaModel(HourLlavaPreTrainedModel):
    """Vision tower, projector, newline embedding, MemAug and the Qwen2 backbone, up to the last hidden state."""

    def __init__(self, config: HourLlavaConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        # Hour-LLaVA reads the last encoder layer before SigLIP's post-layernorm, so that norm is never applied: no
        # weights for it, hence none to save and none that DDP would find without a gradient.
        self.vision_tower.post_layernorm = nn.Identity()
        self.multi_modal_projector = HourLlavaMultiModalProjector(config)
        self.image_newline = nn.Parameter(torch.zeros(config.text_config.hidden_size))
        self.memory_augmentation = HourLlavaMemoryAugmentation(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    # ----------------------------------------------------------------------------------------------------------
    # Vision: frames -> pooled features -> projected frame tokens
    # ----------------------------------------------------------------------------------------------------------
    def pool_frame_features(self, patch_features: torch.Tensor) -> torch.Tensor:
        """Bilinearly pool each frame's square patch grid to `video_pool_size`^2 tokens: (N, P, C) -> (N, g*g, C)."""
        num_frames, num_patches, channels = patch_features.shape
        side = math.isqrt(num_patches)
        grid = patch_features.view(num_frames, side, side, channels).permute(0, 3, 1, 2)
        size = self.config.video_pool_size
        pooled = nn.functional.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
        return pooled.permute(0, 2, 3, 1).reshape(num_frames, size * size, channels)

    def get_pooled_frame_features(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]):
        """The vision tower's output for a batch of frames, its `last_hidden_state` pooled to `(N, g*g, C_vision)`.

        The pooled states are the last encoder layer's: the tower's `post_layernorm` is an identity here (never
        applied, as in the reference). `output_hidden_states` / `output_attentions` reach the tower.
        """
        outputs = self.run_vision_tower(pixel_values, **kwargs)
        outputs.last_hidden_state = self.pool_frame_features(outputs.last_hidden_state)
        return outputs

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        vision_chunk_size: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | HourLlavaVideoOutput:
        r"""
        Run the vision tower over all frames, `vision_chunk_size` frames at a time.

        pixel_values_videos (`torch.FloatTensor` of shape `(sum_T, 3, S, S)` or `(B, T, 3, S, S)`):
            Every frame of every video.
        vision_chunk_size (`int`, *optional*):
            Frames per pass through the tower; `config.vision_chunk_size` by default.

        Returns an `HourLlavaVideoOutput` whose `last_hidden_state` holds the pooled vision features before the
        projector, `(sum_T, g*g, C_vision)` (what the feature cache stores), whose `pooler_output` holds the
        projected frame tokens, `(sum_T, g*g, D)`, and, when asked for, the tower's hidden states and attentions
        over every frame. A tuple with `return_dict=False`.
        """
        if pixel_values_videos.dim() == 5:
            pixel_values_videos = pixel_values_videos.flatten(0, 1)
        return self.encode_in_chunks(
            pixel_values_videos, self.get_pooled_frame_features, HourLlavaVideoOutput, vision_chunk_size, **kwargs
        )

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        vision_chunk_size: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | BaseModelOutputWithPooling:
        r"""
        Run the vision tower over every image crop, `vision_chunk_size` crops at a time, without pooling.

        pixel_values (`torch.FloatTensor` of shape `(sum_crops, 3, S, S)`):
            Every crop of every image (`HourLlavaImageProcessor`'s output).
        vision_chunk_size (`int`, *optional*):
            Crops per pass through the tower; `config.vision_chunk_size` by default.

        Returns a `BaseModelOutputWithPooling` whose `last_hidden_state` holds the vision tower's last encoder layer
        (before SigLIP's post-layernorm, as the reference reads it), `(sum_crops, g*g, C_vision)`, and whose
        `pooler_output` holds the projected crop tokens, `(sum_crops, g*g, D)`: spec §3, 729 tokens per crop.
        """
        return self.encode_in_chunks(
            pixel_values, self.run_vision_tower, BaseModelOutputWithPooling, vision_chunk_size, **kwargs
        )

    def run_vision_tower(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]):
        return self.vision_tower(pixel_values.to(self.vision_tower.dtype), **kwargs)

    def encode_in_chunks(
        self,
        pixel_values: torch.Tensor,
        encode,
        output_class: type[BaseModelOutputWithPooling],
        vision_chunk_size: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """`encode` every chunk of `vision_chunk_size` crops or frames, join the chunks and project the states."""
        chunk_size = vision_chunk_size or self.config.vision_chunk_size
        chunks = [encode(chunk, **kwargs) for chunk in pixel_values.split(chunk_size)]
        states = torch.cat([chunk.last_hidden_state for chunk in chunks])
        return output_class(
            last_hidden_state=states,
            pooler_output=self.multi_modal_projector(states),
            hidden_states=concat_per_layer(chunk.hidden_states for chunk in chunks),
            attentions=concat_per_layer(chunk.attentions for chunk in chunks),
        )

    def get_pooled_video_features(self, pixel_chunks: Iterable[torch.Tensor]) -> torch.Tensor:
        """Pooled vision features `(T, g*g, C_vision)` of one video given as chunks of preprocessed frames.

        Feed it `HourLlavaVideoProcessor.iter_video_chunks(...)` pixel chunks: only one chunk of pixels is alive at a
        time, so an hour of video costs the memory repository, not 6 GB of float pixels. The result is what
        `forward` and `generate` take as `pooled_video_features`.
        """
        return torch.cat(
            [self.get_pooled_frame_features(chunk.to(self.device)).last_hidden_state for chunk in pixel_chunks]
        )

    def project_pooled_features(self, pooled_video_features: torch.Tensor) -> HourLlavaVideoOutput:
        """The same output as `get_video_features`, from cached pooled features instead of pixels."""
        pooled = pooled_video_features.to(self.multi_modal_projector.linear_1.weight.dtype)
        return HourLlavaVideoOutput(last_hidden_state=pooled, pooler_output=self.multi_modal_projector(pooled))

    # ----------------------------------------------------------------------------------------------------------
    # Memory repository and forgetting
    # ----------------------------------------------------------------------------------------------------------
    def uses_random_forgetting(self) -> bool:
        return self.training and self.config.spatial_sampling_type == "random"

    def build_video_memory(
        self, frame_tokens: torch.Tensor, generator: torch.Generator | None = None
    ) -> VideoMemory:
        """Memory repository and decayed tokens of one video from its projected frame tokens `(T, g*g, D)`."""
        config = self.config
        num_frames = frame_tokens.shape[0]
        source_frames = upsample_frame_indices(num_frames, config.min_video_frames)
        if len(source_frames) != num_frames:
            frame_tokens = frame_tokens[torch.as_tensor(source_frames, device=frame_tokens.device)]
        effective_frames = frame_tokens.shape[0]
        kept_frames = temporal_keep_indices(effective_frames, config.num_kept_frames(num_frames))
        if self.uses_random_forgetting():
            spatial = random_spatial_indices(
                effective_frames, config.video_pool_size, config.spatial_keep_tokens, generator
            )
        else:
            spatial = uniform_spatial_indices(config.video_pool_size, config.spatial_keep_tokens)
        return assemble_video_memory(frame_tokens, self.image_newline, spatial, kept_frames, source_frames)

    def build_video_memories(
        self,
        video_features: BaseModelOutputWithPooling,
        video_num_frames: list[int],
        generator: torch.Generator | None = None,
    ) -> list[VideoMemory]:
        frame_tokens = video_features.pooler_output
        return [self.build_video_memory(tokens, generator) for tokens in frame_tokens.split(video_num_frames)]

    @staticmethod
    def video_frame_counts(total_frames: int, video_num_frames: torch.Tensor | list[int] | None) -> list[int]:
        """Frames per video as a list, checked against the frames given (one video when no counts are given)."""
        counts = [total_frames] if video_num_frames is None else [int(n) for n in video_num_frames]
        if sum(counts) != total_frames or min(counts, default=1) < 1:
            raise ValueError(
                f"video_num_frames={counts} (sum {sum(counts)}) does not split the {total_frames} frames "
                "given; every video needs at least one frame."
            )
        return counts

    # ----------------------------------------------------------------------------------------------------------
    # Image memory and forgetting (spec 4.2 / 4.2a)
    # ----------------------------------------------------------------------------------------------------------
    def anyres_tile_features(self, tile_tokens: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """A single image's tile tokens `(rows * cols, g*g, D)` as one `(h, w, D)` grid: tiles side by side, the
        rows and columns that saw only padding removed, shrunk bilinearly when larger than `max_image_tiles` tiles."""
        config, grid = self.config, self.config.image_grid_size
        rows, cols = anyres_tile_grid(image_size, config.image_grid_pinpoints, config.vision_config.image_size)
        if tile_tokens.shape[0] != rows * cols:
            raise ValueError(
                f"An image of size {tuple(image_size)} (height, width) is tiled {rows}x{cols} by "
                f"config.image_grid_pinpoints, so it needs 1 + {rows * cols} crops, but it has "
                f"{tile_tokens.shape[0] + 1} (image_num_crops); the image processor's pinpoints must be the model's."
            )
        hidden = tile_tokens.shape[-1]
        tiles = tile_tokens.view(rows, cols, grid, grid, hidden).permute(0, 2, 1, 3, 4).reshape(rows * grid, -1, hidden)
        height, width = unpadded_feature_grid(image_size, (rows * grid, cols * grid))
        top, left = (rows * grid - height) // 2, (cols * grid - width) // 2
        tiles = tiles[top : top + height, left : left + width]
        capped = capped_feature_grid(height, width, grid, config.max_image_tiles)
        if capped != (height, width):
            channels_first = tiles.permute(2, 0, 1)[None]
            resized = nn.functional.interpolate(channels_first, size=capped, mode="bilinear", align_corners=False)
            tiles = resized[0].permute(1, 2, 0)
        return tiles

    def build_anyres_image_memory(
        self,
        crop_tokens: torch.Tensor,
        image_size: tuple[int, int],
        kept: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> MediaMemory:
        """Memory and decayed tokens of a sample's single image from its projected crops `(1 + n, g*g, D)`.

        Memory `[base g*g ; tile rows, each closed by a newline]`: tile ids `arange(h*w)`, the base reusing them
        (`base_grid_position_ids`), every newline `h*w`. Decayed `[base kept ; tile kept, a newline after every row
        that keeps any]`. `kept` is `(base_run, tile_run)` of raster indices; uniform `[::2, ::2]` when None.
        """
        grid = self.config.image_grid_size
        base, tiles = crop_tokens[0], self.anyres_tile_features(crop_tokens[1:], image_size)
        height, width, hidden = tiles.shape
        base_kept, tile_kept = kept if kept is not None else (None, None)
        base_kept = self.checked_kept_indices(base_kept, grid, grid, "base crop")
        tile_kept = self.checked_kept_indices(tile_kept, height, width, f"{height}x{width} tile grid")
        device = crop_tokens.device
        # the newline is appended after the flattened tiles, at index h*w: its position id is also its index
        tile_tokens = torch.cat([tiles.reshape(height * width, hidden), self.image_newline[None].to(tiles.dtype)])
        base_ids = base_grid_position_ids(grid, height, width).to(device)
        tile_memory_ids = tile_memory_position_ids(height, width).to(device)
        tile_query_ids = rows_closed_by_newlines(tile_kept, width, height * width).to(device)
        base_kept = base_kept.to(device)
        return MediaMemory(
            repository=torch.cat([base, tile_tokens[tile_memory_ids]]),
            repository_position_ids=torch.cat([base_ids, tile_memory_ids]),
            decayed=torch.cat([base[base_kept], tile_tokens[tile_query_ids]]),
            decayed_position_ids=torch.cat([base_ids[base_kept], tile_query_ids]),
        )

    def build_multi_image_memories(
        self, crop_tokens: torch.Tensor, kept: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> list[MediaMemory]:
        """Memory and decayed tokens of each image of a multi-image sample, from their crops `(N, g*g, D)`.

        Image `i` keeps its `g*g` tokens plus a newline in the memory (ids `i*g*g + s`, newline `N*g*g`) and its kept
        tokens plus a newline in the query; `kept[i][0]` are its kept raster indices, uniform `[::2, ::2]` when None.
        """
        grid, num_images = self.config.image_grid_size, crop_tokens.shape[0]
        newline = self.image_newline[None].to(crop_tokens.dtype)
        memories = []
        for index, tokens in enumerate(crop_tokens):
            image_kept = self.checked_kept_indices(None if kept is None else kept[index][0], grid, grid, "image")
            memory_ids, query_ids = multi_image_position_ids(index, num_images, grid, image_kept)
            image_kept = image_kept.to(tokens.device)
            memories.append(
                MediaMemory(
                    repository=torch.cat([tokens, newline]),
                    repository_position_ids=memory_ids.to(tokens.device),
                    decayed=torch.cat([tokens[image_kept], newline]),
                    decayed_position_ids=query_ids.to(tokens.device),
                )
            )
        return memories

    def checked_kept_indices(self, kept: torch.Tensor | None, height: int, width: int, what: str) -> torch.Tensor:
        """The given kept raster indices of a `height x width` grid, checked; the uniform `[::2, ::2]` when None."""
        if kept is None:
            if self.uses_random_forgetting():
                raise ValueError(
                    "Images in training mode with config.spatial_sampling_type='random' need image_kept_indices and "
                    "image_kept_lengths: call the processor with image_forgetting='random' (the training collator "
                    "does), so that the placeholder count matches the random draw."
                )
            return uniform_grid_indices(height, width)
        kept = kept.long().cpu()
        ascending = bool((kept[1:] > kept[:-1]).all())
        if kept.numel() == 0 or not ascending or int(kept[0]) < 0 or int(kept[-1]) >= height * width:
            raise ValueError(
                f"image_kept_indices for a {what} must be non-empty, strictly ascending raster indices of its "
                f"{height}x{width} grid (0..{height * width - 1}), got {kept.tolist()}."
            )
        return kept

    # ----------------------------------------------------------------------------------------------------------
    # MemAug over each sample's [text before ; decayed video ; text after]
    # ----------------------------------------------------------------------------------------------------------
    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, token_id: int | None = None
    ) -> torch.Tensor:
        """`(B, L)` bool mask of the placeholder tokens `token_id` (the video placeholder by default)."""
        token_id = self.config.video_token_id if token_id is None else token_id
        if input_ids is not None:
            return input_ids == token_id
        embedding = self.get_input_embeddings()(torch.tensor(token_id, dtype=torch.long, device=inputs_embeds.device))
        return (inputs_embeds == embedding).all(-1)

    def refine_video_tokens(
        self,
        sample_embeds: torch.Tensor,
        query_text_mask: torch.Tensor,
        start: int,
        end: int,
        memory: VideoMemory,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """MemAug output for the video rows of one sample whose placeholder span is `[start, end)`.

        With `output_attentions` (and eager MemAug attention), also the share of the decayed-video queries'
        cross-attention that lands on each decoded frame (see `HourLlavaVideoOutput.memory_attention`).
        """
        refined, attentions = self.refine_media_tokens(
            sample_embeds, query_text_mask, [(start, end)], [memory], output_attentions
        )
        if attentions is None:
            return refined[0], None
        return refined[0], memory.per_source_frame(attentions[0])

    def refine_media_tokens(
        self,
        sample_embeds: torch.Tensor,
        query_text_mask: torch.Tensor,
        spans: list[tuple[int, int]],
        memories: list[MediaMemory],
        output_attentions: bool = False,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """MemAug over one sample: the query `[text ; media 0 ; text ; ... ; text]` (each media's decayed tokens at
        its placeholder span `[start, end)`, the text between them filtered by `query_text_mask`) reads the memories
        of all the sample's media, concatenated. Returns each media's refined rows, and with `output_attentions`
        (eager MemAug attention) each media's query rows' cross-attention over that memory, averaged, `(M,)`.

        Query ids as the reference builds them (`interleaved_query_position_ids`); memory ids as each media has
        them, or, with `memory_position_mode="aligned"`, shifted by the same offset as its query tokens.
        """
        if not self.memory_augmentation.layers:  # memaug_depth=0: the decayed tokens go to the LLM as they are
            return [memory.decayed for memory in memories], None
        bounds = [0, *(edge for span in spans for edge in span), sample_embeds.shape[0]]
        texts = [sample_embeds[a:b][query_text_mask[a:b]] for a, b in zip(bounds[0::2], bounds[1::2])]
        query_position_ids, offsets = interleaved_query_position_ids(
            [text.shape[0] for text in texts],
            [memory.decayed_position_ids for memory in memories],
            [memory.position_span for memory in memories],
        )
        query, rows = [texts[0]], []
        for memory, text in zip(memories, texts[1:]):
            start = sum(part.shape[0] for part in query)
            rows.append((start, start + memory.decayed.shape[0]))
            query += [memory.decayed.to(sample_embeds.dtype), text]
        aligned = self.config.memory_position_mode == "aligned"
        outputs = self.memory_augmentation(
            torch.cat(query)[None],
            torch.cat([memory.repository for memory in memories]).to(sample_embeds.dtype)[None],
            query_position_ids[None],
            torch.cat(
                [m.repository_position_ids + (offset if aligned else 0) for m, offset in zip(memories, offsets)]
            )[None],
            output_attentions=output_attentions,
        )
        refined = [outputs.last_hidden_state[0, start:end] for start, end in rows]
        if not outputs.attentions:  # not asked for, or an attention implementation that never builds the weights
            return refined, None
        attentions = [
            torch.stack([weights[0, :, start:end] for weights in outputs.attentions]).float().mean(dim=(0, 1, 2))
            for start, end in rows
        ]
        return refined, attentions

    def insert_image_tokens(
        self,
        inputs_embeds: torch.Tensor,
        image_token_mask: torch.Tensor,
        query_text_mask: torch.Tensor,
        image_outputs: BaseModelOutputWithPooling,
        image_sizes: torch.Tensor,
        image_num_crops: torch.Tensor | None,
        batch_num_images: torch.Tensor | None,
        image_kept_indices: torch.Tensor | None,
        image_kept_lengths: torch.Tensor | None,
    ) -> torch.Tensor:
        """Memory, forgetting and MemAug for every image; returns the embeddings with the refined image tokens."""
        if image_sizes is None:
            raise ValueError("pixel_values need image_sizes (the processor's output), to lay out and unpad the tiles.")
        sizes = [tuple(int(side) for side in size) for size in torch.as_tensor(image_sizes).reshape(-1, 2)]
        samples = self.images_per_sample(image_token_mask, batch_num_images, len(sizes))
        crop_counts = self.image_crop_counts(sizes, samples, image_num_crops)
        check_crop_counts(crop_counts, samples, image_outputs.pooler_output.shape[0])
        crops = image_outputs.pooler_output.split(crop_counts)
        kept = [None] * len(sizes)
        if image_kept_indices is not None:
            kept = split_kept_indices(torch.as_tensor(image_kept_indices), image_kept_lengths, len(sizes))
        refined = []
        for sample, first, count in samples:
            if count == 1:
                memories = [self.build_anyres_image_memory(crops[first], sizes[first], kept[first])]
            else:
                memories = self.build_multi_image_memories(
                    torch.cat(crops[first : first + count]), self.multi_image_kept(kept[first : first + count])
                )
            spans = self.image_spans(image_token_mask[sample], [m.decayed.shape[0] for m in memories], sample)
            tokens, _ = self.refine_media_tokens(inputs_embeds[sample], query_text_mask[sample], spans, memories)
            refined += tokens
        refined = torch.cat(refined).to(inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(image_token_mask.unsqueeze(-1).to(inputs_embeds.device), refined)

    @staticmethod
    def images_per_sample(
        image_token_mask: torch.Tensor, batch_num_images: torch.Tensor | None, num_images: int
    ) -> list[tuple[int, int, int]]:
        """`(sample, first image, number of images)` of every sample with images, in batch order.

        Without `batch_num_images`, each sample with image placeholders has one image (LLaVA-OneVision's default).
        """
        has_tokens = image_token_mask.any(-1).tolist()
        counts = [int(n) for n in batch_num_images] if batch_num_images is not None else [int(h) for h in has_tokens]
        if len(counts) != len(has_tokens) or sum(counts) != num_images:
            raise ValueError(
                f"batch_num_images={counts} must give the number of images of each of the {len(has_tokens)} samples "
                f"and sum to the {num_images} images given (image_sizes)."
            )
        samples, first = [], 0
        for sample, (count, has_placeholders) in enumerate(zip(counts, has_tokens)):
            if bool(count) != has_placeholders:
                raise ValueError(
                    f"Sample {sample} has {count} images (batch_num_images) but "
                    f"{'' if has_placeholders else 'no '}image placeholder tokens."
                )
            if count:
                samples.append((sample, first, count))
                first += count
        return samples

    def image_crop_counts(
        self, image_sizes: list[tuple[int, int]], samples: list[tuple[int, int, int]], image_num_crops
    ) -> list[int]:
        """Crops per image: `image_num_crops`, or what the image processor makes (`1 + rows * cols` for a sample's
        single image, one for each image of a multi-image sample); checked against the crops given."""
        if image_num_crops is not None:
            counts = [int(n) for n in image_num_crops]
            if len(counts) != len(image_sizes):
                raise ValueError(
                    f"image_num_crops={counts} gives {len(counts)} images, image_sizes {len(image_sizes)}."
                )
            return counts
        config, counts = self.config, []
        for _, first, count in samples:
            for size in image_sizes[first : first + count]:
                rows, cols = anyres_tile_grid(size, config.image_grid_pinpoints, config.vision_config.image_size)
                counts.append(1 + rows * cols if count == 1 else 1)
        return counts

    @staticmethod
    def multi_image_kept(kept: list[tuple[torch.Tensor, torch.Tensor] | None]) -> list[tuple] | None:
        if kept[0] is None:
            return None
        if any(tile_run.numel() for _, tile_run in kept):
            raise ValueError(
                "image_kept_lengths gives a tile run to an image of a multi-image sample; such images have one crop "
                "and only a base run ([k, 0])."
            )
        return kept

    @staticmethod
    def image_spans(row_mask: torch.Tensor, token_counts: list[int], sample: int) -> list[tuple[int, int]]:
        """`(start, end)` of each image's placeholder tokens in one sample: the placeholders in order, cut by the
        images' token counts, each image's run contiguous (an `<image>` expanded in place)."""
        positions = row_mask.nonzero().flatten().tolist()
        if len(positions) != sum(token_counts):
            raise ValueError(
                f"Image features and image tokens do not match: sample {sample} has {len(positions)} image "
                f"placeholder tokens, but its {len(token_counts)} image(s) yield {sum(token_counts)} image tokens "
                f"({token_counts} per image)."
            )
        spans, first = [], 0
        for image, count in enumerate(token_counts):
            start, end = positions[first], positions[first + count - 1] + 1
            if end - start != count:
                raise ValueError(
                    f"Sample {sample}: the placeholder tokens of its image {image} are not one contiguous run of "
                    f"{count}; each <image> must be expanded in place to its image's token count."
                )
            spans.append((start, end))
            first += count
        return spans

    def video_spans(self, video_token_mask: torch.Tensor) -> list[tuple[int, int, int]]:
        """`(sample, start, end)` of each sample's contiguous run of video placeholders, in batch order."""
        spans = []
        for sample, row in enumerate(video_token_mask):
            positions = row.nonzero().flatten()
            if positions.numel() == 0:
                continue
            start, end = int(positions[0]), int(positions[-1]) + 1
            if end - start != positions.numel():
                raise ValueError(
                    f"Sample {sample} has {positions.numel()} video placeholder tokens that do not form one contiguous "
                    "span; Hour-LLaVA takes one video per sample, its placeholder expanded in place."
                )
            spans.append((sample, start, end))
        return spans

    def merge_video_tokens(
        self,
        inputs_embeds: torch.Tensor,
        video_token_mask: torch.Tensor,
        query_text_mask: torch.Tensor,
        memories: list[VideoMemory],
        video_num_frames: list[int],
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Replace each video's placeholders by its refined tokens; also each video's `memory_attention` if asked."""
        spans = self.video_spans(video_token_mask)
        if len(spans) != len(memories):
            raise ValueError(
                f"The batch has {len(spans)} samples with video placeholder tokens but {len(memories)} videos "
                f"(video_num_frames={video_num_frames}); each video needs exactly one placeholder span."
            )
        refined, memory_attention = [], []
        for (sample, start, end), memory, num_frames in zip(spans, memories, video_num_frames):
            expected = memory.decayed.shape[0]
            if end - start != expected:
                raise ValueError(
                    f"Video features and video tokens do not match: sample {sample} has {end - start} video "
                    f"placeholder tokens, but its video of {num_frames} frames yields {expected} decayed video tokens."
                )
            tokens, attention = self.refine_video_tokens(
                inputs_embeds[sample], query_text_mask[sample], start, end, memory, output_attentions
            )
            refined.append(tokens)
            memory_attention.append(attention)
        refined = torch.cat(refined).to(inputs_embeds.dtype)
        memory_attention = tuple(memory_attention) if all(a is not None for a in memory_attention) else None
        return inputs_embeds.masked_scatter(video_token_mask.unsqueeze(-1), refined), memory_attention

    def query_text_mask(
        self,
        placeholder_mask: torch.Tensor,
        attention_mask: torch.Tensor | None,
        memaug_query_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Text tokens that join the MemAug query: the processor's `memaug_query_mask`, minus padding and the video
        and image placeholders (`placeholder_mask`).

        `attention_mask` tells padding only as a 2D tensor; with a static cache, generation passes per-layer 4D masks
        instead, and `prepare_inputs_for_generation` has already folded the 2D mask into `memaug_query_mask`.
        """
        mask = ~placeholder_mask
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            mask = mask & attention_mask.bool()
        if memaug_query_mask is None:
            warn_no_memaug_query_mask()
            return mask
        seq_len = mask.shape[1]
        memaug_query_mask = memaug_query_mask[:, :seq_len].bool()
        if memaug_query_mask.shape[1] < seq_len:  # tokens generated without a cache are assistant tokens
            memaug_query_mask = nn.functional.pad(memaug_query_mask, (0, seq_len - memaug_query_mask.shape[1]))
        return mask & memaug_query_mask.to(mask.device)

    def connect_idle_video_modules(
        self, inputs_embeds: torch.Tensor, vision_tower: bool, video_path: bool
    ) -> torch.Tensor:
        """In training, add zero times a dummy pass through the vision modules this batch did not use.

        DDP and ZeRO expect every rank to use the same parameters in every step, and a text-only batch (or one of
        cached video features and no images) would leave the vision side out of one rank's graph. Like the
        reference's dummy image, this runs the modules themselves on a one-frame dummy rather than summing their
        weights, so FSDP's and ZeRO's gather hooks still manage sharded parameters. Modules without trainable
        parameters are skipped.
        """
        if not (self.training and torch.is_grad_enabled() and (vision_tower or video_path)):
            return inputs_embeds
        dummy = inputs_embeds.new_zeros(())
        pooled = None
        if vision_tower and has_trainable_parameters(self.vision_tower):
            size = self.config.vision_config.image_size
            pooled = self.get_pooled_frame_features(inputs_embeds.new_zeros(1, 3, size, size)).last_hidden_state
            dummy = dummy + pooled.sum()
        if video_path and has_trainable_parameters(
            self.multi_modal_projector, self.memory_augmentation, self.image_newline
        ):
            if pooled is None:
                tokens_per_frame = self.config.video_pool_size**2
                pooled = inputs_embeds.new_zeros(1, tokens_per_frame, self.config.vision_config.hidden_size)
            tokens = self.multi_modal_projector(pooled)[0]
            memory = torch.cat([tokens, self.image_newline[None].to(tokens.dtype)])  # one frame of memory
            positions = torch.arange(memory.shape[0], device=memory.device)[None]
            refined = self.memory_augmentation(
                memory[None, -1:], memory[None], positions[:, -1:], positions
            ).last_hidden_state
            dummy = dummy + memory.sum() + refined.sum()
        return inputs_embeds + dummy.to(inputs_embeds.dtype) * 0.0

    @merge_with_config_defaults
    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_num_frames: torch.LongTensor | None = None,
        pooled_video_features: torch.FloatTensor | None = None,
        memaug_query_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        forgetting_generator: torch.Generator | None = None,
        pixel_values: torch.FloatTensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        image_num_crops: torch.LongTensor | None = None,
        batch_num_images: torch.LongTensor | None = None,
        image_kept_indices: torch.LongTensor | None = None,
        image_kept_lengths: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | MultimodalBaseModelOutputWithPast:
        r"""
        pixel_values_videos (`torch.FloatTensor` of shape `(sum_T, 3, S, S)` or `(B, T, 3, S, S)`):
            Every frame of every video in the batch, videos in sample order.
        video_num_frames (`torch.LongTensor` of shape `(num_videos,)`):
            Frames per video, to split the frames; may be omitted for a single video or a 5D tensor.
        pooled_video_features (`torch.FloatTensor` of shape `(sum_T, g*g, C_vision)`):
            Pooled vision features before the projector (a feature cache), used instead of `pixel_values_videos`.
        memaug_query_mask (`torch.Tensor` of shape `(B, L)`):
            1 for the text tokens that join the MemAug query (built by `HourLlavaProcessor`).
        forgetting_generator (`torch.Generator`, *optional*):
            CPU generator for random spatial forgetting of videos in training mode; torch's default one otherwise.
        pixel_values (`torch.FloatTensor` of shape `(sum_crops, 3, S, S)`):
            Every crop of every image, images in sample order (`HourLlavaImageProcessor`): a sample's single image is
            tiled (`1 + rows * cols` crops), each image of a multi-image sample is one padded crop.
        image_sizes (`torch.LongTensor` of shape `(num_images, 2)`):
            Each image's original (height, width), to lay out and unpad its tiles.
        image_num_crops (`torch.LongTensor` of shape `(num_images,)`, *optional*):
            Crops per image; computed from `image_sizes` and `config.image_grid_pinpoints` when omitted.
        batch_num_images (`torch.LongTensor` of shape `(B,)`, *optional*):
            Images per sample; one for each sample with image placeholders when omitted.
        image_kept_indices (`torch.LongTensor` of shape `(sum_kept,)`, *optional*):
            The processor's spatial-forgetting draw (`image_forgetting="random"`): per image, the kept raster indices
            of its base crop, then of its unpadded tile grid. Uniform `[::2, ::2]` forgetting when omitted.
        image_kept_lengths (`torch.LongTensor` of shape `(num_images, 2)`, *optional*):
            Per image, the lengths of its base run and tile run in `image_kept_indices`.

        `video_outputs` is an `HourLlavaVideoOutput`: the pooled and projected features, the frames forgetting kept
        and, with `output_attentions=True`, the vision tower's attentions and where MemAug looked.
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds.")
        if pixel_values_videos is not None and pooled_video_features is not None:
            raise ValueError("Pass either pixel_values_videos or pooled_video_features, not both.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        video_outputs = image_outputs = None
        if pixel_values_videos is not None and pixel_values_videos.dim() == 5 and video_num_frames is None:
            video_num_frames = [pixel_values_videos.shape[1]] * pixel_values_videos.shape[0]
        output_flags = {key: kwargs[key] for key in ("output_hidden_states", "output_attentions") if key in kwargs}
        if pixel_values_videos is not None:
            video_outputs = self.get_video_features(pixel_values_videos, **output_flags)
        elif pooled_video_features is not None:
            video_outputs = self.project_pooled_features(pooled_video_features)
        has_images = pixel_values is not None and pixel_values.shape[0] > 0  # a text-only batch may hold 0 crops
        if has_images:
            image_outputs = self.get_image_features(pixel_values, **output_flags)
        inputs_embeds = self.connect_idle_video_modules(
            inputs_embeds,
            vision_tower=pixel_values_videos is None and not has_images,
            video_path=video_outputs is None and not has_images,
        )

        if video_outputs is not None or has_images:
            video_token_mask = self.get_placeholder_mask(input_ids, inputs_embeds)
            image_token_mask = self.get_placeholder_mask(input_ids, inputs_embeds, self.config.image_token_id)
            check_one_media_kind_per_sample(video_token_mask, image_token_mask)
            placeholder_mask = video_token_mask | image_token_mask
            query_text_mask = self.query_text_mask(placeholder_mask, attention_mask, memaug_query_mask)
        if video_outputs is not None:
            inputs_embeds = self.insert_video_tokens(
                inputs_embeds,
                video_token_mask,
                query_text_mask,
                video_outputs,
                video_num_frames,
                forgetting_generator,
                output_attentions=kwargs.get("output_attentions", self.config.output_attentions),
            )
        if has_images:
            inputs_embeds = self.insert_image_tokens(
                inputs_embeds,
                image_token_mask,
                query_text_mask,
                image_outputs,
                image_sizes,
                image_num_crops,
                batch_num_images,
                image_kept_indices,
                image_kept_lengths,
            )

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return MultimodalBaseModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=image_outputs,
            video_outputs=video_outputs,
        )

    def insert_video_tokens(
        self,
        inputs_embeds: torch.Tensor,
        video_token_mask: torch.Tensor,
        query_text_mask: torch.Tensor,
        video_outputs: HourLlavaVideoOutput,
        video_num_frames: torch.Tensor | list[int] | None,
        forgetting_generator: torch.Generator | None,
        output_attentions: bool = False,
    ) -> torch.Tensor:
        """Memory, forgetting and MemAug for every video; returns the embeddings with the refined video tokens.

        Fills `video_outputs.kept_frame_indices` (and `memory_attention` when `output_attentions` is set).
        """
        num_frames = self.video_frame_counts(video_outputs.pooler_output.shape[0], video_num_frames)
        memories = self.build_video_memories(video_outputs, num_frames, forgetting_generator)
        inputs_embeds, memory_attention = self.merge_video_tokens(
            inputs_embeds, video_token_mask, query_text_mask, memories, num_frames, output_attentions
        )
        video_outputs.kept_frame_indices = tuple(memory.kept_source_frames() for memory in memories)
        video_outputs.memory_attention = memory_attention
        return inputs_embeds


class HourLlavaForConditionalGeneration(HourLlavaPreTrainedModel, GenerationMixin):
    """`HourLlavaModel` with a language-modelling head; generation builds the memory once, at prefill."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: HourLlavaConfig):
        super().__init__(config)
        self.model = HourLlavaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_video_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        vision_chunk_size: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | HourLlavaVideoOutput:
        return self.model.get_video_features(pixel_values_videos, vision_chunk_size=vision_chunk_size, **kwargs)

    def get_pooled_video_features(self, pixel_chunks: Iterable[torch.Tensor]) -> torch.Tensor:
        return self.model.get_pooled_video_features(pixel_chunks)

    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        vision_chunk_size: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | BaseModelOutputWithPooling:
        return self.model.get_image_features(pixel_values, vision_chunk_size=vision_chunk_size, **kwargs)

    @merge_with_config_defaults
    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_num_frames: torch.LongTensor | None = None,
        pooled_video_features: torch.FloatTensor | None = None,
        memaug_query_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        forgetting_generator: torch.Generator | None = None,
        pixel_values: torch.FloatTensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        image_num_crops: torch.LongTensor | None = None,
        batch_num_images: torch.LongTensor | None = None,
        image_kept_indices: torch.LongTensor | None = None,
        image_kept_lengths: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | MultimodalCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(B, L)`, *optional*):
            Next-token targets; -100 marks positions without loss (prompt, video and padding tokens).

        Example:

        ```python
        >>> from transformers import AutoModelForImageTextToText, AutoProcessor
        >>> import hour_llava  # registers the model, processor and pipeline
        >>> model = AutoModelForImageTextToText.from_pretrained("path/to/hour-llava")
        >>> processor = AutoProcessor.from_pretrained("path/to/hour-llava")
        >>> messages = [{"role": "user", "content": [{"type": "video", "path": "match.mp4"},
        ...                                          {"type": "text", "text": "Who scored first?"}]}]
        >>> inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
        ...                                        return_dict=True, return_tensors="pt")
        >>> answer = model.generate(**inputs, max_new_tokens=32)
        ```"""
        outputs = self.model(
            input_ids=input_ids,
            pixel_values_videos=pixel_values_videos,
            video_num_frames=video_num_frames,
            pooled_video_features=pooled_video_features,
            memaug_query_mask=memaug_query_mask,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            forgetting_generator=forgetting_generator,
            pixel_values=pixel_values,
            image_sizes=image_sizes,
            image_num_crops=image_num_crops,
            batch_num_images=batch_num_images,
            image_kept_indices=image_kept_indices,
            image_kept_lengths=image_kept_lengths,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return MultimodalCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
            video_outputs=outputs.video_outputs,
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache: Cache | None = None,
        attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ):
        """Pass the video and image inputs to the prefill step only; decode steps read the KV cache.

        A static cache turns the 2D `attention_mask` into per-layer 4D masks, which no longer say which tokens are
        padding; at prefill the padding is folded into `memaug_query_mask` first, so MemAug's query is the same.
        """
        video_inputs = {key: kwargs.pop(key, None) for key in (*VIDEO_PREFILL_INPUTS, *IMAGE_PREFILL_INPUTS)}
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            cache=cache,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        if not is_first_iteration and kwargs.get("use_cache", True):
            return model_inputs
        media = (video_inputs["pooled_video_features"], kwargs.get("pixel_values_videos"), kwargs.get("pixel_values"))
        has_media = any(value is not None for value in media)
        if is_first_iteration and has_media and isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            video_inputs["memaug_query_mask"] = without_padding(video_inputs["memaug_query_mask"], attention_mask)
        model_inputs.update({key: value for key, value in video_inputs.items() if value is not None})
        return model_inputs

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ):
        """Beam search and `num_return_sequences` repeat each sample `expand_size` times in a row; repeat its video
        with it, in every accepted form (flat frames with `video_num_frames`, 5D `(B, T, ...)` frames with or
        without counts, `pooled_video_features`), and its images with their crops, sizes and kept indices."""
        if expand_size == 1:  # nothing to repeat: do not copy the frames
            return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        frame_keys = [k for k in ("pixel_values_videos", "pooled_video_features") if model_kwargs.get(k) is not None]
        video_inputs = {key: model_kwargs.pop(key) for key in frame_keys}
        num_frames = model_kwargs.pop("video_num_frames", None)
        image_inputs = {}
        if model_kwargs.get("pixel_values") is not None and model_kwargs.get("image_sizes") is not None:
            image_inputs = {key: model_kwargs.pop(key, None) for key in PER_IMAGE_INPUTS}
            image_inputs = self.repeat_each_sample_images(
                image_inputs, model_kwargs.get("batch_num_images"), expand_size
            )
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        model_kwargs.update(image_inputs)
        for key, frames in video_inputs.items():
            model_kwargs[key] = repeat_each_video(frames, num_frames, expand_size)
        if num_frames is not None:
            model_kwargs["video_num_frames"] = torch.as_tensor(num_frames).repeat_interleave(expand_size)
        return input_ids, model_kwargs

    def repeat_each_sample_images(
        self, image_inputs: dict, batch_num_images: torch.Tensor | None, times: int
    ) -> dict[str, torch.Tensor]:
        """The per-image inputs (crops, sizes, crop counts, kept runs) with each sample's images repeated `times`
        times in a row, as the samples themselves are; `batch_num_images`, per sample, is repeated by transformers."""
        sizes = [tuple(int(side) for side in size) for size in torch.as_tensor(image_inputs["image_sizes"]).view(-1, 2)]
        counts = [int(n) for n in batch_num_images] if batch_num_images is not None else [1] * len(sizes)
        starts = [sum(counts[:sample]) for sample in range(len(counts))]
        samples = [(sample, start, count) for sample, (start, count) in enumerate(zip(starts, counts)) if count]
        order = [image for _, start, count in samples for _ in range(times) for image in range(start, start + count)]
        crop_counts = self.model.image_crop_counts(sizes, samples, image_inputs["image_num_crops"])
        repeated = {
            "pixel_values": torch.cat([image_inputs["pixel_values"].split(crop_counts)[image] for image in order]),
            "image_sizes": torch.as_tensor(image_inputs["image_sizes"])[order],
        }
        if image_inputs["image_num_crops"] is not None:
            repeated["image_num_crops"] = torch.as_tensor(image_inputs["image_num_crops"])[order]
        if image_inputs["image_kept_indices"] is not None:
            lengths = torch.as_tensor(image_inputs["image_kept_lengths"]).reshape(-1, 2)
            runs = torch.as_tensor(image_inputs["image_kept_indices"]).split(lengths.sum(-1).tolist())
            repeated["image_kept_indices"] = torch.cat([runs[image] for image in order])
            repeated["image_kept_lengths"] = lengths[order]
        return repeated


def check_crop_counts(crop_counts: list[int], samples: list[tuple[int, int, int]], total_crops: int) -> None:
    """Crops per image must split the crops given, and an image of a multi-image sample is one padded crop."""
    if sum(crop_counts) != total_crops:
        raise ValueError(
            f"The images have {crop_counts} crops (image_num_crops), which does not split the {total_crops} crops "
            "of pixel_values."
        )
    for _, first, count in samples:
        if count > 1 and any(n != 1 for n in crop_counts[first : first + count]):
            raise ValueError(
                f"Images {first}..{first + count - 1} share a sample, so each must be one padded crop, but "
                f"image_num_crops gives them {crop_counts[first : first + count]}."
            )


def check_one_media_kind_per_sample(video_token_mask: torch.Tensor, image_token_mask: torch.Tensor) -> None:
    both = (video_token_mask.any(-1) & image_token_mask.any(-1)).nonzero().flatten().tolist()
    if both:
        raise ValueError(
            f"Samples {both} hold both video and image placeholder tokens; a sample holds one video, one image, "
            "several images or none (as the released checkpoints were trained)."
        )


def without_padding(memaug_query_mask: torch.Tensor | None, attention_mask: torch.Tensor) -> torch.Tensor:
    """The MemAug query mask with padding removed (every attended token when there is no query mask)."""
    if memaug_query_mask is None:
        warn_no_memaug_query_mask()
        return attention_mask
    return memaug_query_mask.to(attention_mask.device).bool() & attention_mask.bool()


def repeat_each_video(frames: torch.Tensor, video_num_frames: torch.Tensor | None, times: int) -> torch.Tensor:
    """`[v0, v1]` -> `[v0, v0, v1, v1]` for `times=2`: videos stacked `(B, T, ...)` or concatenated along frames."""
    if frames.dim() == 5:
        return frames.repeat_interleave(times, dim=0)
    counts = [frames.shape[0]] if video_num_frames is None else [int(n) for n in video_num_frames]
    return torch.cat([video for video in frames.split(counts) for _ in range(times)])


__all__ = ["HourLlavaModel", "HourLlavaForConditionalGeneration", "HourLlavaPreTrainedModel", "HourLlavaVideoOutput"]
