# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""
Ask one or more questions about a video with Hour-LLaVA. The video is decoded and encoded once: later questions
reuse its cached features and cost only MemAug and the language model.

Usage:

```bash
python examples/inference.py \
    --model_name_or_path ./hourllava-qwen2-7b \
    --video match.mp4 \
    --questions "Who scored first?" "How many goals were there?" \
    --max_new_tokens 64
```

Convert the authors' checkpoints first with `hour-llava convert jylins/hourllava-qwen2-7b-s3 ./hourllava-qwen2-7b`.
"""

from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TextStreamer, pipeline

from hour_llava.pipelines import TASK, VideoTextToTextPipeline


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(metadata={"help": "Hub id or directory of an Hour-LLaVA checkpoint."})
    video: str = field(metadata={"help": "Video file or http(s) URL."})
    questions: list[str] = field(metadata={"help": "Questions about the video, answered one after the other."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer, in tokens."})
    fps: float | None = field(default=None, metadata={"help": "Frames sampled per second (default 1)."})
    max_frames: int | None = field(default=None, metadata={"help": "Cap on the sampled frames."})
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16 or float16."})
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available)."})


def main(script_args: ScriptArguments) -> None:
    pipe = pipeline(
        TASK,
        model=script_args.model_name_or_path,
        dtype=script_args.dtype if script_args.dtype == "auto" else getattr(torch, script_args.dtype),
        device=script_args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        pipeline_class=VideoTextToTextPipeline,
    )
    streamer = TextStreamer(pipe.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    video_options = {"fps": script_args.fps, "max_frames": script_args.max_frames}
    video_options = {name: value for name, value in video_options.items() if value is not None}
    for question in script_args.questions:
        print(f"Q: {question}\nA: ", end="", flush=True)
        pipe(script_args.video, question, max_new_tokens=script_args.max_new_tokens, streamer=streamer, **video_options)


if __name__ == "__main__":
    parser = HfArgumentParser(ScriptArguments)
    (script_args,) = parser.parse_args_into_dataclasses()
    main(script_args)
