"""Hour-LLaVA for transformers: `import hour_llava` registers the model with the Auto classes."""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoModelForMultimodalLM

from .modeling import (
    HourLlavaConfig,
    HourLlavaForConditionalGeneration,
    HourLlavaMemoryAugmentation,
    HourLlavaModel,
    HourLlavaPreTrainedModel,
)


__version__ = "0.1.0.dev0"


def _register_auto_classes() -> None:
    AutoConfig.register(HourLlavaConfig.model_type, HourLlavaConfig, exist_ok=True)
    AutoModel.register(HourLlavaConfig, HourLlavaModel, exist_ok=True)
    AutoModelForImageTextToText.register(HourLlavaConfig, HourLlavaForConditionalGeneration, exist_ok=True)
    AutoModelForMultimodalLM.register(HourLlavaConfig, HourLlavaForConditionalGeneration, exist_ok=True)
    # Saved checkpoints carry the model files, so they also load with `trust_remote_code=True` without this package.
    HourLlavaConfig.register_for_auto_class()
    HourLlavaModel.register_for_auto_class("AutoModel")
    HourLlavaForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")


_register_auto_classes()

__all__ = [
    "HourLlavaConfig",
    "HourLlavaForConditionalGeneration",
    "HourLlavaMemoryAugmentation",
    "HourLlavaModel",
    "HourLlavaPreTrainedModel",
]
