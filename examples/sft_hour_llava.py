# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""
Fine-tune Hour-LLaVA with TRL's SFTTrainer on videos (VideoMarathon, LLaVA-Video-178K, QA tables), images and
several images (LLaVA-OneVision rows) and text-only samples, in any mix. (`examples/sft_videomarathon.py`, its old
name, still runs it.)

# Stage 1: MemAug only, on single images (LLaVA-OneVision single-image rows)
```bash
python examples/sft_hour_llava.py \
    --model_name_or_path ./hour-llava-from-ov \
    --data_files llava_ov_si.json --image_root /data/llava-ov/images \
    --stage stage1 --learning_rate 1e-4 --lr_scheduler_type cosine --warmup_ratio 0.03 \
    --per_device_train_batch_size 1 --gradient_accumulation_steps 16 --bf16 \
    --output_dir hour-llava-s1
```

# Stage 3 from cached vision features, one machine
```bash
hour-llava extract-features --model ./hour-llava-qwen2-7b-s2 --output-dir features/ \
    --data-files videomarathon.json --video-root /data/VideoMarathon/videos
python examples/sft_hour_llava.py \
    --model_name_or_path ./hour-llava-qwen2-7b-s2 \
    --data_files videomarathon.json --video_root /data/VideoMarathon/videos --feature_cache_dir features/ \
    --stage stage3 --learning_rate 2e-5 --lr_scheduler_type cosine --warmup_ratio 0.03 \
    --per_device_train_batch_size 1 --gradient_accumulation_steps 16 --bf16 \
    --output_dir hour-llava-s3
```

# Several GPUs (DDP; or fsdp.yaml, zero2.yaml, zero3.yaml)
```bash
accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml examples/sft_hour_llava.py ...
```

# LoRA on the language model, MemAug and projector trained in full (add --load_in_4bit for QLoRA, CUDA only)
```bash
python examples/sft_hour_llava.py ... --use_peft --lora_r 64 --lora_alpha 16
```
"""

from dataclasses import dataclass, field

import torch
from accelerate import PartialState
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import ModelConfig, SFTConfig, TrlParser, get_peft_config, get_quantization_config

import hour_llava  # noqa: F401  (registers the model and processor with the Auto classes)
from hour_llava.training import (
    HourLlavaDataCollator,
    HourLlavaSFTTrainer,
    ImageRoots,
    QATableFormat,
    VideoRoots,
    load_video_instruction_dataset,
)


# LoRA defaults for `--use_peft` without `--lora_target_modules`: adapters on the language model's projections only
# (the vision tower's and MemAug's layers have the same names), MemAug and the projector trained in full.
LORA_TARGET_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
LORA_MODULES_TO_SAVE = ["multi_modal_projector", "memory_augmentation"]


@dataclass
class HourLlavaScriptArguments:
    data_files: list[str] = field(
        metadata={
            "help": "Instruction json/jsonl (VideoMarathon, LLaVA-Video-178K, LLaVA-OneVision image, multi-image and "
            "text rows) or QA tables (csv/parquet/json)."
        }
    )
    video_root: str | None = field(default=None, metadata={"help": "Folder of <data_source>/<video> files."})
    video_roots: list[str] = field(
        default_factory=list, metadata={"help": "Folders per data_source, as data_source=/path (win over video_root)."}
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder of <data_source>/<image> files (the `image` paths of image rows)."}
    )
    image_roots: list[str] = field(
        default_factory=list, metadata={"help": "Image folders per data_source, as data_source=/path."}
    )
    feature_cache_dir: str | None = field(
        default=None, metadata={"help": "Train from `hour-llava extract-features` output (frozen vision tower)."}
    )
    stage: str = field(
        default="stage3",
        metadata={
            "help": "stage1 (MemAug only, the authors' image stage), stage2 (all), stage3 (all but the vision tower), "
            "none (as loaded)."
        },
    )
    max_frames: int | None = field(default=None, metadata={"help": "Frame cap per video (uniform selection)."})
    max_tokens: int | None = field(default=None, metadata={"help": "Skip samples with more tokens than this."})
    max_turns: int = field(default=5, metadata={"help": "Questions per sample when grouping a QA table."})
    streaming: bool = field(default=False, metadata={"help": "Stream the data files (needs --max_steps)."})
    on_bad_sample: str = field(default="skip", metadata={"help": "skip (warn and count) or raise on bad samples."})
    projector_lr: float | None = field(default=None, metadata={"help": "Override the stage's projector rate."})
    memaug_lr: float | None = field(default=None, metadata={"help": "Override the stage's MemAug rate."})
    vision_tower_lr: float | None = field(default=None, metadata={"help": "Override the stage's vision tower rate."})

    def learning_rate_overrides(self) -> dict[str, float]:
        rates = {"projector": self.projector_lr, "memory_augmentation": self.memaug_lr}
        rates["vision_tower"] = self.vision_tower_lr
        return {part: rate for part, rate in rates.items() if rate is not None}


def load_model(model_args: ModelConfig, training_args: SFTConfig):
    quantization_config = get_quantization_config(model_args)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    model = AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=dtype,
        quantization_config=quantization_config,
        device_map={"": PartialState().local_process_index} if quantization_config is not None else None,
    )
    if model_args.use_peft:
        model.enable_input_require_grads()  # LoRA with gradient checkpointing needs gradients at the embeddings
        model_args.lora_target_modules = model_args.lora_target_modules or LORA_TARGET_MODULES
        model_args.lora_modules_to_save = model_args.lora_modules_to_save or LORA_MODULES_TO_SAVE
    return model


def image_roots(script_args: HourLlavaScriptArguments) -> ImageRoots | None:
    if script_args.image_root is None and not script_args.image_roots:
        return None
    return ImageRoots.from_strings(script_args.image_root, script_args.image_roots)


def main(script_args: HourLlavaScriptArguments, training_args: SFTConfig, model_args: ModelConfig):
    model = load_model(model_args, training_args)
    processor = AutoProcessor.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    dataset = load_video_instruction_dataset(
        script_args.data_files,
        VideoRoots.from_strings(script_args.video_root, script_args.video_roots),
        streaming=script_args.streaming,
        on_bad_sample=script_args.on_bad_sample,
        table_format=QATableFormat(max_turns=script_args.max_turns),
        image_roots=image_roots(script_args),
    )
    collator = HourLlavaDataCollator(
        processor,
        feature_cache_dir=script_args.feature_cache_dir,
        video_kwargs={"max_frames": script_args.max_frames} if script_args.max_frames else None,
        on_bad_video=script_args.on_bad_sample,
        max_length=script_args.max_tokens,
    )
    trainer = HourLlavaSFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        data_collator=collator,
        peft_config=get_peft_config(model_args),
        stage=None if script_args.stage == "none" else script_args.stage,
        learning_rates=script_args.learning_rate_overrides(),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.create_model_card()  # README.md with `pipeline_tag: video-text-to-text`
    if training_args.push_to_hub:
        trainer.push_to_hub()
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")
    return trainer


def make_parser() -> TrlParser:
    return TrlParser((HourLlavaScriptArguments, SFTConfig, ModelConfig))


if __name__ == "__main__":
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    main(script_args, training_args, model_args)
