# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""vLLM plugin for Hour-LLaVA: `vllm serve ./hourllava-qwen2-7b` and `vllm.LLM(model=...)` run our checkpoints.

vLLM calls `register` in every process (entry point group `vllm.general_plugins`). It registers the model class in
the lazy `"module:Class"` form, so nothing heavy is imported until vLLM builds the model, and the config class with
`AutoConfig`, so vLLM reads `config.json` without the checkpoint's remote code (which needs a newer transformers).
"""

MODEL_ARCHITECTURE = "HourLlavaForConditionalGeneration"


def register() -> None:
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from .configuration import HourLlavaVllmConfig

    AutoConfig.register(HourLlavaVllmConfig.model_type, HourLlavaVllmConfig, exist_ok=True)
    if MODEL_ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(MODEL_ARCHITECTURE, "hour_llava.vllm.model:HourLlavaForConditionalGeneration")
