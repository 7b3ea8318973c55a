# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Where conversion sources come from: a local directory or a Hub repository, read lazily and with progress bars."""

import json
import os
from pathlib import Path

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


def load_tensors(directory: Path, description: str = "Reading weights") -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in `directory`, keyed by its name in the checkpoint, one file at a time."""
    tensors: dict[str, torch.Tensor] = {}
    for file in tqdm(weight_files(directory), desc=description, unit="file"):
        if file.suffix == ".safetensors":
            with safe_open(file, framework="pt") as shard:
                tensors.update({key: shard.get_tensor(key) for key in shard.keys()})
        else:
            tensors.update(torch.load(file, map_location="cpu", weights_only=True, mmap=True))
    return tensors


__all__ = ["ConversionError", "load_tensors", "read_json", "resolve_source", "weight_files"]
