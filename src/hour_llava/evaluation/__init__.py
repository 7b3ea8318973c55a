# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Evaluation with lmms-eval (`pip install "hour-llava[eval]"`).

* `lmms_eval_model`: the `hour_llava` model of lmms-eval, registered through its `lmms_eval.models` entry points:
  `lmms-eval --model hour_llava --model_args pretrained=<checkpoint> --tasks videomme ...`.
* `demo_task`: writes `hour-llava demo`'s held-out questions as an lmms-eval task folder (`--include_path`);
  `demo_task_utils` holds that task's prompt and scoring functions.

Nothing here imports lmms-eval at package import time: the base install does not have it, and the demo writes its task
folder without it.
"""

MODEL_ID = "hour_llava"


def model_manifest():
    """The `lmms_eval.models` entry point: `--model hour_llava` is `HourLlavaLmms`, a chat model.

    It lives here, not next to the model, because lmms-eval loads its entry points while its `models` package is
    being imported, which importing the model module itself starts: the entry point must not import that module.
    """
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, chat_class_path=f"{__name__}.lmms_eval_model.HourLlavaLmms")


__all__ = ["MODEL_ID", "model_manifest"]
