# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava demo`: a long-video memory experiment at toy scale that runs offline on two CPU cores.

1. `synthetic`: write long synthetic videos with PyAV and VideoMarathon-format questions about them.
2. `experiment`: train three tiny models with `HourLlavaSFTTrainer` (TRL's `SFTTrainer`) and our collator from a
   feature cache, evaluate them through `pipeline("video-text-to-text")`, save and reload one with the Auto classes.
3. `report`: a markdown table and PNG plots.

The claim under test is the paper's: the memory repository, read by MemAug, recovers what forgetting dropped.
"""

import json
import time
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from .experiment import (
    MODEL_VARIANTS,
    DemoSettings,
    load_seed_result,
    reproducible_torch,
    run_seed,
    save_seed_result,
)
from .report import markdown_table, write_report
from .synthetic import write_json


def run_demo(settings: DemoSettings, output_dir: str | Path, command: str = "hour-llava demo") -> Path:
    """Run every seed of `settings` (a seed whose results are already in `output_dir` is not run again), then write
    the report. Returns the path of `results.md`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_settings(settings, output_dir / "settings.json")
    start = time.perf_counter()

    def announce(message: str) -> None:
        minutes, seconds = divmod(int(time.perf_counter() - start), 60)
        tqdm.write(f"[{minutes:02d}:{seconds:02d}] {message}")

    results = []
    with reproducible_torch(settings.threads):
        for index, seed in enumerate(settings.seeds):
            path = output_dir / f"seed{seed}" / "result.json"
            if path.is_file():
                announce(f"seed {seed}: results found in {path}, not run again")
                results.append(load_seed_result(path))
                continue
            result = run_seed(settings, seed, output_dir, keep_model=index == 0, step=announce)
            save_seed_result(result, path)
            results.append(result)
    announce("writing the report")
    report = write_report(results, settings, output_dir, command)
    tqdm.write("\nAccuracy (%) on held-out questions:\n\n" + markdown_table(results))
    return report


def check_settings(settings: DemoSettings, path: Path) -> None:
    """Results of a run with other settings must not be mixed into this one's report."""
    current = json.loads(json.dumps(asdict(settings)))
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != current:
            raise ValueError(
                f"{path.parent} holds a demo run with other settings ({path}); choose another --output-dir or "
                "remove that folder."
            )
        return
    write_json(path, current)


__all__ = ["MODEL_VARIANTS", "DemoSettings", "run_demo"]
