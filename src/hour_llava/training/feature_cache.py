# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""A cache of pooled vision features per video, so stage 3 skips decoding and the (frozen) vision tower.

Layout: one safetensors file per video, at `<cache_dir>/<video key>.safetensors`, where the video key is the video's
path relative to the video root (`<data_source>/<video>`, e.g. `ego4d/abc.mp4` -> `ego4d/abc.mp4.safetensors`).
Each file holds:

* `pooled_video_features`: `(T, g*g, C_vision)`, what `model.get_video_features(pixels).last_hidden_state` returns
  (the vision tower's last layer, bilinearly pooled to `g x g`, before the projector), the model's
  `pooled_video_features` input;
* `timestamps`: `(T,)` float64, the time of each decoded frame in seconds;
* header metadata: `format`, `format_version`, `video` (the key), `duration` (seconds), `num_frames`,
  `fingerprint` (a hash of the vision tower's config and weights and the decoding settings) and `checksum` (a hash
  of the features' and timestamps' bytes, so a flipped bit is found when the file is read; files without one are
  still read).

Writes are atomic: each process writes a temporary file of its own (named after its host and process id) in the same
folder, then renames it over the target with `os.replace`, so an interrupted run leaves only whole files and two
processes writing into one cache never touch each other's temporaries. A rerun verifies each existing file's header
(it must parse, match the fingerprint and have consistent shapes) and skips it, recomputes anything else, and removes
the temporaries of processes of this host that are no longer running. Work is split across processes by striding
over the sorted video keys.
"""

import hashlib
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..processing import EncodedVideo, HourLlavaVideoMetadata
from ..video_features import encode_video


logger = logging.getLogger(__name__)

CACHE_FORMAT = "hour-llava-video-features"
CACHE_FORMAT_VERSION = "1"
CACHE_SUFFIX = ".safetensors"
FEATURES_KEY = "pooled_video_features"
TIMESTAMPS_KEY = "timestamps"
ERROR_POLICIES = ("skip", "raise")
TEMPORARY_MARKER = ".tmp-"


class FeatureCacheMismatchError(ValueError):
    """Cached features were made by another vision tower or with other decoding settings than the training run's."""


class CachedVideoFeatures(EncodedVideo):
    """One cache file's content: an `EncodedVideo` (pass it to the processor as the video) plus the file's header."""

    def __init__(self, pooled_features: torch.Tensor, metadata: HourLlavaVideoMetadata, header: dict[str, str]):
        super().__init__(pooled_features, metadata)
        self.header = header


@dataclass
class ExtractionReport:
    """What one process did: files written, files found complete and skipped, and videos that failed."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def feature_cache_path(cache_dir: str | os.PathLike, video_key: str) -> Path:
    """The cache file of the video whose key (path relative to the video root) is `video_key`."""
    return Path(cache_dir) / f"{video_key}{CACHE_SUFFIX}"


def vision_fingerprint(model: torch.nn.Module, decoding_settings: dict | None = None) -> str:
    """A hash of what decides the cached features: the vision config and weights, the pool size, the decoding.

    A cache written with another vision tower (say, before stage-2 training changed it) then fails verification.
    """
    if hasattr(model, "get_base_model"):  # PEFT: the wrapped model's tower (adapters never touch it)
        model = model.get_base_model()
    base = getattr(model, "model", model)
    digest = hashlib.sha256()
    settings = {
        "vision_config": base.config.vision_config.to_dict(),
        "video_pool_size": base.config.video_pool_size,
        "decoding": decoding_settings or {},
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in sorted(base.vision_tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def save_video_features(
    path: str | os.PathLike,
    pooled_video_features: torch.Tensor,
    timestamps: Sequence[float] | torch.Tensor,
    duration: float,
    video_key: str,
    fingerprint: str,
) -> None:
    """Write one cache file atomically: a temp file of this process next to it, flushed to disk, renamed over `path`.

    Features holding NaN or infinite values are refused (`ValueError`): they would train a NaN model.
    """
    path = Path(path)
    timestamps = torch.as_tensor(list(timestamps), dtype=torch.float64)
    if pooled_video_features.dim() != 3 or timestamps.shape != (pooled_video_features.shape[0],):
        raise ValueError(
            f"Features of {video_key!r} must be (T, tokens, channels) with T timestamps; got "
            f"{tuple(pooled_video_features.shape)} and {tuple(timestamps.shape)}."
        )
    features = pooled_video_features.detach().cpu().contiguous()
    if not torch.isfinite(features).all():
        raise ValueError(f"Features of {video_key!r} hold NaN or infinite values; nothing was written to {path}.")
    metadata = {
        "format": CACHE_FORMAT,
        "format_version": CACHE_FORMAT_VERSION,
        "video": video_key,
        "duration": repr(float(duration)),
        "num_frames": str(pooled_video_features.shape[0]),
        "fingerprint": fingerprint,
        "checksum": features_checksum(features, timestamps),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=_temporary_prefix(path), dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        save_file({FEATURES_KEY: features, TIMESTAMPS_KEY: timestamps}, temporary, metadata=metadata)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_cache_header(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a cache file, without reading its tensors; `ValueError` naming the file otherwise."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (OSError, RuntimeError, SafetensorError) as error:
        raise ValueError(f"Cannot read feature cache file {str(path)!r}: {error}") from error
    _check_metadata(header, path)
    return header


def features_checksum(*tensors: torch.Tensor) -> str:
    """A hash of the tensors' bytes (with dtypes and shapes): a flipped bit changes it."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _temporary_prefix(path: Path) -> str:
    """Temporaries of `path` carry the writer's process id and host, so a rerun knows whose they are."""
    return f".{path.name}{TEMPORARY_MARKER}{os.getpid()}-{socket.gethostname()}-"


def load_video_features(path: str | os.PathLike) -> CachedVideoFeatures:
    """Read one cache file as an encoded video; `ValueError` naming the file if it is not a complete cache file or its
    features do not match the checksum stored with them."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            _check_metadata(header, path)
            features, timestamps = handle.get_tensor(FEATURES_KEY), handle.get_tensor(TIMESTAMPS_KEY)
    except (OSError, RuntimeError, KeyError, SafetensorError) as error:  # missing, or a header that does not parse
        raise ValueError(f"Cannot read feature cache file {str(path)!r}: {error}") from error
    stored = header.get("checksum")
    if stored is not None and stored != features_checksum(features, timestamps):
        raise ValueError(f"Feature cache file {str(path)!r} is damaged: its features do not match their checksum.")
    metadata = HourLlavaVideoMetadata(
        total_num_frames=features.shape[0],
        duration=float(header["duration"]),
        frame_timestamps=timestamps.tolist(),
        source=header.get("video"),
    )
    return CachedVideoFeatures(features, metadata, header)


def _check_metadata(metadata: dict[str, str], path) -> None:
    if metadata.get("format") != CACHE_FORMAT or metadata.get("format_version") != CACHE_FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} is not an Hour-LLaVA feature cache file of version {CACHE_FORMAT_VERSION} "
            f"(format {metadata.get('format')!r}, version {metadata.get('format_version')!r})."
        )


def check_fingerprint(header: dict[str, str], expected: str, path) -> None:
    """`FeatureCacheMismatchError` naming both fingerprints when a cache file was written for another vision tower or
    other decoding settings."""
    found = header.get("fingerprint")
    if found != expected:
        raise FeatureCacheMismatchError(
            f"Feature cache file {str(path)!r} has fingerprint {found!r}, but the model being trained (its vision "
            f"tower, pool size and the collator's decoding settings) has fingerprint {expected!r}. The cache was made "
            "with another vision tower or other settings: rerun hour-llava extract-features with this model and "
            "these settings (--overwrite), or train from videos."
        )


def is_complete_cache_file(path: str | os.PathLike, fingerprint: str | None = None) -> bool:
    """Whether `path` is a whole cache file (header parses, shapes agree) written with `fingerprint` (if given).

    Reads only the header, so resuming over many large files stays cheap.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            _check_metadata(metadata, path)
            features = handle.get_slice(FEATURES_KEY).get_shape()
            timestamps = handle.get_slice(TIMESTAMPS_KEY).get_shape()
    except (OSError, RuntimeError, KeyError, ValueError, SafetensorError):
        return False
    if fingerprint is not None and metadata.get("fingerprint") != fingerprint:
        return False
    return len(features) == 3 and list(timestamps) == features[:1] and metadata.get("num_frames") == str(features[0])


def _remove_stale_temporaries(path: Path) -> None:
    """Temp files that killed processes of this host left for this video; a running process's are never touched."""
    host = socket.gethostname()
    for temporary in path.parent.glob(f".{path.name}{TEMPORARY_MARKER}*"):
        pid, _, rest = temporary.name[len(f".{path.name}{TEMPORARY_MARKER}") :].partition("-")
        writer_host = rest.rpartition("-")[0]
        if pid.isdigit() and writer_host == host and not _process_is_running(int(pid)):
            temporary.unlink(missing_ok=True)


def _process_is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def shard_for_process(video_keys: Sequence[str], process_index: int, num_processes: int) -> list[str]:
    """This process's share: every `num_processes`-th key of the sorted, de-duplicated keys."""
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process_index={process_index} is not in [0, num_processes={num_processes}).")
    return sorted(set(video_keys))[process_index::num_processes]


def extract_video_features(
    videos: dict[str, str],
    cache_dir: str | os.PathLike,
    encode_video: Callable[[str], EncodedVideo],
    fingerprint: str,
    process_index: int = 0,
    num_processes: int = 1,
    overwrite: bool = False,
    on_error: str = "skip",
    dtype: torch.dtype = torch.float32,
    show_progress: bool = True,
) -> ExtractionReport:
    """Write the cache file of each of this process's videos, skipping files already complete.

    Args:
        videos: video key -> video file path.
        encode_video: video path -> its pooled features and frame metadata (`StreamingVideoEncoder`, or any
            function returning an object with `pooled_features` and `metadata`, for tests).
        fingerprint: stored in every file, checked when resuming (see `vision_fingerprint`).
        process_index, num_processes: this process's share of the sorted keys.
        overwrite: recompute files that are already complete.
        on_error: `"skip"` (warn with the video and the error, go on) or `"raise"`.
        dtype: dtype the features are stored in.
    """
    if on_error not in ERROR_POLICIES:
        raise ValueError(f"on_error={on_error!r} is not one of {ERROR_POLICIES}.")
    report = ExtractionReport()
    keys = shard_for_process(list(videos), process_index, num_processes)
    progress = tqdm(
        keys,
        desc=f"Extracting features [{process_index + 1}/{num_processes}]",
        unit="video",
        position=process_index,
        disable=not show_progress,
    )
    for key in progress:
        path = feature_cache_path(cache_dir, key)
        if not overwrite and is_complete_cache_file(path, fingerprint):
            report.skipped.append(key)
            continue
        _remove_stale_temporaries(path)
        try:
            encoded = encode_video(videos[key])
            features = encoded.pooled_features.to(dtype)
            save_video_features(path, features, encoded.metadata.timestamps, encoded.metadata.duration, key, fingerprint)
        except Exception as error:  # a bad video must not stop a multi-day extraction
            if on_error == "raise":
                raise RuntimeError(f"Feature extraction failed for video {key!r} ({videos[key]}): {error}") from error
            logger.warning("Skipping video %r (%s): %s", key, videos[key], error)
            report.failed[key] = str(error)
            continue
        report.written.append(key)
    return report


VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".ts")


def videos_in_folder(root: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> dict[str, str]:
    """Every video file under `root` (recursively), keyed by its path relative to `root` (the cache key)."""
    root = Path(root)
    return {
        path.relative_to(root).as_posix(): str(path)
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in extensions and path.is_file()
    }


class StreamingVideoEncoder:
    """`encode_video` for `extract_video_features`: the processor's decoding streamed into the model's vision tower.

    Frames are decoded and encoded `vision_chunk_size` at a time (`hour_llava.video_features.encode_video`, as the
    pipeline does), so an hour-long video costs its pooled features, never its 6.4 GB of float pixels, on the host
    or the accelerator. The features come back as float32 on the CPU, ready to be written.

    Args:
        processor: an `HourLlavaProcessor` (its `video_processor` is used) or an `HourLlavaVideoProcessor`.
        model: the Hour-LLaVA model whose vision tower (and pooling) makes the features.
        video_kwargs: video processor options (e.g. `{"max_frames": 512}`); keep them equal to the training run's.
        vision_chunk_size: frames per chunk; the model config's `vision_chunk_size` by default.
    """

    def __init__(self, processor, model: torch.nn.Module, video_kwargs: dict | None = None, vision_chunk_size=None):
        self.video_processor = getattr(processor, "video_processor", processor)
        self.model = model.eval()
        self.video_kwargs = dict(video_kwargs or {})
        self.vision_chunk_size = vision_chunk_size or model.config.vision_chunk_size

    @property
    def settings(self) -> dict:
        """What decides the frames, for `vision_fingerprint`."""
        return {**self.video_processor.to_dict(), **self.video_kwargs}

    def __call__(self, path: str) -> EncodedVideo:
        encoded = encode_video(path, self.video_processor, self.model, self.vision_chunk_size, **self.video_kwargs)
        return EncodedVideo(encoded.pooled_features.float().cpu(), encoded.metadata)


__all__ = [
    "CACHE_FORMAT_VERSION",
    "CachedVideoFeatures",
    "FeatureCacheMismatchError",
    "check_fingerprint",
    "read_cache_header",
    "ExtractionReport",
    "StreamingVideoEncoder",
    "extract_video_features",
    "feature_cache_path",
    "is_complete_cache_file",
    "load_video_features",
    "save_video_features",
    "shard_for_process",
    "vision_fingerprint",
    "videos_in_folder",
]
