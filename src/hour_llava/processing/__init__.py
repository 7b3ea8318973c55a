"""Video decoding, the image and video processors and the processor: sibling-only relative imports, so the folder
also works as remote code next to a saved processor."""

from transformers.utils import is_torchvision_available

from .media_access import UnsafeMediaError
from .processing_hour_llava import IMAGE_TOKEN, VIDEO_TOKEN, HourLlavaProcessor
from .video_decoding import (
    HourLlavaVideoMetadata,
    VideoChunk,
    decode_video,
    iter_video_chunks,
    open_video,
    sample_frame_indices,
)
from .video_processing_hour_llava import EncodedVideo, HourLlavaVideoProcessor


# The vLLM plugin's environment has no torchvision (no build matches its torch) and decodes videos with this folder;
# the image processor is built on transformers' torchvision backend, so it is only there where torchvision is.
if is_torchvision_available():
    from .image_processing_hour_llava import HourLlavaImageProcessor

__all__ = [
    "EncodedVideo",
    "HourLlavaProcessor",
    "HourLlavaVideoMetadata",
    "HourLlavaVideoProcessor",
    "IMAGE_TOKEN",
    "UnsafeMediaError",
    "VIDEO_TOKEN",
    "VideoChunk",
    "decode_video",
    "iter_video_chunks",
    "open_video",
    "sample_frame_indices",
]
if is_torchvision_available():
    __all__.append("HourLlavaImageProcessor")
