"""HourLlavaModel / HourLlavaForConditionalGeneration behaviour on tiny configs built in-process."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
)

from hour_llava import HourLlavaConfig, HourLlavaForConditionalGeneration, HourLlavaModel, HourLlavaVideoOutput
from hour_llava.tiny import tiny_model as build_tiny_model


def video_sample(tokenizer, config, num_frames, question=" What colour is the ball?", seed=0):
    """Token ids for `<video x n> question` and a matching random video."""
    ids = tokenizer("Video: ")["input_ids"] + [config.video_token_id] * config.num_video_tokens(num_frames)
    ids += tokenizer(question)["input_ids"]
    pixels = torch.randn(num_frames, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return ids, pixels


def right_padded_batch(tokenizer, samples):
    """Collate `(ids, pixels | None)` samples: right-padded ids, concatenated frames, per-video frame counts."""
    length = max(len(ids) for ids, _ in samples)
    input_ids = torch.full((len(samples), length), tokenizer.pad_token_id)
    attention_mask = torch.zeros(len(samples), length, dtype=torch.long)
    for row, (ids, _) in enumerate(samples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    videos = [pixels for _, pixels in samples if pixels is not None]
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if videos:
        batch["pixel_values_videos"] = torch.cat(videos)
        batch["video_num_frames"] = torch.tensor([len(v) for v in videos])
    return batch


def with_labels(batch):
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    return {**batch, "labels": labels}


@pytest.fixture
def batch(tokenizer, tiny_model):
    """Two videos of different lengths and a text-only sample."""
    config = tiny_model.config
    return right_padded_batch(
        tokenizer,
        [
            video_sample(tokenizer, config, 20, seed=1),
            (tokenizer("Just text, no video here.")["input_ids"], None),
            video_sample(tokenizer, config, 70, question=" How many?", seed=2),
        ],
    )


def test_gradients_reach_every_trained_part(tiny_model, batch):
    model = tiny_model.train()
    model(**with_labels(batch)).loss.backward()
    parts = {
        "memaug": model.model.memory_augmentation,
        "projector": model.model.multi_modal_projector,
        "vision": model.model.vision_tower.encoder,
        "llm": model.model.language_model.layers,
        "lm_head": model.lm_head,
    }
    for name, module in parts.items():
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert model.model.image_newline.grad is not None and model.model.image_newline.grad.abs().sum() > 0
    # DDP requires every trainable parameter to take part in every step
    assert [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_loss_ignores_masked_labels(tiny_model, batch):
    labels = with_labels(batch)["labels"]
    labels[0, :10] = -100
    with torch.no_grad():
        out = tiny_model(**batch, labels=labels)
    logits, targets = out.logits[:, :-1], labels[:, 1:]
    kept = targets != -100
    expected = torch.nn.functional.cross_entropy(logits[kept], targets[kept])
    torch.testing.assert_close(out.loss, expected)
    unmasked = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["input_ids"][:, 1:].flatten())
    assert not torch.allclose(out.loss, unmasked)  # the masked positions would change it


def test_eval_forward_is_deterministic(tiny_model, batch):
    with torch.no_grad():
        first, second = tiny_model(**batch).logits, tiny_model(**batch).logits
    assert torch.equal(first, second)


def test_train_forward_is_reproducible_with_the_same_seed(tiny_model, batch):
    model = tiny_model.train()

    def loss_with_seed(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return model(**with_labels(batch)).loss

    assert torch.equal(loss_with_seed(0), loss_with_seed(0))
    assert not torch.equal(loss_with_seed(0), loss_with_seed(1))  # random spatial forgetting is really random

    def loss_with_generator(seed):
        with torch.no_grad():
            return model(**with_labels(batch), forgetting_generator=torch.Generator().manual_seed(seed)).loss

    torch.manual_seed(5)
    first = loss_with_generator(7)
    torch.manual_seed(6)  # the global seed no longer matters
    assert torch.equal(first, loss_with_generator(7))


def test_uniform_sampling_type_is_deterministic_in_training(tokenizer, batch):
    model = build_tiny_model(tokenizer, spatial_sampling_type="uniform").train()
    with torch.no_grad():
        torch.manual_seed(0)
        first = model(**batch).logits
        torch.manual_seed(1)
        assert torch.equal(first, model(**batch).logits)


def test_mixed_batch_matches_each_sample_alone(tokenizer, tiny_model):
    config = tiny_model.config
    samples = [
        video_sample(tokenizer, config, 20, seed=1),
        (tokenizer("Just text, no video here.")["input_ids"], None),
        video_sample(tokenizer, config, 70, question=" How many?", seed=2),
    ]
    with torch.no_grad():
        batched = tiny_model(**right_padded_batch(tokenizer, samples)).logits
        for row, sample in enumerate(samples):
            alone = tiny_model(**right_padded_batch(tokenizer, [sample])).logits[0]
            torch.testing.assert_close(batched[row, : alone.shape[0]], alone, atol=1e-5, rtol=1e-5)


def test_video_inputs_in_other_forms_give_the_same_logits(tokenizer, tiny_model):
    config = tiny_model.config
    ids, pixels = video_sample(tokenizer, config, 24)
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        reference = tiny_model(input_ids=input_ids, pixel_values_videos=pixels).logits
        five_d = tiny_model(input_ids=input_ids, pixel_values_videos=pixels[None]).logits
        chunked = tiny_model.model.get_video_features(pixels, vision_chunk_size=5)
        whole = tiny_model.model.get_video_features(pixels, vision_chunk_size=100)
        from_cache = tiny_model(input_ids=input_ids, pooled_video_features=whole.last_hidden_state).logits
        from_embeds = tiny_model(
            inputs_embeds=tiny_model.get_input_embeddings()(input_ids), pixel_values_videos=pixels
        ).logits
    torch.testing.assert_close(five_d, reference)
    torch.testing.assert_close(chunked.last_hidden_state, whole.last_hidden_state, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(from_cache, reference)
    torch.testing.assert_close(from_embeds, reference)


def test_memaug_query_mask_selects_the_text_in_the_query(tokenizer, tiny_model):
    config = tiny_model.config
    ids, pixels = video_sample(tokenizer, config, 16)
    input_ids = torch.tensor([ids])
    query_lengths = []
    tiny_model.model.memory_augmentation.register_forward_pre_hook(
        lambda module, args: query_lengths.append(args[0].shape[1])
    )
    mask = torch.ones_like(input_ids)
    mask[0, :3] = 0
    with torch.no_grad():
        masked = tiny_model(input_ids=input_ids, pixel_values_videos=pixels, memaug_query_mask=mask).logits
        unmasked = tiny_model(input_ids=input_ids, pixel_values_videos=pixels).logits
    num_video = config.num_video_tokens(16)
    assert query_lengths == [len(ids) - 3, len(ids)]  # masked text left out, video rows always in
    assert query_lengths[1] - num_video == len(ids) - num_video  # all text joins without a mask
    assert not torch.allclose(masked, unmasked)


def test_placeholder_mismatch_names_both_numbers(tokenizer, tiny_model):
    config = tiny_model.config
    ids, pixels = video_sample(tokenizer, config, 20)
    expected = config.num_video_tokens(20)
    short = [i for i in ids]
    short.remove(config.video_token_id)
    with pytest.raises(ValueError, match=rf"{expected - 1} video placeholder tokens.*20 frames yields {expected}"):
        tiny_model(input_ids=torch.tensor([short]), pixel_values_videos=pixels)
    with pytest.raises(ValueError, match="1 samples with video placeholder tokens but 2 videos"):
        tiny_model(
            input_ids=torch.tensor([ids]),
            pixel_values_videos=torch.cat([pixels, pixels]),
            video_num_frames=torch.tensor([20, 20]),
        )
    with pytest.raises(ValueError, match="does not split the 20 frames"):
        tiny_model(input_ids=torch.tensor([ids]), pixel_values_videos=pixels, video_num_frames=torch.tensor([19]))


class CallCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, *args, **kwargs):
        self.count += 1


def test_generation_builds_the_memory_once(tokenizer, tiny_model):
    config = tiny_model.config
    ids, pixels = video_sample(tokenizer, config, 30)
    inputs = {"input_ids": torch.tensor([ids]), "pixel_values_videos": pixels, "video_num_frames": torch.tensor([30])}
    vision_calls, memaug_calls = CallCounter(), CallCounter()
    tiny_model.model.vision_tower.encoder.register_forward_hook(vision_calls)
    tiny_model.model.memory_augmentation.register_forward_hook(memaug_calls)
    llm_lengths = []
    tiny_model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: llm_lengths.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    with torch.no_grad():
        generated = tiny_model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert generated.shape[1] == len(ids) + 5
    assert vision_calls.count == 2  # 30 frames in chunks of 16, once
    assert memaug_calls.count == 1
    assert llm_lengths == [len(ids), 1, 1, 1, 1]

    with torch.no_grad():  # without a cache every step recomputes the memory, with the same answer
        uncached = tiny_model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(generated, uncached)


def test_beam_search_repeats_each_video_with_its_sample(tokenizer, tiny_model):
    config = tiny_model.config
    batch = right_padded_batch(
        tokenizer, [video_sample(tokenizer, config, 18, seed=1), video_sample(tokenizer, config, 40, seed=2)]
    )
    with torch.no_grad():
        beams = tiny_model.generate(**batch, max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False)
    assert beams.shape[0] == 4


def test_save_and_load_are_bit_exact(tmp_path, tokenizer, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    saved = load_file(tmp_path / "model.safetensors")
    assert "model.memory_augmentation.layers.0.cross_attn.kv_proj.weight" in saved
    loaded = HourLlavaForConditionalGeneration.from_pretrained(tmp_path)
    original_state, loaded_state = tiny_model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for key, tensor in original_state.items():
        assert torch.equal(tensor, loaded_state[key]), key
    original_config, loaded_config = tiny_model.config.to_dict(), loaded.config.to_dict()
    for config in (original_config, loaded_config):
        config.pop("_name_or_path")
        config["text_config"].pop("dtype"), config["vision_config"].pop("dtype")  # filled in at save time
    assert loaded_config == original_config


def test_tied_embeddings_are_saved_once(tmp_path, tokenizer):
    model = build_tiny_model(tokenizer, text_config={"tie_word_embeddings": True})
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    model.save_pretrained(tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    loaded = HourLlavaForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_auto_classes(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), HourLlavaConfig)
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is HourLlavaModel
    for auto_class in (AutoModelForImageTextToText, AutoModelForMultimodalLM):
        model = auto_class.from_pretrained(tmp_path)
        assert type(model) is HourLlavaForConditionalGeneration
    for key, tensor in tiny_model.model.state_dict().items():
        assert torch.equal(tensor, base.state_dict()[key]), key


def test_gradient_checkpointing_gives_the_same_gradients(tokenizer, batch):
    def gradients(checkpointing):
        model = build_tiny_model(tokenizer, spatial_sampling_type="uniform").train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model(**with_labels(batch)).loss.backward()
        return model, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    model, checkpointed = gradients(True)
    flagged = {type(m).__name__ for m in model.modules() if getattr(m, "gradient_checkpointing", False)}
    assert {"HourLlavaMemAugLayer", "SiglipEncoderLayer", "Qwen2DecoderLayer"} <= flagged
    _, plain = gradients(False)
    assert checkpointed.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-4, msg=name)


def test_text_only_training_keeps_video_parameters_in_the_graph(tokenizer, tiny_model):
    model = tiny_model.train()
    batch = right_padded_batch(tokenizer, [(tokenizer("Only words.")["input_ids"], None)])
    model(**with_labels(batch)).loss.backward()
    for module in (model.model.memory_augmentation, model.model.multi_modal_projector, model.model.vision_tower):
        assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in module.parameters())
    assert model.model.image_newline.grad is not None
    assert [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_memaug_depth_zero_feeds_the_decayed_tokens_to_the_llm(tokenizer):
    model = build_tiny_model(tokenizer, memaug_depth=0)
    config = model.config
    ids, pixels = video_sample(tokenizer, config, 24)
    input_ids = torch.tensor([ids])
    captured = []
    model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(kwargs["inputs_embeds"]), with_kwargs=True
    )
    with torch.no_grad():
        model(input_ids=input_ids, pixel_values_videos=pixels)
        memory = model.model.build_video_memory(model.model.get_video_features(pixels).pooler_output)
    video_rows = captured[0][0][input_ids[0] == config.video_token_id]
    torch.testing.assert_close(video_rows, memory.decayed)
    assert not list(model.model.memory_augmentation.parameters())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # the text model's own heads are named as the cause, not MemAug's (which default to them)
        ({"text_config": {"hidden_size": 30, "num_attention_heads": 4}},
         r"text_config.hidden_size=30 is not divisible by text_config.num_attention_heads=4"),
        ({"text_config": {"hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 5}},
         r"text_config.num_attention_heads=28 is not a multiple of text_config.num_key_value_heads=5"),
        ({"vision_config": {"num_hidden_layers": 1, "hidden_size": 30, "num_attention_heads": 4}},
         r"vision_config.hidden_size=30 is not divisible by vision_config.num_attention_heads=4"),
        ({"memaug_num_attention_heads": 5}, "not divisible by memaug_num_attention_heads=5"),
        ({"memaug_num_attention_heads": 7, "memaug_num_key_value_heads": 2}, "not a multiple of"),
        ({"spatial_keep_tokens": 5}, "spatial_keep_tokens=5 must be a square"),
        ({"spatial_sampling_type": "gaussian"}, "spatial_sampling_type='gaussian'"),
        ({"memory_position_mode": "shifted"}, "memory_position_mode='shifted'"),
        ({"memaug_partial_rotary_factor": 0.1}, "memaug_partial_rotary_factor=0.1"),
        ({"video_pool_size": 40}, "video_pool_size=40 is larger"),
        # sizes: every one positive, whatever else happens to pass with it (-2 squares to a valid grid)
        ({"video_pool_size": -2}, r"video_pool_size=-2 \(int\) must be a positive integer"),
        ({"spatial_keep_tokens": 0}, "spatial_keep_tokens=0 .* must be a positive integer"),
        ({"max_kept_frames": 0}, "max_kept_frames=0 .* must be a positive integer"),
        ({"vision_chunk_size": -1}, "vision_chunk_size=-1 .* must be a positive integer"),
        ({"memaug_intermediate_size": 0}, "memaug_intermediate_size=0 .* must be a positive integer"),
        ({"memaug_layer_norm_eps": 0.0}, "memaug_layer_norm_eps=0.0 .* must be a positive number"),
        ({"memaug_depth": -1}, "memaug_depth=-1 .* must be a non-negative integer"),
        ({"temporal_downsample": 0}, "temporal_downsample=0 .* must be a positive integer"),
        # types: what a hand-edited config.json holds
        ({"min_video_frames": "128"}, r"min_video_frames='128' \(str\) must be a non-negative integer"),
        ({"temporal_downsample": 4.0}, r"temporal_downsample=4.0 \(float\) must be a positive integer"),
        ({"max_kept_frames": True}, r"max_kept_frames=True \(bool\) must be a positive integer"),
        ({"video_token_id": None}, r"video_token_id=None \(NoneType\) must be a non-negative integer"),
        ({"memaug_rope_theta": "1e6"}, r"memaug_rope_theta='1e6' \(str\) must be a positive number"),
        ({"use_cache": "yes"}, "use_cache='yes' must be true or false"),
        # images
        ({"image_token_id": "151648"}, r"image_token_id='151648' \(str\) must be a non-negative integer"),
        ({"image_token_id": 151647}, "image_token_id=151647 equals video_token_id"),
        ({"vision_aspect_ratio": "anyres"}, "vision_aspect_ratio='anyres' must be 'anyres_max_<n>'"),
        ({"vision_aspect_ratio": "anyres_max_0"}, "vision_aspect_ratio='anyres_max_0'"),
        ({"image_grid_pinpoints": [[224, 300]]},
         r"image_grid_pinpoints=\[\[224, 300\]\] must be .* multiple of .* 224"),
        ({"image_grid_pinpoints": []}, r"image_grid_pinpoints=\[\] must be a non-empty list"),
        ({"image_grid_pinpoints": [[224]]}, r"image_grid_pinpoints=\[\[224\]\]"),
    ],
)
def test_config_validation(overrides, message):
    overrides = {"vision_config": {"num_hidden_layers": 1}, **overrides}
    with pytest.raises(ValueError, match=message):
        HourLlavaConfig(**overrides)


def test_a_bad_value_in_config_json_is_named_when_loading(tmp_path):
    HourLlavaConfig(vision_config={"num_hidden_layers": 1}).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "min_video_frames": "128"}))
    with pytest.raises(ValueError, match="min_video_frames='128'"):
        HourLlavaConfig.from_pretrained(tmp_path)


def test_use_cache_is_on_the_top_level_config():
    config = HourLlavaConfig(vision_config={"num_hidden_layers": 1}, use_cache=False)
    assert config.use_cache is False and HourLlavaConfig(vision_config={"num_hidden_layers": 1}).use_cache is True
    assert HourLlavaConfig.from_dict(config.to_dict()).use_cache is False


def test_config_defaults_follow_the_released_checkpoints():
    config = HourLlavaConfig()
    assert config.vision_config.num_hidden_layers == 26 and config.vision_config.image_size == 384
    assert config.text_config.hidden_size == 3584 and config.memaug_num_key_value_heads == 4
    assert config.memaug_rope_theta == 1e6 and config.memaug_rotary_dim == 64
    assert config.num_video_tokens(3600) == 8704
    restored = HourLlavaConfig.from_dict(config.to_dict())
    assert restored.memaug_rope_theta == config.memaug_rope_theta
    # images: `<image>` right after `<video>`; 27x27 tokens per crop; tiles on grids 1x1 ... 6x6 of 384, at most ~9
    assert config.image_token_id == config.video_token_id + 1 == 151648
    assert config.image_grid_size == 27 and config.max_image_tiles == 9
    assert len(config.image_grid_pinpoints) == 36 and config.image_grid_pinpoints[:2] == [[384, 384], [384, 768]]
    assert config.image_grid_pinpoints[-1] == [2304, 2304] and restored.image_token_id == 151648
    assert HourLlavaConfig(video_token_id=7, vision_config={"num_hidden_layers": 1}).image_token_id == 8


# ----------------------------------------------------------------------------------------------------------------------
# get_video_features and video_outputs, as transformers' API has them
# ----------------------------------------------------------------------------------------------------------------------
def test_get_video_features_returns_the_vision_towers_hidden_states_and_attentions(tiny_model):
    tiny_model.set_attn_implementation("eager")
    pixels = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tower = tiny_model.model.vision_tower
    with torch.no_grad():
        expected = tower(pixels, output_hidden_states=True, output_attentions=True)
        chunked = tiny_model.get_video_features(
            pixels, vision_chunk_size=3, output_hidden_states=True, output_attentions=True
        )
        plain = tiny_model.get_video_features(pixels)
    num_layers = tiny_model.config.vision_config.num_hidden_layers
    assert len(chunked.hidden_states) == num_layers + 1 and len(chunked.attentions) == num_layers
    for ours, theirs in zip(chunked.hidden_states + chunked.attentions, expected.hidden_states + expected.attentions):
        torch.testing.assert_close(ours, theirs)  # every frame, chunks joined in order
    assert chunked.attentions[0].shape == (7, 2, 64, 64)
    assert plain.hidden_states is None and plain.attentions is None
    torch.testing.assert_close(chunked.last_hidden_state, plain.last_hidden_state)


def test_get_video_features_returns_a_tuple_without_return_dict(tiny_model):
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        as_tuple = tiny_model.get_video_features(pixels, return_dict=False)
        as_output = tiny_model.model.get_video_features(pixels)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    torch.testing.assert_close(as_tuple[0], as_output.last_hidden_state)
    torch.testing.assert_close(as_tuple[1], as_output.pooler_output)
    with torch.no_grad():
        five_d = tiny_model.get_video_features(pixels.view(2, 2, 3, 32, 32))
    torch.testing.assert_close(five_d.pooler_output, as_output.pooler_output)


def test_forward_video_outputs_carry_the_vision_towers_outputs(tokenizer, tiny_model, batch):
    tiny_model.set_attn_implementation("eager")
    with torch.no_grad():
        outputs = tiny_model(**batch, output_hidden_states=True, output_attentions=True)
        tower = tiny_model.model.vision_tower(batch["pixel_values_videos"], output_attentions=True)
    video_outputs = outputs.video_outputs
    assert isinstance(video_outputs, HourLlavaVideoOutput)
    assert len(video_outputs.hidden_states) == tiny_model.config.vision_config.num_hidden_layers + 1
    torch.testing.assert_close(video_outputs.attentions[-1], tower.attentions[-1])
    assert len(outputs.attentions) == tiny_model.config.text_config.num_hidden_layers  # the language model's


def test_forward_returns_a_tuple_without_return_dict(tiny_model, batch):
    with torch.no_grad():
        as_tuple = tiny_model(**batch, return_dict=False)
        as_output = tiny_model(**batch)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_output.logits)


def test_forward_kwargs_are_typed_as_transformers_kwargs():
    import inspect

    from transformers.utils import TransformersKwargs

    for cls in (HourLlavaModel, HourLlavaForConditionalGeneration):
        for method in (cls.forward, cls.get_video_features):
            annotation = inspect.signature(method).parameters["kwargs"].annotation
            assert TransformersKwargs in getattr(annotation, "__args__", ()), (cls.__name__, method.__name__)


# ----------------------------------------------------------------------------------------------------------------------
# What forgetting kept and where MemAug looked
# ----------------------------------------------------------------------------------------------------------------------
def test_video_outputs_report_the_frames_forgetting_kept(tiny_model, batch):
    """20 frames (above min_video_frames=16) and 70 frames; and a 6-frame video that is upsampled first."""
    with torch.no_grad():
        outputs = tiny_model(**batch)
    kept = outputs.video_outputs.kept_frame_indices
    config = tiny_model.config
    assert [k.tolist() for k in kept] == [config.kept_frame_indices(20), config.kept_frame_indices(70)]
    assert kept[0].tolist() == [0, 4, 9, 14, 19] and len(kept[1]) == 70 // 4
    # the video rows the language model gets are exactly those frames' tokens
    pixels = batch["pixel_values_videos"][:20]
    with torch.no_grad():
        frame_tokens = tiny_model.model.get_video_features(pixels).pooler_output
    spatial = [0, 2, 8, 10]  # the uniform [::2, ::2] grid of 4x4 tokens
    for position, frame in enumerate(kept[0].tolist()):
        memory = tiny_model.model.build_video_memory(frame_tokens)
        torch.testing.assert_close(memory.decayed[position * 5 : position * 5 + 4], frame_tokens[frame, spatial])


def test_kept_frames_of_an_upsampled_video_are_its_own_frames(tokenizer, tiny_model):
    ids, pixels = video_sample(tokenizer, tiny_model.config, 6)
    with torch.no_grad():
        outputs = tiny_model(input_ids=torch.tensor([ids]), pixel_values_videos=pixels)
    kept = outputs.video_outputs.kept_frame_indices[0]
    assert kept.tolist() == tiny_model.config.kept_frame_indices(6) == [0, 1, 3, 5]  # 4 of 16 upsampled frames


def captured_cross_attention(model, inputs: dict) -> list[torch.Tensor]:
    """Each MemAug block's cross-attention weights, read with forward hooks (independently of the model's report)."""
    captured = []
    hooks = [
        layer.cross_attn.register_forward_hook(lambda module, args, output: captured.append(output[1]))
        for layer in model.model.memory_augmentation.layers
    ]
    try:
        with torch.no_grad():
            outputs = model(**inputs, output_attentions=True)
    finally:
        for hook in hooks:
            hook.remove()
    return captured, outputs


@pytest.mark.parametrize("num_frames", [6, 20])
def test_memory_attention_is_memaugs_cross_attention_per_decoded_frame(tokenizer, tiny_model, num_frames):
    tiny_model.set_attn_implementation("eager")
    config = tiny_model.config
    ids, pixels = video_sample(tokenizer, config, num_frames)
    inputs = {"input_ids": torch.tensor([ids]), "pixel_values_videos": pixels}
    captured, outputs = captured_cross_attention(tiny_model, inputs)
    [attention] = outputs.video_outputs.memory_attention
    assert attention.shape == (num_frames,)
    torch.testing.assert_close(attention.sum(), torch.tensor(1.0))

    # by hand: the decayed-video query rows (after the text before the video), averaged, summed per memory frame,
    # then upsampled copies added onto the frame they copy
    num_before = ids.index(config.video_token_id)
    num_video = config.num_video_tokens(num_frames)
    rows = torch.stack([w[0, :, num_before : num_before + num_video] for w in captured]).float().mean(dim=(0, 1, 2))
    per_memory_frame = rows.view(-1, config.memory_tokens_per_frame).sum(-1)
    source = torch.linspace(0, num_frames - 1, max(num_frames, config.min_video_frames)).long()
    if num_frames >= config.min_video_frames:
        source = torch.arange(num_frames)
    expected = torch.zeros(num_frames).index_add_(0, source, per_memory_frame)
    torch.testing.assert_close(attention, expected)


def test_memory_attention_only_when_asked_for(tiny_model, batch):
    with torch.no_grad():
        outputs = tiny_model(**batch)
    assert outputs.video_outputs.memory_attention is None
    tiny_model.set_attn_implementation("eager")
    with torch.no_grad():
        outputs = tiny_model(**batch, output_attentions=True)
    assert [a.shape for a in outputs.video_outputs.memory_attention] == [(20,), (70,)]


# ----------------------------------------------------------------------------------------------------------------------
# Initialisation of weights a checkpoint lacks
# ----------------------------------------------------------------------------------------------------------------------
def test_missing_vision_tower_weights_get_siglips_own_init(tiny_model, tmp_path):
    """As `SiglipVisionModel` initialised alone from the same seed: xavier attention/MLP, lecun patch embedding."""
    from safetensors.torch import save_file
    from transformers import SiglipVisionModel
    from transformers import initialization as init

    tiny_model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".vision_tower." not in k}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    torch.manual_seed(3)
    loaded = HourLlavaForConditionalGeneration.from_pretrained(tmp_path).model.vision_tower.state_dict()

    with init.no_init_weights():  # construct without drawing, then draw exactly as loading does
        alone = SiglipVisionModel(tiny_model.config.vision_config)
    torch.manual_seed(3)
    alone.initialize_weights()
    expected = alone.state_dict()
    different = [key for key, value in loaded.items() if not torch.equal(value, expected[key])]
    assert not different
    # and the loaded weights that were in the checkpoint are untouched
    reloaded = HourLlavaForConditionalGeneration.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.lm_head.weight, tiny_model.lm_head.weight)


def test_sub_configs_are_built_as_older_transformers_need():
    """transformers 5.16-5.19 (vLLM's pins) lack `SubConfigSpec`; the config then builds its sub-configs itself.

    The same code path runs here on a config whose sub-configs were reset to what 5.19 hands `__post_init__`.
    (Checked by hand against the transformers 5.19.0 wheel: defaults, dicts, save and reload, validation.)
    """
    config = HourLlavaConfig(vision_config={"num_hidden_layers": 1})
    config.vision_config, config.text_config = None, {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4}
    config._build_sub_configs()
    assert type(config.vision_config).__name__ == "SiglipVisionConfig" and config.vision_config.image_size == 384
    assert type(config.text_config).__name__ == "Qwen2Config" and config.text_config.hidden_size == 64
