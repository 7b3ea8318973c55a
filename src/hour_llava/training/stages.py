# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""The paper's three training stages as presets: which parts train, and at which learning rate.

Every parameter belongs to one *part*, read from its name (so PEFT-wrapped names work too):

* `vision_tower`: the SigLIP encoder;
* `projector`: the 2-layer MLP between vision and text;
* `memory_augmentation`: MemAug;
* `language_model`: everything else, as the authors' `mm_language_model`: the Qwen2 backbone, `lm_head`, and also
  `image_newline` (so it is frozen in stage 1 and trained in stages 2-3, as in the reference).

| stage | trains | learning rates (the LLM uses the run's base rate) |
|---|---|---|
| stage1 | MemAug | MemAug 1e-4 |
| stage2 | everything | projector 1e-4, MemAug 1e-4, vision tower 5e-6 |
| stage3 | all but the vision tower | projector 1e-4, MemAug 1e-4 |

`base_learning_rate` is the authors' rate for the LLM with the 3B model (use 1e-5 for the 7B model in stage 2).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn


PARTS = ("vision_tower", "projector", "memory_augmentation", "language_model")
# Module names (path components) that put a parameter in a part; all other parameters are `language_model`.
PART_MODULE_NAMES = {
    "vision_tower": "vision_tower",
    "projector": "multi_modal_projector",
    "memory_augmentation": "memory_augmentation",
}


@dataclass(frozen=True)
class TrainingStage:
    """A stage preset: the parts that train and the learning rate of each part (absent: the base rate)."""

    name: str
    trainable_parts: frozenset[str]
    learning_rates: Mapping[str, float] = field(default_factory=dict)
    base_learning_rate: float = 2e-5
    description: str = ""

    def __post_init__(self):
        unknown = (set(self.trainable_parts) | set(self.learning_rates)) - set(PARTS)
        if unknown:
            raise ValueError(f"Stage {self.name!r} names unknown parts {sorted(unknown)}; parts are {PARTS}.")


TRAINING_STAGES = {
    "stage1": TrainingStage(
        "stage1",
        frozenset({"memory_augmentation"}),
        {"memory_augmentation": 1e-4},
        base_learning_rate=1e-4,
        description="MemAug only (the authors train it on single images first).",
    ),
    "stage2": TrainingStage(
        "stage2",
        frozenset(PARTS),
        {"projector": 1e-4, "memory_augmentation": 1e-4, "vision_tower": 5e-6},
        base_learning_rate=2e-5,
        description="Everything, on short videos and images; the vision tower at 5e-6.",
    ),
    "stage3": TrainingStage(
        "stage3",
        frozenset({"projector", "memory_augmentation", "language_model"}),
        {"projector": 1e-4, "memory_augmentation": 1e-4},
        base_learning_rate=2e-5,
        description="All but the vision tower, on VideoMarathon (cached vision features work here).",
    ),
}


def get_training_stage(stage: "str | int | TrainingStage") -> TrainingStage:
    """A preset by name (`"stage3"`, `"3"` or `3`), or `stage` itself."""
    if isinstance(stage, TrainingStage):
        return stage
    name = str(stage).lower()
    name = name if name.startswith("stage") else f"stage{name}"
    if name not in TRAINING_STAGES:
        raise ValueError(f"Unknown training stage {stage!r}; choose one of {sorted(TRAINING_STAGES)}.")
    return TRAINING_STAGES[name]


def parameter_part(name: str) -> str:
    """The part (`PARTS`) a parameter belongs to, from its qualified name."""
    components = name.split(".")
    for part, module_name in PART_MODULE_NAMES.items():
        if module_name in components:
            return part
    return "language_model"


def apply_training_stage(model: nn.Module, stage: "str | int | TrainingStage") -> dict[str, int]:
    """Freeze every parameter outside the stage's trainable parts (and unfreeze those inside).

    Returns the number of trainable parameters per part.
    """
    stage = get_training_stage(stage)
    trainable = dict.fromkeys(PARTS, 0)
    for name, parameter in model.named_parameters():
        part = parameter_part(name)
        parameter.requires_grad_(part in stage.trainable_parts)
        if parameter.requires_grad:
            trainable[part] += parameter.numel()
    return trainable


def build_parameter_groups(
    model: nn.Module,
    base_learning_rate: float,
    weight_decay: float,
    decay_parameter_names: set[str] | list[str],
    learning_rates: Mapping[str, float] | None = None,
) -> list[dict]:
    """Optimizer parameter groups: one per (part, decay) pair with trainable parameters.

    `decay_parameter_names` is what `Trainer.get_decay_parameter_names` returns (LayerNorm and bias excluded, as the
    reference splits them). Parts without an entry in `learning_rates` use `base_learning_rate`. Each group carries a
    `name` such as `"memory_augmentation.no_decay"`.
    """
    learning_rates = dict(learning_rates or {})
    unknown = set(learning_rates) - set(PARTS)
    if unknown:
        raise ValueError(f"learning_rates names unknown parts {sorted(unknown)}; parts are {PARTS}.")
    decay_parameter_names = set(decay_parameter_names)
    groups: dict[tuple[str, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part, decays = parameter_part(name), name in decay_parameter_names
        group = groups.setdefault(
            (part, decays),
            {
                "name": f"{part}.{'decay' if decays else 'no_decay'}",
                "params": [],
                "lr": learning_rates.get(part, base_learning_rate),
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(parameter)
    return list(groups.values())


__all__ = [
    "PARTS",
    "TRAINING_STAGES",
    "TrainingStage",
    "apply_training_stage",
    "build_parameter_groups",
    "get_training_stage",
    "parameter_part",
]
