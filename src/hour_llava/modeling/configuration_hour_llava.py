# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Configuration of Hour-LLaVA (VideoMarathon, arXiv 2506.05332).

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import re

from transformers import AutoConfig, PreTrainedConfig


try:  # transformers >= 5.20 builds sub-configs from declared defaults
    from transformers.configuration_utils import SubConfigSpec
except ImportError:  # 5.16-5.19 (vLLM pins): the config builds them itself in `__post_init__`
    SubConfigSpec = None

from .memory import kept_source_frames


SIGLIP_SO400M_VIDEO_TOWER = {
    # SigLIP so400m/14@384 with its last encoder layer removed, as every released Hour-LLaVA checkpoint uses it.
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "patch_size": 14,
    "image_size": 384,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "vision_use_head": False,
}

QWEN2_7B_SHAPE = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": False,
}

# Sub-config -> (model type, defaults when the sub-config is not given).
SUB_CONFIG_DEFAULTS = {
    "vision_config": ("siglip_vision_model", SIGLIP_SO400M_VIDEO_TOWER),
    "text_config": ("qwen2", QWEN2_7B_SHAPE),
}

SPATIAL_SAMPLING_TYPES = ("random", "uniform")
MEMORY_POSITION_MODES = ("reference", "aligned")

# Numeric fields checked when a config is built or loaded, so that a wrong value in config.json is named there and
# then, not as a shape error somewhere in a forward pass.
POSITIVE_INT_FIELDS = (
    "video_pool_size",
    "spatial_keep_tokens",
    "temporal_downsample",
    "max_kept_frames",
    "vision_chunk_size",
    "memaug_num_attention_heads",
    "memaug_num_key_value_heads",
    "memaug_intermediate_size",
)
NON_NEGATIVE_INT_FIELDS = ("video_token_id", "image_token_id", "min_video_frames", "memaug_depth")
POSITIVE_FLOAT_FIELDS = ("memaug_rope_theta", "memaug_partial_rotary_factor", "memaug_layer_norm_eps")
NON_NEGATIVE_FLOAT_FIELDS = ("initializer_range",)


class HourLlavaConfig(PreTrainedConfig):
    r"""
    Configuration of an Hour-LLaVA model: a SigLIP vision tower, a 2-layer MLP projector, the memory repository with
    forgetting, the MemAug refinement module and a Qwen2 language model.

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            SigLIP vision config. Defaults to so400m/14@384 with 26 layers and no head.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Qwen2 config. Defaults to Qwen2-7B's shape.
        video_token_id (`int`, *optional*, defaults to 151647):
            Id of the video placeholder token (`<video>`) that the processor expands to the decayed-token count.
        image_token_id (`int`, *optional*, defaults to `video_token_id + 1`):
            Id of the image placeholder token (`<image>`, added to the tokenizer right after `<video>`), which the
            processor expands to the image's refined-token count.
        image_grid_pinpoints (`list[list[int]]`, *optional*):
            Candidate `[height, width]` resolutions a single image is tiled at, each a whole grid of
            `vision_config.image_size` tiles; must be the image processor's. Defaults to the grids 1x1 ... 6x6 of
            such tiles, as in every released checkpoint.
        vision_aspect_ratio (`str`, *optional*, defaults to `"anyres_max_9"`):
            `anyres_max_<n>`: a single image's tile-feature grid larger than about `n` tiles' worth of tokens is
            bilinearly shrunk (spec 4.2).
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation between the projector's two linear layers.
        video_pool_size (`int`, *optional*, defaults to 8):
            Side of the grid each frame's patch grid is bilinearly pooled to (27x27 -> 8x8).
        spatial_keep_tokens (`int`, *optional*, defaults to 16):
            Tokens kept per frame by spatial forgetting. Must be a square whose side divides `video_pool_size` for
            uniform forgetting.
        spatial_sampling_type (`str`, *optional*, defaults to `"random"`):
            `"random"`: random per-frame tokens in training mode, uniform grid in eval mode. `"uniform"`: always
            the uniform grid (`[::2, ::2]` for 16 of 64).
        temporal_downsample (`int`, *optional*, defaults to 4):
            Temporal forgetting keeps one frame in `temporal_downsample`.
        max_kept_frames (`int`, *optional*, defaults to 512):
            Cap on the frames kept by temporal forgetting.
        min_video_frames (`int`, *optional*, defaults to 128):
            Videos with fewer frames are upsampled to this many by frame duplication, as the reference does.
        memaug_depth (`int`, *optional*, defaults to 4):
            Number of MemAug blocks. 0 removes MemAug: the decayed tokens go to the language model unrefined (the
            paper's ablation; with `temporal_downsample=1` and `spatial_keep_tokens=video_pool_size**2` it is a
            LLaVA-Video-style uniform-frame model).
        memaug_num_attention_heads / memaug_num_key_value_heads (`int`, *optional*):
            MemAug heads; taken from the text config when unset.
        memaug_rope_theta (`float`, *optional*):
            Base of MemAug's rotary embedding; the text config's `rope_theta` when unset.
        memaug_partial_rotary_factor (`float`, *optional*, defaults to 0.5):
            Fraction of each head's dims that are rotated (the first ones, NeoX style).
        memaug_intermediate_size (`int`, *optional*):
            Width of MemAug's MLP; `4 * hidden_size` when unset.
        memaug_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of MemAug's post-LN layer norms.
        memory_position_mode (`str`, *optional*, defaults to `"reference"`):
            `"reference"`: memory keys carry no text offset, as the released checkpoints were trained.
            `"aligned"`: keys get the same text offset as the query's video tokens (for models trained here).
        vision_chunk_size (`int`, *optional*, defaults to 128):
            Frames sent through the vision tower at once, so an hour of frames never goes through it together.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of new weights (MemAug when it starts fresh).
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            Tie `lm_head` to the input embeddings (Qwen2.5-3B does).
        use_cache (`bool`, *optional*, defaults to `True`):
            Whether the model returns its key/value cache (read by `generate` and the Trainer from the top-level
            config).

    Example:

    ```python
    >>> from hour_llava import HourLlavaConfig, HourLlavaForConditionalGeneration
    >>> config = HourLlavaConfig()  # so400m + Qwen2-7B shape, as jylins/hourllava-qwen2-7b-s3
    >>> config.num_video_tokens(3600)  # an hour at 1 FPS
    8704
    ```
    """

    model_type = "hour_llava"
    if SubConfigSpec is not None:
        sub_configs_defaults = {
            key: SubConfigSpec(config_class=AutoConfig, model_type=model_type, init_kwargs=defaults)
            for key, (model_type, defaults) in SUB_CONFIG_DEFAULTS.items()
        }
    else:
        sub_configs = dict.fromkeys(SUB_CONFIG_DEFAULTS, AutoConfig)

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    video_token_id: int = 151647
    image_token_id: int | None = None
    image_grid_pinpoints: list[list[int]] | None = None
    vision_aspect_ratio: str = "anyres_max_9"
    projector_hidden_act: str = "gelu"
    video_pool_size: int = 8
    spatial_keep_tokens: int = 16
    spatial_sampling_type: str = "random"
    temporal_downsample: int = 4
    max_kept_frames: int = 512
    min_video_frames: int = 128
    memaug_depth: int = 4
    memaug_num_attention_heads: int | None = None
    memaug_num_key_value_heads: int | None = None
    memaug_rope_theta: float | None = None
    memaug_partial_rotary_factor: float = 0.5
    memaug_intermediate_size: int | None = None
    memaug_layer_norm_eps: float = 1e-5
    memory_position_mode: str = "reference"
    vision_chunk_size: int = 128
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        if SubConfigSpec is None:
            self._build_sub_configs()
        super().__post_init__(**kwargs)
        text = self.text_config
        if self.memaug_num_attention_heads is None:
            self.memaug_num_attention_heads = text.num_attention_heads
        if self.memaug_num_key_value_heads is None:
            self.memaug_num_key_value_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        if self.memaug_rope_theta is None:
            self.memaug_rope_theta = float(_text_rope_theta(text))
        if self.memaug_intermediate_size is None:
            self.memaug_intermediate_size = 4 * text.hidden_size
        if self.image_token_id is None and isinstance(self.video_token_id, int):
            self.image_token_id = self.video_token_id + 1
        if self.image_grid_pinpoints is None:
            tile = self.vision_config.image_size
            self.image_grid_pinpoints = [[i * tile, j * tile] for i in range(1, 7) for j in range(1, 7)]
        # LLaVA-OneVision's convention: the tie flag may live only in the text config of converted checkpoints.
        if not self.tie_word_embeddings and getattr(text, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        self.validate_hour_llava()

    def _build_sub_configs(self) -> None:
        """What transformers >= 5.20 does from `sub_configs_defaults`: defaults when absent, a config from a dict."""
        for key, (model_type, defaults) in SUB_CONFIG_DEFAULTS.items():
            value = getattr(self, key)
            if value is None:
                value = AutoConfig.for_model(model_type, **defaults)
            elif isinstance(value, dict):
                value = dict(value)
                value = AutoConfig.for_model(value.pop("model_type", model_type), **value)
            setattr(self, key, value)

    def validate_hour_llava(self) -> None:
        """Raise a `ValueError` naming the field and its value for any inconsistent setting."""
        self._validate_numbers()
        _validate_attention_shape(self.text_config, "text_config")
        _validate_attention_shape(self.vision_config, "vision_config")
        hidden = self.text_config.hidden_size
        heads, kv_heads = self.memaug_num_attention_heads, self.memaug_num_key_value_heads
        if heads <= 0 or hidden % heads != 0:
            raise ValueError(
                f"MemAug hidden size {hidden} (text_config.hidden_size) is not divisible by "
                f"memaug_num_attention_heads={heads}."
            )
        if kv_heads <= 0 or heads % kv_heads != 0:
            raise ValueError(
                f"memaug_num_attention_heads={heads} is not a multiple of memaug_num_key_value_heads={kv_heads}."
            )
        rotary_dims = self.memaug_head_dim * self.memaug_partial_rotary_factor
        if rotary_dims != int(rotary_dims) or int(rotary_dims) % 2 != 0 or not 0 < rotary_dims <= self.memaug_head_dim:
            raise ValueError(
                f"memaug_partial_rotary_factor={self.memaug_partial_rotary_factor} gives {rotary_dims} rotary dims "
                f"for head dim {self.memaug_head_dim}; it must give an even whole number in (0, head_dim]."
            )
        if self.spatial_sampling_type not in SPATIAL_SAMPLING_TYPES:
            raise ValueError(
                f"spatial_sampling_type={self.spatial_sampling_type!r} is not one of {SPATIAL_SAMPLING_TYPES}."
            )
        if self.memory_position_mode not in MEMORY_POSITION_MODES:
            raise ValueError(
                f"memory_position_mode={self.memory_position_mode!r} is not one of {MEMORY_POSITION_MODES}."
            )
        self._validate_forgetting()
        self._validate_images()
        patches_per_side = self.image_grid_size
        if self.video_pool_size > patches_per_side:
            raise ValueError(
                f"video_pool_size={self.video_pool_size} is larger than the vision tower's {patches_per_side}x"
                f"{patches_per_side} patch grid (image_size {self.vision_config.image_size}, patch_size "
                f"{self.vision_config.patch_size})."
            )

    def _validate_numbers(self) -> None:
        """Every numeric field has a number of the right kind and sign (`"128"` and `-2` fail here, by name)."""
        checks = (
            (POSITIVE_INT_FIELDS, (int,), 1, "a positive integer"),
            (NON_NEGATIVE_INT_FIELDS, (int,), 0, "a non-negative integer"),
            (POSITIVE_FLOAT_FIELDS, (int, float), None, "a positive number"),
            (NON_NEGATIVE_FLOAT_FIELDS, (int, float), 0, "a non-negative number"),
        )
        for names, types, minimum, expected in checks:
            for name in names:
                value = getattr(self, name)
                wrong_type = isinstance(value, bool) or not isinstance(value, types)
                too_small = not wrong_type and (value <= 0 if minimum is None else value < minimum)
                if wrong_type or too_small:
                    raise ValueError(f"{name}={value!r} ({type(value).__name__}) must be {expected}.")
        for name in ("tie_word_embeddings", "use_cache"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be true or false.")

    def _validate_forgetting(self) -> None:
        tokens_per_frame = self.video_pool_size**2
        if not 0 < self.spatial_keep_tokens <= tokens_per_frame:
            raise ValueError(
                f"spatial_keep_tokens={self.spatial_keep_tokens} must be in [1, {tokens_per_frame}] "
                f"(video_pool_size={self.video_pool_size})."
            )
        side = round(self.spatial_keep_tokens**0.5)
        if side * side != self.spatial_keep_tokens or self.video_pool_size % side != 0:
            raise ValueError(
                f"spatial_keep_tokens={self.spatial_keep_tokens} must be a square whose side divides "
                f"video_pool_size={self.video_pool_size}, so the uniform grid can keep evenly spaced tokens."
            )

    def _validate_images(self) -> None:
        if self.image_token_id == self.video_token_id:
            raise ValueError(
                f"image_token_id={self.image_token_id} equals video_token_id: images and videos need their own "
                "placeholder tokens."
            )
        if self.max_image_tiles is None:
            raise ValueError(
                f"vision_aspect_ratio={self.vision_aspect_ratio!r} must be 'anyres_max_<n>' with n >= 1 (the "
                "released checkpoints use 'anyres_max_9')."
            )
        tile = self.vision_config.image_size
        pinpoints = self.image_grid_pinpoints
        valid = isinstance(pinpoints, (list, tuple)) and len(pinpoints) > 0
        for pinpoint in pinpoints if valid else ():
            valid = valid and (
                isinstance(pinpoint, (list, tuple))
                and len(pinpoint) == 2
                and all(isinstance(side, int) and side > 0 and side % tile == 0 for side in pinpoint)
            )
        if not valid:
            raise ValueError(
                f"image_grid_pinpoints={pinpoints!r} must be a non-empty list of [height, width] pairs, each a "
                f"positive multiple of the vision tower's image_size {tile}."
            )

    @property
    def max_image_tiles(self) -> int | None:
        """`n` of `vision_aspect_ratio="anyres_max_<n>"` (None when the setting is malformed)."""
        match = re.fullmatch(r"anyres_max_([1-9]\d*)", str(self.vision_aspect_ratio))
        return int(match.group(1)) if match else None

    @property
    def image_grid_size(self) -> int:
        """Side of the vision tower's patch grid: every image crop gives `image_grid_size**2` tokens (27 for so400m)."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def memaug_head_dim(self) -> int:
        return self.text_config.hidden_size // self.memaug_num_attention_heads

    @property
    def memaug_rotary_dim(self) -> int:
        return int(self.memaug_head_dim * self.memaug_partial_rotary_factor)

    @property
    def memory_tokens_per_frame(self) -> int:
        """Pooled tokens plus the newline: 65 for the released checkpoints."""
        return self.video_pool_size**2 + 1

    def num_kept_frames(self, num_frames: int) -> int:
        """Frames left after upsampling short videos and temporal forgetting."""
        effective = max(int(num_frames), self.min_video_frames)
        return max(1, min(self.max_kept_frames, effective // self.temporal_downsample))

    def kept_frame_indices(self, num_frames: int) -> list[int]:
        """The decoded frames (`0..num_frames-1`) whose tokens temporal forgetting keeps for the language model,
        ascending: what a forward pass reports in `video_outputs.kept_frame_indices`, without running one."""
        return kept_source_frames(num_frames, self.min_video_frames, self.num_kept_frames(num_frames)).tolist()

    def num_video_tokens(self, num_frames: int) -> int:
        """Decayed video tokens (the placeholder length) for a video of `num_frames` decoded frames."""
        return self.num_kept_frames(num_frames) * (self.spatial_keep_tokens + 1)


def _validate_attention_shape(config: PreTrainedConfig, name: str) -> None:
    """A sub-config's heads must split its hidden size (unless it sets `head_dim`) and share its key/value heads."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if getattr(config, "head_dim", None) is None and config.hidden_size % heads != 0:
        raise ValueError(
            f"{name}.hidden_size={config.hidden_size} is not divisible by {name}.num_attention_heads={heads}."
        )
    if heads % kv_heads != 0:
        raise ValueError(
            f"{name}.num_attention_heads={heads} is not a multiple of {name}.num_key_value_heads={kv_heads}."
        )


def _text_rope_theta(text_config: PreTrainedConfig) -> float:
    rope_parameters = getattr(text_config, "rope_parameters", None) or {}
    if "rope_theta" in rope_parameters:
        return rope_parameters["rope_theta"]
    return getattr(text_config, "rope_theta", 10000.0)


__all__ = ["HourLlavaConfig"]
