# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`hour-llava demo`'s held-out questions as an lmms-eval task, scored exactly as the demo's own table.

```
lmms-eval --model hour_llava --model_args pretrained=hour-llava-demo/hour-llava-demo \
    --tasks hour_llava_demo --include_path hour-llava-demo/lmms-eval-task --batch_size 4 --output_path results/
```

The prompt is the demo's (the question after the video, no extra instruction), decoding the demo's (greedy, 4 new
tokens), and the score the demo's: an answer is right when its first word is the expected one (`first_word`). The
metrics are the columns of the demo's table (`report.COLUMNS`), in percent, plus `accuracy` over every question.

The demo imports `write_demo_task` inside the function that calls it: this module imports the demo's scoring.
"""

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..demo import synthetic
from ..demo.experiment import first_word, question_of
from ..demo.report import COLUMNS
from .task_folder import doc_to_text, doc_to_visual, write_task_folder  # noqa: F401 (the task's prompt)


DEMO_TASK = "hour_llava_demo"
# As the demo's `evaluate`: greedy, 4 new tokens, the whole answer (no `until` cut).
GENERATION_KWARGS = {"max_new_tokens": 4, "do_sample": False, "temperature": 0, "until": []}


def metric_name(column: str) -> str:
    """A column of the demo's table as a metric name: `needle, frame dropped` -> `needle_frame_dropped`."""
    return re.sub(r"\W+", "_", column).strip("_")


METRICS = {"accuracy": "!function utils.mean_percent"}
METRICS.update({metric_name(column): "!function utils.mean_percent" for column in COLUMNS})


def write_demo_task(
    directory: str | os.PathLike, samples: Sequence[Mapping], records: Sequence[Mapping], video_root: str | os.PathLike
) -> Path:
    """Write the held-out `samples` (the demo's `evaluation_samples`) as the task folder `directory`.

    `records` are the demo's scored answers for those samples (`experiment.score`), which say whether forgetting
    dropped each needle's frame; `video_root` is the folder the samples' video paths start from.
    """
    flags = {record["id"]: record["dropped_by_forgetting"] for record in records}
    docs = [
        {
            "id": sample["id"],
            "video": str(Path(video_root).absolute() / synthetic.DATA_SOURCE / sample["video"]),
            "question": question_of(sample),
            "answer": sample["conversations"][1]["value"],
            "task": sample["task"],
            "dropped_by_forgetting": flags[sample["id"]],
        }
        for sample in samples
    ]
    return write_task_folder(
        directory, DEMO_TASK, docs, __name__, METRICS, GENERATION_KWARGS, extra_functions=["mean_percent"]
    )


# ----------------------------------------------------------------------------------------------------------------------
# The task's scoring (imported by the folder's utils.py)
# ----------------------------------------------------------------------------------------------------------------------
def process_results(doc: Mapping, results: list[str]) -> dict[str, bool | None]:
    """Whether the answer is right, under `accuracy` and under each table column the question belongs to (None in the
    others, which `mean_percent` skips)."""
    record = {"task": doc["task"], "dropped_by_forgetting": doc["dropped_by_forgetting"]}
    correct = first_word(results[0]) == doc["answer"]
    scores = {metric_name(column): (correct if belongs(record) else None) for column, belongs in COLUMNS.items()}
    return {"accuracy": correct, **scores}


def mean_percent(values: Sequence[bool | None]) -> float:
    """Percent of right answers among the questions of a column (NaN for an empty column, as the demo's table)."""
    scored = [value for value in values if value is not None]
    return 100 * sum(scored) / len(scored) if scored else float("nan")


__all__ = ["DEMO_TASK", "METRICS", "mean_percent", "metric_name", "process_results", "write_demo_task"]
