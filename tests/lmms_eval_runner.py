"""Run the real `lmms-eval` CLI in a child process and count what the vision tower encodes.

`python lmms_eval_runner.py COUNTS.json <lmms-eval arguments>`: SigLIP's patch embedding (the first step of every
vision-tower pass) is wrapped before lmms-eval starts, so each call appends its number of frames to COUNTS.json (no
file: the tower never ran).
Tests call `run_lmms_eval`, which returns the exit code, the output and the files lmms-eval wrote.
"""

import glob
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LmmsEvalRun:
    returncode: int
    output: str
    results: dict | None
    samples: dict[str, list[dict]]  # task -> logged samples, in doc order
    vision_tower_frames: list[int]  # frames of each vision-tower call

    def responses(self, task: str) -> list[str]:
        return [response_text(sample) for sample in self.samples[task]]


def response_text(sample: dict) -> str:
    """The model's answer as it returned it: `resps`, not `filtered_resps`, which lmms-eval strips of whitespace (its
    reasoning-tag filter ends in `.strip()`), so an answer that starts with a tab would not match the pipeline's.
    lmms-eval leaves `resps` out of the log when it equals `filtered_resps`."""
    response = sample.get("resps", sample["filtered_resps"])
    while isinstance(response, list):
        response = response[0]
    return response


def run_lmms_eval(arguments: list[str], output_path: Path, env: dict, timeout: float = 900) -> LmmsEvalRun:
    counts = output_path / "vision_tower_frames.json"
    output_path.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, str(counts), *arguments, "--output_path", str(output_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    results_files = sorted(glob.glob(str(output_path / "**" / "*_results.json"), recursive=True))
    samples = {}
    for path in sorted(glob.glob(str(output_path / "**" / "*_samples_*.jsonl"), recursive=True)):
        task = Path(path).stem.split("_samples_", 1)[1]
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        samples[task] = sorted(rows, key=lambda row: row["doc_id"])
    return LmmsEvalRun(
        returncode=result.returncode,
        output=result.stdout + result.stderr,
        results=json.loads(Path(results_files[-1]).read_text()) if results_files else None,
        samples=samples,
        vision_tower_frames=json.loads(counts.read_text()) if counts.is_file() else [],
    )


def count_vision_tower_frames(counts_path: str) -> None:
    from transformers.models.siglip import modeling_siglip

    frames: list[int] = []
    forward = modeling_siglip.SiglipVisionEmbeddings.forward

    def counting_forward(self, pixel_values, *args, **kwargs):
        frames.append(int(pixel_values.shape[0]))
        Path(counts_path).write_text(json.dumps(frames))
        return forward(self, pixel_values, *args, **kwargs)

    modeling_siglip.SiglipVisionEmbeddings.forward = counting_forward


if __name__ == "__main__":
    count_vision_tower_frames(sys.argv.pop(1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lmms_eval.cli.dispatch import main

    sys.argv[0] = "lmms-eval"
    sys.exit(main())
