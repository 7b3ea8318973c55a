# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Serving throughput: N questions about M videos, vLLM's OpenAI server against our transformers pipeline.

Both serve the same checkpoint in one run. The pipeline answers the questions one after another (it is a
single-request API; it does reuse a video's pooled features across questions); vLLM gets all N at once as concurrent
streaming chat completions (continuous batching). Reported: requests per second over the whole batch and time to
first token (TTFT) per request, with vLLM / pipeline ratios.

vLLM runs in its own environment (`.ci/vllm-env.sh`; it pins an older transformers), so this script runs itself a
second time under that environment's python for the vLLM half. Without `--model` it builds a tiny random checkpoint
and short synthetic videos (CPU, minutes); with a converted checkpoint and real videos the same command measures a
GPU:

```bash
python benchmarks/serving_throughput.py --vllm-python "$(.ci/vllm-env.sh)"                      # CPU, tiny model
python benchmarks/serving_throughput.py --vllm-python ~/vllm-venv/bin/python \\
    --model ./hourllava-qwen2-7b --videos a.mp4 b.mp4 --requests 32 --max-new-tokens 64       # GPU
```
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path


QUESTIONS = ("What happens in the video?", "What colour is the square?", "How many balls are there?",
             "When does the flash happen?", "Describe the last minute.")  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vllm-python", default=os.environ.get("HOUR_LLAVA_VLLM_PYTHON"),
                        help="python of vLLM's environment (default: $HOUR_LLAVA_VLLM_PYTHON)")
    parser.add_argument("--model", help="checkpoint directory (default: a tiny random one)")
    parser.add_argument("--videos", nargs="*", help="video files (default: --num-videos synthetic ones)")
    parser.add_argument("--num-videos", type=int, default=2, help="M synthetic videos")
    parser.add_argument("--seconds", type=int, default=60, help="length of each synthetic video at 1 FPS")
    parser.add_argument("--requests", type=int, default=8, help="N questions, spread over the videos")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--vllm-args", default=None,
                        help="extra `vllm serve` arguments (default on a CPU: float32, 0.15 of memory, eager)")
    parser.add_argument("--vllm-client", help=argparse.SUPPRESS)  # internal: the vLLM half, given a JSON spec
    return parser.parse_args()


# ----------------------------------------------------------------------------------------------------------------------
# Our pipeline (this environment)
# ----------------------------------------------------------------------------------------------------------------------
def tiny_checkpoint(directory: Path) -> Path:
    """A random tiny checkpoint vLLM's CPU backend accepts (head_dim 64), saved with its processor."""
    from hour_llava import HourLlavaProcessor
    from hour_llava.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, text_config={"hidden_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1})
    model.save_pretrained(directory)
    HourLlavaProcessor.from_model_config(model.config, tokenizer).save_pretrained(directory)
    return directory


def synthetic_videos(directory: Path, count: int, seconds: int, size: int) -> list[str]:
    import numpy as np

    from hour_llava.video_writing import write_video

    rng = np.random.default_rng(0)
    return [
        str(write_video(directory / f"video{i}.mp4", rng.integers(0, 256, (seconds, size, size, 3), dtype=np.uint8)))
        for i in range(count)
    ]


class FirstTokenClock:
    """A transformers streamer that notes when the first generated token arrives (its first `put` is the prompt)."""

    def __init__(self):
        self.calls, self.first_token_at = 0, None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2 and self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


def run_pipeline(model: str, requests: list[tuple[str, str]], max_new_tokens: int) -> dict:
    import torch
    from transformers import pipeline

    import hour_llava  # noqa: F401  (registers the pipeline)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = pipeline("video-text-to-text", model=model, device=device, dtype=dtype)
    pipe(requests[0][0], "Warm-up.", max_new_tokens=1)  # first-call costs (kernels, allocator) out of the timing
    pipe.video_cache.clear()  # the timed run starts without cached videos, like vLLM's
    ttfts, start = [], time.perf_counter()
    for video, question in requests:
        clock, sent = FirstTokenClock(), time.perf_counter()
        pipe(video, question, max_new_tokens=max_new_tokens, do_sample=False, streamer=clock)
        ttfts.append(clock.first_token_at - sent)
    wall = time.perf_counter() - start
    del pipe
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"wall_s": wall, "ttft_s": ttfts}


# ----------------------------------------------------------------------------------------------------------------------
# vLLM (its environment): concurrent streaming requests to `vllm serve`
# ----------------------------------------------------------------------------------------------------------------------
def stream_one(base_url: str, payload: dict, results: list, index: int) -> None:
    request = urllib.request.Request(
        f"{base_url}/v1/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    sent, first = time.perf_counter(), None
    with urllib.request.urlopen(request, timeout=1800) as response:
        for line in response:
            if first is None and line.startswith(b"data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter()
    results[index] = {"ttft_s": first - sent if first is not None else None, "done_s": time.perf_counter() - sent}


def run_vllm_client(spec_path: str) -> None:
    from hour_llava.vllm.server import VllmServer, video_chat

    spec = json.loads(Path(spec_path).read_text())
    media_root = os.path.commonpath([str(Path(video).resolve().parent) for video, _ in spec["requests"]])
    arguments = [*spec["vllm_args"], "--allowed-local-media-path", media_root]
    with VllmServer(spec["model"], *arguments) as server:
        warm_up = video_chat(spec["model"], Path(spec["requests"][0][0]).resolve().as_uri(), "Warm-up.", 1, True)
        stream_one(server.base_url, warm_up, [None], 0)
        results = [None] * len(spec["requests"])
        threads = [
            threading.Thread(
                target=stream_one,
                args=(
                    server.base_url,
                    video_chat(spec["model"], Path(video).resolve().as_uri(), question, spec["max_new_tokens"], True),
                    results,
                    index,
                ),
            )
            for index, (video, question) in enumerate(spec["requests"])
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "ttft_s": [result["ttft_s"] for result in results]}))


def run_vllm(vllm_python: str, spec: dict, directory: Path) -> dict:
    spec_path = directory / "vllm_spec.json"
    spec_path.write_text(json.dumps(spec))
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": src, "VLLM_NO_USAGE_STATS": "1"}
    completed = subprocess.run(
        [vllm_python, __file__, "--vllm-client", str(spec_path)], capture_output=True, text=True, env=env
    )
    if completed.returncode != 0:
        raise SystemExit(f"The vLLM half failed:\n{completed.stderr[-5000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------------
def summary(result: dict, num_requests: int) -> dict:
    ttfts = [t for t in result["ttft_s"] if t is not None]
    return {
        "req/s": num_requests / result["wall_s"],
        "TTFT mean (s)": statistics.mean(ttfts) if ttfts else float("nan"),
        "TTFT p50 (s)": statistics.median(ttfts) if ttfts else float("nan"),
        "TTFT max (s)": max(ttfts) if ttfts else float("nan"),
    }


def print_report(pipeline_result: dict, vllm_result: dict, args, num_videos: int) -> None:
    pipe, vllm = summary(pipeline_result, args.requests), summary(vllm_result, args.requests)
    print(f"\n{args.requests} questions about {num_videos} videos, {args.max_new_tokens} new tokens each\n")
    print(f"| metric | pipeline (sequential) | vLLM (concurrent) | vLLM / pipeline |\n|---|---|---|---|")
    for name in pipe:
        print(f"| {name} | {pipe[name]:.3f} | {vllm[name]:.3f} | {vllm[name] / pipe[name]:.2f}x |")


def main() -> None:
    args = parse_args()
    if args.vllm_client:
        run_vllm_client(args.vllm_client)
        return
    if not args.vllm_python:
        raise SystemExit("Give --vllm-python (or set HOUR_LLAVA_VLLM_PYTHON): the python printed by .ci/vllm-env.sh.")
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        model = args.model or str(tiny_checkpoint(directory / "checkpoint"))
        frame_size = json.loads((Path(model) / "config.json").read_text())["vision_config"]["image_size"]
        videos = args.videos or synthetic_videos(directory, args.num_videos, args.seconds, frame_size)
        requests = [(videos[i % len(videos)], QUESTIONS[i % len(QUESTIONS)]) for i in range(args.requests)]
        pipeline_result = run_pipeline(model, requests, args.max_new_tokens)
        on_cpu = not torch.cuda.is_available()
        default_args = ["--dtype", "float32", "--gpu-memory-utilization", "0.15", "--enforce-eager"] if on_cpu else []
        vllm_args = args.vllm_args.split() if args.vllm_args is not None else default_args
        spec = {"model": model, "requests": requests, "max_new_tokens": args.max_new_tokens, "vllm_args": vllm_args}
        vllm_result = run_vllm(args.vllm_python, spec, directory)
    print_report(pipeline_result, vllm_result, args, len(videos))


if __name__ == "__main__":
    main()
