"""Video decoding, the image and video processors and the processor: sibling-only relative imports, so the folder
also works as remote code next to a saved processor."""

from .image_processing_hour_llava import HourLlavaImageProcessor
from .media_access import UnsafeMediaError
from .processing_hour_llava import VIDEO_TOKEN, HourLlavaProcessor
from .video_decoding import (
    HourLlavaVideoMetadata,
    VideoChunk,
    decode_video,
    iter_video_chunks,
    open_video,
    sample_frame_indices,
)
from .video_processing_hour_llava import EncodedVideo, HourLlavaVideoProcessor


__all__ = [
    "EncodedVideo",
    "HourLlavaImageProcessor",
    "HourLlavaProcessor",
    "HourLlavaVideoMetadata",
    "HourLlavaVideoProcessor",
    "UnsafeMediaError",
    "VIDEO_TOKEN",
    "VideoChunk",
    "decode_video",
    "iter_video_chunks",
    "open_video",
    "sample_frame_indices",
]
