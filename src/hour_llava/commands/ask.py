# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava ask VIDEO "question" --model ID_OR_DIR`: stream Hour-LLaVA's answer about a video to the terminal."""

import argparse
import sys

from .checks import ArgumentError, check_local_video, check_model_argument


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


# What answering raises for a video that cannot be read or a prompt that cannot be run (PyAV's errors are OSErrors or
# ValueErrors); anything else is a bug and keeps its traceback.
ANSWER_ERRORS = (OSError, ValueError, RuntimeError, EOFError)


def fail(message: str) -> int:
    """One line on stderr, exit status 1."""
    print(f"hour-llava ask: {' '.join(str(message).split())}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from safetensors import SafetensorError
    from transformers import TextStreamer

    try:  # before loading the model: a typo costs a line, not a minute
        check_local_video(args.video)
        check_model_argument(args.model)
    except ArgumentError as error:
        return fail(str(error))
    try:
        pipe = build_pipeline(args)
    except (OSError, ValueError, SafetensorError) as error:
        return fail(f"could not load --model {args.model}: {error}")
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
    except ANSWER_ERRORS as error:
        return fail(str(error))
    return 0
