# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava extract-features`: cache every video's pooled vision features for training with a frozen tower.

Single process:

    hour-llava extract-features --model ./hour-llava-s2 --output-dir features/ --data-files videomarathon.json \\
        --video-root /data/VideoMarathon/videos

Several GPUs (each process takes every N-th video; rerun the same command to resume after an interruption):

    accelerate launch --num_processes 8 -m hour_llava.cli extract-features --model ./hour-llava-s2 ...

Exit status: 0 when every video of this process's share is cached (written now or before) or some failed with
`--on-error skip` (each named in a warning and in the summary); 1 when the arguments are wrong, no video was found
(a typo in `--video-root`?), or every video of the share failed.
"""

import argparse
import sys

from .checks import ArgumentError, check_model_argument


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
    from safetensors import SafetensorError
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from ..training.feature_cache import StreamingVideoEncoder, extract_video_features, vision_fingerprint

    state = PartialState()
    shard_index = state.process_index if args.shard_index is None else args.shard_index
    num_shards = state.num_processes if args.num_shards is None else args.num_shards
    try:
        check_model_argument(args.model)
        videos = videos_to_extract(args)
    except ValueError as error:  # an ArgumentError, or data files that do not load (named by the loader)
        return fail(str(error))
    try:
        model = AutoModelForImageTextToText.from_pretrained(args.model).to(state.device)
        processor = AutoProcessor.from_pretrained(args.processor or args.model)
    except (OSError, ValueError, SafetensorError) as error:
        return fail(f"could not load --model {args.model}: {' '.join(str(error).split())}")
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
    for key, error in report.failed.items():
        print(f"  failed: {key} ({videos[key]}): {' '.join(error.split())}")
    if report.failed and not report.written and not report.skipped:
        return fail(f"every one of the {len(report.failed)} video(s) of shard {shard_index + 1} failed (listed above).")
    return 0


def fail(message: str) -> int:
    print(f"hour-llava extract-features: {message}", file=sys.stderr)
    return 1


def videos_to_extract(args: argparse.Namespace) -> dict[str, str]:
    """Video key -> path, from the data files or the video root; an `ArgumentError` when that finds nothing."""
    from pathlib import Path

    from ..training import VideoRoots, dataset_videos, load_video_instruction_dataset
    from ..training.feature_cache import VIDEO_EXTENSIONS, videos_in_folder

    roots = VideoRoots.from_strings(args.video_root, args.video_roots)
    if args.data_files:
        videos = dataset_videos(load_video_instruction_dataset(args.data_files, roots))
        if not videos:
            raise ArgumentError(f"the rows of {' '.join(args.data_files)} name no videos; nothing to extract.")
        return videos
    if not args.video_root:
        raise ArgumentError("pass --data-files (with video roots) or --video-root.")
    if not Path(args.video_root).is_dir():
        raise ArgumentError(f"--video-root {args.video_root}: no such folder.")
    videos = videos_in_folder(args.video_root)
    if not videos:
        raise ArgumentError(
            f"--video-root {args.video_root} holds no videos ({', '.join(VIDEO_EXTENSIONS)}); nothing to extract."
        )
    return videos
