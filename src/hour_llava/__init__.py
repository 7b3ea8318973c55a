"""Hour-LLaVA for transformers: `import hour_llava` registers the model with the Auto classes."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoProcessor,
    AutoVideoProcessor,
)

from .modeling import (
    HourLlavaConfig,
    HourLlavaForConditionalGeneration,
    HourLlavaMemoryAugmentation,
    HourLlavaModel,
    HourLlavaPreTrainedModel,
    HourLlavaVideoOutput,
)
from .pipelines import VideoTextToTextPipeline, register_pipeline
from .processing import HourLlavaImageProcessor, HourLlavaProcessor, HourLlavaVideoProcessor


__version__ = "0.1.0.dev0"


def _register_auto_classes() -> None:
    AutoConfig.register(HourLlavaConfig.model_type, HourLlavaConfig, exist_ok=True)
    AutoModel.register(HourLlavaConfig, HourLlavaModel, exist_ok=True)
    AutoModelForImageTextToText.register(HourLlavaConfig, HourLlavaForConditionalGeneration, exist_ok=True)
    AutoModelForMultimodalLM.register(HourLlavaConfig, HourLlavaForConditionalGeneration, exist_ok=True)
    # Keyed by transformers' processing backend, not the decoder: `BaseVideoProcessor` is its torchvision backend
    # (`HourLlavaVideoProcessor().backend`), the key `AutoVideoProcessor.from_pretrained` asks for by default.
    AutoVideoProcessor.register(
        HourLlavaConfig, video_processor_classes={"torchvision": HourLlavaVideoProcessor}, exist_ok=True
    )
    AutoImageProcessor.register(
        HourLlavaConfig, image_processor_classes={"torchvision": HourLlavaImageProcessor}, exist_ok=True
    )
    AutoProcessor.register(HourLlavaConfig, HourLlavaProcessor, exist_ok=True)
    # Saved checkpoints carry the model files, so they also load with `trust_remote_code=True` without this package.
    HourLlavaConfig.register_for_auto_class()
    HourLlavaModel.register_for_auto_class("AutoModel")
    HourLlavaForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
    HourLlavaProcessor.register_for_auto_class()
    HourLlavaVideoProcessor.register_for_auto_class()
    HourLlavaImageProcessor.register_for_auto_class()
    register_pipeline()  # pipeline("video-text-to-text")


_register_auto_classes()

__all__ = [
    "HourLlavaConfig",
    "HourLlavaForConditionalGeneration",
    "HourLlavaImageProcessor",
    "HourLlavaMemoryAugmentation",
    "HourLlavaModel",
    "HourLlavaPreTrainedModel",
    "HourLlavaProcessor",
    "HourLlavaVideoOutput",
    "HourLlavaVideoProcessor",
    "VideoTextToTextPipeline",
]
