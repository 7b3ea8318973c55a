# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Local lmms-eval tasks: a folder with a task YAML, its questions (`docs.jsonl`) and a `utils.py`.

`lmms-eval --include_path <folder> --tasks <task>` then runs the questions like any registered benchmark. Each doc
holds `video` (an absolute path), `question` and `answer`; the functions below are the task's prompt (`doc_to_visual`,
`doc_to_text`) and a plain exact-match score. The demo's task (`demo_task`) adds its own scoring.

Writing this module needs no lmms-eval; running the task does.
"""

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..conversion import atomic_directory


DOCS_FILE = "docs.jsonl"


def write_task_folder(
    directory: str | os.PathLike,
    task: str,
    docs: Iterable[Mapping],
    functions_module: str,
    metrics: Mapping[str, str],
    generation_kwargs: Mapping,
    extra_functions: Iterable[str] = (),
) -> Path:
    """Write an lmms-eval task folder (atomically; an existing folder is replaced).

    `functions_module` is the importable module whose `doc_to_visual`, `doc_to_text` and `process_results` (and
    `extra_functions`, e.g. custom aggregations) the task's `utils.py` re-exports; `metrics` maps each metric that
    `process_results` returns to its aggregation (`mean`, or `!function utils.<name>`).
    """
    destination = Path(directory).expanduser().absolute()
    docs = [dict(doc) for doc in docs]
    for index, doc in enumerate(docs):
        missing = {"video", "question", "answer"} - doc.keys()
        if missing:
            raise ValueError(f"Doc {index} of task {task!r} lacks {sorted(missing)}.")
    with atomic_directory(destination, overwrite=True) as staging:
        (staging / DOCS_FILE).write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        (staging / f"{task}.yaml").write_text(task_yaml(task, destination / DOCS_FILE, metrics, generation_kwargs))
        functions = ["doc_to_visual", "doc_to_text", "process_results", *extra_functions]
        (staging / "utils.py").write_text(
            f'"""Functions of the lmms-eval task {task!r}: they live in {functions_module}."""\n\n'
            f"from {functions_module} import {', '.join(functions)}  # noqa: F401\n"
        )
    return destination


def task_yaml(task: str, docs_path: Path, metrics: Mapping[str, str], generation_kwargs: Mapping) -> str:
    """The task's YAML (JSON scalars are YAML too; `!function` tags name functions of the folder's `utils.py`)."""
    lines = [
        f"task: {task}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(docs_path))}",
        "test_split: test",
        "output_type: generate_until",
        "doc_to_visual: !function utils.doc_to_visual",
        "doc_to_text: !function utils.doc_to_text",
        "doc_to_target: answer",
        f"generation_kwargs: {json.dumps(dict(generation_kwargs))}",
        "process_results: !function utils.process_results",
        "metric_list:",
    ]
    for metric, aggregation in metrics.items():
        lines += [f"  - metric: {metric}", f"    aggregation: {aggregation}", "    higher_is_better: true"]
    lines += ["metadata:", "  version: 0.0"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------------
# The task's functions (imported by the folder's utils.py)
# ----------------------------------------------------------------------------------------------------------------------
def doc_to_visual(doc: Mapping) -> list[str]:
    return [doc["video"]]


def doc_to_text(doc: Mapping, lmms_eval_specific_kwargs: Mapping | None = None) -> str:
    return doc["question"]


def process_results(doc: Mapping, results: list[str]) -> dict[str, float]:
    """`exact_match`: 1.0 when the answer, stripped, is the doc's answer."""
    return {"exact_match": float(results[0].strip() == doc["answer"])}


__all__ = ["doc_to_text", "doc_to_visual", "process_results", "task_yaml", "write_task_folder"]
