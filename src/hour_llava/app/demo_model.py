# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""The app's default model and examples: what `hour-llava demo` saved.

`hour-llava demo` (default `--output-dir hour-llava-demo`) saves its trained Hour-LLaVA, reloadable with the Auto
classes, in `<output-dir>/hour-llava-demo`, next to the data of each seed: held-out videos in
`seed<N>/data/videos/<data_source>/...` and their questions in `seed<N>/data/test.json` (VideoMarathon format).
"""

import json
from dataclasses import dataclass
from pathlib import Path


DEFAULT_DEMO_DIR = Path("hour-llava-demo")
DEMO_MODEL_NAME = "hour-llava-demo"
EXAMPLE_TASK = "needle"  # the demo's headline question: a one-second flash that forgetting may drop


class NoModelError(FileNotFoundError):
    """No model was given and `hour-llava demo` has not saved one yet."""


@dataclass(frozen=True)
class Example:
    video: Path
    question: str


def demo_model_dir(demo_dir: str | Path = DEFAULT_DEMO_DIR) -> Path:
    """The model `hour-llava demo --output-dir demo_dir` saved; `NoModelError` saying how to make one if absent."""
    model_dir = Path(demo_dir) / DEMO_MODEL_NAME
    if not (model_dir / "config.json").is_file():
        raise NoModelError(
            f"No model was given and there is no demo model in {model_dir}/. Train one with `hour-llava demo` "
            f"(about 10 minutes on two CPU cores; it saves the model there, run from this folder), or pass "
            "--model with an Hour-LLaVA checkpoint directory or Hub id."
        )
    return model_dir


def demo_examples(demo_dir: str | Path, limit: int = 4) -> list[Example]:
    """Up to `limit` held-out videos of a demo run with a question each (the flash question where there is one).

    Returns an empty list for a folder that holds no demo data, so any `--model` can be served without examples.
    """
    examples: list[Example] = []
    for test_file in sorted(Path(demo_dir).glob("seed*/data/test.json")):
        video_root = test_file.parent / "videos"
        for sample in preferred_first(json.loads(test_file.read_text())):
            video = video_root / sample.get("data_source", "") / sample["video"]
            if video.is_file() and all(example.video != video for example in examples):
                examples.append(Example(video, first_question(sample)))
            if len(examples) == limit:
                return examples
    return examples


def model_and_examples(model: str | None = None, demo_dir: str | Path = DEFAULT_DEMO_DIR) -> tuple[str, list[Example]]:
    """`model`, or the demo's model when None, with the demo's examples when the model sits in a demo run's folder."""
    model = model or str(demo_model_dir(demo_dir))
    path = Path(model)
    return model, demo_examples(path.parent) if path.is_dir() else []


def preferred_first(samples: list[dict]) -> list[dict]:
    return sorted(samples, key=lambda sample: (sample.get("task") != EXAMPLE_TASK, sample["video"]))


def first_question(sample: dict) -> str:
    return sample["conversations"][0]["value"].replace("<image>", "").strip()


__all__ = ["DEFAULT_DEMO_DIR", "Example", "NoModelError", "demo_examples", "demo_model_dir", "model_and_examples"]
