"""Stage presets: which parameters train, and the learning rate and weight decay of each optimizer group."""

from pathlib import Path

import pytest
from datasets import Dataset
from huggingface_hub import ModelCard
from trl import SFTConfig

from hour_llava.training import HourLlavaSFTTrainer, apply_training_stage, get_training_stage


REPO = Path(__file__).resolve().parents[1]
# Written out by hand (not through `parameter_part`) so the test checks the presets against the spec's table.
VISION, PROJECTOR, MEMAUG = "model.vision_tower.", "model.multi_modal_projector.", "model.memory_augmentation."
NEWLINE, LLM, LM_HEAD = "model.image_newline", "model.language_model.", "lm_head."


def trains(stage: str, name: str) -> bool:
    if stage == "stage1":
        return name.startswith(MEMAUG)
    if stage == "stage2":
        return True
    return not name.startswith(VISION)


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_stage_presets_freeze_exactly_the_right_parameters(tiny_model, stage):
    for parameter in tiny_model.parameters():
        parameter.requires_grad_(stage != "stage2")  # the preset must set both directions
    counts = apply_training_stage(tiny_model, stage)
    names = dict(tiny_model.named_parameters())
    assert {name for name, p in names.items() if p.requires_grad} == {name for name in names if trains(stage, name)}
    assert names[NEWLINE].requires_grad == (stage != "stage1")  # image_newline is the LLM's, as in the reference
    assert sum(counts.values()) == sum(p.numel() for p in names.values() if p.requires_grad)


def test_stage_names():
    assert get_training_stage(3) is get_training_stage("3") is get_training_stage("stage3")
    with pytest.raises(ValueError, match="Unknown training stage 'stage4'"):
        get_training_stage("stage4")


def make_trainer(model, tokenizer, output_dir, **kwargs):
    args = SFTConfig(
        output_dir=str(output_dir),
        learning_rate=2e-5,
        weight_decay=0.1,
        use_cpu=True,
        bf16=False,
        report_to="none",
    )
    dataset = Dataset.from_list([{"messages": [{"role": "user", "content": "hi"}]}])
    return HourLlavaSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=lambda rows: rows,
        **kwargs,
    )


def expected_rate(stage: str, name: str) -> float:
    if name.startswith((PROJECTOR, MEMAUG)):
        return 1e-4
    if name.startswith(VISION):
        return 5e-6 if stage == "stage2" else None
    return 2e-5 if stage != "stage1" else None


def decays(name: str) -> bool:
    no_decay = name.endswith(".bias") or "layer_norm" in name or "layernorm" in name or name.endswith("norm.weight")
    return not no_decay


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_optimizer_groups_carry_the_stage_rates(tiny_model, tokenizer, tmp_path, stage):
    trainer = make_trainer(tiny_model, tokenizer, tmp_path, stage=stage)
    optimizer = trainer.create_optimizer()
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    for name, parameter in trainer.model.named_parameters():
        rate = expected_rate(stage, name)
        if not trains(stage, name):
            assert id(parameter) not in group_of, name
            continue
        group = group_of[id(parameter)]
        assert group["lr"] == rate, name
        assert group["weight_decay"] == (0.1 if decays(name) else 0.0), name
    assert all(group["params"] for group in optimizer.param_groups)


def test_learning_rates_override_the_stage(tiny_model, tokenizer, tmp_path):
    trainer = make_trainer(tiny_model, tokenizer, tmp_path, stage="stage3", learning_rates={"projector": 3e-4})
    rates = {group["name"]: group["lr"] for group in trainer.create_optimizer().param_groups}
    assert rates["projector.decay"] == 3e-4 and rates["memory_augmentation.decay"] == 1e-4
    assert rates["language_model.decay"] == rates["language_model.no_decay"] == 2e-5


def test_model_card_is_tagged_video_text_to_text(tiny_model, tokenizer, tmp_path):
    trainer = make_trainer(tiny_model, tokenizer, tmp_path)
    trainer.create_model_card(model_name="hour-llava-sft", dataset_name="jylins/videomarathon")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.pipeline_tag == "video-text-to-text"
    assert {"hour-llava", "sft", "trl"} <= set(card.data.tags)
    assert card.data.datasets in ("jylins/videomarathon", ["jylins/videomarathon"])


@pytest.mark.parametrize("name", ["multi_gpu", "fsdp", "zero2", "zero3"])
def test_accelerate_configs_load_and_wrap_our_blocks(tiny_model, name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "examples" / "accelerate_configs" / f"{name}.yaml"))
    assert config.num_processes == 8 and config.mixed_precision == "bf16"
    if name == "fsdp":
        wrapped = set(config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","))
        assert wrapped == {"HourLlavaMemAugLayer", "Qwen2DecoderLayer", "SiglipEncoderLayer"}
        assert wrapped <= set(tiny_model._no_split_modules)
    if name.startswith("zero"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])
