# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Video decoding for Hour-LLaVA with PyAV: 1-FPS sampling fused with resizing.

Hour-LLaVA reads a video at one frame per second, so an hour is 3600 frames. Decoding them all at full resolution
first (as generic loaders do) holds gigabytes of pixels the model never sees. Here a video is read in two passes:

1. `open_video` demuxes the packets (no decoding) to learn every frame's presentation time, even when the container
   does not say how many frames it has. `sample_frame_indices` then picks the frames from those times.
2. `VideoSource.iter_frames` decodes with frame threading and converts only the picked frames, each scaled to the
   model's size as soon as it is decoded. `iter_chunks` turns them into model-ready pixel tensors a chunk at a time,
   so memory grows with what the caller keeps, not with the video.

In-memory frames (a list of PIL images or HxWx3 arrays, a THWC array or tensor) go through the same sampling and
resizing code as files, so both paths give the same pixels.

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation, VideoReformatter
from PIL import Image
from transformers.video_utils import VideoMetadata


DEFAULT_SAMPLING_FPS = 1.0
DEFAULT_MIN_FRAMES = 128
DEFAULT_FRAME_SIZE = (384, 384)  # (height, width) of SigLIP so400m/14@384
DEFAULT_CHUNK_SIZE = 128
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
# Timestamps are rationals converted to float; this absorbs the rounding when comparing them with whole seconds.
TIME_TOLERANCE = 1e-6
URL_TIMEOUT_SECONDS = 60.0

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
# Sampling
# ----------------------------------------------------------------------------------------------------------------------
def sample_frame_indices(
    frame_times: Sequence[float] | np.ndarray,
    fps: float | None = DEFAULT_SAMPLING_FPS,
    min_frames: int = DEFAULT_MIN_FRAMES,
    max_frames: int | None = None,
    num_frames: int | None = None,
) -> np.ndarray:
    """Indices of the frames Hour-LLaVA reads, from every frame's time in seconds (ascending, first frame at 0).

    - `num_frames` set: that many frames spread uniformly over the whole video (at most all of them).
    - Otherwise, at `fps` frames per second: the first frame at or after each tick `k / fps`. This follows the
      frames' real times, so variable frame rates and drifting rates such as 29.97 stay on the clock.
    - When that gives fewer than `min_frames`, `min(N, min_frames)` frames spread uniformly over all N frames
      (`np.linspace(0, N - 1, ..., dtype=int)`), the reference rule for short clips.
    - `max_frames` caps the result by uniform selection among the picks. `fps=None` keeps every frame.
    """
    _check_sampling_arguments(fps, min_frames, max_frames, num_frames)
    times = np.asarray(frame_times, dtype=np.float64)
    total = len(times)
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    if num_frames is not None:
        indices = np.linspace(0, total - 1, min(num_frames, total), dtype=np.int64)
    elif fps is None:
        indices = np.arange(total, dtype=np.int64)
    else:
        indices = first_frame_at_each_tick(times, fps)
        if len(indices) < min_frames:
            indices = np.linspace(0, total - 1, min(total, min_frames), dtype=np.int64)
    if max_frames is not None and len(indices) > max_frames:
        indices = indices[np.linspace(0, len(indices) - 1, max_frames, dtype=np.int64)]
    return indices


def first_frame_at_each_tick(times: np.ndarray, fps: float) -> np.ndarray:
    """For each tick `k / fps` up to the last frame, the index of the first frame at or after it (deduplicated)."""
    num_ticks = math.floor(times[-1] * fps + TIME_TOLERANCE) + 1
    ticks = np.arange(num_ticks, dtype=np.float64) / fps
    indices = np.searchsorted(times, ticks - TIME_TOLERANCE, side="left")
    return np.unique(np.minimum(indices, len(times) - 1)).astype(np.int64)


def _check_sampling_arguments(fps, min_frames, max_frames, num_frames) -> None:
    if fps is not None and not fps > 0:
        raise ValueError(f"fps={fps} must be positive (or None to keep every frame).")
    if min_frames is None or min_frames < 0:
        raise ValueError(f"min_frames={min_frames} must be a non-negative integer.")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames={max_frames} must be at least 1 (or None for no cap).")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be at least 1.")


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
class VideoSource:
    """A video whose frame times are known before anything is decoded.

    Subclasses: `ContainerVideo` (a file or URL read with PyAV) and `InMemoryVideo` (frames already decoded).
    """

    source: str | None = None
    frame_times: np.ndarray  # seconds from the first frame, one per frame, ascending
    duration: float  # seconds, from the start of the first frame to the end of the last
    average_fps: float
    width: int
    height: int
    rotation: int = 0  # counter-clockwise degrees applied to make frames upright; known once a frame is decoded

    def __len__(self) -> int:
        return len(self.frame_times)

    def iter_indexed_frames(
        self, indices: Sequence[int], size: tuple[int, int] | None = DEFAULT_FRAME_SIZE, resample=3
    ) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield `(frame index, seconds, (height, width, 3) uint8)` for `indices` (ascending), decoding lazily."""
        raise NotImplementedError

    def metadata(
        self, indices: Sequence[int] | None = None, timestamps: Sequence[float] | None = None
    ) -> HourLlavaVideoMetadata:
        """Metadata of the frames `indices` (their planned times unless `timestamps` gives the decoded ones), or of
        the whole video before sampling when `indices` is None."""
        if indices is not None:
            indices = [int(i) for i in indices]
            timestamps = [float(t) for t in (self.frame_times[indices] if timestamps is None else timestamps)]
        width, height = (self.height, self.width) if self.rotation % 180 else (self.width, self.height)
        return HourLlavaVideoMetadata(
            total_num_frames=len(self),
            fps=self.average_fps,
            width=width,
            height=height,
            duration=self.duration,
            video_backend="pyav",
            frames_indices=indices,
            frame_timestamps=timestamps,
            source=self.source,
            rotation=self.rotation,
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
        for index, time, frame in self.iter_indexed_frames(indices, size, resample):
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
        return frames[: len(decoded_indices)], self.metadata(decoded_indices, timestamps)

    def iter_chunks(
        self,
        indices: Sequence[int],
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        size: tuple[int, int] | None = DEFAULT_FRAME_SIZE,
        resample=3,
        **pixel_options,
    ) -> Iterator[VideoChunk]:
        """Yield the frames `indices` as model-ready `VideoChunk`s of `chunk_size` frames.

        Only one chunk of frames is alive at a time (plus what the caller keeps), so an hour of video needs the memory
        of one chunk. `pixel_options` are those of `frames_to_pixel_values`.
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size} must be at least 1.")
        batch, start = [], 0
        for item in self.iter_indexed_frames(indices, size, resample):
            batch.append(item)
            if len(batch) == chunk_size:
                chunk, batch = _make_chunk(batch, start, pixel_options), []  # drop the uint8 frames before yielding
                start += chunk_size
                yield chunk
        if batch:
            yield _make_chunk(batch, start, pixel_options)

    @property
    def name(self) -> str:
        return repr(self.source) if self.source is not None else "the in-memory video"


def _make_chunk(batch: list[tuple[int, float, np.ndarray]], start: int, pixel_options: dict) -> VideoChunk:
    return VideoChunk(
        pixel_values=frames_to_pixel_values(np.stack([frame for _, _, frame in batch]), **pixel_options),
        timestamps=torch.tensor([time for _, time, _ in batch], dtype=torch.float64),
        frame_indices=torch.tensor([index for index, _, _ in batch], dtype=torch.long),
        start=start,
    )


def is_url(source: str) -> bool:
    return "://" in source


class ContainerVideo(VideoSource):
    """A video file or URL. Construction demuxes every packet once (cheap: no decoding) to time every frame."""

    def __init__(self, source: str | os.PathLike):
        self.source = os.fspath(source)
        if not is_url(self.source):
            if not os.path.exists(self.source):
                raise FileNotFoundError(f"Video file not found: {self.source!r}")
            if os.path.isdir(self.source):
                raise ValueError(f"{self.source!r} is a directory, not a video file.")
        with self._open() as container:
            stream = container.streams.video[0]
            self.time_base = stream.time_base or Fraction(1, 1)
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            declared = (stream.frames, _declared_duration(container, stream))
            self.frame_pts, last_duration = self._demux_timestamps(container, stream)
            rate = stream.average_rate or stream.guessed_rate
        if len(self.frame_pts) == 0:
            raise ValueError(f"The video stream of {self.name} has no frames (zero-length video).")
        self.frame_times = (self.frame_pts - self.frame_pts[0]).astype(np.float64) * float(self.time_base)
        self.frame_step = last_duration * float(self.time_base) if last_duration else (1 / float(rate) if rate else 0.0)
        self.duration = float(self.frame_times[-1] + self.frame_step)
        # Headers count durations from the stream's start or from zero; the later end is the generous comparison.
        self.end_time = max(self.duration, float(self.frame_pts[0] * self.time_base) + self.duration)
        self.average_fps = float(rate) if rate else len(self) / max(self.duration, TIME_TOLERANCE)
        self._warn_if_truncated(*declared)

    def _open(self) -> av.container.InputContainer:
        try:
            timeout = URL_TIMEOUT_SECONDS if is_url(self.source) else None
            container = av.open(self.source, mode="r", timeout=timeout)
        except av.FFmpegError as error:
            raise ValueError(f"Could not open {self.name} as a video: {error}") from error
        if not container.streams.video:
            kinds = sorted({stream.type for stream in container.streams}) or ["none"]
            container.close()
            raise ValueError(
                f"{self.name} has no video stream (streams found: {', '.join(kinds)}); is it an audio-only file?"
            )
        return container

    def _demux_timestamps(self, container, stream) -> tuple[np.ndarray, int | None]:
        """Presentation timestamps of every frame, sorted, from the packets alone; plus the last frame's duration."""
        timestamps, durations, self._packets_read, self._packet_times_are_pts = [], {}, 0, True
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at the end of the stream
                self._packets_read += 1
                timestamp = packet.pts if packet.pts is not None else packet.dts
                self._packet_times_are_pts &= packet.pts is not None
                if packet.is_discard or timestamp is None:
                    continue  # edit-list priming frames are dropped by the decoder too
                timestamps.append(timestamp)
                durations[timestamp] = packet.duration
        except av.FFmpegError as error:
            if not timestamps:
                raise ValueError(f"Could not read {self.name}: {error}") from error
            stop = (max(timestamps) - min(timestamps)) * float(self.time_base)
            warnings.warn(f"{self.name}: demuxing stopped at {stop:.2f}s ({error}); using the frames before it.")
        pts = np.unique(np.asarray(timestamps, dtype=np.int64))
        return pts, (durations.get(int(pts[-1])) if len(pts) else None)

    def _warn_if_truncated(self, declared_frames: int, declared_duration: float | None) -> None:
        """Compare what was readable with what the container header promises: less means a truncated file."""
        readable = f"its data ends at {self.frame_times[-1]:.2f}s"
        if declared_frames and self._packets_read < declared_frames:
            promise = f"declares {declared_frames} frames but only {self._packets_read} are readable ({readable})"
        elif declared_duration and declared_duration > self.end_time + max(1.0, 2 * self.frame_step):
            promise = f"declares {declared_duration:.2f}s but {readable}"
        else:
            return
        warnings.warn(f"{self.name} {promise}; the file looks truncated, decoding stops there.")

    def iter_indexed_frames(self, indices, size=DEFAULT_FRAME_SIZE, resample=3):
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return
        if np.any(np.diff(indices) < 0) or indices[0] < 0 or indices[-1] >= len(self):
            raise ValueError(f"Frame indices for {self.name} must be ascending and within [0, {len(self)}).")
        wanted_pts = self.frame_pts[indices]
        scaler = FrameScaler(size, resample)
        origin, seconds_per_tick = int(self.frame_pts[0]), float(self.time_base)
        slot, last_time = 0, None
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for position, frame in enumerate(self._decode(container, stream, set(wanted_pts.tolist()))):
                    # Frames leave the decoder in presentation order; without pts, the n-th frame is the n-th time.
                    pts = frame.pts if frame.pts is not None else int(self.frame_pts[min(position, len(self) - 1)])
                    last_time = (pts - origin) * seconds_per_tick
                    if pts < wanted_pts[slot]:
                        continue
                    self.rotation = int(round(frame.rotation / 90)) % 4 * 90
                    array = scaler(frame, self.rotation // 90)
                    # The first frame at or after each wanted time: also right when a wanted frame fails to decode.
                    while slot < len(wanted_pts) and wanted_pts[slot] <= pts:
                        yield int(indices[slot]), last_time, array
                        slot += 1
                    if slot == len(wanted_pts):
                        return
            except av.FFmpegError as error:
                self._warn_incomplete(slot, len(wanted_pts), last_time, f"decoding failed: {error}")
                return
        self._warn_incomplete(slot, len(wanted_pts), last_time, "the stream ended early")

    def _decode(self, container, stream, wanted_pts: set[int]) -> Iterator[av.VideoFrame]:
        """Decode in presentation order, skipping the non-reference frames that were not asked for.

        No other frame is predicted from a non-reference frame (most B-frames), so the decoder can drop one whose
        packet time is not wanted without changing any decoded pixel. With x264's defaults that is about 40% of the
        frames; streams without B-frames (or without packet times) decode every frame.
        """
        codec = stream.codec_context
        skip_unwanted = self._packet_times_are_pts
        self.frames_decoded = 0
        for packet in container.demux(stream):
            if skip_unwanted:
                keep = packet.pts is None or packet.size == 0 or packet.pts in wanted_pts
                codec.skip_frame = "DEFAULT" if keep else "NONREF"
            for frame in packet.decode():
                self.frames_decoded += 1
                yield frame

    def _warn_incomplete(self, delivered: int, wanted: int, last_time: float | None, reason: str) -> None:
        if delivered < wanted:
            if last_time is not None:
                self.duration = min(self.duration, last_time + self.frame_step)  # what the frames really cover
            stop = "before the first frame" if last_time is None else f"at {last_time:.2f}s"
            warnings.warn(
                f"{self.name}: decoding stopped {stop} ({reason}); {wanted - delivered} of {wanted} sampled frames "
                "could not be read and are left out."
            )


def _declared_duration(container, stream) -> float | None:
    """The video stream's duration from the header; the container's when the video is its only stream."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


class InMemoryVideo(VideoSource):
    """Frames already decoded: a list of PIL images or HxWx3 arrays, or a THWC/TCHW array or tensor.

    They carry no clock. With `video_fps` (their frame rate) they are timed `i / video_fps` and sampled like a file;
    without it they are taken as already sampled at the requested rate, `fps` (frame `i` at `i / fps`), so the 1-FPS
    rule keeps them all.
    """

    def __init__(self, frames, video_fps: float | None = None, fps: float | None = DEFAULT_SAMPLING_FPS):
        self.frames = _as_frame_list(frames)
        if not self.frames:
            raise ValueError("The in-memory video has no frames.")
        self.height, self.width = self.frames[0].shape[:2]
        self.average_fps = float(video_fps or fps or DEFAULT_SAMPLING_FPS)
        self.frame_times = np.arange(len(self.frames), dtype=np.float64) / self.average_fps
        self.duration = len(self.frames) / self.average_fps

    def iter_indexed_frames(self, indices, size=DEFAULT_FRAME_SIZE, resample=3):
        scaler = FrameScaler(size, resample)
        for index in indices:
            frame = av.VideoFrame.from_ndarray(self.frames[int(index)], format="rgb24")
            yield int(index), float(self.frame_times[int(index)]), scaler(frame)


def _as_frame_list(frames) -> list[np.ndarray]:
    """Uint8 `(height, width, 3)` RGB arrays from PIL images, arrays or tensors (THWC or TCHW, uint8 or [0, 1])."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"A video array must have 4 dims (THWC or TCHW), got shape {tuple(frames.shape)}.")
        if frames.shape[-1] not in (1, 3, 4) and frames.shape[1] in (1, 3, 4):
            frames = frames.transpose(0, 2, 3, 1)
        frames = list(frames)
    return [_as_rgb_uint8(frame, position) for position, frame in enumerate(frames)]


def _as_rgb_uint8(frame, position: int) -> np.ndarray:
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3:
        raise ValueError(f"Frame {position} has shape {frame.shape}; expected (height, width, channels).")
    if frame.shape[-1] not in (1, 3, 4) and frame.shape[0] in (1, 3, 4):
        frame = frame.transpose(1, 2, 0)
    if frame.dtype != np.uint8:
        scale = 255.0 if frame.size and float(frame.max()) <= 1.0 else 1.0
        frame = np.clip(np.rint(frame.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


def open_video(video, video_fps: float | None = None, fps: float | None = DEFAULT_SAMPLING_FPS) -> VideoSource:
    """A `VideoSource` for a path, URL (http(s) or anything FFmpeg opens), or in-memory frames.

    `video_fps` is the frame rate of in-memory frames (files know their own); `fps` is the sampling rate, used to time
    in-memory frames that come without `video_fps`.
    """
    if isinstance(video, (str, os.PathLike)):
        return ContainerVideo(video)
    return InMemoryVideo(video, video_fps=video_fps, fps=fps)


# ----------------------------------------------------------------------------------------------------------------------
# One-call helpers
# ----------------------------------------------------------------------------------------------------------------------
def open_and_sample(video, video_fps: float | None = None, **sampling) -> tuple[VideoSource, np.ndarray]:
    """`open_video` and the indices `sample_frame_indices(**sampling)` picks (fps, min/max_frames, num_frames)."""
    source = open_video(video, video_fps=video_fps, fps=sampling.get("fps", DEFAULT_SAMPLING_FPS))
    return source, source.sample(**sampling)


def decode_video(
    video, size: tuple[int, int] | None = DEFAULT_FRAME_SIZE, resample=3, video_fps: float | None = None, **sampling
) -> tuple[np.ndarray, HourLlavaVideoMetadata]:
    """Sample and decode a video: `(T, height, width, 3)` uint8 frames and their metadata (times, duration).

    `size` is `(height, width)`, or `None` for the native size. `sampling` holds `sample_frame_indices`' options
    (`fps=1.0`, `min_frames=128`, `max_frames=None`, `num_frames=None`).
    """
    source, indices = open_and_sample(video, video_fps, **sampling)
    return source.decode(indices, size=size, resample=resample)


def iter_video_chunks(
    video,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    size: tuple[int, int] | None = DEFAULT_FRAME_SIZE,
    resample=3,
    video_fps: float | None = None,
    pixel_options: dict | None = None,
    **sampling,
) -> Iterator[VideoChunk]:
    """Stream a video's sampled frames as model-ready `VideoChunk`s (SigLIP normalisation unless overridden).

    Peak memory is one chunk of pixels, whatever the video's length. `pixel_options` go to `frames_to_pixel_values`;
    `sampling` to `sample_frame_indices`.
    """
    source, indices = open_and_sample(video, video_fps, **sampling)
    yield from source.iter_chunks(indices, chunk_size=chunk_size, size=size, resample=resample, **(pixel_options or {}))


__all__ = [
    "ContainerVideo",
    "HourLlavaVideoMetadata",
    "InMemoryVideo",
    "VideoChunk",
    "VideoSource",
    "decode_video",
    "frames_to_pixel_values",
    "iter_video_chunks",
    "open_and_sample",
    "open_video",
    "sample_frame_indices",
]
