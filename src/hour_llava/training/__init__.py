# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Training Hour-LLaVA with TRL's `SFTTrainer` on VideoMarathon: data, stage presets, feature cache, trainer.

Imported lazily: `import hour_llava` does not pull in TRL or `datasets`.
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


__all__ = [
    "TRAINING_ROW_FEATURES",
    "BadSampleError",
    "QATableFormat",
    "VideoPathError",
    "VideoRoots",
    "conversations_to_messages",
    "group_qa_rows",
    "load_video_instruction_dataset",
]
