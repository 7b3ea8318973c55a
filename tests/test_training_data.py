"""VideoMarathon / LLaVA-Video instruction files and QA tables -> chat rows for the collator."""

import json
import logging
import re

import pandas as pd
import pytest
from datasets import Dataset, IterableDataset
from training_helpers import instruction_sample, write_json

from hour_llava.training import (
    BadSampleError,
    ImageRoots,
    QATableFormat,
    VideoPathError,
    VideoRoots,
    group_qa_rows,
    load_video_instruction_dataset,
)
from hour_llava.training.data import CONVERSION_BATCH_SIZE


def texts(message):
    return [item["text"] for item in message["content"] if item["type"] == "text"]


@pytest.fixture
def roots(tmp_path):
    return VideoRoots(root=str(tmp_path / "videos"))


@pytest.fixture
def image_roots(tmp_path):
    return ImageRoots(root=str(tmp_path / "images"))


def test_instruction_json_becomes_chat_rows(tmp_path, roots):
    qa_pairs = [("What runs? QA_GT_caption_based_noisy", "A dog."), ("Then?", "It naps.")]
    sample = instruction_sample("s1", "clip.mp4", qa_pairs)
    path = write_json(tmp_path / "videomarathon.json", [sample])
    (row,) = load_video_instruction_dataset(str(path), roots)
    assert row["id"] == "s1" and row["video"] == "src/clip.mp4"
    assert row["video_path"] == str(tmp_path / "videos" / "src" / "clip.mp4")
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user", "assistant"]
    first = row["messages"][0]["content"]
    assert first[0]["type"] == "video" and texts(row["messages"][0]) == ["What runs?"]
    assert [texts(m) for m in row["messages"][1:]] == [["A dog."], ["Then?"], ["It naps."]]
    assert all("<image>" not in t for m in row["messages"] for t in texts(m))


def test_placeholder_inside_the_question_and_a_leading_answer(tmp_path, roots):
    sample = {
        "video": "a.mp4",
        "data_source": "ego4d",
        "conversations": [
            {"from": "gpt", "value": "dropped"},
            {"from": "human", "value": "Look: <image> what?"},
            {"from": "gpt", "value": "That."},
        ],
    }
    (row,) = load_video_instruction_dataset(str(write_json(tmp_path / "d.jsonl", [sample], lines=True)), roots)
    assert row["id"] == "d.jsonl#0"
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert texts(row["messages"][0]) == ["Look:  what?"]


def test_per_source_roots_and_text_only_rows(tmp_path):
    roots = VideoRoots.from_strings(str(tmp_path / "all"), [f"ego4d={tmp_path / 'elsewhere'}"])
    samples = [instruction_sample("v", "x/a.mp4", [("q", "a")], "ego4d"), instruction_sample("t", None, [("hi", "yo")])]
    video_row, text_row = load_video_instruction_dataset(str(write_json(tmp_path / "d.json", samples)), roots)
    assert video_row["video"] == "ego4d/x/a.mp4" and video_row["video_path"] == str(tmp_path / "elsewhere/x/a.mp4")
    assert text_row["video"] is None and text_row["messages"][0]["content"] == [{"type": "text", "text": "hi"}]
    with pytest.raises(ValueError, match="data_source=/path"):
        VideoRoots.from_strings(None, ["no-equals-sign"])


@pytest.mark.parametrize(
    "video, data_source",
    [("../secret.mp4", ""), ("a/../../secret.mp4", "src"), ("/etc/passwd", "src"), ("a.mp4", "../other")],
)
def test_paths_outside_the_root_are_rejected(video, data_source):
    with pytest.raises(VideoPathError, match="escapes|absolute"):
        VideoRoots(root="/data").resolve(video, data_source)


def test_no_root_for_a_source_is_named():
    with pytest.raises(VideoPathError, match="No video root for data_source 'anet'"):
        VideoRoots().resolve("a.mp4", "anet")


BAD_SAMPLES = {
    "no placeholder": instruction_sample("no-placeholder", None, [("q", "a")]) | {"video": "a.mp4"},
    "two placeholders": instruction_sample("two", "a.mp4", [("<image> q", "a")]),
    "unbalanced": instruction_sample("unbalanced", "a.mp4", [("q", "a")])
    | {"conversations": [{"from": "human", "value": "<image>q"}, {"from": "human", "value": "q2"}]},
    "no answer": instruction_sample("no-answer", "a.mp4", [("q", "a")])
    | {"conversations": [{"from": "human", "value": "<image>q"}]},
    "outside root": instruction_sample("outside", "../../a.mp4", [("q", "a")]),
    "placeholder, no video": instruction_sample("orphan", None, [("<image> q", "a")]),
    "image count": instruction_sample("img", None, [("<image> q", "a")]) | {"image": ["x.jpg", "y.jpg"]},
    "image and video": instruction_sample("both", "a.mp4", [("q", "a")]) | {"image": "x.jpg"},
    "image in answer": instruction_sample("answered", None, [("<image> q", "<image> a")]) | {"image": ["x", "y"]},
    "image outside root": instruction_sample("img-out", None, [("<image> q", "a")]) | {"image": "../x.jpg"},
    "empty answer": instruction_sample("empty", "a.mp4", [("q", "  ")]),
    "unknown speaker": instruction_sample("who", "a.mp4", [("q", "a")])
    | {"conversations": [{"from": "human", "value": "<image>q"}, {"from": "robot", "value": "a"}]},
}
REASONS = {
    "no-placeholder": "0 video placeholders",
    "two": "2 video placeholders",
    "unbalanced": "unbalanced turns",
    "no-answer": "no answer",
    "outside": "escapes its video root",
    "orphan": "no video",
    "img": "has 2 image(s) but 1 <image> placeholders",
    "both": "has a video and 1 image(s)",
    "answered": "<image> placeholder in answer turn 1",
    "img-out": "escapes its image root",
    "empty": "turn 1 is empty",
    "who": "unknown speaker 'robot'",
}


@pytest.mark.parametrize("streaming", [False, True])
def test_bad_samples_are_skipped_with_one_warning_each(tmp_path, roots, image_roots, caplog, streaming):
    good = instruction_sample("good", "a.mp4", [("q", "a")])
    path = write_json(tmp_path / "d.json", [good, *BAD_SAMPLES.values(), good | {"id": "good2"}])
    with caplog.at_level(logging.WARNING, logger="hour_llava.training.data"):
        rows = list(load_video_instruction_dataset(str(path), roots, streaming=streaming, image_roots=image_roots))
    assert [row["id"] for row in rows] == ["good", "good2"]
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipping")]
    assert len(skipped) == len(BAD_SAMPLES)
    for (sample_id, reason), message in zip(REASONS.items(), skipped):
        assert f"'{sample_id}'" in message and "d.json row" in message and reason in message, message


@pytest.mark.parametrize("name", list(BAD_SAMPLES))
def test_bad_samples_raise_on_request(tmp_path, roots, image_roots, name):
    path = write_json(tmp_path / "d.json", [BAD_SAMPLES[name]])
    with pytest.raises(BadSampleError, match=re.escape(REASONS[BAD_SAMPLES[name]["id"]])):
        load_video_instruction_dataset(str(path), roots, on_bad_sample="raise", image_roots=image_roots)


def test_streaming_is_lazy(tmp_path, roots):
    samples = [instruction_sample(f"s{i}", f"{i}.mp4", [("q", "a")]) for i in range(CONVERSION_BATCH_SIZE)]
    samples.append(BAD_SAMPLES["unbalanced"])  # in the second batch of conversions
    dataset = load_video_instruction_dataset(
        str(write_json(tmp_path / "d.jsonl", samples, lines=True)), roots, streaming=True, on_bad_sample="raise"
    )
    assert isinstance(dataset, IterableDataset)  # built without converting (or rejecting) anything yet
    assert [row["id"] for row in dataset.take(3)] == ["s0", "s1", "s2"]
    with pytest.raises(BadSampleError, match="unbalanced"):
        list(dataset)


QA_TABLE = pd.DataFrame(
    {
        "video": ["a.mp4"] * 7 + ["b.mp4"] * 2 + ["a.mp4"],
        "data_source": ["anet"] * 10,
        "question": [f"q{i}" for i in range(10)],
        "answer": [f"a{i}" for i in range(10)],
        "question_type": [f"task{i % 3}" for i in range(10)],
    }
)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
@pytest.mark.parametrize("streaming", [False, True])
def test_qa_table_is_grouped_into_five_turn_samples(tmp_path, roots, suffix, streaming):
    path = tmp_path / f"qa{suffix}"
    if suffix == ".csv":
        QA_TABLE.to_csv(path, index=False)
    elif suffix == ".parquet":
        QA_TABLE.to_parquet(path)
    else:
        QA_TABLE.to_json(path, orient="records", lines=True)
    dataset = load_video_instruction_dataset(str(path), roots, streaming=streaming)
    assert isinstance(dataset, IterableDataset if streaming else Dataset)
    rows = list(dataset)
    questions = [[texts(m)[0] for m in row["messages"][::2]] for row in rows]
    assert questions == [["q0", "q1", "q2", "q3", "q4"], ["q5", "q6", "q9"], ["q7", "q8"]]
    assert [row["video"] for row in rows] == ["anet/a.mp4", "anet/a.mp4", "anet/b.mp4"]
    assert rows[0]["messages"][0]["content"][0]["type"] == "video"
    assert all(m["content"][0]["type"] == "text" for row in rows for m in row["messages"][1:])
    assert rows[1]["task_types"] == ["task2", "task0", "task0"]
    assert [texts(m)[0] for m in rows[2]["messages"][1::2]] == ["a7", "a8"]


def test_grouping_bounds_open_videos_for_streaming():
    rows = [{"video": v, "question": f"q{i}", "answer": "a"} for i, v in enumerate("aabbcab")]
    groups = list(group_qa_rows(rows, QATableFormat(max_turns=5, max_open_videos=1)))
    # with one open video at most, a group closes as soon as another video starts
    assert [[t["value"].removeprefix("<image>\n") for t in g["conversations"][::2]] for g in groups] == [
        ["q0", "q1"], ["q2", "q3"], ["q4"], ["q5"], ["q6"]
    ]


def test_unknown_file_format_and_columns(tmp_path, roots):
    with pytest.raises(ValueError, match="unknown format"):
        load_video_instruction_dataset(str(tmp_path / "data.txt"), roots)
    pd.DataFrame({"clip": ["a"], "text": ["b"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="expected `conversations`"):
        load_video_instruction_dataset(str(tmp_path / "t.csv"), roots)


MALFORMED = {
    "text conversations": instruction_sample("text-conv", "a.mp4", [("q", "a")]) | {"conversations": "Q? A."},
    "text turn": instruction_sample("text-turn", "a.mp4", [("q", "a")])
    | {"conversations": [{"from": "human", "value": "<image>q"}, "the answer"]},
    "list value": instruction_sample("list-value", "a.mp4", [("q", "a")])
    | {"conversations": [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": ["a", "b"]}]},
}


@pytest.mark.parametrize("streaming", [False, True])
def test_malformed_rows_are_skipped_and_named_and_numbers_become_text(tmp_path, roots, caplog, streaming):
    numbers = instruction_sample("numbers", "a.mp4", [("How many goals?", "x"), ("Share?", "y")])
    numbers["conversations"][1]["value"], numbers["conversations"][3]["value"] = 3, 0.25
    path = write_json(tmp_path / "d.json", [*MALFORMED.values(), numbers])
    with caplog.at_level(logging.WARNING, logger="hour_llava.training.data"):
        rows = list(load_video_instruction_dataset(str(path), roots, streaming=streaming))
    assert [row["id"] for row in rows] == ["numbers"]
    assert [texts(m)[0] for m in rows[0]["messages"][1::2]] == ["3", "0.25"]
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipping")]
    assert len(skipped) == 3
    assert "'text-conv' (d.json row 0) has `conversations` of type str" in skipped[0]
    assert "'text-turn' (d.json row 1) turn 1 is a str" in skipped[1]
    assert "'list-value' (d.json row 2) has a turn 1 value of type list" in skipped[2]


def test_numeric_answers_of_a_qa_table_become_text(tmp_path, roots):
    table = pd.DataFrame({"video": ["a.mp4"] * 3, "question": ["How many?", "Which year?", "Ratio?"]})
    table["answer"] = [3.0, 1998.0, 0.5]  # pandas writes an int column with one float as floats
    table.to_csv(tmp_path / "qa.csv", index=False)
    (row,) = load_video_instruction_dataset(str(tmp_path / "qa.csv"), roots)
    assert [texts(m)[0] for m in row["messages"][1::2]] == ["3", "1998", "0.5"]


@pytest.mark.parametrize("streaming", [False, True])
def test_malformed_json_names_the_file_and_line(tmp_path, roots, streaming):
    (tmp_path / "bad.json").write_text('[\n  {"id": "a", "conversations": []},\n  {"id": "b", "conversations": [}\n]')
    with pytest.raises(ValueError, match=r"bad.json' is not valid JSON: line 3, column 33"):
        load_video_instruction_dataset(str(tmp_path / "bad.json"), roots, streaming=streaming)
    if streaming:
        return  # JSON Lines are streamed line by line: a bad line is met when training reads it
    good = instruction_sample("good", "a.mp4", [("q", "a")])
    (tmp_path / "bad.jsonl").write_text(f"{json.dumps(good)}\n{json.dumps(good)}\n{{'id': 3}}\n")
    with pytest.raises(ValueError, match=r"bad.jsonl' is not valid JSON: line 3, column 2"):
        load_video_instruction_dataset(str(tmp_path / "bad.jsonl"), roots)


def test_empty_files_and_files_whose_every_sample_is_dropped_say_so(tmp_path, roots):
    with pytest.raises(ValueError, match="empty.json' has no rows"):
        load_video_instruction_dataset(str(write_json(tmp_path / "empty.json", [])), roots)
    path = write_json(tmp_path / "bad.json", [BAD_SAMPLES["unbalanced"], BAD_SAMPLES["no answer"]])
    with pytest.raises(ValueError, match=r"Every sample of '.*bad.json' was dropped \(2 of 2"):
        load_video_instruction_dataset(str(path), roots)


def test_skip_reasons_are_printed_again_when_datasets_serves_its_cache(tmp_path, roots, caplog):
    good = instruction_sample("good", "a.mp4", [("q", "a")])
    path = write_json(tmp_path / "d.json", [good, BAD_SAMPLES["unbalanced"]])
    for attempt in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hour_llava.training.data"):
            rows = load_video_instruction_dataset(str(path), roots)
        assert [row["id"] for row in rows] == ["good"]
        assert "Skipping Sample 'unbalanced' (d.json row 1) has unbalanced turns" in caplog.text, attempt
    assert rows.cache_files  # the second load came from `datasets`' cache


# ---------------------------------------------------------------------------------------------------------------
# LLaVA-OneVision rows: single images, several images, text only
# ---------------------------------------------------------------------------------------------------------------
def content_types(message):
    return [item["type"] for item in message["content"]]


ONEVISION_ROWS = [
    {  # one image; its placeholder is moved to the front of the question, as the reference does
        "id": "single",
        "image": "coco/a.jpg",
        "conversations": [
            {"from": "human", "value": "What is shown? <image>"},
            {"from": "gpt", "value": "A cat."},
            {"from": "human", "value": "Which colour?"},
            {"from": "gpt", "value": "Grey."},
        ],
    },
    {  # several images: the placeholders stay between the text pieces
        "id": "multi",
        "image": ["m/1.png", "m/2.png"],
        "conversations": [
            {"from": "human", "value": "Image 1: <image>\nImage 2: <image>\nWhat differs?"},
            {"from": "gpt", "value": "The light."},
        ],
    },
    {"id": "text", "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]},
]


@pytest.mark.parametrize("streaming", [False, True])
def test_onevision_image_multi_image_and_text_rows(tmp_path, roots, image_roots, streaming):
    video = instruction_sample("video", "clip.mp4", [("What runs?", "A dog.")])
    path = write_json(tmp_path / "ov.json", [*ONEVISION_ROWS, video])
    rows = list(load_video_instruction_dataset(str(path), roots, streaming=streaming, image_roots=image_roots))
    single, multi, text, video_row = rows

    assert single["images"] == ["coco/a.jpg"] and single["video"] is None
    assert single["image_paths"] == [str(tmp_path / "images" / "coco" / "a.jpg")]
    assert content_types(single["messages"][0]) == ["image", "text"]
    assert texts(single["messages"][0]) == ["What is shown?"]
    assert [content_types(m) for m in single["messages"][1:]] == [["text"]] * 3

    assert multi["image_paths"] == [str(tmp_path / "images" / "m" / name) for name in ("1.png", "2.png")]
    assert content_types(multi["messages"][0]) == ["text", "image", "text", "image", "text"]
    assert texts(multi["messages"][0]) == ["Image 1: ", "\nImage 2: ", "\nWhat differs?"]

    assert text["images"] == [] and text["video"] is None
    assert [content_types(m) for m in text["messages"]] == [["text"], ["text"]]
    assert video_row["images"] == [] and content_types(video_row["messages"][0]) == ["video", "text"]


def test_image_placeholder_in_a_later_question(tmp_path, roots, image_roots):
    sample = {
        "id": "later",
        "image": ["a.jpg"],
        "data_source": "ov",
        "conversations": [
            {"from": "human", "value": "Hello."},
            {"from": "gpt", "value": "Hi."},
            {"from": "human", "value": "<image>\nAnd this?"},
            {"from": "gpt", "value": "A tree."},
        ],
    }
    (row,) = load_video_instruction_dataset(str(write_json(tmp_path / "d.json", [sample])), roots, image_roots=image_roots)
    assert row["images"] == ["ov/a.jpg"]
    assert [content_types(m) for m in row["messages"]] == [["text"], ["text"], ["image", "text"], ["text"]]


def test_image_rows_without_an_image_folder_are_named(tmp_path, roots):
    path = write_json(tmp_path / "d.json", ONEVISION_ROWS)
    with pytest.raises(BadSampleError, match=r"'single'.*1 image\(s\) but no image folder.*--image_root"):
        load_video_instruction_dataset(str(path), roots, on_bad_sample="raise")
    rows = load_video_instruction_dataset(str(path), roots)  # skipped and named; the text row stays
    assert [row["id"] for row in rows] == ["text"]


def test_image_field_that_is_not_a_path_is_named(tmp_path, roots, image_roots):
    sample = instruction_sample("odd", None, [("<image> q", "a")]) | {"image": ["a.jpg", 3]}
    with pytest.raises(BadSampleError, match=r"'odd'.*`image` of \['a.jpg', 3\]"):
        load_video_instruction_dataset(
            str(write_json(tmp_path / "d.jsonl", [sample], lines=True)), roots, on_bad_sample="raise",
            image_roots=image_roots,
        )
