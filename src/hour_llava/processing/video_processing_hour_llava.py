# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Video processor of Hour-LLaVA: 1-FPS sampling and SigLIP preprocessing, decoded with our own PyAV reader.

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import dataclasses
import os
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from huggingface_hub.dataclasses import validate_typed_dict
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata, make_batched_videos

from .video_decoding import open_video
from .video_sampling import DEFAULT_MIN_FRAMES, sample_frame_indices
from .video_source import (
    DEFAULT_CHUNK_SIZE,
    SIGLIP_MEAN,
    SIGLIP_STD,
    HourLlavaVideoMetadata,
    Returning,
    VideoChunk,
    VideoSource,
)


class EncodedVideo:
    """A video already through the vision tower: the pooled features of its sampled frames and their metadata.

    Pass it wherever a video goes (`processor(videos=...)`, `{"type": "video", "video": encoded}` in a chat): the
    processor expands the placeholder from the frames' count and times as for the decoded video, and returns
    `pooled_video_features` instead of `pixel_values_videos`, so a cached video is never decoded again. Any object
    with `pooled_features` and `metadata` attributes is taken the same way (remote-code modules cannot share
    classes).

    A plain class rather than a dataclass: transformers turns dataclasses inside chat messages into dicts.

    Attributes:
        pooled_features: `(T, g*g, C_vision)` pooled vision features, before the projector.
        metadata: the frames' metadata; the time instruction reads `timestamps` (seconds) and `duration`.
    """

    def __init__(self, pooled_features: torch.Tensor, metadata: Any):
        self.pooled_features = pooled_features
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"EncodedVideo(frames={self.num_frames}, duration={self.metadata.duration})"

    @property
    def num_frames(self) -> int:
        return self.pooled_features.shape[0]


def paths_as_strings(videos):
    """`videos` with `os.PathLike` entries as strings: transformers' video batching recognises only `str` paths."""
    if isinstance(videos, os.PathLike):
        return os.fspath(videos)
    if isinstance(videos, (list, tuple)):
        return [paths_as_strings(video) for video in videos]
    return videos


def is_encoded_video(video) -> bool:
    return hasattr(video, "pooled_features") and hasattr(video, "metadata")


def encoded_videos(videos) -> list | None:
    """`videos` flattened to a list when they are encoded videos, `None` when none is; mixing both is an error."""
    if is_encoded_video(videos):
        return [videos]
    if not isinstance(videos, (list, tuple)):
        return None
    flat = [item for entry in videos for item in (encoded_videos(entry) or [entry])]
    encoded = [is_encoded_video(item) for item in flat]
    if not any(encoded):
        return None
    if not all(encoded):
        raise ValueError("Pass either encoded videos (pooled features) or videos to decode in one call, not both.")
    return flat


class HourLlavaVideoProcessorKwargs(VideosKwargs, total=False):
    r"""
    min_frames (`int`, *optional*, defaults to 128):
        When sampling at `fps` gives fewer frames than this, `min(N, min_frames)` frames are spread uniformly over
        all N frames of the video instead (the reference rule for short clips). 0 turns it off.
    max_frames (`int`, *optional*):
        Cap on the frames per video, kept by uniform selection among the sampled ones. No cap by default.
    """

    min_frames: int
    max_frames: int | None


class HourLlavaVideoProcessor(BaseVideoProcessor):
    r"""
    Turns videos into Hour-LLaVA's pixel input: frames sampled at 1 FPS (at least 128 for short clips), resized
    straight to 384x384 with bicubic filtering (no aspect-ratio preservation, no crop), rescaled by 1/255 and
    normalised with SigLIP's mean = std = 0.5, as the released checkpoints saw them.

    Videos can be paths, http(s) URLs, lists of frame files or URLs (a chat's `{"type": "video", "url": ["f0.jpg",
    ...]}`, or `videos=[[["f0.jpg", ...]]]`: as in transformers, a sample's list of videos holds the list), lists of PIL
    images or HxWx3 arrays, or THWC/TCHW arrays and tensors. Files are decoded by `video_decoding` with PyAV
    (transformers' default loader needs torchcodec): frames are resized as they are decoded, so a long video never
    sits in memory at full resolution. A file is opened as that file alone (no playlists or multi-file formats) and a
    URL is downloaded once (see `media_access`). In-memory frames and frame files without `video_metadata` are taken
    as already sampled at `fps` (frame `i` at `i / fps` seconds).

    Every option can be overridden per call, e.g. `processor(video, fps=2, max_frames=512, size=224)`. An explicit
    `num_frames` takes that many frames uniformly and overrides the default `fps`.

    Outputs: `pixel_values_videos` of shape `(sum_T, 3, height, width)` (all videos' frames, concatenated so videos
    of different lengths stack), `video_num_frames` `(num_videos,)`, and with `return_metadata=True`,
    `video_metadata`: one `HourLlavaVideoMetadata` per video with `timestamps` (seconds of each frame from the stream
    start) and `duration` (seconds). Metadata is never a model input.
    """

    resample = PILImageResampling.BICUBIC
    size = {"height": 384, "width": 384}
    image_mean = list(SIGLIP_MEAN)
    image_std = list(SIGLIP_STD)
    rescale_factor = 1 / 255
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    fps = 1
    num_frames = None
    min_frames = DEFAULT_MIN_FRAMES
    max_frames = None
    return_metadata = False
    valid_kwargs = HourLlavaVideoProcessorKwargs
    model_input_names = ["pixel_values_videos", "video_num_frames"]

    def __init__(self, **kwargs: Unpack[HourLlavaVideoProcessorKwargs]):
        super().__init__(**kwargs)

    def sample_frames(
        self,
        metadata: VideoMetadata,
        num_frames: int | None = None,
        fps: float | None = None,
        min_frames: int | None = None,
        max_frames: int | None = None,
        frame_times: np.ndarray | None = None,
        **kwargs,
    ) -> np.ndarray:
        """Indices of the frames to keep (see `video_decoding.sample_frame_indices`).

        An explicit `num_frames` wins over `fps` (transformers' base class raises when both are set, and `fps` is
        always set here by the class default). `frame_times` are every frame's seconds from the first frame; without
        them frames are timed by `metadata.fps`, or taken as already sampled at `fps` when that is unknown.
        """
        fps = None if num_frames is not None else (fps if fps is not None else self.fps)
        if frame_times is None:
            rate = metadata.fps or fps or 1.0
            frame_times = np.arange(metadata.total_num_frames, dtype=np.float64) / rate
        return sample_frame_indices(
            frame_times,
            fps=fps,
            min_frames=self.min_frames if min_frames is None else min_frames,
            max_frames=max_frames,
            num_frames=num_frames,
        )

    def fetch_videos(self, video_url_or_urls, sample_indices_fn=None):
        """Decode paths or URLs with our PyAV reader (transformers' default needs torchcodec).

        Returns `(frames, metadata)` like transformers' `load_video`, or lists of them for a list of inputs; frames
        are at the processor's `size`, already resized while decoding.
        """
        if isinstance(video_url_or_urls, (list, tuple)):
            return tuple(map(list, zip(*[self.fetch_videos(x, sample_indices_fn) for x in video_url_or_urls])))
        source = open_video(video_url_or_urls)
        indices = sample_indices_fn(metadata=source.metadata()) if sample_indices_fn else np.arange(len(source))
        size = self.size if isinstance(self.size, SizeDict) else SizeDict(**self.size)
        return source.decode(indices, size=self._frame_size(size, self.do_resize), resample=self.resample)

    # ------------------------------------------------------------------------------------------------------------------
    # Preprocessing
    # ------------------------------------------------------------------------------------------------------------------
    def preprocess(self, videos, **kwargs: Unpack[HourLlavaVideoProcessorKwargs]) -> BatchFeature:
        """Sample, decode and normalise `videos`; see the class docstring for inputs, options and outputs.

        Overridden because decoding, sampling and resizing are one step here (the frame size must reach the decoder
        so that no frame is kept at full resolution); the options are resolved as in the base class.
        """
        options = self._resolve_options(kwargs)
        videos = paths_as_strings(videos)
        encoded = encoded_videos(videos)
        if encoded is not None:
            return self._select_encoded_frames(encoded, options)
        videos = make_batched_videos(videos)
        user_metadata = self._per_video_metadata(options.pop("video_metadata"), len(videos))
        pixel_values, metadata = [], []
        for video, video_metadata in zip(videos, user_metadata):
            source, indices = self._open_and_sample(video, video_metadata, options)
            frames, frames_metadata = self._decode_to_pixel_values(source, indices, options)
            pixel_values.append(frames)
            metadata.append(frames_metadata)
        sizes = {tuple(frames.shape[-2:]) for frames in pixel_values}
        if len(sizes) > 1:
            raise ValueError(f"Videos of different frame sizes {sorted(sizes)} cannot be stacked; resize them.")
        return self._batch_output("pixel_values_videos", pixel_values, metadata, options)

    def iter_video_chunks(
        self, video, chunk_size: int = DEFAULT_CHUNK_SIZE, **kwargs: Unpack[HourLlavaVideoProcessorKwargs]
    ) -> Generator[VideoChunk, None, HourLlavaVideoMetadata]:
        """Stream one video as `VideoChunk`s of `chunk_size` frames, with the same pixels `preprocess` returns; the
        generator returns the metadata of the decoded frames (keep it with `video_source.Returning`).

        For hour-long videos: one chunk of float pixels is alive at a time (the full `pixel_values_videos` of an hour
        at 384x384 is 6.4 GB of float32), so the model can build its memory chunk by chunk.
        """
        options = self._resolve_options(kwargs)
        [video_metadata] = self._per_video_metadata(options.pop("video_metadata"), 1)
        source, indices = self._open_and_sample(video, video_metadata, options)
        return (yield from source.iter_chunks(indices, chunk_size=chunk_size, **self._decoding_options(options)))

    def encode_video(
        self,
        video,
        encode_chunks: Callable[[Iterable[torch.Tensor]], torch.Tensor],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **kwargs: Unpack[HourLlavaVideoProcessorKwargs],
    ) -> EncodedVideo:
        """Decode `video` chunk by chunk into `encode_chunks` (e.g. `model.get_pooled_video_features`): an `EncodedVideo`.

        Only one chunk of pixels exists at a time, whatever the video's length; the result holds the pooled features
        and the metadata of exactly the frames decoded, ready to be cached and passed back as a video.
        """
        options = self._resolve_options(kwargs)
        [video_metadata] = self._per_video_metadata(options.pop("video_metadata"), 1)
        source, indices = self._open_and_sample(video, video_metadata, options)
        chunks = Returning(source.iter_chunks(indices, chunk_size=chunk_size, **self._decoding_options(options)))
        pooled_features = encode_chunks(chunk.pixel_values for chunk in chunks)
        if chunks.value is None:
            raise ValueError(f"`encode_chunks` stopped before the last chunk of {source.name}; it must read them all.")
        return EncodedVideo(pooled_features, chunks.value)

    def _select_encoded_frames(self, videos: list, options: dict) -> BatchFeature:
        """Encoded videos pass their pooled features through, sampled by the call's options over their frame times.

        Their frames were sampled when they were encoded, so with the same options every frame is kept again (1 FPS
        picks of 1 FPS times are all of them); a frame cap (`max_frames`, `num_frames`) or a lower `fps` thins them.
        """
        pooled, metadata = [], []
        for video in videos:
            times = np.asarray(video.metadata.timestamps, dtype=np.float64)
            keep = np.arange(len(times))
            if options["do_sample_frames"] and len(times):
                keep = sample_frame_indices(
                    times - times[0],
                    fps=options["fps"],
                    min_frames=options["min_frames"],
                    max_frames=options["max_frames"],
                    num_frames=options["num_frames"],
                )
            every_frame = len(keep) == len(times)  # then no copy: an hour of features is ~1 GiB for the 7B model
            pooled.append(video.pooled_features if every_frame else video.pooled_features[torch.as_tensor(keep)])
            metadata.append(_select_frames(video.metadata, keep))
        return self._batch_output("pooled_video_features", pooled, metadata, options)

    @staticmethod
    def _batch_output(key: str, per_video: list[torch.Tensor], metadata: list, options: dict) -> BatchFeature:
        """Videos concatenated along frames under `key`, with `video_num_frames` (and metadata when asked for)."""
        data = {
            key: per_video[0] if len(per_video) == 1 else torch.cat(per_video),
            "video_num_frames": torch.tensor([len(frames) for frames in per_video], dtype=torch.long),
        }
        if options["device"] is not None:
            data = {name: value.to(options["device"]) for name, value in data.items()}
        output = BatchFeature(data=data, tensor_type=options["return_tensors"])
        if options["return_metadata"]:
            output["video_metadata"] = metadata
        return output

    def _resolve_options(self, kwargs: dict) -> dict:
        """Call kwargs over instance defaults, validated and standardised as the base class does."""
        unknown = set(kwargs) - {*self.valid_kwargs.__annotations__, "return_tensors"}
        if unknown:
            raise ValueError(
                f"Unknown option(s) {sorted(unknown)} for {type(self).__name__}; valid options are "
                f"{sorted(self.valid_kwargs.__annotations__)}."
            )
        validate_typed_dict(self.valid_kwargs, kwargs)
        if kwargs.get("fps") is not None and kwargs.get("num_frames") is not None:
            raise ValueError(
                f"`num_frames`={kwargs['num_frames']} and `fps`={kwargs['fps']} are mutually exclusive; pass one."
            )
        options = {name: kwargs.get(name, getattr(self, name, None)) for name in self.valid_kwargs.__annotations__}
        if kwargs.get("num_frames") is not None:
            options["fps"] = None  # an explicit frame count beats the default rate
        options["return_tensors"] = kwargs.get("return_tensors")
        options = self._standardize_kwargs(**options)
        self._validate_preprocess_kwargs(**options)
        return options

    @staticmethod
    def _per_video_metadata(video_metadata, num_videos: int) -> list[Mapping | None]:
        """User metadata (only its `fps` is used: the frame rate of in-memory frames), one entry per video."""
        if video_metadata is None:
            return [None] * num_videos
        if isinstance(video_metadata, Mapping):
            video_metadata = [video_metadata]
        video_metadata = [m for entry in video_metadata for m in (entry if isinstance(entry, list) else [entry])]
        if len(video_metadata) != num_videos:
            raise ValueError(f"Got {len(video_metadata)} `video_metadata` entries for {num_videos} videos.")
        return video_metadata

    def _open_and_sample(self, video, video_metadata: Mapping | None, options: dict) -> tuple[VideoSource, np.ndarray]:
        video_fps = video_metadata.get("fps") if video_metadata is not None else None
        source = open_video(video, video_fps=video_fps, fps=options["fps"] or self.fps)
        if not options["do_sample_frames"]:
            return source, np.arange(len(source))
        indices = self.sample_frames(
            source.metadata(),
            num_frames=options["num_frames"],
            fps=options["fps"],
            min_frames=options["min_frames"],
            max_frames=options["max_frames"],
            frame_times=source.frame_times,
        )
        return source, indices

    def _decoding_options(self, options: dict) -> dict:
        return {
            "size": self._frame_size(options["size"], options["do_resize"]),
            "resample": options["resample"],
            "rescale_factor": options["rescale_factor"],
            "image_mean": options["image_mean"],
            "image_std": options["image_std"],
            "do_rescale": options["do_rescale"],
            "do_normalize": options["do_normalize"],
        }

    @staticmethod
    def _frame_size(size: SizeDict | None, do_resize: bool) -> tuple[int, int] | None:
        if not do_resize:
            return None
        if size is None or size.height is None or size.width is None:
            raise ValueError(
                f"size={size} must give 'height' and 'width': Hour-LLaVA resizes frames straight to a fixed size."
            )
        return (size.height, size.width)

    def _decode_to_pixel_values(
        self, source: VideoSource, indices: np.ndarray, options: dict
    ) -> tuple[torch.Tensor, HourLlavaVideoMetadata]:
        """Decode chunk by chunk into one preallocated tensor: the full video never exists twice in memory."""
        pixel_values, chunks = None, Returning(source.iter_chunks(indices, **self._decoding_options(options)))
        for chunk in chunks:
            if pixel_values is None:
                pixel_values = torch.empty((len(indices), *chunk.pixel_values.shape[1:]), dtype=torch.float32)
            pixel_values[chunk.start : chunk.start + len(chunk.pixel_values)] = chunk.pixel_values
        metadata = chunks.value
        return pixel_values[: metadata.num_frames], metadata


def _select_frames(metadata, keep: np.ndarray):
    """`metadata` restricted to the frames at positions `keep` (all of them: returned as is)."""
    if len(keep) == len(metadata.timestamps):
        return metadata
    timestamps = [metadata.timestamps[i] for i in keep]
    if dataclasses.is_dataclass(metadata) and hasattr(metadata, "frame_timestamps"):
        indices = getattr(metadata, "frames_indices", None)
        indices = [indices[i] for i in keep] if indices is not None else None
        return dataclasses.replace(metadata, frame_timestamps=timestamps, frames_indices=indices)
    return HourLlavaVideoMetadata(total_num_frames=len(keep), duration=metadata.duration, frame_timestamps=timestamps)


__all__ = ["EncodedVideo", "HourLlavaVideoProcessor"]
