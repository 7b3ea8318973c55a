"""HourLlavaDataCollator: labels, MemAug query mask, agreement with the processor, bad videos and images, image and
text-only rows."""

import logging
import os

import pytest
import torch
from datasets import Dataset
from PIL import Image
from training_helpers import QA, data_dir, processor, training_rows  # noqa: F401 (fixtures)

from hour_llava.training import HourLlavaDataCollator
from hour_llava.training.collator import UnusableRowError, concatenated_image_inputs, row_generator


def rows(data_dir, name="good.json"):
    return training_rows(data_dir, name)


def test_labels_supervise_exactly_every_assistant_answer(data_dir, processor, tokenizer):
    batch = HourLlavaDataCollator(processor)(rows(data_dir))
    for index, pairs in enumerate(QA.values()):
        ids, labels = batch["input_ids"][index], batch["labels"][index]
        supervised = labels != -100
        assert torch.equal(labels[supervised], ids[supervised])
        expected = [t for _, answer in pairs for t in tokenizer(answer + "<|im_end|>")["input_ids"]]
        assert ids[supervised].tolist() == expected  # each answer and its <|im_end|>, nothing else
        query = batch["memaug_query_mask"][index].bool()
        assert not (query & supervised).any()
        query_text = tokenizer.decode(ids[query])
        for question, answer in pairs:
            assert question in query_text and answer not in query_text
        assert query_text.count("assistant") == 1  # "You are a helpful assistant.": no assistant turn header
        assert query_text.startswith("systemYou are a helpful assistant.userThe video lasts for")


def test_collator_matches_the_processor(data_dir, processor):
    row = rows(data_dir)[0]
    batch = HourLlavaDataCollator(processor)([row])
    messages = [
        {"role": m["role"], "content": [{k: v for k, v in c.items() if v is not None} for c in m["content"]]}
        for m in row["messages"]
    ]
    messages[0]["content"][0]["path"] = row["video_path"]  # the processor decodes it itself
    expected = processor.apply_chat_template(
        [messages], tokenize=True, return_dict=True, return_tensors="pt", return_assistant_tokens_mask=True
    )
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["memaug_query_mask"], expected["memaug_query_mask"])
    assert torch.equal(batch["labels"] != -100, expected["assistant_masks"].bool())
    assert torch.equal(batch["pixel_values_videos"], expected["pixel_values_videos"])
    assert batch["video_num_frames"].tolist() == expected["video_num_frames"].tolist() == [12]


def test_collator_skips_missing_and_corrupt_videos(data_dir, processor, caplog):
    collator = HourLlavaDataCollator(processor)
    good, bad = rows(data_dir), rows(data_dir, "bad.json")
    with caplog.at_level(logging.WARNING, logger="hour_llava.training.collator"):
        batch = collator([bad[0], good[0], bad[1], good[1]])
    assert batch["input_ids"].shape[0] == 2 and batch["video_num_frames"].tolist() == [12, 16]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert "row 'missing': missing video" in warnings[0] and "row 'corrupt': unreadable video" in warnings[1]
    assert collator.skipped_rows == {"missing video": 1, "unreadable video": 1}

    empty = collator(bad)
    assert (empty["labels"] == -100).all() and "pixel_values_videos" not in empty
    assert sum(collator.skipped_rows.values()) == 4
    with pytest.raises(UnusableRowError, match="row 'corrupt': unreadable video"):
        HourLlavaDataCollator(processor, on_bad_video="raise")([good[0], bad[1]])
    with pytest.raises(UnusableRowError, match="longer than max_length"):
        HourLlavaDataCollator(processor, max_length=50, on_bad_video="raise")([good[0]])




def test_cached_features_with_nan_or_damage_are_skipped_and_named(data_dir, tiny_model, processor, tmp_path, caplog):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from hour_llava.training import StreamingVideoEncoder, extract_video_features, feature_cache_path

    good = rows(data_dir)
    encoder = StreamingVideoEncoder(processor, tiny_model)
    extract_video_features({row["video"]: row["video_path"] for row in good}, tmp_path, encoder, "fp")
    red, blue = (feature_cache_path(tmp_path, row["video"]) for row in good)
    with safe_open(str(red), "pt") as handle:  # a NaN in a file without a checksum, as older writers left them
        header = handle.metadata()
    tensors = load_file(red)
    tensors["pooled_video_features"][0, 0, 0] = float("nan")
    save_file(tensors, red, metadata={key: value for key, value in header.items() if key != "checksum"})
    data = bytearray(blue.read_bytes())
    data[-8] ^= 0x40  # a flipped bit in a file with a checksum
    blue.write_bytes(bytes(data))

    collator = HourLlavaDataCollator(processor, feature_cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="hour_llava.training.collator"):
        batch = collator(good)
    assert (batch["labels"] == -100).all() and "pooled_video_features" not in batch
    warnings = [record.getMessage() for record in caplog.records]
    assert "row 'red': non-finite cached features" in warnings[0] and str(red) in warnings[0]
    assert "row 'blue': unreadable cached features" in warnings[1] and "is damaged" in warnings[1]


# ---------------------------------------------------------------------------------------------------------------
# Image and text-only rows
# ---------------------------------------------------------------------------------------------------------------
def image_row(row_id: str, paths: list, question: str = "What is it?") -> dict:
    """A training row as the loader makes it for an image sample (image blocks first in its question)."""
    images = [{"type": "image", "text": None} for _ in paths]
    return {
        "id": row_id,
        "messages": [
            {"role": "user", "content": [*images, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A thing."}]},
        ],
        "video": None,
        "video_path": None,
        "images": [os.path.basename(str(path)) for path in paths],
        "image_paths": [str(path) for path in paths],
    }


def text_row(row_id: str = "text") -> dict:
    return image_row(row_id, [], question="Say hi.")


def test_missing_and_unreadable_images_are_skipped_and_named(data_dir, processor, tmp_path, caplog):
    good_image = tmp_path / "good.png"
    Image.new("RGB", (40, 24), "red").save(good_image)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good_image.read_bytes()[:60])
    (tmp_path / "noise.jpg").write_bytes(os.urandom(512))
    bad = [
        image_row("gone", [tmp_path / "gone.jpg"]),
        image_row("noise", [good_image, tmp_path / "noise.jpg"]),
        image_row("cut", [truncated]),
    ]
    collator = HourLlavaDataCollator(processor)
    with caplog.at_level(logging.WARNING, logger="hour_llava.training.collator"):
        batch = collator([*bad, text_row()])  # the text-only row stays
    assert batch["input_ids"].shape[0] == 1 and "pixel_values" not in batch and "batch_num_images" not in batch
    warnings = [record.getMessage() for record in caplog.records]
    assert f"row 'gone': missing image (no file at {tmp_path / 'gone.jpg'})" in warnings[0]
    assert "row 'noise': unreadable image" in warnings[1] and "noise.jpg" in warnings[1]
    assert "row 'cut': unreadable image" in warnings[2] and "truncated.png" in warnings[2]
    assert collator.skipped_rows == {"missing image": 1, "unreadable image": 2}
    with pytest.raises(UnusableRowError, match="row 'gone': missing image"):
        HourLlavaDataCollator(processor, on_bad_video="raise")([bad[0]])


def test_text_only_rows_mix_with_video_rows(data_dir, processor, tokenizer):
    video_rows = rows(data_dir)
    batch = HourLlavaDataCollator(processor)([text_row(), video_rows[0]])
    assert batch["video_num_frames"].tolist() == [12]  # the video row's frames only
    text_ids = batch["input_ids"][0][batch["attention_mask"][0].bool()]
    assert tokenizer.decode(text_ids).endswith("Say hi.<|im_end|>\n<|im_start|>assistant\nA thing.<|im_end|>\n")
    assert tokenizer.convert_tokens_to_ids("<video>") not in text_ids.tolist()


def test_row_generator_is_seeded_by_the_training_seed_and_the_row():
    def draw(seed, row_id):
        return torch.rand(8, generator=row_generator(seed, row_id))

    assert torch.equal(draw(42, "a"), draw(42, "a"))  # any worker, rank or resume draws the same
    assert not torch.equal(draw(42, "a"), draw(42, "b"))
    assert not torch.equal(draw(42, "a"), draw(43, "a"))


def test_image_inputs_of_rows_are_concatenated_with_per_row_counts():
    def inputs(num_images, crops, kept):
        return {
            "pixel_values": torch.full((crops, 3, 2, 2), float(num_images)),
            "image_num_crops": torch.tensor([crops // num_images] * num_images),
            "image_sizes": torch.tensor([[5, 7]] * num_images),
            "image_kept_indices": torch.arange(kept),
            "image_kept_lengths": torch.tensor([[kept, 0]] * num_images),
        }

    batch = concatenated_image_inputs([inputs(1, 3, 4), None, inputs(2, 2, 6), None])
    assert batch["batch_num_images"].tolist() == [1, 0, 2, 0]  # video and text rows count no images
    assert batch["pixel_values"].shape == (5, 3, 2, 2) and batch["image_num_crops"].tolist() == [3, 1, 1]
    assert batch["image_sizes"].shape == (3, 2) and batch["image_kept_lengths"].shape == (3, 2)
    assert batch["image_kept_indices"].tolist() == list(range(4)) + list(range(6))


def test_trainer_gives_the_collator_the_config_forgetting_and_the_seed(tiny_model, processor, tmp_path):
    from trl import SFTConfig

    from hour_llava.training import HourLlavaSFTTrainer

    assert tiny_model.config.spatial_sampling_type == "random"
    args = SFTConfig(tmp_path, seed=7, report_to=[], use_cpu=True)
    dataset = Dataset.from_list([text_row()])
    trainer = HourLlavaSFTTrainer(model=tiny_model, args=args, train_dataset=dataset, processing_class=processor)
    assert trainer.data_collator.image_forgetting == "random" and trainer.data_collator.seed == 7
    chosen = HourLlavaDataCollator(processor, image_forgetting="uniform", seed=1)
    trainer = HourLlavaSFTTrainer(
        model=tiny_model, args=args, train_dataset=dataset, processing_class=processor, data_collator=chosen
    )
    assert chosen.image_forgetting == "uniform" and chosen.seed == 1


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    Image.new("RGB", (70, 40), "red").save(folder / "wide.png")
    Image.new("L", (30, 50), 200).save(folder / "tall_grey.png")
    return folder


def test_image_rows_match_the_processor_and_carry_the_seeded_draw(processor, image_files):
    row = image_row("single", [image_files / "wide.png"])
    batch = HourLlavaDataCollator(processor, image_forgetting="random", seed=3)([row])
    messages = [
        {"role": m["role"], "content": [{k: v for k, v in c.items() if v is not None} for c in m["content"]]}
        for m in row["messages"]
    ]
    messages[0]["content"][0]["path"] = row["image_paths"][0]
    expected = processor.apply_chat_template(
        [messages], tokenize=True, return_dict=True, return_tensors="pt", image_forgetting="random",
        generator=row_generator(3, "single"),
    )  # fmt: skip
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    for key in ("pixel_values", "image_num_crops", "image_sizes", "image_kept_indices", "image_kept_lengths"):
        assert torch.equal(batch[key], expected[key]), key
    assert batch["batch_num_images"].tolist() == [1]
    again = HourLlavaDataCollator(processor, image_forgetting="random", seed=4)([row])
    assert not torch.equal(again["image_kept_indices"], batch["image_kept_indices"])  # the seed decides the draw

    uniform = HourLlavaDataCollator(processor)([row])  # no draw: the model forgets [::2, ::2]
    assert "image_kept_indices" not in uniform and torch.equal(uniform["pixel_values"], batch["pixel_values"])


def test_a_mixed_batch_trains_with_random_image_forgetting(data_dir, processor, tiny_model, image_files, tokenizer):
    rows_ = [
        image_row("single", [image_files / "wide.png"]),
        image_row("multi", [image_files / "wide.png", image_files / "tall_grey.png"]),
        text_row(),
        rows(data_dir)[0],
    ]
    assert tiny_model.config.spatial_sampling_type == "random"
    batch = HourLlavaDataCollator(processor, image_forgetting="random", seed=0)(rows_)
    assert batch["batch_num_images"].tolist() == [1, 2, 0, 0] and batch["video_num_frames"].tolist() == [12]
    assert batch["image_kept_lengths"][1:, 1].tolist() == [0, 0]  # multi-image: base runs only
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    per_row = (batch["input_ids"] == image_token).sum(dim=1).tolist()
    kept = batch["image_kept_lengths"].sum(dim=1).tolist()
    assert per_row[1] == kept[1] + kept[2] + 2 and per_row[2:] == [0, 0]  # each multi-image image: kept + newline
    tiny_model.train()  # the model checks every placeholder count against the tokens it makes
    loss = tiny_model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in tiny_model.model.memory_augmentation.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
