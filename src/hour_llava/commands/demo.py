# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava demo`: the offline long-video memory experiment (see `hour_llava.demo`)."""

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path


HELP = (
    "Offline demo: synthetic long videos in VideoMarathon format, tiny models trained with TRL's SFTTrainer "
    "(Hour-LLaVA and the same without MemAug; --full adds 64 uniform frames), evaluated through the pipeline; writes "
    "results.md and plots."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data and the weights (--full: the first)")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("hour-llava-demo"), help="Where data, models and the report go"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="Three seeds, all three models (adds uniform-64), 200 held-out videos per seed",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: these tiny models' operations are too small to share, and two threads on a "
        "busy two-core machine stall each other). Part of the settings: a rerun with the same count reproduces the "
        "losses",
    )


def run(args: argparse.Namespace) -> int:
    from ..demo import DemoSettings, run_demo

    settings = DemoSettings.full(args.seed) if args.full else DemoSettings.quick(args.seed)
    settings = dataclasses.replace(settings, threads=args.threads)
    command = shlex.join(["hour-llava", *sys.argv[1:]]) if sys.argv[0].endswith("hour-llava") else "hour-llava demo"
    start = time.perf_counter()
    report = run_demo(settings, args.output_dir, command=command)
    print(f"\nDone in {(time.perf_counter() - start) / 60:.1f} min. Report: {report}")
    return 0
