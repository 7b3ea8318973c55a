# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""lmms-eval throughput of the `hour_llava` model with and without per-video feature reuse.

A synthetic task asks `--questions` questions about each of `--videos` synthetic videos (LVBench asks about 15 per
video, Video-MME 3). The same lmms-eval evaluation runs twice in this process, alternately, `--repeat` times:

* reuse: the plugin's default, each video is decoded and encoded once, its other questions reuse the pooled features;
* no reuse: `max_cached_videos=0`, every question decodes and encodes its video again (what a plugin without a
  feature cache does).

Both answer one question per `generate` call (`--batch_size 1`). Printed: questions per second end to end (lmms-eval's
`simple_evaluate`, task loading and scoring included), the ratio, and lmms-eval's throughput numbers (time to first
token and per output token, as its chat models report them).

```bash
pip install -e ".[eval]"
python benchmarks/eval_throughput.py --model tiny
python benchmarks/eval_throughput.py --model small  # a 384px/14 SigLIP-shaped tower (benchmarks/memory_reuse.py)
```
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from hour_llava import HourLlavaProcessor
from hour_llava.evaluation.lmms_eval_model import HourLlavaLmms
from hour_llava.evaluation.task_folder import write_task_folder
from hour_llava.tiny import tiny_model, tiny_tokenizer
from hour_llava.video_writing import write_video
from memory_reuse import small_model, synthetic_frames


TASK = "synthetic_video_qa"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "small"), default="tiny", help="tiny.py's model or memory_reuse's")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--questions", type=int, default=15, help="Questions per video")
    parser.add_argument("--minutes", type=float, default=4.0, help="Length of each synthetic video")
    parser.add_argument("--video-fps", type=float, default=4.0, help="Frame rate the videos are written at")
    parser.add_argument("--video-size", type=int, default=192, help="Side of the written frames, in pixels")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="Alternating runs of each setting; the fastest counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser.parse_args()


def save_checkpoint(kind: str, directory: Path) -> Path:
    if kind == "tiny":
        tokenizer = tiny_tokenizer()
        model = tiny_model(tokenizer)
        processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)
    else:
        model, processor = small_model()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def write_task(args: argparse.Namespace, directory: Path) -> Path:
    docs = []
    for index in range(args.videos):
        frames = synthetic_frames(args.minutes, args.video_fps, args.video_size)
        video = write_video(directory / f"video_{index}.mp4", frames, fps=args.video_fps)
        docs += [{"video": str(video), "question": f"Question {q}: what happens?", "answer": "a"} for q in
                 range(args.questions)]
    # Fixed-length answers (`min_new_tokens` reaches `generate`), so both settings generate the same tokens.
    generation = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens, "do_sample": False}
    return write_task_folder(directory / "task", TASK, docs, "hour_llava.evaluation.task_folder",
                             {"exact_match": "mean"}, generation)


def evaluate(model: HourLlavaLmms, task_folder: Path) -> tuple[float, dict]:
    """Seconds of one lmms-eval evaluation of the task, and the `throughput` section of its results."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    start = time.perf_counter()
    results = simple_evaluate(
        model=model,
        tasks=[TASK],
        task_manager=TaskManager(include_path=str(task_folder), include_defaults=False),
        log_samples=False,
        bootstrap_iters=0,
    )
    return time.perf_counter() - start, results["throughput"]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        checkpoint = save_checkpoint(args.model, directory / "checkpoint")
        task_folder = write_task(args, directory)
        models = {
            "no reuse": HourLlavaLmms(pretrained=str(checkpoint), device="cpu", max_cached_videos=0),
            "reuse": HourLlavaLmms(pretrained=str(checkpoint), device="cpu"),
        }
        runs = {name: [] for name in models}
        for _ in range(args.repeat):
            for name, model in models.items():
                runs[name].append(evaluate(model, task_folder))

    questions = args.videos * args.questions
    parameters = sum(p.numel() for p in models["reuse"].model.parameters()) / 1e6
    print(f"model: {args.model} ({parameters:.1f}M parameters); {args.videos} videos of {args.minutes:g} min "
          f"({args.video_size}px at {args.video_fps:g} fps; 1 FPS sampling, at least 128 frames), {args.questions} "
          f"questions each, "
          f"{args.max_new_tokens} new tokens per answer; torch threads: {torch.get_num_threads()}; "
          f"1-minute load average at the end: {os.getloadavg()[0]:.1f}")
    print("\n| setting | seconds, best (all runs) | questions/s | videos encoded | TTFT s | TPOT s |")
    print("|---|---:|---:|---:|---:|---:|")
    best = {}
    for name, results in runs.items():
        seconds, throughput = min(results, key=lambda run: run[0])
        best[name] = seconds
        all_runs = ", ".join(f"{run[0]:.1f}" for run in results)
        print(f"| {name} | {seconds:.1f} ({all_runs}) | {questions / seconds:.2f} | "
              f"{throughput['avg_videos_encoded']:.0f} | "
              f"{throughput.get('avg_ttft', float('nan')):.3f} | {throughput.get('avg_tpot', float('nan')):.4f} |")
    print(f"\nreuse is {best['no reuse'] / best['reuse']:.1f}x faster end to end ({questions} questions).")


if __name__ == "__main__":
    main()
