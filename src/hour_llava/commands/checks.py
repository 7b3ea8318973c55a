# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Checks of command-line arguments that run before anything slow (loading a model), so a mistake costs one line
naming the argument or the file instead of a traceback minutes later."""

import json
from pathlib import Path


class ArgumentError(ValueError):
    """A command-line argument that cannot work; the message names it and says why, in one line."""


def check_model_argument(model: str) -> None:
    """`--model` must be an Hour-LLaVA checkpoint folder with whole weight files, or a Hub id (`owner/name`)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = Path(model).expanduser()
    if not path.exists():
        try:
            if model.startswith((".", "/", "~")):
                raise HFValidationError("a path")
            validate_repo_id(model)
        except HFValidationError:
            raise ArgumentError(
                f"--model {model}: no such directory, and not a Hub id of the form 'owner/name'."
            ) from None
        return  # a Hub id; loading reports an unknown one
    config = path / "config.json"
    if not config.is_file():
        raise ArgumentError(f"--model {model}: {config} is missing; this is not a saved Hour-LLaVA checkpoint.")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (ValueError, AttributeError) as error:
        raise ArgumentError(f"--model {model}: {config} is not a JSON object ({error}).") from None
    if model_type != "hour_llava":
        raise ArgumentError(
            f"--model {model}: config.json has model_type {model_type!r}, not 'hour_llava'; "
            "convert it first with `hour-llava convert`."
        )
    check_weight_files(path)


def check_weight_files(directory: Path) -> None:
    """Every safetensors file in `directory` must be whole: a truncated download or copy is named here, not found
    as a deserialisation error without a file name while the model loads."""
    from safetensors import SafetensorError, safe_open

    for weights in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise ArgumentError(
                f"--model {directory}: {weights} is truncated or damaged ({error}); copy, download or convert it again."
            ) from None


def check_local_video(video: str) -> None:
    """A video given as a local path must be a readable file (URLs are opened by the processor)."""
    if video.startswith(("http://", "https://")):
        return
    path = Path(video).expanduser()
    if not path.exists():
        raise ArgumentError(f"No video file at {video}.")
    if not path.is_file():
        raise ArgumentError(f"{video} is not a video file (it is a folder or a device).")
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise ArgumentError(f"Cannot read the video {video}: {error.strerror}.") from None
