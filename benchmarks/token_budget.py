# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Tokens the language model sees for 1 to 90 minutes of video: Hour-LLaVA against uniform frames and raw 1 FPS.

Pure arithmetic with the released configuration (`HourLlavaConfig()`: 8x8 pooled grid plus a newline per frame in
the memory, 16 of 64 tokens kept, one frame in four at most 512, videos under 128 frames upsampled to 128), next to:

- a LLaVA-Video-7B-style model: 64 uniformly sampled frames, each SigLIP 27x27 grid pooled 2x2 to 13x13 = 169
  tokens plus one newline per row of the grid (`mm_newline_position="grid"`): 13 x 14 = 182 tokens a frame;
- raw 1-FPS input, every frame at Hour-LLaVA's memory granularity (65 tokens) or at LLaVA-Video's (182 tokens).

The memory repository MemAug reads (`max(T, 128) x 65` tokens) is printed too. The Hour-LLaVA counts are checked
against the reference spec's worked numbers and against `HourLlavaProcessor`'s placeholder expansion. A plot of the
table goes to `--plot`.

```bash
python benchmarks/token_budget.py
```
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

from hour_llava import HourLlavaConfig


LLAVA_VIDEO_FRAMES = 64
LLAVA_VIDEO_GRID = 13  # 27x27 SigLIP patches, 2x2 pooling (floor), as LLaVA-Video-7B's 169 tokens a frame
LLAVA_VIDEO_TOKENS_PER_FRAME = LLAVA_VIDEO_GRID * (LLAVA_VIDEO_GRID + 1)  # a newline after every row: 182


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 30, 60, 90], help="Video lengths")
    parser.add_argument("--fps", type=float, default=1.0, help="Sampling rate of Hour-LLaVA and of the raw input")
    parser.add_argument("--plot", type=Path, default=Path("docs/images/token_budget.png"), help="PNG to write")
    parser.add_argument("--no-plot", action="store_true", help="Print the table only")
    parser.add_argument("--no-processor-check", action="store_true", help="Skip the check against the processor")
    return parser.parse_args()


@dataclass
class Budget:
    """Token counts of one video length."""

    minutes: float
    frames: int
    kept_frames: int
    hour_llava: int
    memory: int
    llava_video: int
    raw_memory_granularity: int
    raw_llava_video_granularity: int


def budget(config: HourLlavaConfig, minutes: float, fps: float) -> Budget:
    frames = round(minutes * 60 * fps)
    return Budget(
        minutes=minutes,
        frames=frames,
        kept_frames=config.num_kept_frames(frames),
        hour_llava=config.num_video_tokens(frames),
        memory=max(frames, config.min_video_frames) * config.memory_tokens_per_frame,
        llava_video=LLAVA_VIDEO_FRAMES * LLAVA_VIDEO_TOKENS_PER_FRAME,
        raw_memory_granularity=frames * config.memory_tokens_per_frame,
        raw_llava_video_granularity=frames * LLAVA_VIDEO_TOKENS_PER_FRAME,
    )


def check_spec_numbers(config: HourLlavaConfig) -> None:
    """The reference spec's worked numbers (section 4.1): 128 frames -> 544 video tokens and 8320 memory tokens;
    2048 frames or more -> 8704; an hour's memory is 234,000 tokens."""
    assert config.num_video_tokens(128) == 544, config.num_video_tokens(128)
    assert budget(config, 128 / 60, 1.0).memory == 8320
    assert config.num_video_tokens(2048) == config.num_video_tokens(5400) == 8704
    assert budget(config, 60, 1.0).memory == 234_000


def processor_video_tokens(config: HourLlavaConfig, frames: int, fps: float) -> int:
    """`<video>` tokens `HourLlavaProcessor` writes for an encoded video of `frames` 1-FPS frames (no decoding)."""
    import torch

    from hour_llava import HourLlavaProcessor, HourLlavaVideoProcessor
    from hour_llava.processing.processing_hour_llava import TOKEN_COUNT_FIELDS
    from hour_llava.processing.video_decoding import HourLlavaVideoMetadata
    from hour_llava.processing.video_processing_hour_llava import EncodedVideo
    from hour_llava.tiny import tiny_tokenizer

    counts = {name: getattr(config, name) for name in TOKEN_COUNT_FIELDS}
    processor = HourLlavaProcessor(tiny_tokenizer(), HourLlavaVideoProcessor(fps=fps), **counts)
    times = [index / fps for index in range(frames)]
    metadata = HourLlavaVideoMetadata(total_num_frames=frames, fps=fps, duration=frames / fps, frame_timestamps=times)
    video = EncodedVideo(torch.zeros(frames, config.video_pool_size**2, 1), metadata)
    encoding = processor(text=[f"{processor.video_token}\nWhat happens?"], videos=[video], return_tensors="pt")
    return int((encoding["input_ids"] == processor.video_token_id).sum())


def print_table(rows: list[Budget], context: int) -> None:
    def cell(tokens: int) -> str:
        return f"{tokens:,}" + (" *" if tokens > context else "")

    print(
        "| video | 1-FPS frames T | Hour-LLaVA: kept frames | **Hour-LLaVA: LLM video tokens** | memory repository "
        f"(MemAug keys) | LLaVA-Video ({LLAVA_VIDEO_FRAMES} frames x {LLAVA_VIDEO_TOKENS_PER_FRAME}) | raw 1 FPS x 65 "
        f"| raw 1 FPS x {LLAVA_VIDEO_TOKENS_PER_FRAME} | LLaVA-Video / Hour-LLaVA | raw x 65 / Hour-LLaVA | seconds "
        "between the frames the LLM sees: Hour-LLaVA, LLaVA-Video |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        seconds = row.minutes * 60
        print(
            f"| {row.minutes:g} min | {row.frames:,} | {row.kept_frames} | **{cell(row.hour_llava)}** | "
            f"{row.memory:,} | {cell(row.llava_video)} | {cell(row.raw_memory_granularity)} | "
            f"{cell(row.raw_llava_video_granularity)} | {row.llava_video / row.hour_llava:.1f}x | "
            f"{row.raw_memory_granularity / row.hour_llava:.1f}x | {seconds / row.kept_frames:.1f}, "
            f"{seconds / LLAVA_VIDEO_FRAMES:.1f} |"
        )
    print(f"\n(*) more than the language model's context ({context:,} tokens, Qwen2-7B's max_position_embeddings).")


def plot(config: HourLlavaConfig, rows: list[Budget], fps: float, context: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max(row.minutes for row in rows)
    curve = [budget(config, minutes / 4, fps) for minutes in range(1, int(top * 4) + 1)]  # every 15 s
    minutes = [row.minutes for row in curve]
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    series = [
        ("raw 1 FPS, 182 tokens/frame", "raw_llava_video_granularity", "tab:red", ":"),
        ("raw 1 FPS, 65 tokens/frame", "raw_memory_granularity", "tab:orange", ":"),
        ("Hour-LLaVA memory repository (MemAug keys, not LLM input)", "memory", "tab:green", "--"),
        (f"LLaVA-Video-style, {LLAVA_VIDEO_FRAMES} frames x {LLAVA_VIDEO_TOKENS_PER_FRAME}", "llava_video",
         "tab:purple", "-"),
        ("Hour-LLaVA LLM video tokens", "hour_llava", "tab:blue", "-"),
    ]
    for label, field, colour, style in series:
        axes.plot(minutes, [getattr(row, field) for row in curve], style, color=colour, label=label, linewidth=2)
        axes.plot([row.minutes for row in rows], [getattr(row, field) for row in rows], "o", color=colour)
    axes.axhline(context, color="black", linewidth=1)
    axes.text(top, context * 1.08, f"LLM context {context:,}", ha="right", va="bottom")
    axes.set_yscale("log")
    axes.set_xlabel(f"video length (minutes, sampled at {fps:g} FPS)")
    axes.set_ylabel("tokens")
    axes.set_title("Video tokens per question")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    print(f"plot written to {path}")


def main() -> None:
    args = parse_args()
    config = HourLlavaConfig()
    context = config.text_config.max_position_embeddings
    check_spec_numbers(config)
    rows = [budget(config, minutes, args.fps) for minutes in args.minutes]
    print(
        f"Released config: {config.video_pool_size}x{config.video_pool_size} pooled grid + newline = "
        f"{config.memory_tokens_per_frame} memory tokens/frame; {config.spatial_keep_tokens}+1 kept tokens/frame; "
        f"one frame in {config.temporal_downsample}, at most {config.max_kept_frames}; videos under "
        f"{config.min_video_frames} frames upsampled. LLaVA-Video-style: {LLAVA_VIDEO_FRAMES} uniform frames x "
        f"({LLAVA_VIDEO_GRID}x{LLAVA_VIDEO_GRID} + {LLAVA_VIDEO_GRID} row newlines).\n"
    )
    print_table(rows, context)
    if not args.no_processor_check:
        for row in rows:
            counted = processor_video_tokens(config, row.frames, args.fps)
            assert counted == row.hour_llava, (row, counted)
        print(f"HourLlavaProcessor expands <video> to exactly these Hour-LLaVA counts for T = "
              f"{', '.join(str(row.frames) for row in rows)}; the spec's worked numbers (128 -> 544, >= 2048 -> 8704, "
              "an hour's memory 234,000) hold.")
    if not args.no_plot:
        plot(config, rows, args.fps, context, args.plot)


if __name__ == "__main__":
    main()
