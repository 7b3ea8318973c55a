# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`HourLlavaSFTTrainer`: TRL's `SFTTrainer` with the paper's stage presets and per-part learning rates.

What it adds to `SFTTrainer`:

* `stage=` freezes the parts the stage does not train (`apply_training_stage`) and gives the projector, MemAug and
  vision tower their own learning rates through the optimizer's parameter groups (`build_parameter_groups`, with
  the usual decay / no-decay split); `learning_rates=` overrides single parts.
* Rows the collator skipped (missing or unreadable videos, too long) are counted across processes, logged as
  `skipped_rows` with the training metrics, and summed up in one line when training ends.
* A feature cache with a trainable vision tower is refused (the cached features bypass the tower).
* The model card it writes says `pipeline_tag: video-text-to-text` (`hour_llava.hub.apply_card_metadata`).

Pair it with `HourLlavaDataCollator`, `remove_unused_columns=False` and `dataset_kwargs={"skip_prepare_dataset":
True}` (see `examples/sft_videomarathon.py`).
"""

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from trl import SFTTrainer

from ..hub import apply_card_metadata
from .stages import TrainingStage, apply_training_stage, build_parameter_groups, get_training_stage, parameter_part


logger = logging.getLogger(__name__)

# The collator reports skipped rows under this batch key when `report_skipped_rows` is on; the trainer removes it
# before the forward pass.
SKIPPED_ROWS_KEY = "num_skipped_rows"


def _is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


class HourLlavaSFTTrainer(SFTTrainer):
    """`SFTTrainer` for Hour-LLaVA. Takes every `SFTTrainer` argument, plus:

    Args:
        stage (`str`, `int` or `TrainingStage`, *optional*):
            `"stage1"`, `"stage2"` or `"stage3"` (see `hour_llava.training.stages`): freezes the parts the stage does
            not train and sets the per-part learning rates. With PEFT the adapters decide what trains; the stage
            then only sets the learning rates.
        learning_rates (`dict[str, float]`, *optional*):
            Per-part learning rates (`vision_tower`, `projector`, `memory_augmentation`, `language_model`) that
            override the stage's. Parts without a rate use `args.learning_rate`.
    """

    _tag_names = ["trl", "sft", "hour-llava"]

    def __init__(
        self,
        *args,
        stage: "str | int | TrainingStage | None" = None,
        learning_rates: Mapping[str, float] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.stage = get_training_stage(stage) if stage is not None else None
        self.learning_rates = {**(self.stage.learning_rates if self.stage else {}), **(learning_rates or {})}
        if self.stage is not None:
            if _is_peft_model(self.model):
                logger.info("PEFT decides the trainable parameters; %s only sets learning rates.", self.stage.name)
            else:
                trainable = apply_training_stage(self.model, self.stage)
                logger.info("%s: trainable parameters per part: %s", self.stage.name, trainable)
        self._check_feature_cache_with_frozen_tower()
        if hasattr(self.data_collator, "report_skipped_rows"):
            self.data_collator.report_skipped_rows = True
        self.skipped_rows = 0

    def _check_feature_cache_with_frozen_tower(self) -> None:
        """Cached features bypass the vision tower: training it from them would silently do nothing."""
        if getattr(self.data_collator, "feature_cache_dir", None) is None:
            return
        parameters = self.model.named_parameters()
        trainable = [name for name, p in parameters if p.requires_grad and parameter_part(name) == "vision_tower"]
        if trainable:
            raise ValueError(
                f"The collator reads cached vision features ({self.data_collator.feature_cache_dir}), which bypass the "
                f"vision tower, yet {len(trainable)} vision tower parameters (e.g. {trainable[0]}) are trainable. "
                "Freeze the tower (stage3 or stage1) or train from videos."
            )

    # ----------------------------------------------------------------------------------------------------------
    # Optimizer: one parameter group per (part, decay), each with its part's learning rate
    # ----------------------------------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        model = self.model if model is None else model
        if self.optimizer is None and self.learning_rates:
            groups = build_parameter_groups(
                model,
                base_learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                decay_parameter_names=self.get_decay_parameter_names(model),
                learning_rates=self.learning_rates,
            )
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs or self.get_optimizer_cls_and_kwargs(
                self.args, model
            )
            # `Trainer.create_optimizer` takes the groups from `params` when the optimizer kwargs carry them.
            self.optimizer_cls_and_kwargs = (optimizer_cls, {**optimizer_kwargs, "params": groups})
        return super().create_optimizer(model)

    # ----------------------------------------------------------------------------------------------------------
    # Rows the collator skipped
    # ----------------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        skipped = inputs.pop(SKIPPED_ROWS_KEY, None)
        if skipped is not None and self.model.training:
            skipped = torch.as_tensor(skipped, device=self.accelerator.device).reshape(1)
            self.skipped_rows += int(self.accelerator.gather(skipped).sum())
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and "loss" in logs:
            logs["skipped_rows"] = self.skipped_rows
        super().log(logs, start_time)

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        if self.skipped_rows and self.is_world_process_zero():
            logger.warning(
                "Skipped %d training rows (missing or unreadable videos or features, or too long; one warning each "
                "above).",
                self.skipped_rows,
            )
        return output

    # ----------------------------------------------------------------------------------------------------------
    # Model card
    # ----------------------------------------------------------------------------------------------------------
    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ):
        """TRL's card (which names the base model and dataset), then `pipeline_tag: video-text-to-text` and our tags."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.is_world_process_zero():
            apply_card_metadata(Path(self.args.output_dir) / "README.md")


__all__ = ["HourLlavaSFTTrainer", "SKIPPED_ROWS_KEY"]
