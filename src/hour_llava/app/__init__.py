# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava app`: chat with a video in the browser (Gradio), and see where MemAug looked.

- `chat`: `VideoChat`, the model side: videos decoded and encoded once into the pipeline's feature cache, streamed
  answers, timings, and MemAug's attention from the model's public `video_outputs`.
- `timeline`: `AttentionTimeline`, the plot data, and `render_timeline`, the plot.
- `demo_model`: the default model and examples, those `hour-llava demo` saved.
- `ui` (needs the `[app]` extra): the Gradio page, `build_app` and `launch_app`.
"""

from .chat import Answer, AnswerTimings, ChatVideo, Turn, VideoChat, VideoInputError, VideoTiming
from .demo_model import DEFAULT_DEMO_DIR, Example, NoModelError, demo_examples, demo_model_dir, model_and_examples
from .timeline import AttentionTimeline, render_timeline


__all__ = [
    "DEFAULT_DEMO_DIR",
    "Answer",
    "AnswerTimings",
    "AttentionTimeline",
    "ChatVideo",
    "Example",
    "NoModelError",
    "Turn",
    "VideoChat",
    "VideoInputError",
    "VideoTiming",
    "demo_examples",
    "demo_model_dir",
    "model_and_examples",
    "render_timeline",
]
