# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava app [--model DIR] [--port N]`: chat with a video in the browser (Gradio, needs the `[app]` extra)."""

import argparse
import sys


HELP = (
    "Chat with a video in the browser: streamed answers, cached video features, and where MemAug looked "
    "(default model: the one `hour-llava demo` saved)."
)
DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", help="Hour-LLaVA checkpoint (directory or Hub id); default: ./hour-llava-demo/hour-llava-demo"
    )
    parser.add_argument("--port", type=int, default=7860, help="Port to serve on (default: 7860)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to bind (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--device", help="torch device, e.g. cpu, cuda (default: cuda if available)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="Weight dtype (auto: the checkpoint's)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Longest answer, in tokens")
    parser.add_argument("--max-upload-mb", type=float, default=2048, help="Largest video accepted, in MB")
    parser.add_argument("--trust-remote-code", action="store_true", help="Allow the checkpoint's own code to run")


def run(args: argparse.Namespace) -> int:
    try:
        from ..app.ui import launch_app
    except ImportError as error:
        print(f"hour-llava app: {error}. Install the app's extra: pip install 'hour-llava[app]'", file=sys.stderr)
        return 1
    import torch

    from ..app import NoModelError, VideoChat, model_and_examples
    from .checks import check_model_argument

    try:
        model, examples = model_and_examples(args.model)
        check_model_argument(model)
    except (NoModelError, ValueError) as error:
        print(f"hour-llava app: {error}", file=sys.stderr)
        return 1

    try:
        chat = VideoChat.from_pretrained(
            model,
            device=args.device,
            dtype="auto" if args.dtype == "auto" else getattr(torch, args.dtype),
            trust_remote_code=args.trust_remote_code,
            max_new_tokens=args.max_new_tokens,
            max_video_bytes=int(args.max_upload_mb * 2**20),
        )
    except (OSError, ValueError) as error:
        print(f"hour-llava app: could not load --model {model}: {error}", file=sys.stderr)
        return 1
    launch_app(chat, examples, host=args.host, port=args.port, model_name=model)
    return 0
