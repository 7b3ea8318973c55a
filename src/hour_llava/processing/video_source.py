# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""What every video source shares: its metadata, frame scaling to the model's size, and model-ready chunks.

A `VideoSource` knows every frame's time before anything is decoded, so the sampling policy (`video_sampling`) picks
frames first and only those are decoded. Its subclasses are `ContainerVideo` (`video_container`: a file or URL read
with PyAV) and `InMemoryVideo` (`video_frames`: frames already decoded or loaded from image files).

A source does not change while it is read: what only decoding finds out (the display rotation, where a damaged file
really ends, how many frames the decoder produced) is the `DecodeState` each read returns.

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation, VideoReformatter
from transformers.video_utils import VideoMetadata

from .video_sampling import sample_frame_indices


DEFAULT_FRAME_SIZE = (384, 384)  # (height, width) of SigLIP so400m/14@384
DEFAULT_CHUNK_SIZE = 128
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

# PIL resampling filter ids -> swscale filters. swscale widens its kernels when downscaling, as PIL does, so the
# frames stay close to the `PIL.Image.resize` the released checkpoints were trained with.
SWSCALE_FILTERS = {
    0: Interpolation.POINT,  # NEAREST
    1: Interpolation.LANCZOS,
    2: Interpolation.BILINEAR,
    3: Interpolation.BICUBIC,
    4: Interpolation.AREA,  # BOX
}
RESAMPLE_NAMES = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "area": 4}


@dataclass
class HourLlavaVideoMetadata(VideoMetadata):
    """`VideoMetadata` that carries the real presentation time of every sampled frame.

    transformers derives timestamps as `frames_indices / fps`, which is wrong for variable-frame-rate video and for
    streams that do not start at zero; Hour-LLaVA's time instruction and the model's memory need the real ones.

    Args:
        frame_timestamps (`list[float]`):
            Seconds from the first frame of the stream to each sampled frame.
        source (`str`, *optional*):
            Path or URL the frames came from (`None` for in-memory frames).
        rotation (`int`):
            Counter-clockwise degrees the frames were rotated by to appear upright (display matrix).
    """

    frame_timestamps: list[float] | None = None
    source: str | None = None
    rotation: int = 0

    @property
    def timestamps(self) -> list[float]:
        if self.frame_timestamps is not None:
            return list(self.frame_timestamps)
        return super().timestamps

    @property
    def num_frames(self) -> int:
        """Number of sampled frames."""
        return len(self.frames_indices) if self.frames_indices is not None else self.total_num_frames


@dataclass
class VideoChunk:
    """Consecutive sampled frames of one video, in the model's input form.

    Args:
        pixel_values (`torch.FloatTensor` of shape `(n, 3, height, width)`): rescaled and normalized frames.
        timestamps (`torch.DoubleTensor` of shape `(n,)`): seconds from the stream start.
        frame_indices (`torch.LongTensor` of shape `(n,)`): index of each frame among all frames of the video.
        start (`int`): position of the chunk's first frame among the sampled frames.
    """

    pixel_values: torch.Tensor
    timestamps: torch.Tensor
    frame_indices: torch.Tensor
    start: int


# ----------------------------------------------------------------------------------------------------------------------
# Frame conversion
# ----------------------------------------------------------------------------------------------------------------------
def swscale_filter(resample) -> Interpolation:
    """The swscale filter for a PIL resampling id, a `PILImageResampling`, or a name such as `"bicubic"`."""
    if resample is None:
        return SWSCALE_FILTERS[3]
    key = RESAMPLE_NAMES.get(resample.lower()) if isinstance(resample, str) else resample
    if not isinstance(key, int) or key not in SWSCALE_FILTERS:
        raise ValueError(f"resample={resample!r} is not supported; use one of {sorted(RESAMPLE_NAMES)}.")
    return SWSCALE_FILTERS[key]


class FrameScaler:
    """Converts decoded frames to upright RGB arrays of the target size, reusing swscale contexts across frames."""

    def __init__(self, size: tuple[int, int] | None, resample=3):
        self.size = size
        self.interpolation = swscale_filter(resample)
        self._to_rgb = VideoReformatter()
        self._to_planar_rgb = VideoReformatter()
        self._scaler = VideoReformatter()
        self._to_packed_rgb = VideoReformatter()

    def __call__(self, frame: av.VideoFrame, quarter_turns: int = 0) -> np.ndarray:
        """`(height, width, 3)` uint8 RGB. `quarter_turns` counter-clockwise rotations make the frame upright.

        The frame goes to RGB at its own size first and is scaled in RGB, as `PIL.Image.resize` scales the RGB
        frames the checkpoints were trained on (scaling the YUV planes directly is 5x further from it, through
        chroma). Planar RGB scales twice as fast as packed RGB and gives the same pixels. YUV goes to packed RGB
        before planar: swscale's direct YUV -> planar RGB path zeroes pixels when a row is padded (widths such as
        40, 72 or 854, not multiples of 16). Rotation comes last: for a quarter turn the frame is scaled to the
        transposed size, so no full-resolution frame is ever rotated.
        """
        if self.size is None:
            height, width = frame.height, frame.width
        else:
            height, width = self.size if quarter_turns % 2 == 0 else self.size[::-1]
        planar = self._to_planar_rgb.reformat(self._to_rgb.reformat(frame, format="rgb24"), format="gbrp")
        scaled = self._scaler.reformat(planar, width=width, height=height, interpolation=self.interpolation)
        array = self._to_packed_rgb.reformat(scaled, format="rgb24").to_ndarray()
        return np.ascontiguousarray(np.rot90(array, k=quarter_turns)) if quarter_turns else array


def frames_to_pixel_values(
    frames: np.ndarray,
    rescale_factor: float = 1 / 255,
    image_mean: Sequence[float] = SIGLIP_MEAN,
    image_std: Sequence[float] = SIGLIP_STD,
    do_rescale: bool = True,
    do_normalize: bool = True,
) -> torch.Tensor:
    """`(n, height, width, 3)` uint8 frames -> `(n, 3, height, width)` float32 model input (SigLIP: [-1, 1]).

    Rescaling and normalisation are fused into one in-place `x * scale + shift` per channel on a preallocated
    output: an hour of frames goes through here, and the unfused form is several times slower and larger.
    """
    frames = torch.from_numpy(np.ascontiguousarray(frames))
    pixels = torch.empty((frames.shape[0], frames.shape[3], *frames.shape[1:3]), dtype=torch.float32)
    pixels.copy_(frames.permute(0, 3, 1, 2))
    channels = frames.shape[3]
    scale = torch.full((channels,), rescale_factor if do_rescale else 1.0, dtype=torch.float64)
    shift = torch.zeros(channels, dtype=torch.float64)
    if do_normalize:
        mean = torch.tensor(image_mean, dtype=torch.float64)
        std = torch.tensor(image_std, dtype=torch.float64)
        scale, shift = scale / std, -mean / std
    return pixels.mul_(scale.view(1, -1, 1, 1).float()).add_(shift.view(1, -1, 1, 1).float())


# ----------------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------------
IndexedFrame = tuple[int, float, np.ndarray]  # (frame index, seconds from the first frame, (h, w, 3) uint8 upright)


@dataclass(frozen=True)
class DecodeState:
    """What one read of a video found out that its header did not say.

    Args:
        rotation (`int`): counter-clockwise degrees the frames were turned by to appear upright (display matrix).
        frames_decoded (`int`): frames the decoder produced, wanted or not (the cost of the read).
        duration (`float`, *optional*): seconds the delivered frames really cover when decoding stopped early (a
            truncated or damaged file); `None` when the video's own duration holds.
    """

    rotation: int = 0
    frames_decoded: int = 0
    duration: float | None = None


class Returning:
    """Iterates a generator and keeps what it returns in `value` (a `for` loop drops a generator's return value)."""

    def __init__(self, generator: Generator):
        self.generator = generator
        self.value = None

    def __iter__(self):
        self.value = yield from self.generator


class VideoSource:
    """A video whose frame times are known before anything is decoded; reading it does not change it.

    Subclasses: `ContainerVideo` (a file or URL read with PyAV) and `InMemoryVideo` (frames already decoded).
    """

    source: str | None = None
    frame_times: np.ndarray  # seconds from the first frame, one per frame, ascending
    duration: float  # seconds, from the start of the first frame to the end of the last
    average_fps: float
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.frame_times)

    def iter_indexed_frames(
        self, indices: Sequence[int], size: tuple[int, int] | None = DEFAULT_FRAME_SIZE, resample=3
    ) -> Generator[IndexedFrame, None, DecodeState]:
        """Yield `(frame index, seconds, (height, width, 3) uint8)` for `indices` (ascending), decoding lazily;
        return the `DecodeState` of the read."""
        raise NotImplementedError

    def metadata(
        self,
        indices: Sequence[int] | None = None,
        timestamps: Sequence[float] | None = None,
        state: DecodeState | None = None,
    ) -> HourLlavaVideoMetadata:
        """Metadata of the frames `indices` (their planned times unless `timestamps` gives the decoded ones), or of
        the whole video before sampling when `indices` is None. `state` (from a read) adds rotation and the duration
        the frames really cover."""
        if indices is not None:
            indices = [int(i) for i in indices]
            timestamps = [float(t) for t in (self.frame_times[indices] if timestamps is None else timestamps)]
        state = state or DecodeState()
        width, height = (self.height, self.width) if state.rotation % 180 else (self.width, self.height)
        return HourLlavaVideoMetadata(
            total_num_frames=len(self),
            fps=self.average_fps,
            width=width,
            height=height,
            duration=self.duration if state.duration is None else state.duration,
            video_backend="pyav",
            frames_indices=indices,
            frame_timestamps=timestamps,
            source=self.source,
            rotation=state.rotation,
        )

    def sample(self, **sampling) -> np.ndarray:
        """`sample_frame_indices` over this video's frame times."""
        return sample_frame_indices(self.frame_times, **sampling)

    def decode(
        self, indices: Sequence[int], size: tuple[int, int] | None = DEFAULT_FRAME_SIZE, resample=3
    ) -> tuple[np.ndarray, HourLlavaVideoMetadata]:
        """All frames `indices` as one `(T, height, width, 3)` uint8 array, with the metadata of what was decoded.

        Frames are written into one preallocated array as they are decoded, so the video is never held twice.
        """
        frames, decoded_indices, timestamps = None, [], []
        reading = Returning(self.iter_indexed_frames(indices, size, resample))
        for index, time, frame in reading:
            if frames is None:
                frames = np.empty((len(indices), *frame.shape), dtype=np.uint8)
            if frame.shape != frames.shape[1:]:
                raise ValueError(
                    f"Frame {index} of {self.name} is {frame.shape[:2]}, unlike the first frame's {frames.shape[1:3]}; "
                    "pass a `size` to decode a video whose resolution changes."
                )
            frames[len(decoded_indices)] = frame
            decoded_indices.append(index)
            timestamps.append(time)
        if frames is None:
            raise ValueError(f"No frame of {self.name} could be decoded.")
        return frames[: len(decoded_indices)], self.metadata(decoded_indices, timestamps, reading.value)

    def iter_chunks(
        self,
        indices: Sequence[int],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        size: tuple[int, int] | None = DEFAULT_FRAME_SIZE,
        resample=3,
        **pixel_options,
    ) -> Generator[VideoChunk, None, HourLlavaVideoMetadata]:
        """Yield the frames `indices` as model-ready `VideoChunk`s of `chunk_size` frames; return the metadata of the
        frames decoded (wrap in `Returning` to keep it). Raises when no frame could be decoded.

        Only one chunk of frames is alive at a time (plus what the caller keeps), so an hour of video needs the memory
        of one chunk. `pixel_options` are those of `frames_to_pixel_values`.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be at least 1.")
        batch, start, decoded_indices, timestamps = [], 0, [], []
        reading = Returning(self.iter_indexed_frames(indices, size, resample))
        for item in reading:
            batch.append(item)
            decoded_indices.append(item[0])
            timestamps.append(item[1])
            if len(batch) == chunk_size:
                chunk, batch = _make_chunk(batch, start, pixel_options), []  # drop the uint8 frames before yielding
                start += chunk_size
                yield chunk
        if batch:
            yield _make_chunk(batch, start, pixel_options)
        if not decoded_indices:
            raise ValueError(f"No frame of {self.name} could be decoded.")
        return self.metadata(decoded_indices, timestamps, reading.value)

    @property
    def name(self) -> str:
        return repr(self.source) if self.source is not None else "the in-memory video"


def _make_chunk(batch: list[IndexedFrame], start: int, pixel_options: dict) -> VideoChunk:
    return VideoChunk(
        pixel_values=frames_to_pixel_values(np.stack([frame for _, _, frame in batch]), **pixel_options),
        timestamps=torch.tensor([time for _, time, _ in batch], dtype=torch.float64),
        frame_indices=torch.tensor([index for index, _, _ in batch], dtype=torch.long),
        start=start,
    )


__all__ = [
    "DecodeState",
    "FrameScaler",
    "HourLlavaVideoMetadata",
    "Returning",
    "VideoChunk",
    "VideoSource",
    "frames_to_pixel_values",
]
