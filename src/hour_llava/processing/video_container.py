# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""PyAV I/O: a video file or URL as a `VideoSource`, read in two passes over the container.

1. Construction demuxes the packets (no decoding) to learn every frame's presentation time, even when the container
   does not say how many frames it has, and compares what is readable with what the header promises.
2. `iter_indexed_frames` decodes with frame threading, lets the decoder skip the non-reference frames nobody asked
   for, and scales only the wanted frames to the model's size as soon as they are decoded.

Files are opened and URLs fetched through `media_access` only (one file alone; a URL downloaded once).

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import os
import warnings
import weakref
from collections.abc import Generator, Iterator
from fractions import Fraction

import av
import numpy as np

from .media_access import MAX_DOWNLOAD_BYTES, URL_TIMEOUT_SECONDS, download_media, is_url, open_local_media
from .video_sampling import TIME_TOLERANCE
from .video_source import DEFAULT_FRAME_SIZE, DecodeState, FrameScaler, IndexedFrame, VideoSource


class ContainerVideo(VideoSource):
    """A video file, or a http(s) URL downloaded once to a temporary file (deleted with this object).

    Construction demuxes every packet once (cheap: no decoding) to time every frame.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        url_timeout: float = URL_TIMEOUT_SECONDS,
        max_url_bytes: int = MAX_DOWNLOAD_BYTES,
    ):
        self.source = os.fspath(source)
        self.path = self.source
        if is_url(self.source):
            self.path = download_media(self.source, timeout=url_timeout, max_bytes=max_url_bytes)
            weakref.finalize(self, _remove_file, self.path)
        with self._open() as container:
            stream = container.streams.video[0]
            self.time_base = stream.time_base or Fraction(1, 1)
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            declared = (stream.frames, _declared_duration(container, stream))
            self.frame_pts, last_duration, packets_read, self.packet_times_are_pts = self._demux_timestamps(
                container, stream
            )
            rate = stream.average_rate or stream.guessed_rate
        if len(self.frame_pts) == 0:
            raise ValueError(f"The video stream of {self.name} has no frames (zero-length video).")
        self.frame_times = (self.frame_pts - self.frame_pts[0]).astype(np.float64) * float(self.time_base)
        self.frame_step = last_duration * float(self.time_base) if last_duration else (1 / float(rate) if rate else 0.0)
        self.duration = float(self.frame_times[-1] + self.frame_step)
        # Headers count durations from the stream's start or from zero; the later end is the generous comparison.
        self.end_time = max(self.duration, float(self.frame_pts[0] * self.time_base) + self.duration)
        self.average_fps = float(rate) if rate else len(self) / max(self.duration, TIME_TOLERANCE)
        self._warn_if_truncated(packets_read, *declared)

    def _open(self) -> av.container.InputContainer:
        container = open_local_media(self.path)
        if not container.streams.video:
            kinds = sorted({stream.type for stream in container.streams}) or ["none"]
            container.close()
            raise ValueError(
                f"{self.name} has no video stream (streams found: {', '.join(kinds)}); is it an audio-only file?"
            )
        return container

    def _demux_timestamps(self, container, stream) -> tuple[np.ndarray, int | None, int, bool]:
        """Presentation timestamps of every frame, sorted, from the packets alone; plus the last frame's duration,
        the number of packets read, and whether every packet had a presentation time."""
        timestamps, durations, packets_read, all_pts = [], {}, 0, True
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at the end of the stream
                packets_read += 1
                timestamp = packet.pts if packet.pts is not None else packet.dts
                all_pts &= packet.pts is not None
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
        return pts, (durations.get(int(pts[-1])) if len(pts) else None), packets_read, all_pts

    def _warn_if_truncated(self, packets_read: int, declared_frames: int, declared_duration: float | None) -> None:
        """Compare what was readable with what the container header promises: less means a truncated file."""
        readable = f"its data ends at {self.frame_times[-1]:.2f}s"
        if declared_frames and packets_read < declared_frames:
            promise = f"declares {declared_frames} frames but only {packets_read} are readable ({readable})"
        elif declared_duration and declared_duration > self.end_time + max(1.0, 2 * self.frame_step):
            promise = f"declares {declared_duration:.2f}s but {readable}"
        else:
            return
        warnings.warn(f"{self.name} {promise}; the file looks truncated, decoding stops there.")

    def iter_indexed_frames(
        self, indices, size=DEFAULT_FRAME_SIZE, resample=3
    ) -> Generator[IndexedFrame, None, DecodeState]:
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return DecodeState()
        if np.any(np.diff(indices) < 0) or indices[0] < 0 or indices[-1] >= len(self):
            raise ValueError(f"Frame indices for {self.name} must be ascending and within [0, {len(self)}).")
        wanted_pts = self.frame_pts[indices]
        scaler = FrameScaler(size, resample)
        origin, seconds_per_tick = int(self.frame_pts[0]), float(self.time_base)
        slot, last_time, rotation, frames_decoded = 0, None, 0, 0
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in self._decode(container, stream, set(wanted_pts.tolist())):
                    # Frames leave the decoder in presentation order; without pts, the n-th frame is the n-th time.
                    position = min(frames_decoded, len(self) - 1)
                    pts = frame.pts if frame.pts is not None else int(self.frame_pts[position])
                    frames_decoded += 1
                    last_time = (pts - origin) * seconds_per_tick
                    if pts < wanted_pts[slot]:
                        continue
                    rotation = int(round(frame.rotation / 90)) % 4 * 90
                    array = scaler(frame, rotation // 90)
                    # The first frame at or after each wanted time: also right when a wanted frame fails to decode.
                    while slot < len(wanted_pts) and wanted_pts[slot] <= pts:
                        yield int(indices[slot]), last_time, array
                        slot += 1
                    if slot == len(wanted_pts):
                        return DecodeState(rotation, frames_decoded)
                reason = "the stream ended early"
            except av.FFmpegError as error:
                reason = f"decoding failed: {error}"
        duration = self._warn_incomplete(slot, len(wanted_pts), last_time, reason)
        return DecodeState(rotation, frames_decoded, duration)

    def _decode(self, container, stream, wanted_pts: set[int]) -> Iterator[av.VideoFrame]:
        """Decode in presentation order, skipping the non-reference frames that were not asked for.

        No other frame is predicted from a non-reference frame (most B-frames), so the decoder can drop one whose
        packet time is not wanted without changing any decoded pixel. With x264's defaults that is about 40% of the
        frames; streams without B-frames (or without packet times) decode every frame.
        """
        codec = stream.codec_context
        for packet in container.demux(stream):
            if self.packet_times_are_pts:
                keep = packet.pts is None or packet.size == 0 or packet.pts in wanted_pts
                codec.skip_frame = "DEFAULT" if keep else "NONREF"
            yield from packet.decode()

    def _warn_incomplete(self, delivered: int, wanted: int, last_time: float | None, reason: str) -> float | None:
        """Warn when sampled frames are missing; return the seconds the decoded frames really cover (or None)."""
        if delivered >= wanted:
            return None
        stop = "before the first frame" if last_time is None else f"at {last_time:.2f}s"
        warnings.warn(
            f"{self.name}: decoding stopped {stop} ({reason}); {wanted - delivered} of {wanted} sampled frames "
            "could not be read and are left out."
        )
        return None if last_time is None else min(self.duration, last_time + self.frame_step)


def _declared_duration(container, stream) -> float | None:
    """The video stream's duration from the header; the container's when the video is its only stream."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["ContainerVideo"]
