# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`HourLlavaSFTTrainer`: TRL's `SFTTrainer` with the paper's stage presets and per-part learning rates.

What it adds to `SFTTrainer`:

* `stage=` freezes the parts the stage does not train (`apply_training_stage`) and gives the projector, MemAug and
  vision tower their own learning rates through the optimizer's parameter groups (`build_parameter_groups`, with
  the usual decay / no-decay split); `learning_rates=` overrides single parts.
* It owns the data contract: the collator defaults to `HourLlavaDataCollator(processing_class)`, and since the
  collator does all the processing, `args.remove_unused_columns` is set to False and TRL's dataset preparation is
  skipped (`args.dataset_kwargs["skip_prepare_dataset"] = True`); callers need not set either.
* The collator draws random image forgetting when the model config's `spatial_sampling_type` is "random", seeded
  from `args.seed` (it is given both unless it was built with its own).
* Rows the collator skipped (missing or unreadable videos or images, too long) are counted across processes, logged as
  `skipped_rows` with the training metrics, and summed up in one line when training ends.
* A feature cache with a trainable vision tower is refused (the cached features bypass the tower), and when training
  starts the cache's fingerprint must match the model's vision tower and the collator's decoding settings
  (`FeatureCacheMismatchError`, naming both); every file read afterwards is checked the same way.
* A non-finite loss or gradient stops training with `NonFiniteTrainingError` before the optimizer applies it, so a
  NaN model is never stepped into, logged as a finite loss (the Trainer's `logging_nan_inf_filter` would hide it) or
  saved (`StopOnNonFiniteCallback`, added to every trainer).
* The model card it writes says `pipeline_tag: video-text-to-text` (`hour_llava.hub.apply_card_metadata`).
"""

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.integrations import is_deepspeed_zero3_enabled
from trl import SFTConfig, SFTTrainer

from ..hub import apply_card_metadata
from .collator import SKIPPED_ROWS_KEY, HourLlavaDataCollator
from .feature_cache import check_fingerprint, feature_cache_path, read_cache_header, vision_fingerprint
from .stages import TrainingStage, apply_training_stage, build_parameter_groups, get_training_stage, parameter_part


logger = logging.getLogger(__name__)


class NonFiniteTrainingError(RuntimeError):
    """The loss or a gradient became NaN or infinite; training stopped before the optimizer step applied it."""


class StopOnNonFiniteCallback(TrainerCallback):
    """Stop training, before the optimizer steps, when a trainable parameter's gradient is NaN or infinite.

    Works with any `Trainer` (`callbacks=[StopOnNonFiniteCallback()]`). Gradients held outside `param.grad`
    (DeepSpeed) are not seen here; the loss check of `HourLlavaSFTTrainer` still is.
    """

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        gradients = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
        if not gradients:
            return
        finite = torch.stack([torch.isfinite(grad).all() for _, grad in gradients])
        if not bool(finite.all()):
            name = gradients[int((~finite).nonzero()[0])][0]
            raise NonFiniteTrainingError(
                f"Training stopped at step {state.global_step + 1}: the gradient of {name} (and maybe others) is NaN "
                "or infinite, so the optimizer step was not taken and nothing was saved. Check the data (cached "
                "features, videos), the learning rate and the dtype; resume from the last checkpoint."
            )


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
        args, kwargs = _own_data_contract(args, kwargs)
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
        self._configure_image_forgetting()
        self.skipped_rows = 0
        self.add_callback(StopOnNonFiniteCallback())

    def _configure_image_forgetting(self) -> None:
        """Random image forgetting is drawn by the collator (so the placeholders match the draw): give it the model
        config's `spatial_sampling_type` and the training seed, unless the caller chose them."""
        collator = self.data_collator
        if getattr(collator, "image_forgetting", False) is None:
            collator.image_forgetting = getattr(self.model.config, "spatial_sampling_type", None)
        if getattr(collator, "seed", False) is None:
            collator.seed = self.args.seed

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

    def check_feature_cache_fingerprint(self) -> None:
        """The first cached file the training rows use must carry the fingerprint of the model being trained; the
        collator then checks every file it reads against it."""
        cache_dir = getattr(self.data_collator, "feature_cache_dir", None)
        if cache_dir is None:
            return
        if is_deepspeed_zero3_enabled() or any(p.is_meta for p in self.model.parameters()):
            logger.warning(
                "The vision tower's weights are partitioned (ZeRO-3) or not loaded on this process, so the feature "
                "cache's fingerprint cannot be checked; make sure %s was extracted with this model.", cache_dir
            )
            return
        expected = vision_fingerprint(self.model, self.data_collator.video_settings)
        self.data_collator.expected_fingerprint = expected
        for row in _first_rows(self.train_dataset, FINGERPRINT_PROBE_ROWS):
            path = feature_cache_path(cache_dir, row["video"]) if row.get("video") else None
            if path is not None and path.is_file():
                try:
                    header = read_cache_header(path)
                except ValueError:
                    continue  # unreadable: the collator skips and names it
                check_fingerprint(header, expected, path)
                return
        logger.warning("None of the first %d rows has a cached feature file in %s.", FINGERPRINT_PROBE_ROWS, cache_dir)

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
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss).all()):
            raise NonFiniteTrainingError(
                f"Training stopped at step {self.state.global_step + 1}: the loss is {loss.item()}, so the optimizer "
                "step was not taken and nothing was saved. Check the data (cached features, videos), the learning "
                "rate and the dtype; resume from the last checkpoint."
            )
        return loss

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
        self.check_feature_cache_fingerprint()
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


# Rows looked at, when training starts, for a cached feature file whose fingerprint to check.
FINGERPRINT_PROBE_ROWS = 64


def _own_data_contract(args, kwargs: dict) -> tuple[tuple, dict]:
    """The collator does all the processing: default it to `HourLlavaDataCollator`, keep the raw columns and skip
    TRL's dataset preparation (which would tokenize the `messages` column as plain text)."""
    args = list(args)
    training_args = args[1] if len(args) > 1 else kwargs.get("args")
    if training_args is None:
        model = args[0] if args else kwargs["model"]
        name = model if isinstance(model, str) else model.config.name_or_path or "hour-llava"
        training_args = SFTConfig(f"{str(name).rstrip('/').split('/')[-1]}-SFT")
    if not isinstance(training_args, SFTConfig):  # as SFTTrainer converts plain TrainingArguments
        training_args = SFTConfig(**{**training_args.to_dict(), "hub_token": training_args.hub_token})
    training_args.remove_unused_columns = False
    training_args.dataset_kwargs = {**(training_args.dataset_kwargs or {}), "skip_prepare_dataset": True}
    if len(args) > 1:
        args[1] = training_args
    else:
        kwargs["args"] = training_args
    processor = kwargs.get("processing_class")
    if kwargs.get("data_collator") is None and len(args) < 3 and hasattr(processor, "video_processor"):
        kwargs["data_collator"] = HourLlavaDataCollator(processor)
    return tuple(args), kwargs


def _first_rows(dataset, count: int):
    """Up to `count` rows of a `Dataset` or `IterableDataset`, without reading more."""
    if dataset is None:
        return []
    if hasattr(dataset, "select") and hasattr(dataset, "__len__"):
        return dataset.select(range(min(count, len(dataset))))
    return dataset.take(count) if hasattr(dataset, "take") else []


__all__ = ["HourLlavaSFTTrainer", "NonFiniteTrainingError", "SKIPPED_ROWS_KEY", "StopOnNonFiniteCallback"]
