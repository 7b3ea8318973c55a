# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Training Hour-LLaVA with TRL's `SFTTrainer` on VideoMarathon: data, stage presets, feature cache, trainer.

`import hour_llava` does not import this package; TRL itself is imported only when the trainer is first used.
"""

from .data import (
    TRAINING_ROW_FEATURES,
    BadSampleError,
    QATableFormat,
    conversations_to_messages,
    group_qa_rows,
    load_video_instruction_dataset,
)
from .paths import VideoPathError, VideoRoots
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
    "HourLlavaSFTTrainer",
    "QATableFormat",
    "TrainingStage",
    "VideoPathError",
    "VideoRoots",
    "apply_training_stage",
    "build_parameter_groups",
    "conversations_to_messages",
    "get_training_stage",
    "group_qa_rows",
    "load_video_instruction_dataset",
    "parameter_part",
]


def __getattr__(name: str):
    if name == "HourLlavaSFTTrainer":
        from .trainer import HourLlavaSFTTrainer

        return HourLlavaSFTTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
