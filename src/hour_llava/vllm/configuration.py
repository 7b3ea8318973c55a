# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`config.json` of an Hour-LLaVA checkpoint, read in vLLM's environment.

vLLM pins an older transformers than this package, where `hour_llava.modeling`'s `HourLlavaConfig` does not import.
This config reads the same `config.json` (same `model_type`, same fields and defaults) without that code; the plugin
registers it with `AutoConfig` so vLLM's own config loading finds it, and never runs the checkpoint's remote code.
"""

from transformers import AutoConfig, PretrainedConfig

from .memory_augmentation import MemAugSettings


class HourLlavaVllmConfig(PretrainedConfig):
    """An Hour-LLaVA `config.json`: the fields the vLLM model reads, with `HourLlavaConfig`'s defaults.

    Unset MemAug fields are derived from the text config as `HourLlavaConfig` derives them. The sub-configs must be
    in the file (`save_pretrained` always writes them in full).
    """

    model_type = "hour_llava"
    sub_configs = {"text_config": AutoConfig, "vision_config": AutoConfig}
    has_no_defaults_at_init = True  # transformers must not build one without sub-configs to diff against

    def __init__(
        self,
        vision_config: dict | PretrainedConfig | None = None,
        text_config: dict | PretrainedConfig | None = None,
        video_token_id: int = 151647,
        projector_hidden_act: str = "gelu",
        video_pool_size: int = 8,
        spatial_keep_tokens: int = 16,
        temporal_downsample: int = 4,
        max_kept_frames: int = 512,
        min_video_frames: int = 128,
        memaug_depth: int = 4,
        memaug_num_attention_heads: int | None = None,
        memaug_num_key_value_heads: int | None = None,
        memaug_rope_theta: float | None = None,
        memaug_partial_rotary_factor: float = 0.5,
        memaug_intermediate_size: int | None = None,
        memaug_layer_norm_eps: float = 1e-5,
        memory_position_mode: str = "reference",
        vision_chunk_size: int = 128,
        tie_word_embeddings: bool = False,
        **kwargs,
    ):
        self.vision_config = _sub_config(vision_config, "vision_config", "siglip_vision_model")
        self.text_config = _sub_config(text_config, "text_config", "qwen2")
        text = self.text_config
        self.video_token_id = video_token_id
        self.projector_hidden_act = projector_hidden_act
        self.video_pool_size = video_pool_size
        self.spatial_keep_tokens = spatial_keep_tokens
        self.temporal_downsample = temporal_downsample
        self.max_kept_frames = max_kept_frames
        self.min_video_frames = min_video_frames
        self.memaug_depth = memaug_depth
        self.memaug_num_attention_heads = memaug_num_attention_heads or text.num_attention_heads
        self.memaug_num_key_value_heads = (
            memaug_num_key_value_heads or getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        )
        self.memaug_rope_theta = float(memaug_rope_theta or _rope_theta(text))
        self.memaug_partial_rotary_factor = memaug_partial_rotary_factor
        self.memaug_intermediate_size = memaug_intermediate_size or 4 * text.hidden_size
        self.memaug_layer_norm_eps = memaug_layer_norm_eps
        self.memory_position_mode = memory_position_mode
        self.vision_chunk_size = vision_chunk_size
        tie_word_embeddings = tie_word_embeddings or bool(getattr(text, "tie_word_embeddings", False))
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    def memaug_settings(self) -> MemAugSettings:
        text = self.text_config
        return MemAugSettings(
            hidden_size=text.hidden_size,
            num_attention_heads=self.memaug_num_attention_heads,
            num_key_value_heads=self.memaug_num_key_value_heads,
            intermediate_size=self.memaug_intermediate_size,
            depth=self.memaug_depth,
            rope_theta=self.memaug_rope_theta,
            partial_rotary_factor=self.memaug_partial_rotary_factor,
            layer_norm_eps=self.memaug_layer_norm_eps,
            memory_position_mode=self.memory_position_mode,
            video_pool_size=self.video_pool_size,
            spatial_keep_tokens=self.spatial_keep_tokens,
            temporal_downsample=self.temporal_downsample,
            max_kept_frames=self.max_kept_frames,
            min_video_frames=self.min_video_frames,
        )


def _sub_config(value: dict | PretrainedConfig | None, name: str, model_type: str) -> PretrainedConfig:
    if isinstance(value, PretrainedConfig):
        return value
    if not value:
        raise ValueError(
            f"The Hour-LLaVA config has no {name}; the vLLM plugin reads checkpoints saved by hour_llava (or "
            "`hour-llava convert`), whose config.json holds it in full."
        )
    return AutoConfig.for_model(**{"model_type": model_type, **value})


def _rope_theta(text_config: PretrainedConfig) -> float:
    rope_parameters = getattr(text_config, "rope_parameters", None) or {}
    return rope_parameters.get("rope_theta") or getattr(text_config, "rope_theta", None) or 10000.0
