# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava ask VIDEO "question" --model ID_OR_DIR`: stream Hour-LLaVA's answer about a video to the terminal."""

import argparse
import json
import sys
from pathlib import Path


HELP = "Ask a question about a video; the answer is streamed as it is generated."
DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="Video file or http(s) URL")
    parser.add_argument("question", help="The question about the video")
    parser.add_argument("--model", required=True, help="Hub id or directory of an Hour-LLaVA checkpoint")
    parser.add_argument("--fps", type=float, help="Frames sampled per second (default: the processor's, 1)")
    parser.add_argument("--max-frames", type=int, help="Cap on the sampled frames (uniform selection)")
    parser.add_argument("--num-frames", type=int, help="Sample exactly this many frames uniformly instead of by fps")
    parser.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="Weight dtype (auto: the checkpoint's)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="Longest answer, in tokens")
    parser.add_argument("--do-sample", action="store_true", help="Sample instead of greedy decoding")
    parser.add_argument("--trust-remote-code", action="store_true", help="Allow the checkpoint's own code to run")


def check_model(model: str) -> None:
    """Fail early, naming the path, when `model` is a directory that is not an Hour-LLaVA checkpoint."""
    path = Path(model).expanduser()
    if not path.exists():
        if model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise ValueError(f"--model {model}: no such directory (and not a Hub id of the form 'owner/name').")
        return  # a Hub id; loading reports an unknown one
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(f"--model {model}: {config} is missing; this is not a saved Hour-LLaVA checkpoint.")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "hour_llava":
        raise ValueError(
            f"--model {model}: config.json has model_type {model_type!r}, not 'hour_llava'; "
            "convert it first with `hour-llava convert`."
        )


def video_options(args: argparse.Namespace) -> dict:
    options = {"fps": args.fps, "max_frames": args.max_frames, "num_frames": args.num_frames}
    return {name: value for name, value in options.items() if value is not None}


def build_pipeline(args: argparse.Namespace):
    import torch
    from transformers import pipeline

    from ..pipelines import TASK, VideoTextToTextPipeline

    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return pipeline(
        TASK,
        model=args.model,
        device=device,
        dtype=dtype,
        trust_remote_code=args.trust_remote_code,
        pipeline_class=VideoTextToTextPipeline,  # also for checkpoints that carry the pipeline as remote code
    )


def run(args: argparse.Namespace) -> int:
    from transformers import TextStreamer

    try:
        check_model(args.model)
    except ValueError as error:
        print(f"hour-llava ask: {error}", file=sys.stderr)
        return 1
    try:
        pipe = build_pipeline(args)
    except (OSError, ValueError) as error:
        print(f"hour-llava ask: could not load --model {args.model}: {error}", file=sys.stderr)
        return 1
    streamer = TextStreamer(pipe.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    try:
        pipe(
            args.video,
            args.question,
            max_new_tokens=args.max_new_tokens,
            do_sample=args.do_sample,
            streamer=streamer,
            **video_options(args),
        )
    except ValueError as error:
        print(f"\nhour-llava ask: {error}", file=sys.stderr)
        return 1
    return 0
