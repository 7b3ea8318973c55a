# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""vLLM plugin for Hour-LLaVA: `vllm serve ./hourllava-qwen2-7b` and `vllm.LLM(model=...)` run our checkpoints.

vLLM calls `register` in every process (entry point group `vllm.general_plugins`). It registers the model class in
the lazy `"module:Class"` form, so nothing heavy is imported until vLLM builds the model, and the config class with
`AutoConfig`, so vLLM reads `config.json` without the checkpoint's remote code (which needs a newer transformers).
"""

MODEL_ARCHITECTURE = "HourLlavaForConditionalGeneration"
VIDEO_LOADER = "hour_llava"


def register() -> None:
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from .configuration import HourLlavaVllmConfig

    AutoConfig.register(HourLlavaVllmConfig.model_type, HourLlavaVllmConfig, exist_ok=True)
    if MODEL_ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(MODEL_ARCHITECTURE, "hour_llava.vllm.model:HourLlavaForConditionalGeneration")
    register_video_loader()


def register_video_loader() -> None:
    """Make the OpenAI server hand Hour-LLaVA the fetched video's bytes instead of 32 decoded frames.

    vLLM picks a model's video loader by its video processor's class name, which it looks up from the checkpoint's
    `model_type` in transformers' video-processor table when no `video_preprocessor_config.json` names it. Our
    checkpoints keep the video processor inside `processor_config.json`, so the table gets an `hour_llava` entry.
    """
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING_NAMES
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY

    from .processing import EncodedVideoLoader

    VIDEO_LOADER_REGISTRY.register(VIDEO_LOADER, video_processor="HourLlavaVideoProcessor")(EncodedVideoLoader)
    VIDEO_PROCESSOR_MAPPING_NAMES.setdefault("hour_llava", {"torchvision": "HourLlavaVideoProcessor"})
