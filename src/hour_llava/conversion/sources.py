# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Where conversion sources come from: a local directory or a Hub repository, read lazily and with progress bars."""

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from tqdm.auto import tqdm


# Everything a conversion reads; weights in other formats (TF, Flax, GGUF) are never downloaded.
SOURCE_FILE_PATTERNS = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


class ConversionError(ValueError):
    """A conversion source that cannot be converted; the message names the file, key or field at fault."""


def resolve_source(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """Return a local directory for `name_or_path`: the directory itself, or a snapshot of a Hub repository.

    Hub downloads go through `huggingface_hub.snapshot_download` (its own progress bars, its cache), limited to the
    config, tokenizer and safetensors/bin weight files.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{path} is a file; a conversion source is a checkpoint directory or a Hub repo id.")
    name = str(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ConversionError(f"{name} is neither an existing directory nor a Hub repo id of the form 'owner/name'.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=SOURCE_FILE_PATTERNS))
    except (RepositoryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError) as error:
        raise ConversionError(
            f"Could not get the Hub repository {name!r} (revision {revision or 'main'}): {error}"
        ) from error


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConversionError(f"{path} is missing.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from error


def weight_files(directory: Path) -> list[Path]:
    """The checkpoint's weight files: safetensors (sharded or not) first, PyTorch `.bin` files otherwise."""
    for index_name, pattern in (
        ("model.safetensors.index.json", "*.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model*.bin"),
    ):
        index = directory / index_name
        if index.is_file():
            return [directory / name for name in sorted(set(read_json(index)["weight_map"].values()))]
        files = sorted(directory.glob(pattern))
        if files:
            return files
    raise ConversionError(f"{directory} holds no *.safetensors or pytorch_model*.bin weight files.")


@contextmanager
def open_tensors(directory: Path, description: str = "Opening weights") -> Iterator[dict[str, Any]]:
    """Every tensor of the checkpoint in `directory`, keyed by its name in the checkpoint, read lazily.

    Safetensors come as memory-mapped slices that transformers' loader materialises one at a time, `.bin` files as
    memory-mapped tensors, so a conversion holds about one copy of the model in memory. The files stay open until
    the block ends.
    """
    tensors: dict[str, Any] = {}
    with ExitStack() as stack:
        for file in tqdm(weight_files(directory), desc=description, unit="file"):
            if file.suffix == ".safetensors":
                shard = stack.enter_context(safe_open(file, framework="pt"))
                tensors.update({key: shard.get_slice(key) for key in shard.keys()})
            else:
                tensors.update(torch.load(file, map_location="cpu", weights_only=True, mmap=True))
        yield tensors


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def shape_of(tensor: Any) -> tuple[int, ...]:
    """Shape of a tensor or a safetensors slice."""
    return tuple(tensor.get_shape()) if hasattr(tensor, "get_shape") else tuple(tensor.shape)


def dtype_of(tensor: Any) -> torch.dtype | None:
    """Dtype of a tensor or a safetensors slice (None for dtypes conversion never picks, e.g. integers)."""
    if hasattr(tensor, "get_dtype"):
        return SAFETENSORS_DTYPES.get(tensor.get_dtype())
    return tensor.dtype


__all__ = ["ConversionError", "dtype_of", "open_tensors", "read_json", "resolve_source", "shape_of", "weight_files"]
