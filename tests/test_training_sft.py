"""Short SFTTrainer runs on a tiny model and synthetic VideoMarathon data: loss, bad rows, resume, feature cache,
LoRA through the example script, and two processes with `accelerate launch`; videos, images, several images and text
through the example script, and stage 1 on images."""

import ast
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from training_helpers import (  # noqa: F401 (fixtures)
    data_dir,
    instruction_sample,
    processor,
    save_tiny_checkpoint,
    tiny_processor,
    training_rows,
    write_json,
    write_video,
)
from transformers import AutoProcessor
from trl import SFTConfig

from hour_llava.tiny import tiny_model as build_tiny_model
from hour_llava.training import (
    FeatureCacheMismatchError,
    HourLlavaDataCollator,
    HourLlavaSFTTrainer,
    NonFiniteTrainingError,
    StreamingVideoEncoder,
    extract_video_features,
    vision_fingerprint,
)


REPO = Path(__file__).resolve().parents[1]


def rows(data_dir, name="good.json", repeat=1):
    return training_rows(data_dir, name, repeat)


def sft_config(output_dir, **overrides) -> SFTConfig:
    options = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=2,
        learning_rate=2e-3,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        disable_tqdm=True,
        seed=0,
        data_seed=0,
    )
    return SFTConfig(**{**options, **overrides})


def make_trainer(model, processor, train_rows, args, collator=None, **kwargs):
    return HourLlavaSFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=processor,
        data_collator=collator or HourLlavaDataCollator(processor),
        **kwargs,
    )


def losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_short_sft_run_lowers_the_loss(data_dir, tiny_model, processor, tmp_path):
    args = sft_config(tmp_path, max_steps=6, learning_rate=5e-3)
    trainer = make_trainer(tiny_model, processor, rows(data_dir, repeat=3), args)
    trainer.train()
    history = losses(trainer)
    assert len(history) == 6
    assert sum(history[-2:]) / 2 < sum(history[:2]) / 2 - 0.5, history


def test_a_batch_of_only_bad_rows_does_not_stop_training(data_dir, tiny_model, processor, tmp_path, caplog):
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    trainer = make_trainer(tiny_model, processor, rows(data_dir, "bad.json"), sft_config(tmp_path, max_steps=2))
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert trainer.skipped_rows == 4 and losses(trainer) == [0.0, 0.0]
    assert [entry["skipped_rows"] for entry in trainer.state.log_history if "loss" in entry] == [2, 4]
    assert "Skipped 4 training rows" in caplog.text
    assert all(torch.equal(before[name], p) for name, p in trainer.model.named_parameters())


def test_resume_from_checkpoint_matches_an_uninterrupted_run(data_dir, tokenizer, tmp_path):
    train_rows = rows(data_dir, repeat=3)
    model = build_tiny_model(tokenizer).train()
    processor = tiny_processor(model, tokenizer)
    args = sft_config(tmp_path / "full", max_steps=4, save_strategy="steps", save_steps=2)
    uninterrupted = make_trainer(model, processor, train_rows, args, stage="stage2")
    uninterrupted.train()
    assert model.config.spatial_sampling_type == "random"  # forgetting draws from the checkpointed CPU generator

    resumed = make_trainer(build_tiny_model(tokenizer), processor, train_rows, args, stage="stage2")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert losses(resumed) == losses(uninterrupted)  # steps 1-2 come from the checkpoint's trainer state
    final, expected = resumed.model.state_dict(), uninterrupted.model.state_dict()
    assert all(torch.equal(final[name], expected[name]) for name in expected)


def test_cached_features_train_like_raw_frames(data_dir, tokenizer, tmp_path):
    train_rows = rows(data_dir, repeat=2)
    model = build_tiny_model(tokenizer)
    processor = tiny_processor(model, tokenizer)
    videos = {row["video"]: row["video_path"] for row in train_rows}
    encoder = StreamingVideoEncoder(processor, model)
    fingerprint = vision_fingerprint(model, encoder.settings)
    extract_video_features(videos, tmp_path / "cache", encoder, fingerprint, show_progress=False)

    runs = {}
    for source, cache in (("frames", None), ("cache", tmp_path / "cache")):
        collator = HourLlavaDataCollator(processor, feature_cache_dir=cache)
        args = sft_config(tmp_path / source, max_steps=3)
        trainer = make_trainer(build_tiny_model(tokenizer), processor, train_rows, args, collator, stage="stage3")
        trainer.train()
        runs[source] = (losses(trainer), trainer.model.state_dict())
    torch.testing.assert_close(runs["cache"][0], runs["frames"][0], rtol=1e-5, atol=1e-6)
    for name, weight in runs["frames"][1].items():
        torch.testing.assert_close(runs["cache"][1][name], weight, rtol=1e-4, atol=1e-6, msg=name)

    with pytest.raises(ValueError, match="bypass the vision tower"):
        collator = HourLlavaDataCollator(processor, feature_cache_dir=tmp_path / "cache")
        make_trainer(build_tiny_model(tokenizer), processor, train_rows, sft_config(tmp_path), collator, stage=2)


def test_the_trainer_owns_the_data_contract(data_dir, tiny_model, processor, tmp_path):
    """No `remove_unused_columns` / `dataset_kwargs` / collator from the caller: the trainer sets them itself."""
    args = SFTConfig(
        output_dir=str(tmp_path), max_steps=1, logging_steps=1, use_cpu=True, report_to="none", save_strategy="no",
        gradient_checkpointing=False,
    )  # fmt: skip
    assert args.remove_unused_columns and not args.dataset_kwargs
    trainer = HourLlavaSFTTrainer(
        model=tiny_model, args=args, train_dataset=Dataset.from_list(rows(data_dir)), processing_class=processor
    )
    assert isinstance(trainer.data_collator, HourLlavaDataCollator) and trainer.data_collator.report_skipped_rows
    assert trainer.args.remove_unused_columns is False
    assert trainer.args.dataset_kwargs == {"skip_prepare_dataset": True}
    trainer.train()
    assert len(losses(trainer)) == 1


def test_cache_of_another_vision_tower_is_refused_when_training_starts(data_dir, tokenizer, tmp_path):
    train_rows = rows(data_dir)
    extractor = build_tiny_model(tokenizer, seed=1)  # same widths, other weights
    processor = tiny_processor(extractor, tokenizer)
    encoder = StreamingVideoEncoder(processor, extractor)
    theirs = vision_fingerprint(extractor, encoder.settings)
    videos = {row["video"]: row["video_path"] for row in train_rows}
    extract_video_features(videos, tmp_path / "cache", encoder, theirs, show_progress=False)

    model = build_tiny_model(tokenizer, seed=0)
    collator = HourLlavaDataCollator(processor, feature_cache_dir=tmp_path / "cache")
    trainer = make_trainer(model, processor, train_rows, sft_config(tmp_path / "out"), collator, stage="stage3")
    ours = vision_fingerprint(model, collator.video_settings)
    with pytest.raises(FeatureCacheMismatchError) as error:
        trainer.train()
    assert theirs in str(error.value) and ours in str(error.value) and "red.mp4.safetensors" in str(error.value)
    assert trainer.state.global_step == 0


def test_a_nan_loss_stops_training_before_the_optimizer_step(data_dir, tiny_model, processor, tmp_path):
    with torch.no_grad():
        tiny_model.model.multi_modal_projector.linear_1.weight[0, 0] = float("nan")
    args = sft_config(tmp_path, max_steps=3, save_strategy="steps", save_steps=1)
    trainer = make_trainer(tiny_model, processor, rows(data_dir, repeat=3), args)
    untouched = tiny_model.model.memory_augmentation.layers[0].mlp.fc1.weight.detach().clone()
    with pytest.raises(NonFiniteTrainingError, match="step 1: the loss is nan"):
        trainer.train()
    assert torch.equal(trainer.model.model.memory_augmentation.layers[0].mlp.fc1.weight, untouched)
    assert not losses(trainer) and not list(tmp_path.glob("checkpoint-*"))


def test_a_nan_gradient_stops_training_before_the_optimizer_step(data_dir, tiny_model, processor, tmp_path):
    weight = tiny_model.model.multi_modal_projector.linear_2.weight
    weight.register_hook(lambda grad: grad * float("nan"))  # the loss stays finite
    trainer = make_trainer(tiny_model, processor, rows(data_dir, repeat=3), sft_config(tmp_path, max_steps=3))
    before = weight.detach().clone()
    with pytest.raises(NonFiniteTrainingError, match="step 1: the gradient of model[.].* is NaN or infinite"):
        trainer.train()
    assert torch.equal(weight, before)


# ----------------------------------------------------------------------------------------------------------------
# The example script
# ----------------------------------------------------------------------------------------------------------------
def script_arguments(checkpoint, data_dir, output_dir, *extra):
    return [
        "--model_name_or_path", str(checkpoint), "--data_files", str(data_dir / "good.json"),
        "--video_root", str(data_dir / "videos"), "--output_dir", str(output_dir), "--max_steps", "2",
        "--per_device_train_batch_size", "1", "--use_cpu", "--bf16", "false", "--gradient_checkpointing", "false",
        "--report_to", "none", "--save_strategy", "no", "--learning_rate", "1e-3", *extra,
    ]  # fmt: skip


def load_example_script(name: str = "sft_hour_llava"):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_script_trains_lora_adapters(data_dir, tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "model")
    script = load_example_script()
    arguments = script_arguments(checkpoint, data_dir, tmp_path / "out", "--use_peft", "--lora_r", "4")
    trainer = script.main(*script.make_parser().parse_args_and_config(arguments))
    trained = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in name or "modules_to_save" in name for name in trained)
    assert any("language_model" in name and "lora_A" in name for name in trained)
    assert not any("vision_tower" in name for name in trained)
    assert any("memory_augmentation.modules_to_save" in name for name in trained)
    assert (tmp_path / "out" / "adapter_config.json").exists()


def test_old_script_name_offers_the_script():
    script = load_example_script("sft_videomarathon")
    script_args, _, _ = script.make_parser().parse_args_and_config(
        ["--data_files", "a.json", "--image_root", "/images", "--output_dir", "out", "--use_cpu", "--bf16", "false"]
    )
    assert script_args.image_root == "/images" and script.main.__module__ == "sft_hour_llava"


def test_accelerate_launch_with_two_processes(data_dir, tmp_path):
    """Two ranks over gloo, as on a multi-GPU machine. (`accelerate launch --cpu` would start one process: several
    CPU processes need `--multi_gpu`'s torchrun launcher, or mpirun.)"""
    checkpoint = save_tiny_checkpoint(tmp_path / "model")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO / "examples" / "sft_videomarathon.py"),  # the old name runs the script
        *script_arguments(checkpoint, data_dir, tmp_path / "out", "--stage", "stage3", "--logging_steps", "1"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logs = [ast.literal_eval(line) for line in result.stdout.splitlines() if line.startswith("{'loss'")]
    # two samples, one per rank and step: each step is a whole epoch only when both ranks train
    assert [log["epoch"] for log in logs] == ["1", "2"]
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "processor_config.json").exists()
    assert "pipeline_tag: video-text-to-text" in (tmp_path / "out" / "README.md").read_text()


# ----------------------------------------------------------------------------------------------------------------
# Images, several images and text through the example script
# ----------------------------------------------------------------------------------------------------------------
def write_mixed_dataset(root: Path) -> Path:
    """`root/mixed.json`: a video, a single-image, a multi-image and a text-only row, and an image row whose file is
    missing; videos under `root/videos`, images (written with Pillow) under `root/images`."""
    from PIL import Image

    write_video(root / "videos" / "src" / "red.mp4", seconds=3, seed=1)
    (root / "images" / "ov").mkdir(parents=True)
    Image.new("RGB", (70, 40), (200, 30, 30)).save(root / "images" / "ov" / "wide.png")
    Image.new("RGB", (30, 60), (30, 30, 200)).save(root / "images" / "ov" / "tall.jpg")
    samples = [
        instruction_sample("video", "red.mp4", [("What colour is it?", "Red.")]),
        single_image_sample("single", "ov/wide.png", "What colour is the picture?", "Red."),
        {
            "id": "multi",
            "image": ["ov/wide.png", "ov/tall.jpg"],
            "conversations": [
                {"from": "human", "value": "<image>\n<image>\nWhich is taller?"},
                {"from": "gpt", "value": "The blue one."},
            ],
        },
        instruction_sample("text", None, [("Say hello.", "Hello.")]),
        single_image_sample("lost", "ov/lost.png", "What is it?", "Nothing."),
    ]
    return write_json(root / "mixed.json", samples)


def single_image_sample(sample_id: str, image: str, question: str, answer: str) -> dict:
    conversations = [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]
    return {"id": sample_id, "image": image, "conversations": conversations}


def mixed_script_arguments(checkpoint, root, output_dir, *extra):
    return [
        "--model_name_or_path", str(checkpoint), "--data_files", str(root / "mixed.json"),
        "--video_root", str(root / "videos"), "--image_root", str(root / "images"), "--output_dir", str(output_dir),
        "--max_steps", "3", "--per_device_train_batch_size", "2", "--use_cpu", "--bf16", "false",
        "--gradient_checkpointing", "false", "--report_to", "none", "--save_strategy", "no", "--learning_rate", "1e-2",
        "--logging_steps", "1", *extra,
    ]  # fmt: skip


def saved_state(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


def test_example_script_trains_on_videos_images_and_text(tmp_path, caplog):
    write_mixed_dataset(tmp_path / "data")
    checkpoint = save_tiny_checkpoint(tmp_path / "model")
    script = load_example_script()
    arguments = mixed_script_arguments(checkpoint, tmp_path / "data", tmp_path / "out", "--stage", "stage3")
    with caplog.at_level(logging.WARNING, logger="hour_llava.training.collator"):
        trainer = script.main(*script.make_parser().parse_args_and_config(arguments))
    assert trainer.data_collator.image_forgetting == "random"  # the tiny config's, as in every training stage
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(loss)) for loss in losses)
    assert trainer.skipped_rows == 1  # 5 rows in 3 steps of 2: one epoch, the missing image skipped and named
    assert any("row 'lost': missing image" in record.getMessage() for record in caplog.records)
    before, after = saved_state(checkpoint), saved_state(tmp_path / "out")
    for key in ("model.memory_augmentation.layers.0.cross_attn.q_proj.weight", "model.image_newline"):
        assert not torch.equal(before[key], after[key]), key
    processor = AutoProcessor.from_pretrained(tmp_path / "out")
    assert processor.image_processor is not None  # the saved processor still takes images


def test_stage1_on_images_trains_memaug_only(tmp_path):
    root = tmp_path / "data"
    write_mixed_dataset(root)
    images_only = [row for row in json.loads((root / "mixed.json").read_text()) if row.get("image")]
    write_json(root / "images.json", images_only)
    checkpoint = save_tiny_checkpoint(tmp_path / "model")
    script = load_example_script()
    arguments = mixed_script_arguments(checkpoint, root, tmp_path / "out", "--stage", "stage1")
    arguments[arguments.index(str(root / "mixed.json"))] = str(root / "images.json")
    arguments.remove("--video_root")
    arguments.remove(str(root / "videos"))
    script.main(*script.make_parser().parse_args_and_config(arguments))
    before, after = saved_state(checkpoint), saved_state(tmp_path / "out")
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith("model.memory_augmentation.") for key in changed)
    assert "model.image_newline" not in changed  # frozen in stage 1, as in the reference


def test_accelerate_launch_on_a_mixed_dataset(tmp_path):
    """Two ranks over gloo, each step a different modality on each rank (video, one image, two images, text): DDP
    needs every trainable parameter in every rank's graph (stage 2 trains them all)."""
    write_mixed_dataset(tmp_path / "data")
    checkpoint = save_tiny_checkpoint(tmp_path / "model")
    arguments = mixed_script_arguments(checkpoint, tmp_path / "data", tmp_path / "out", "--stage", "stage2")
    arguments[arguments.index("--per_device_train_batch_size") + 1] = "1"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO / "examples" / "sft_hour_llava.py"), *arguments,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logs = [ast.literal_eval(line) for line in result.stdout.splitlines() if line.startswith("{'loss'")]
    assert len(logs) == 3 and all(float(log["loss"]) > 0 for log in logs)
    assert logs[-1]["skipped_rows"] == 1  # the missing image, counted across ranks
    assert "Skipping row 'lost': missing image" in result.stdout + result.stderr
