"""HourLlavaDataCollator: labels, MemAug query mask, agreement with the processor, and bad videos."""

import logging

import pytest
import torch
from training_helpers import QA, data_dir, processor, training_rows  # noqa: F401 (fixtures)

from hour_llava.training import HourLlavaDataCollator
from hour_llava.training.collator import UnusableRowError


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
