# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava convert SRC DST`: the authors' checkpoints (or LLaVA-OneVision, or SigLIP + Qwen2) to this format."""

import argparse
import sys


HELP = "Convert an authors' Hour-LLaVA checkpoint (or build one from LLaVA-OneVision or SigLIP + Qwen2)."
DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", help="Hub id or directory: jylins/hourllava-*, llava-hf/llava-onevision-*, or a SigLIP"
    )
    parser.add_argument("destination", help="Output directory (written atomically)")
    parser.add_argument(
        "--language-model",
        metavar="QWEN2",
        help="Build from parts: SOURCE is a SigLIP checkpoint and this a Qwen2 causal LM (Hub id or directory)",
    )
    parser.add_argument("--revision", help="Hub revision of the source(s)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="Weight dtype (auto: the source's)")
    parser.add_argument("--max-shard-size", default="5GB", help="Largest safetensors shard, e.g. 5GB")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing destination that is an earlier Hour-LLaVA checkpoint (anything else is refused)",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from ..conversion import ConversionError, build_from_siglip_and_qwen2, convert_checkpoint

    options = {
        "revision": args.revision,
        "dtype": None if args.dtype == "auto" else getattr(torch, args.dtype),
        "max_shard_size": args.max_shard_size,
        "overwrite": args.overwrite,
    }
    try:
        if args.language_model:
            destination = build_from_siglip_and_qwen2(args.source, args.language_model, args.destination, **options)
        else:
            destination = convert_checkpoint(args.source, args.destination, **options)
    except (ConversionError, FileExistsError) as error:
        print(f"hour-llava convert: {error}", file=sys.stderr)
        return 1
    print(f"Saved the Hour-LLaVA checkpoint to {destination}")
    return 0
