"""Hour-LLaVA for transformers: `import hour_llava` registers the model with the Auto classes."""

import transformers
from packaging.version import Version


__version__ = "0.1.0.dev0"

# vLLM's environment pins an older transformers (5.16-5.19) in which this package's model code does not import. There
# only `hour_llava.vllm` (which reads checkpoints on its own) is usable, so nothing below is imported or registered.
SUPPORTS_TRANSFORMERS = Version(transformers.__version__) >= Version("5.24")

if SUPPORTS_TRANSFORMERS:
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


def __getattr__(name: str):
    """Name the real cause when a class is used where transformers is too old for it (e.g. vLLM's environment)."""
    if not SUPPORTS_TRANSFORMERS and name in __all__:
        raise ImportError(
            f"hour_llava.{name} needs transformers>=5.24; this environment has {transformers.__version__} "
            "(only the vLLM plugin, hour_llava.vllm, works here)."
        )
    raise AttributeError(f"module 'hour_llava' has no attribute {name!r}")


if SUPPORTS_TRANSFORMERS:
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
