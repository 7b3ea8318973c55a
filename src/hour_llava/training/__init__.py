# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Training Hour-LLaVA with TRL's `SFTTrainer` on videos, images and text: data, stage presets, feature cache, trainer.

`import hour_llava` does not import this package; TRL is imported only when the trainer is first used.
"""

import importlib

from .data import (
    TRAINING_ROW_FEATURES,
    BadSampleError,
    QATableFormat,
    conversations_to_messages,
    dataset_videos,
    group_qa_rows,
    load_video_instruction_dataset,
)
from .feature_cache import (
    CachedVideoFeatures,
    ExtractionReport,
    FeatureCacheMismatchError,
    StreamingVideoEncoder,
    extract_video_features,
    feature_cache_path,
    is_complete_cache_file,
    load_video_features,
    save_video_features,
    videos_in_folder,
    vision_fingerprint,
)
from .paths import ImageRoots, VideoPathError, VideoRoots
from .stages import (
    PARTS,
    TRAINING_STAGES,
    TrainingStage,
    apply_training_stage,
    build_parameter_groups,
    get_training_stage,
    parameter_part,
)


__all__ = [
    "PARTS",
    "TRAINING_ROW_FEATURES",
    "TRAINING_STAGES",
    "BadSampleError",
    "CachedVideoFeatures",
    "ExtractionReport",
    "FeatureCacheMismatchError",
    "HourLlavaDataCollator",
    "HourLlavaSFTTrainer",
    "ImageRoots",
    "NonFiniteTrainingError",
    "QATableFormat",
    "StopOnNonFiniteCallback",
    "TrainingStage",
    "VideoPathError",
    "StreamingVideoEncoder",
    "VideoRoots",
    "apply_training_stage",
    "build_parameter_groups",
    "conversations_to_messages",
    "dataset_videos",
    "extract_video_features",
    "feature_cache_path",
    "get_training_stage",
    "group_qa_rows",
    "is_complete_cache_file",
    "load_video_features",
    "load_video_instruction_dataset",
    "parameter_part",
    "save_video_features",
    "videos_in_folder",
    "vision_fingerprint",
]


# Imported on first use: the trainer pulls in TRL, the collator the processor (and PyAV).
_LAZY = {
    "HourLlavaSFTTrainer": ".trainer",
    "NonFiniteTrainingError": ".trainer",
    "StopOnNonFiniteCallback": ".trainer",
    "HourLlavaDataCollator": ".collator",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
