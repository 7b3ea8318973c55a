# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Peak memory of one question about 1, 10 and 60 minutes of video, against the size of the memory repository.

Each length runs `pipeline("video-text-to-text")` once, in a fresh subprocess, on a synthetic video written by
`hour_llava.video_writing` (small frames at 1 fps, so that writing an hour takes about a minute, once: the files are
kept in `--workdir`) with a small randomly initialised model. The subprocess reports its RSS after the imports, after
building the model and pipeline, and its peak RSS (`VmHWM`) over the question. The table sets the growth of that peak
against the bytes of the memory repository (`max(T, 128) x 65` tokens x hidden x 4 bytes), of the pooled vision
features the pipeline caches, and of the full pixel tensor `T x 3 x S x S` float32 that the pipeline never builds (it
streams frames into the vision tower one chunk at a time), at the model's input size and at SigLIP so400m's 384. A
second table shows the RSS at the model's stage boundaries (forward hooks), so the growth can be traced to tensors.

```bash
python benchmarks/memory_scaling.py
```
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


FRAME_TOKENS = 65  # pooled 8x8 tokens + newline per frame of memory
SIGLIP_SIZE = 384


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60], help="Video lengths")
    parser.add_argument("--video-fps", type=float, default=1.0, help="Frame rate the videos are written at")
    parser.add_argument("--video-size", type=int, default=96, help="Side of the written frames, in pixels")
    parser.add_argument("--image-size", type=int, default=64, help="Vision tower input side (frames resized to it)")
    parser.add_argument("--hidden", type=int, default=256, help="Language model (and so MemAug/memory) width")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hour_llava_bench"), help="Where videos go")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def small_model(image_size: int, hidden: int):
    """`memory_reuse.small_model` with a 2-layer tower on `image_size` frames with 4-pixel patches (a 16x16 grid at
    64 px, pooled to the released 8x8 grid), a 2-layer Qwen2 of width `hidden` with a 32k context, one MemAug block
    with 128-dim heads; forgetting as released: 16 of 64 tokens, one frame in four, at most 512, at least 128."""
    from memory_reuse import small_model as configurable_small_model  # this folder is on sys.path

    return configurable_small_model(
        vision_config={"intermediate_size": 256, "num_hidden_layers": 2, "image_size": image_size, "patch_size": 4},
        text_config={"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
                     "num_attention_heads": max(1, hidden // 128), "num_key_value_heads": 1,
                     "max_position_embeddings": 32768},
        memaug_depth=1,
        vision_chunk_size=128,
    )


def rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


class StageRecorder:
    """RSS at the model's stage boundaries, and the peak RSS between consecutive boundaries.

    Forward hooks on the vision encoder (once per chunk), the projector, MemAug and the language model (its first
    call, the prefill) read `VmRSS` and `VmHWM`, then reset `VmHWM` (`/proc/self/clear_refs`), so each reading's peak
    is that of the stretch since the previous one.
    """

    STAGES = ("vision", "model input", "frame tokens", "memory built", "MemAug", "LLM prefill")

    def __init__(self, model):
        self.rss, self.peak, self.overall_peak = {}, {}, rss_mib("VmHWM")
        self.reset()
        inner = model.model
        inner.vision_tower.encoder.register_forward_hook(lambda *_: self.record("vision"))
        inner.multi_modal_projector.register_forward_pre_hook(lambda *_: self.record("model input"))
        inner.multi_modal_projector.register_forward_hook(lambda *_: self.record("frame tokens"))
        inner.memory_augmentation.register_forward_pre_hook(lambda *_: self.record("memory built"))
        inner.memory_augmentation.register_forward_hook(lambda *_: self.record("MemAug"))
        inner.language_model.register_forward_hook(lambda *_: self.record("LLM prefill", first_only=True))

    @staticmethod
    def reset() -> None:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")

    def record(self, stage: str, first_only: bool = False) -> None:
        peak = rss_mib("VmHWM")
        self.overall_peak = max(self.overall_peak, peak)
        if not (first_only and stage in self.rss):
            self.rss[stage] = rss_mib()
            self.peak[stage] = max(self.peak.get(stage, 0.0), peak)
        self.reset()

    def finish(self) -> float:
        self.overall_peak = max(self.overall_peak, rss_mib("VmHWM"))
        return self.overall_peak


def run_question(args: argparse.Namespace, video: Path) -> dict:
    """Ask one question about `video` in this process and report the RSS at each stage."""
    import torch
    from transformers import pipeline

    from hour_llava.pipelines import TASK
    from hour_llava.video_cache import feature_bytes

    imports_mib = rss_mib()
    torch.set_num_threads(args.threads)
    model, processor = small_model(args.image_size, args.hidden)
    pipe = pipeline(TASK, model=model, processor=processor, device="cpu")
    build_mib = rss_mib()
    stages = StageRecorder(model)
    start, cpu_start = time.perf_counter(), time.process_time()
    pipe(str(video), "What happens in this video?", max_new_tokens=args.max_new_tokens,
         min_new_tokens=args.max_new_tokens, do_sample=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    [entry] = pipe.video_cache.entries()
    return {
        "frames": entry.num_frames,
        "cached_mib": feature_bytes(entry) / 2**20,
        "imports_mib": imports_mib,
        "build_mib": build_mib,
        "peak_mib": stages.finish(),
        "stage_rss_mib": stages.rss,
        "stage_peak_mib": stages.peak,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "attention": model.config._attn_implementation,
    }


def write_synthetic_video(args: argparse.Namespace, minutes: float) -> Path:
    """A drifting gradient with noise (`memory_reuse.synthetic_frames`), written once and reused by later runs."""
    from memory_reuse import synthetic_frames  # this folder is on sys.path

    from hour_llava.video_writing import write_video

    path = args.workdir / f"synthetic_{minutes:g}min_{args.video_size}px_{args.video_fps:g}fps.mp4"
    if not path.exists():
        args.workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        write_video(path, synthetic_frames(minutes, args.video_fps, args.video_size), fps=args.video_fps)
        print(f"wrote {path} in {time.perf_counter() - start:.1f} s", flush=True)
    return path


def run_worker(args: argparse.Namespace, video: Path) -> dict:
    command = [sys.executable, __file__, "--worker", str(video)]
    for name in ("image_size", "hidden", "max_new_tokens", "threads"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or [f"exit {completed.returncode}"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def print_table(args: argparse.Namespace, rows: list[tuple[float, dict]]) -> None:
    size = args.image_size
    print(
        f"| video | 1-FPS frames T | memory tokens | memory repository (MiB) | pooled features (MiB) | full pixels at "
        f"{size} px (MiB) | full pixels at {SIGLIP_SIZE} px (MiB) | RSS after imports (MiB) | after model build | "
        "peak during the question | peak - build | (peak - build) / memory repository | seconds (CPU seconds) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for minutes, result in rows:
        if "error" in result:
            print(f"| {minutes:g} min | {result['error']} |" + " |" * 11)
            continue
        frames = result["frames"]
        memory_tokens = max(frames, 128) * FRAME_TOKENS
        delta = result["peak_mib"] - result["build_mib"]
        result.update(memory_tokens=memory_tokens, memory_mib=memory_tokens * args.hidden * 4 / 2**20, delta_mib=delta)
        print(
            f"| {minutes:g} min | {frames:,} | {memory_tokens:,} | {result['memory_mib']:.0f} | "
            f"{result['cached_mib']:.0f} | {pixel_mib(frames, size):,.0f} | {pixel_mib(frames, SIGLIP_SIZE):,.0f} | "
            f"{result['imports_mib']:.0f} | {result['build_mib']:.0f} | {result['peak_mib']:.0f} | {delta:.0f} | "
            f"{delta / result['memory_mib']:.1f} | {result['seconds']:.1f} ({result['cpu_seconds']:.1f}) |"
        )
    print(
        "\nWhere it goes, in MiB above the RSS after the model build: the RSS at each boundary (the peak since the "
        "previous boundary in brackets). vision: after the last chunk through the tower; model input: the pooled "
        "features reach the projector; frame tokens: projected; memory built: MemAug starts; MemAug: it ends; LLM "
        "prefill: the first language-model call ends.\n"
    )
    print("| video | " + " | ".join(StageRecorder.STAGES) + " |")
    print("|---|" + "---:|" * len(StageRecorder.STAGES))
    for minutes, result in rows:
        if "stage_rss_mib" not in result:
            continue
        build = result["build_mib"]
        cells = [
            f"{result['stage_rss_mib'][stage] - build:.0f} ({result['stage_peak_mib'][stage] - build:.0f})"
            if stage in result["stage_rss_mib"] else "" for stage in StageRecorder.STAGES
        ]
        print(f"| {minutes:g} min | " + " | ".join(cells) + " |")
    done = [(minutes, result) for minutes, result in rows if "delta_mib" in result]
    for (short, first), (long, second) in zip(done, done[1:]):
        print(
            f"{short:g} -> {long:g} min: memory repository x{second['memory_mib'] / first['memory_mib']:.2f}, "
            f"peak - build x{second['delta_mib'] / first['delta_mib']:.2f}, full pixels x"
            f"{second['frames'] / first['frames']:.2f}"
        )
    if done:
        sample = done[0][1]
        print(
            f"\nModel: {sample['parameters_m']:.1f}M parameters, attention {sample['attention']}, hidden "
            f"{args.hidden}, vision input {size} px; one streamed chunk of 128 frames is {pixel_mib(128, size):.1f} "
            f"MiB at {size} px ({pixel_mib(128, SIGLIP_SIZE):.0f} MiB at {SIGLIP_SIZE} px). Videos: "
            f"{args.video_size} px at {args.video_fps:g} fps; {args.max_new_tokens} new tokens; torch threads "
            f"{args.threads}."
        )


def pixel_mib(frames: int, size: int) -> float:
    return frames * 3 * size * size * 4 / 2**20


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(run_question(args, args.worker)))
        return
    videos = [(minutes, write_synthetic_video(args, minutes)) for minutes in args.minutes]
    rows = []
    for minutes, video in videos:
        print(f"{minutes:g} min (load average {os.getloadavg()[0]:.1f})", flush=True)
        rows.append((minutes, run_worker(args, video)))
        print(f"  {rows[-1][1]}", flush=True)
    print()
    print_table(args, rows)
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
