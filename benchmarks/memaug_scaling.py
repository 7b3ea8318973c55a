# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Time and peak memory of one MemAug forward over memories of 1k to 234k tokens, with sdpa and eager attention.

`HourLlavaMemoryAugmentation` (built from an `HourLlavaConfig`, random weights, fp32, inference mode) refines a
query against a memory repository of `--memory-tokens` tokens; 234,000 is an hour at 1 FPS (3600 frames x 65).
Each point runs in a fresh subprocess: after a small warm-up forward, the peak RSS (`VmHWM`, reset through
`/proc/self/clear_refs`) is read around the timed forward, so the extra memory is that forward's own. Eager
attention builds the full query-by-memory score matrix; points whose estimate exceeds `--eager-limit-gib` are skipped
and the estimate printed. The query is `--query-tokens` long (default 8754: an hour's 512 kept frames x 17 tokens +
50 text tokens, the longest query the released config makes), or grows with the memory as the model's does with
`--query realistic` (`min(512, T // 4) x 17 + 50` for `T = memory / 65` frames, without the model's upsampling of
videos under 128 frames, so that the small memories stay small).

```bash
python benchmarks/memaug_scaling.py
python benchmarks/memaug_scaling.py --from-log run.txt  # the table again from a saved run's output
```
"""

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time

import numpy as np


FRAME_TOKENS = 65  # 8x8 pooled tokens + newline, per frame of memory
KEPT_FRAME_TOKENS = 17  # 16 kept tokens + newline, per kept frame of the query
TEXT_TOKENS = 50
FULL_QUERY = 512 * KEPT_FRAME_TOKENS + TEXT_TOKENS  # 8754


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-tokens", type=int, nargs="+", default=[1_000, 4_000, 16_000, 64_000, 234_000])
    parser.add_argument("--implementations", nargs="+", default=["sdpa", "eager"], choices=["sdpa", "eager"])
    parser.add_argument("--query", default="fixed", choices=["fixed", "realistic"], help="Query length rule")
    parser.add_argument("--query-tokens", type=int, default=FULL_QUERY, help="Query length with --query fixed")
    parser.add_argument("--hidden", type=int, default=512, help="MemAug width (the language model's hidden size)")
    parser.add_argument("--heads", type=int, default=4, help="Query heads (head dim = hidden / heads)")
    parser.add_argument("--kv-heads", type=int, default=2, help="Key/value heads")
    parser.add_argument("--depth", type=int, default=1, help="MemAug blocks (the released models have 4)")
    parser.add_argument("--repeat", type=int, default=1, help="Timed forwards per point; the fastest is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--eager-limit-gib", type=float, default=8.0, help="Skip eager points estimated above this")
    parser.add_argument("--from-log", type=str, help="Print the table from the output of an earlier run")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "MEMORY", "QUERY"), help=argparse.SUPPRESS)
    return parser.parse_args()


def query_tokens(args: argparse.Namespace, memory_tokens: int) -> int:
    if args.query == "fixed":
        return args.query_tokens
    frames = memory_tokens // FRAME_TOKENS
    return max(1, min(512, frames // 4)) * KEPT_FRAME_TOKENS + TEXT_TOKENS


def eager_peak_estimate(args: argparse.Namespace, memory_tokens: int, query_len: int) -> int:
    """Bytes eager attention holds at once, in whichever of a block's two attentions needs more.

    Each holds two fp32 score matrices (the product and its scaled copy, then that copy and the softmax), its keys
    and values repeated to every query head, the key/value projection with its rotated copy and the cos/sin tables.
    The layer keeps only the self-attention's output (`self_attn(...)[0]`), so its probabilities are gone before the
    cross-attention starts.
    """
    head_dim = args.hidden // args.heads
    per_key = 4 * (2 * args.heads * head_dim + 4 * args.kv_heads * head_dim + 4 * (head_dim // 2))
    self_scores = query_len * query_len * args.heads * 4
    cross_scores = query_len * memory_tokens * args.heads * 4
    return max(2 * self_scores + query_len * per_key, 2 * cross_scores + memory_tokens * per_key)


def status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def run_point(args: argparse.Namespace, implementation: str, memory_tokens: int, query_len: int) -> dict:
    """One forward in this process: seconds, RSS before it and its peak above that."""
    import torch

    from hour_llava import HourLlavaConfig
    from hour_llava.modeling.memory_augmentation import HourLlavaMemoryAugmentation

    torch.set_num_threads(args.threads)
    config = HourLlavaConfig(
        text_config={"hidden_size": args.hidden, "num_attention_heads": args.heads,
                     "num_key_value_heads": args.kv_heads, "intermediate_size": 4 * args.hidden, "vocab_size": 16,
                     "num_hidden_layers": 1},
        memaug_depth=args.depth,
    )
    config._attn_implementation = implementation
    torch.manual_seed(0)
    module = HourLlavaMemoryAugmentation(config).eval()
    for name, param in module.named_parameters():  # LayerNorm starts at (1, 0); give the rest realistic scales
        if param.dim() > 1:
            torch.nn.init.normal_(param, std=0.02)
    query = torch.randn(1, query_len, args.hidden)
    memory = torch.randn(1, memory_tokens, args.hidden)
    # Query ids as the model lays them out: text from 0, video ids spread over the memory span, text after it.
    query_positions = torch.from_numpy(np.linspace(0, memory_tokens - 1, query_len).astype(np.int64))[None]
    memory_positions = torch.arange(memory_tokens)[None]

    with torch.inference_mode():
        module(query[:, :18], memory[:, :FRAME_TOKENS], query_positions[:, :18], memory_positions[:, :FRAME_TOKENS])
        rss_before = status_mib("VmRSS")
        can_reset = reset_peak_rss()
        times, cpu_times = [], []
        for _ in range(args.repeat):
            start, cpu_start = time.perf_counter(), time.process_time()
            module(query, memory, query_positions, memory_positions)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        peak = status_mib("VmHWM")
    return {
        "seconds": min(times),
        "cpu_seconds": min(cpu_times),
        "all_seconds": times,
        "rss_before_mib": rss_before,
        "extra_peak_mib": peak - rss_before if can_reset else float("nan"),
        "peak_mib": peak,
    }


def run_worker(args: argparse.Namespace, implementation: str, memory_tokens: int, query_len: int) -> dict:
    command = [sys.executable, __file__, "--worker", implementation, str(memory_tokens), str(query_len)]
    for name in ("hidden", "heads", "kv_heads", "depth", "repeat", "threads"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or [f"exit {completed.returncode}"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0]) if len(xs) >= 2 else float("nan")


def print_table(args: argparse.Namespace, results: dict) -> None:
    head_dim = args.hidden // args.heads
    print(
        "| attention | memory tokens | frames (x65) | query tokens | seconds | CPU seconds | CPU time growth vs "
        "previous size | CPU microseconds per memory token | extra peak RSS (MiB) | memory tensor (MiB) | q x memory "
        "score matrix, all heads (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for implementation, points in results.items():
        previous = None
        for memory_tokens, query_len, result in points:
            scores_mib = query_len * memory_tokens * args.heads * 4 / 2**20
            memory_mib = memory_tokens * args.hidden * 4 / 2**20
            prefix = (f"| {implementation} | {memory_tokens:,} | {memory_tokens / FRAME_TOKENS:,.0f} | {query_len:,} |")
            if "seconds" not in result:
                print(f"{prefix} {result.get('skipped') or result.get('error')} | | | | | {memory_mib:.0f} | "
                      f"{scores_mib:,.0f} |")
                previous = None
                continue
            growth = ""
            if previous is not None:
                growth = f"{result['cpu_seconds'] / previous[1]:.2f}x for {memory_tokens / previous[0]:.2f}x memory"
            print(
                f"{prefix} {result['seconds']:.2f} | {result['cpu_seconds']:.2f} | {growth} | "
                f"{1e6 * result['cpu_seconds'] / memory_tokens:.1f} | "
                f"{result['extra_peak_mib']:,.0f} | {memory_mib:.0f} | {scores_mib:,.0f} |"
            )
            previous = (memory_tokens, result["cpu_seconds"])
    print(f"\nMemAug: {args.depth} block(s), hidden {args.hidden}, {args.heads} query heads / {args.kv_heads} "
          f"key-value heads of {head_dim} dims, fp32, torch threads {args.threads}, best of {args.repeat}.")
    for implementation, points in results.items():
        timed = [(m, q, r["cpu_seconds"], r["extra_peak_mib"]) for m, q, r in points if "seconds" in r]
        if len(timed) < 2:
            continue
        memories, queries, seconds, peaks = zip(*timed)
        marginal = [(seconds[i] - seconds[i - 1]) / (memories[i] - memories[i - 1]) * 1e6 for i in range(1, len(timed))]
        pairs = [1e9 * t / (m * q) for m, q, t in zip(memories, queries, seconds)]
        summary = (
            f"{implementation}: log-log slope of CPU time vs memory tokens {loglog_slope(memories, seconds):.2f} over "
            f"all points, {loglog_slope(memories[-2:], seconds[-2:]):.2f} over the last two; of extra peak RSS "
            f"{loglog_slope(memories[-2:], [max(p, 1e-3) for p in peaks[-2:]]):.2f} over the last two; marginal CPU "
            f"time per added memory token (us): {', '.join(f'{value:.1f}' for value in marginal)}; CPU ns per query x "
            f"memory token pair: {', '.join(f'{value:.1f}' for value in pairs)}"
        )
        if args.query == "fixed":
            per_token, fixed = np.polyfit(memories, seconds, 1)
            worst = max(abs(fixed + per_token * m - t) / t for m, t in zip(memories, seconds))
            summary += (f"; linear fit: CPU seconds = {fixed:.2f} + {per_token * 1e6:.1f} us x memory tokens, largest "
                        f"deviation {100 * worst:.0f}%")
        print(summary)


def logged_points(path: str) -> dict:
    """`(implementation, memory tokens, query tokens) -> result` from the output of an earlier run."""
    points, key = {}, None
    with open(path) as log:
        for line in log:
            match = re.match(r"(\w+), ([\d,]+) memory tokens, ([\d,]+) query tokens", line)
            if match:
                key = (match[1], int(match[2].replace(",", "")), int(match[3].replace(",", "")))
            elif key and line.startswith("  {"):
                points[key] = ast.literal_eval(line.strip())
    return points


def main() -> None:
    args = parse_args()
    if args.worker:
        implementation, memory_tokens, query_len = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(run_point(args, implementation, memory_tokens, query_len)))
        return
    logged = logged_points(args.from_log) if args.from_log else None
    limit = args.eager_limit_gib * 2**30
    results = {}
    for implementation in args.implementations:
        results[implementation] = []
        for memory_tokens in args.memory_tokens:
            query_len = query_tokens(args, memory_tokens)
            estimate = eager_peak_estimate(args, memory_tokens, query_len)
            if implementation == "eager" and estimate > limit:
                result = {"skipped": f"skipped: would need {estimate / 2**30:.1f} GiB"}
            elif logged is not None:
                result = logged.get((implementation, memory_tokens, query_len), {"error": "not in the log"})
            else:
                print(f"{implementation}, {memory_tokens:,} memory tokens, {query_len:,} query tokens "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
                result = run_worker(args, implementation, memory_tokens, query_len)
                if implementation == "eager" and "seconds" in result:
                    result["estimate_mib"] = estimate / 2**20
                print(f"  {result}", flush=True)
            results[implementation].append((memory_tokens, query_len, result))
    print()
    print_table(args, results)
    eager = [(m, r) for m, _, r in results.get("eager", []) if "estimate_mib" in r]
    if eager:
        print("eager extra peak RSS / estimate: " + ", ".join(
            f"{m:,}: {r['extra_peak_mib']:,.0f} / {r['estimate_mib']:,.0f} MiB" for m, r in eager))
    if logged is None:
        print(f"1-minute load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
