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
from .memory import (
    VideoMemory,
    assemble_video_memory,
    memaug_query_position_ids,
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
VIDEO_PREFILL_INPUTS = ("video_num_frames", "pooled_video_features", "memaug_query_mask", "forgetting_generator")


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
    input_modalities = ("video", "text")
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
        outputs = self.vision_tower(pixel_values.to(self.vision_tower.dtype), **kwargs)
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
        chunk_size = vision_chunk_size or self.config.vision_chunk_size
        chunks = [self.get_pooled_frame_features(chunk, **kwargs) for chunk in pixel_values_videos.split(chunk_size)]
        pooled = torch.cat([chunk.last_hidden_state for chunk in chunks])
        return HourLlavaVideoOutput(
            last_hidden_state=pooled,
            pooler_output=self.multi_modal_projector(pooled),
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
    # MemAug over each sample's [text before ; decayed video ; text after]
    # ----------------------------------------------------------------------------------------------------------
    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor
    ) -> torch.Tensor:
        """`(B, L)` bool mask of the video placeholder tokens."""
        if input_ids is not None:
            return input_ids == self.config.video_token_id
        video_embedding = self.get_input_embeddings()(
            torch.tensor(self.config.video_token_id, dtype=torch.long, device=inputs_embeds.device)
        )
        return (inputs_embeds == video_embedding).all(-1)

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
        if not self.memory_augmentation.layers:  # memaug_depth=0: the decayed tokens go to the LLM as they are
            return memory.decayed, None
        text_before = sample_embeds[:start][query_text_mask[:start]]
        text_after = sample_embeds[end:][query_text_mask[end:]]
        query = torch.cat([text_before, memory.decayed.to(sample_embeds.dtype), text_after])
        num_before, num_video = text_before.shape[0], memory.decayed.shape[0]
        query_position_ids = memaug_query_position_ids(
            num_before, memory.decayed_position_ids, memory.repository.shape[0], text_after.shape[0]
        )
        repository_position_ids = memory.repository_position_ids
        if self.config.memory_position_mode == "aligned":
            repository_position_ids = repository_position_ids + num_before
        outputs = self.memory_augmentation(
            query[None],
            memory.repository.to(sample_embeds.dtype)[None],
            query_position_ids[None],
            repository_position_ids[None],
            output_attentions=output_attentions,
        )
        refined = outputs.last_hidden_state[0, num_before : num_before + num_video]
        if not outputs.attentions:  # not asked for, or an attention implementation that never builds the weights
            return refined, None
        video_rows = torch.stack([weights[0, :, num_before : num_before + num_video] for weights in outputs.attentions])
        return refined, memory.per_source_frame(video_rows.float().mean(dim=(0, 1, 2)))

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
        video_token_mask: torch.Tensor,
        attention_mask: torch.Tensor | None,
        memaug_query_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Text tokens that join the MemAug query: the processor's `memaug_query_mask`, minus padding and video.

        `attention_mask` tells padding only as a 2D tensor; with a static cache, generation passes per-layer 4D masks
        instead, and `prepare_inputs_for_generation` has already folded the 2D mask into `memaug_query_mask`.
        """
        mask = ~video_token_mask
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
        """In training, add zero times a dummy pass through the video modules this batch did not use.

        DDP and ZeRO expect every rank to use the same parameters in every step, and a text-only batch (or one of
        cached features) would leave the video side out of one rank's graph. Like the reference's dummy image, this
        runs the modules themselves on a one-frame dummy rather than summing their weights, so FSDP's and ZeRO's
        gather hooks still manage sharded parameters. Modules without trainable parameters are skipped.
        """
        if not (self.training and torch.is_grad_enabled()):
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
            CPU generator for random spatial forgetting in training mode; torch's default generator otherwise.

        `video_outputs` is an `HourLlavaVideoOutput`: the pooled and projected features, the frames forgetting kept
        and, with `output_attentions=True`, the vision tower's attentions and where MemAug looked.
        """
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds.")
        if pixel_values_videos is not None and pooled_video_features is not None:
            raise ValueError("Pass either pixel_values_videos or pooled_video_features, not both.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        video_outputs = None
        if pixel_values_videos is not None and pixel_values_videos.dim() == 5 and video_num_frames is None:
            video_num_frames = [pixel_values_videos.shape[1]] * pixel_values_videos.shape[0]
        if pixel_values_videos is not None:
            output_flags = {key: kwargs[key] for key in ("output_hidden_states", "output_attentions") if key in kwargs}
            video_outputs = self.get_video_features(pixel_values_videos, **output_flags)
        elif pooled_video_features is not None:
            video_outputs = self.project_pooled_features(pooled_video_features)
            inputs_embeds = self.connect_idle_video_modules(inputs_embeds, vision_tower=True, video_path=False)
        else:
            inputs_embeds = self.connect_idle_video_modules(inputs_embeds, vision_tower=True, video_path=True)

        if video_outputs is not None:
            inputs_embeds = self.insert_video_tokens(
                input_ids,
                inputs_embeds,
                attention_mask,
                memaug_query_mask,
                video_outputs,
                video_num_frames,
                forgetting_generator,
                output_attentions=kwargs.get("output_attentions", self.config.output_attentions),
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
            video_outputs=video_outputs,
        )

    def insert_video_tokens(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | dict | None,
        memaug_query_mask: torch.Tensor | None,
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
        video_token_mask = self.get_placeholder_mask(input_ids, inputs_embeds)
        query_text_mask = self.query_text_mask(video_token_mask, attention_mask, memaug_query_mask)
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
        """Pass the video inputs to the prefill step only; decode steps read the KV cache.

        A static cache turns the 2D `attention_mask` into per-layer 4D masks, which no longer say which tokens are
        padding; at prefill the padding is folded into `memaug_query_mask` first, so MemAug's query is the same.
        """
        video_inputs = {key: kwargs.pop(key, None) for key in VIDEO_PREFILL_INPUTS}
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
        has_video = video_inputs["pooled_video_features"] is not None or kwargs.get("pixel_values_videos") is not None
        if is_first_iteration and has_video and isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            video_inputs["memaug_query_mask"] = without_padding(video_inputs["memaug_query_mask"], attention_mask)
        model_inputs.update({key: value for key, value in video_inputs.items() if value is not None})
        return model_inputs

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ):
        """Beam search and `num_return_sequences` repeat each sample `expand_size` times in a row; repeat its video
        with it, in every accepted form (flat frames with `video_num_frames`, 5D `(B, T, ...)` frames with or
        without counts, `pooled_video_features`)."""
        if expand_size == 1:  # nothing to repeat: do not copy the frames
            return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        frame_keys = [k for k in ("pixel_values_videos", "pooled_video_features") if model_kwargs.get(k) is not None]
        video_inputs = {key: model_kwargs.pop(key) for key in frame_keys}
        num_frames = model_kwargs.pop("video_num_frames", None)
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        for key, frames in video_inputs.items():
            model_kwargs[key] = repeat_each_video(frames, num_frames, expand_size)
        if num_frames is not None:
            model_kwargs["video_num_frames"] = torch.as_tensor(num_frames).repeat_interleave(expand_size)
        return input_ids, model_kwargs


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
