# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava extract-features`: cache every video's pooled vision features for training with a frozen tower.

Single process:

    hour-llava extract-features --model ./hour-llava-s2 --output-dir features/ --data-files videomarathon.json \\
        --video-root /data/VideoMarathon/videos

Several GPUs (each process takes every N-th video; rerun the same command to resume after an interruption):

    accelerate launch --num_processes 8 -m hour_llava.cli extract-features --model ./hour-llava-s2 ...
"""

import argparse


HELP = "Cache pooled vision features of videos (for training with a frozen vision tower, as in stage 3)."
DTYPES = ("float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Hour-LLaVA checkpoint (Hub id or directory) whose tower to use")
    parser.add_argument("--processor", help="Processor to decode with (default: the one saved with --model)")
    parser.add_argument("--output-dir", required=True, help="Cache folder (<data_source>/<video>.safetensors files)")
    parser.add_argument("--data-files", nargs="+", help="Instruction json/jsonl or QA tables naming the videos")
    parser.add_argument("--video-root", help="Folder of <data_source>/<video> (all its videos without --data-files)")
    parser.add_argument("--video-roots", nargs="*", default=[], metavar="SOURCE=DIR", help="Folder per data_source")
    parser.add_argument("--max-frames", type=int, help="Frame cap per video (keep it equal to the training run's)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="Dtype the features are stored in")
    parser.add_argument("--overwrite", action="store_true", help="Recompute files that are already complete")
    parser.add_argument("--on-error", choices=("skip", "raise"), default="skip", help="On an unreadable video")
    parser.add_argument("--shard-index", type=int, help="This job's shard (default: the accelerate process index)")
    parser.add_argument("--num-shards", type=int, help="Number of shards (default: the accelerate process count)")


def run(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ..training import VideoRoots, dataset_videos, load_video_instruction_dataset
    from ..training.feature_cache import (
        StreamingVideoEncoder,
        extract_video_features,
        videos_in_folder,
        vision_fingerprint,
    )

    state = PartialState()
    shard_index = state.process_index if args.shard_index is None else args.shard_index
    num_shards = state.num_processes if args.num_shards is None else args.num_shards
    roots = VideoRoots.from_strings(args.video_root, args.video_roots)
    if args.data_files:
        videos = dataset_videos(load_video_instruction_dataset(args.data_files, roots))
    elif args.video_root:
        videos = videos_in_folder(args.video_root)
    else:
        raise SystemExit("hour-llava extract-features: pass --data-files (with video roots) or --video-root.")

    model = AutoModelForImageTextToText.from_pretrained(args.model).to(state.device)
    processor = AutoProcessor.from_pretrained(args.processor or args.model)
    video_kwargs = {"max_frames": args.max_frames} if args.max_frames else {}
    encoder = StreamingVideoEncoder(processor, model, video_kwargs)
    report = extract_video_features(
        videos,
        args.output_dir,
        encode_video=encoder,
        fingerprint=vision_fingerprint(model, encoder.settings),
        process_index=shard_index,
        num_processes=num_shards,
        overwrite=args.overwrite,
        on_error=args.on_error,
        dtype=getattr(torch, args.dtype),
    )
    print(
        f"Shard {shard_index + 1}/{num_shards}: wrote {len(report.written)}, kept {len(report.skipped)} complete "
        f"file(s), {len(report.failed)} video(s) failed, in {args.output_dir}"
    )
    return 0
