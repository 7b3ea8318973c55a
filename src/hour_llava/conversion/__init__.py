# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Convert the authors' Hour-LLaVA checkpoints, or build new ones from LLaVA-OneVision or SigLIP + Qwen2."""

from .convert import atomic_directory, build_from_siglip_and_qwen2, convert_checkpoint
from .sources import ConversionError


__all__ = ["ConversionError", "atomic_directory", "build_from_siglip_and_qwen2", "convert_checkpoint"]
