"""Everything a checkpoint needs to load: sibling-only relative imports, so the folder also works as remote code."""

from .configuration_hour_llava import HourLlavaConfig
from .memory_augmentation import HourLlavaMemoryAugmentation
from .modeling_hour_llava import (
    HourLlavaForConditionalGeneration,
    HourLlavaModel,
    HourLlavaPreTrainedModel,
    HourLlavaVideoOutput,
)


__all__ = [
    "HourLlavaConfig",
    "HourLlavaForConditionalGeneration",
    "HourLlavaMemoryAugmentation",
    "HourLlavaModel",
    "HourLlavaPreTrainedModel",
    "HourLlavaVideoOutput",
]
