# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""VideoMarathon, LLaVA-Video-178K and LLaVA-OneVision as chat rows for TRL's `SFTTrainer`, loaded with `datasets`.

Two input formats are accepted (the format of each data file is read from its columns):

* **Instruction samples** (the authors' `videomarathon.json`, LLaVA-Video-178K and LLaVA-OneVision, JSON list or
  JSON lines): `id`, `video` or `image` (one path or a list), `data_source`, `conversations` as alternating
  `{"from": "human"|"gpt", "value": ...}` turns. A video sample's first human turn holds one `<image>` placeholder;
  an image sample has one `<image>` per image in its human turns; a sample with neither is text-only.
* **A QA table** (csv, tsv, parquet, JSON or JSON lines) with one question per row: `video`, `question`, `answer`,
  and optionally `data_source` and a task-type column (names in `QATableFormat`). Rows of the same video are
  grouped into samples of up to `max_turns` (5, as the authors did) question/answer turns.

Every sample becomes one row of `TRAINING_ROW_FEATURES`: transformers chat `messages` whose first user turn starts
with `{"type": "video"}` (the placeholder and the authors' `QA_GT_caption_based_noisy` literal removed), or with
`{"type": "image"}` items where the `<image>` placeholders were, the video's key (`<data_source>/<video>`, also its
name in the feature cache) and its resolved path, or the images' keys and paths. `HourLlavaDataCollator`
turns these rows into model inputs. With `streaming=True` everything is lazy: rows are converted as they are read.

A sample that cannot be trained on (unbalanced turns, a missing or misplaced placeholder, a video path outside its
root, an empty turn, images whose count differs from the `<image>` placeholders', a video and images in one sample,
turns that are not `{"from", "value"}` objects, a value that is not text) is
dropped with one warning line, or raises with `on_bad_sample="raise"`. The warnings come from a `skip_reason` column
that the conversion writes, so they are printed again when `datasets` serves the converted file from its cache.
Answers (and questions) that are plain numbers, as QA tables often hold, are converted to text (`3`, `2.5`).
Malformed JSON is reported with its file and line; an empty file, or one whose every sample was dropped, is an error
that says so. Missing or unreadable video and image *files* are found later, by the collator, which reads them.
"""

import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from datasets import Dataset, Features, IterableDataset, List, Value, concatenate_datasets, load_dataset

from .paths import ImageRoots, VideoPathError, VideoRoots


logger = logging.getLogger(__name__)

IMAGE_TOKEN, VIDEO_TOKEN = "<image>", "<video>"
# A video sample's placeholder: the authors' `<image>` (one per video), or `<video>`.
VIDEO_PLACEHOLDERS = (IMAGE_TOKEN, VIDEO_TOKEN)
# A tag the authors left in some answers and questions; the reference strips it before tokenising.
NOISE_LITERALS = ("QA_GT_caption_based_noisy",)
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
BAD_SAMPLE_POLICIES = ("skip", "raise")
DEFAULT_MAX_TURNS = 5
# Samples converted together; a streamed dataset reads (and converts) this many ahead.
CONVERSION_BATCH_SIZE = 64

_CONTENT_ITEM = {"type": Value("string"), "text": Value("string")}
SKIP_REASON = "skip_reason"
TRAINING_ROW_FEATURES = Features(
    {
        "id": Value("string"),
        "messages": List({"role": Value("string"), "content": List(_CONTENT_ITEM)}),
        "video": Value("string"),
        "video_path": Value("string"),
        "images": List(Value("string")),
        "image_paths": List(Value("string")),
        "data_source": Value("string"),
        "task_types": List(Value("string")),
    }
)

# What the conversion writes: the training rows plus why a sample is dropped (None for kept samples).
_CONVERTED_FEATURES = Features({**TRAINING_ROW_FEATURES, SKIP_REASON: Value("string")})

_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


class BadSampleError(ValueError):
    """A sample that cannot be trained on; the message names the sample and the reason."""


@dataclass
class QATableFormat:
    """How to read a one-question-per-row table and group it into samples.

    Args:
        video, question, answer, task_type, data_source, id: column names; `task_type`, `data_source` and `id` may
            be absent from the table.
        max_turns: questions per sample (5, as the authors grouped VideoMarathon).
        max_open_videos: emit a video's unfinished group once more videos than this are open (bounds memory when a
            huge table is streamed; its rows should then come sorted or clustered by video). `None`: no bound.
    """

    video: str = "video"
    question: str = "question"
    answer: str = "answer"
    task_type: str = "question_type"
    data_source: str = "data_source"
    id: str = "id"
    max_turns: int = DEFAULT_MAX_TURNS
    max_open_videos: int | None = None

    def __post_init__(self):
        if self.max_turns < 1:
            raise ValueError(f"max_turns={self.max_turns} must be at least 1.")


# ---------------------------------------------------------------------------------------------------------------
# One sample: conversations -> chat messages
# ---------------------------------------------------------------------------------------------------------------
def _remove_noise(text: str) -> str:
    for literal in NOISE_LITERALS:
        text = text.replace(literal, "")
    return text


def _clean_text(text: str) -> str:
    for literal in VIDEO_PLACEHOLDERS:
        text = text.replace(literal, "")
    return _remove_noise(text).strip()


def _count_placeholders(text: str) -> int:
    return sum(text.count(placeholder) for placeholder in VIDEO_PLACEHOLDERS)


def as_text(value, what: str) -> str:
    """A turn's text: strings as they are, plain numbers written out (`3`, not `3.0`), None as empty; anything else
    (lists, objects, booleans) is a `BadSampleError` naming `what`."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return ""  # a missing cell in a numeric column
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    raise BadSampleError(f"has {what} of type {type(value).__name__} ({value!r:.60}), not text")


def _checked_turns(conversations) -> list[dict]:
    if conversations is None:
        return []
    if isinstance(conversations, str):  # `datasets` passes a column of mixed types on as JSON text (streaming)
        conversations = _json_list(conversations) or conversations
    if not isinstance(conversations, (list, tuple)):
        raise BadSampleError(f"has `conversations` of type {type(conversations).__name__}, not a list of turns")
    for index, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            raise BadSampleError(f"turn {index} is a {type(turn).__name__}, not a {{'from', 'value'}} object")
    return list(conversations)


def _json_value(text: str, default):
    try:
        return json.loads(text)
    except ValueError:
        return default


def _json_list(text: str) -> list | None:
    value = _json_value(text, default=None)
    return value if isinstance(value, list) else None


def conversations_to_messages(conversations: list[dict], has_video: bool, num_images: int = 0) -> list[dict]:
    """Authors' `conversations` -> transformers chat messages, checked; raises `BadSampleError` with the reason.

    A leading assistant turn is dropped (as the reference does); then turns must alternate user/assistant, start with
    the user and end with an answer. A video sample has exactly one placeholder, in the first user turn; it becomes a
    `{"type": "video"}` item in front of that turn's text. An image sample has one `<image>` per image in its user
    turns, each becoming an `{"type": "image"}` item: a turn's only placeholder goes in front of its text (the
    reference moves it there), several stay where they are between the text pieces. A text-only sample has none.
    """
    turns = _checked_turns(conversations)
    while turns and ROLES.get(turns[0].get("from")) == "assistant":
        turns.pop(0)
    if not turns:
        raise BadSampleError("has no conversation turns")
    values = []
    for index, turn in enumerate(turns):
        role = ROLES.get(turn.get("from"))
        if role is None:
            raise BadSampleError(f"turn {index} has unknown speaker {turn.get('from')!r} (expected human or gpt)")
        expected = _role(index)
        if role != expected:
            raise BadSampleError(f"has unbalanced turns: turn {index} is {turn.get('from')!r}, expected the {expected}")
        values.append(as_text(turn.get("value"), f"a turn {index} value"))
    if len(values) % 2:
        raise BadSampleError("has unbalanced turns: the last question has no answer")
    if num_images:
        return _image_messages(values, has_video, num_images)
    _check_video_placeholders(values, has_video)
    messages = [_text_message(index, _clean_text(value)) for index, value in enumerate(values)]
    if has_video:
        messages[0]["content"].insert(0, {"type": "video", "text": None})
    return messages


def _role(index: int) -> str:
    return "user" if index % 2 == 0 else "assistant"


def _text_message(index: int, text: str) -> dict:
    if not text:
        raise BadSampleError(f"turn {index} is empty")
    return {"role": _role(index), "content": [{"type": "text", "text": text}]}


def _check_video_placeholders(values: list[str], has_video: bool) -> None:
    """A video sample: one placeholder, in the first question; a text-only sample: none."""
    for index, value in enumerate(values[1:], start=1):
        if _count_placeholders(value):
            raise BadSampleError(f"has a video placeholder in turn {index}; only the first question may hold it")
    placeholders = _count_placeholders(values[0])
    if has_video and placeholders != 1:
        raise BadSampleError(f"has a video but {placeholders} video placeholders (<image>) in its first question")
    if not has_video and placeholders:
        raise BadSampleError("has a video placeholder (<image>) but no video or image")


def _image_messages(values: list[str], has_video: bool, num_images: int) -> list[dict]:
    """Messages of an image sample: one `<image>` per image, in the questions only."""
    if has_video:
        raise BadSampleError(f"has a video and {num_images} image(s); a sample holds a video, images or neither")
    if any(VIDEO_TOKEN in value for value in values):
        raise BadSampleError(f"has a {VIDEO_TOKEN} placeholder but no video")
    for index, value in enumerate(values[1::2]):
        if IMAGE_TOKEN in value:
            raise BadSampleError(f"has an {IMAGE_TOKEN} placeholder in answer turn {2 * index + 1}")
    placeholders = sum(value.count(IMAGE_TOKEN) for value in values)
    if placeholders != num_images:
        raise BadSampleError(f"has {num_images} image(s) but {placeholders} {IMAGE_TOKEN} placeholders")
    messages = []
    for index, value in enumerate(values):
        if IMAGE_TOKEN not in value:
            messages.append(_text_message(index, _clean_text(value)))
        else:
            messages.append({"role": "user", "content": _interleaved_image_content(value)})
    return messages


def _interleaved_image_content(value: str) -> list[dict]:
    """A question's text and image items in order; a question with one image gets it in front, as the reference's
    `preprocess_multimodal` moves a lone `<image>` to the start."""
    if value.count(IMAGE_TOKEN) == 1:
        text = _clean_text(value)
        return [{"type": "image", "text": None}] + ([{"type": "text", "text": text}] if text else [])
    content = []
    for position, piece in enumerate(_remove_noise(value).split(IMAGE_TOKEN)):
        if position:
            content.append({"type": "image", "text": None})
        if piece.strip():
            content.append({"type": "text", "text": piece})
    return content


@dataclass
class SampleConverter:
    """Turns a batch of instruction samples into training rows; a bad sample becomes a row whose `skip_reason` says
    why (the skip policy is applied to that column afterwards, so it also applies to cached conversions)."""

    video_roots: VideoRoots
    source_name: str
    image_roots: ImageRoots | None = None

    def convert(self, sample: dict, index: int) -> dict:
        sample_id = str(sample.get("id") if sample.get("id") is not None else f"{self.source_name}#{index}")
        try:
            if sample.get("table_problem"):
                raise BadSampleError(sample["table_problem"])
            video = _path_field(sample, "video") or None
            images = _image_field(sample)
            data_source = _path_field(sample, "data_source")
            messages = conversations_to_messages(
                sample.get("conversations"), has_video=video is not None, num_images=len(images)
            )
            key = self.video_roots.video_key(video, data_source) if video else None
            path = self.video_roots.resolve(video, data_source) if video else None
            image_keys, image_paths = self.resolve_images(images, data_source)
        except (BadSampleError, VideoPathError) as error:
            raise BadSampleError(f"Sample {sample_id!r} ({self.source_name} row {index}) {_reason(error)}") from error
        return {
            "id": sample_id,
            "messages": messages,
            "video": key,
            "video_path": path,
            "images": image_keys,
            "image_paths": image_paths,
            "data_source": data_source,
            "task_types": [str(task) for task in sample.get("task_types") or []],
            SKIP_REASON: None,
        }

    def resolve_images(self, images: list[str], data_source: str) -> tuple[list[str], list[str]]:
        """Keys (`<data_source>/<image>`) and absolute paths of a sample's images."""
        if not images:
            return [], []
        if self.image_roots is None:
            raise BadSampleError(
                f"has {len(images)} image(s) but no image folder was given (`image_roots`; the training script's "
                "`--image_root`)"
            )
        keys = [self.image_roots.video_key(image, data_source) for image in images]
        return keys, [self.image_roots.resolve(image, data_source) for image in images]

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        rows = []
        for offset, index in enumerate(indices):
            sample = {column: values[offset] for column, values in batch.items()}
            try:
                rows.append(self.convert(sample, index))
            except BadSampleError as error:
                rows.append(_dropped_row(str(error)))
        return {column: [row[column] for row in rows] for column in _CONVERTED_FEATURES}


def _path_field(sample: dict, field: str) -> str:
    value = sample.get(field)
    if value is not None and not isinstance(value, str):
        raise BadSampleError(f"has a `{field}` of type {type(value).__name__} ({value!r:.60}), not a path")
    return value or ""


def _image_field(sample: dict) -> list[str]:
    """The sample's `image`: one path or a list of paths (LLaVA-OneVision's single- and multi-image rows)."""
    value = sample.get("image")
    if isinstance(value, str) and value.startswith(("[", '"')):  # a column of mixed types, streamed, comes as JSON
        value = _json_value(value, default=value)
    if not value:
        return []
    images = [value] if isinstance(value, str) else value
    if not isinstance(images, (list, tuple)) or not all(isinstance(image, str) and image for image in images):
        raise BadSampleError(f"has an `image` of {value!r:.60}, not a path or a list of paths")
    return list(images)


def _dropped_row(reason: str) -> dict:
    empty = {"id": None, "messages": [], "video": None, "video_path": None, "data_source": None, "task_types": []}
    empty.update(images=[], image_paths=[])
    return {**empty, SKIP_REASON: reason}


def _keep_or_raise(reason: str | None, on_bad_sample: str) -> bool:
    """The skip policy for one converted row: keep it, drop it with one warning, or raise."""
    if reason is None:
        return True
    if on_bad_sample == "raise":
        raise BadSampleError(reason)
    logger.warning("Skipping %s", reason)
    return False


def _reason(error: Exception) -> str:
    message = str(error)
    return message if isinstance(error, BadSampleError) else f"has a bad path: {message}"


# ---------------------------------------------------------------------------------------------------------------
# QA tables: one question per row -> multi-turn samples of up to `max_turns` questions per video
# ---------------------------------------------------------------------------------------------------------------
def group_qa_rows(
    rows: Iterable[dict], table_format: QATableFormat = QATableFormat(), source_name: str = "table"
) -> Iterator[dict]:
    """Group question rows by video into instruction samples of up to `table_format.max_turns` turns.

    Questions keep their table order. A video's group is emitted when it is full; with `max_open_videos` set, the
    oldest unfinished group is emitted early once more videos than that are open. Unfinished groups come last.
    """
    open_groups: OrderedDict[tuple[str, str], list[tuple[int, dict]]] = OrderedDict()
    limit = table_format.max_open_videos
    for index, row in enumerate(rows):
        key = (_group_key(row.get(table_format.data_source)), _group_key(row.get(table_format.video)))
        open_groups.setdefault(key, []).append((index, row))
        if len(open_groups[key]) == table_format.max_turns:
            yield _qa_group_to_sample(open_groups.pop(key), table_format, source_name)
        elif limit is not None and len(open_groups) > limit:
            yield _qa_group_to_sample(open_groups.popitem(last=False)[1], table_format, source_name)
    for group in open_groups.values():
        yield _qa_group_to_sample(group, table_format, source_name)


def _group_key(value) -> str:
    return "" if value is None else str(value)


def _qa_group_to_sample(group: list[tuple[int, dict]], columns: QATableFormat, source_name: str) -> dict:
    """One instruction sample of a video's questions; cells are made text here (numbers written out), and a cell that
    cannot be (a list or an object) is recorded in `table_problem`, for the converter to drop the sample naming it."""
    first_index, first = group[0]
    problems: list[str] = []

    def cell(row: dict, column: str) -> str:
        try:
            return as_text(row.get(column), f"a `{column}` cell")
        except BadSampleError as error:
            problems.append(str(error))
            return ""

    conversations = []
    for turn, (_, row) in enumerate(group):
        question = cell(row, columns.question)
        conversations.append({"from": "human", "value": f"<image>\n{question}" if turn == 0 else question})
        conversations.append({"from": "gpt", "value": cell(row, columns.answer)})
    first_id = first.get(columns.id)
    return {
        "id": str(first_id) if first_id is not None else f"{source_name}#{first_index}",
        "video": cell(first, columns.video) or None,
        "data_source": cell(first, columns.data_source),
        "conversations": conversations,
        "task_types": [str(row[columns.task_type]) for _, row in group if row.get(columns.task_type) is not None],
        "table_problem": problems[0] if problems else None,
    }


def _grouped_samples(table, table_format: QATableFormat, source_name: str):
    yield from group_qa_rows(iter(table), table_format, source_name)


# ---------------------------------------------------------------------------------------------------------------
# Files -> datasets
# ---------------------------------------------------------------------------------------------------------------
def _load_file(path: str, streaming: bool) -> Dataset | IterableDataset:
    extension = os.path.splitext(path)[1].lower()
    if extension not in _BUILDERS:
        raise ValueError(f"Data file {path!r} has an unknown format; expected one of {sorted(_BUILDERS)}.")
    kwargs = {"delimiter": "\t"} if extension == ".tsv" else {}
    try:
        return load_dataset(_BUILDERS[extension], data_files=path, split="train", streaming=streaming, **kwargs)
    except Exception as error:  # `datasets` wraps parser errors in its own, without the file's line
        raise _unreadable_file_error(path, error) from error


def _unreadable_file_error(path: str, error: Exception) -> ValueError:
    """A `ValueError` naming the file, and for malformed JSON the line and column, instead of `datasets`' message."""
    if "corresponds to no data" in str(error):
        return ValueError(f"Data file {path!r} has no rows.")
    location = _json_error_location(path) if _BUILDERS.get(os.path.splitext(path)[1].lower()) == "json" else None
    if location is not None:
        return ValueError(f"Data file {path!r} is not valid JSON: {location}.")
    return ValueError(f"Cannot read data file {path!r}: {error}")


def _json_error_location(path: str) -> str | None:
    """'line N, column C: <problem>' of the first JSON error in a JSON or JSON Lines file, or None if it parses."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    try:
        json.loads(text)
        return None
    except json.JSONDecodeError as error:
        if not error.msg.startswith("Extra data"):  # a single JSON document that is malformed
            return f"line {error.lineno}, column {error.colno}: {error.msg}"
    for number, line in enumerate(text.splitlines(), start=1):  # JSON Lines: one document per line
        try:
            if line.strip():
                json.loads(line)
        except json.JSONDecodeError as error:
            return f"line {number}, column {error.colno}: {error.msg}"
    return None


def _column_names(dataset: Dataset | IterableDataset, path: str) -> list[str]:
    if dataset.column_names:
        return list(dataset.column_names)
    try:
        first = next(iter(dataset), None)  # streaming JSON does not know its columns before reading
    except Exception as error:  # as `_load_file`: name the file (and the line of malformed JSON)
        raise _unreadable_file_error(path, error) from error
    if first is None:
        raise ValueError(f"Data file {path!r} has no rows.")
    return list(first)


def _load_rows(
    path: str,
    video_roots: VideoRoots,
    streaming: bool,
    on_bad_sample: str,
    table_format: QATableFormat,
    image_roots: ImageRoots | None = None,
) -> Dataset | IterableDataset:
    """One instruction file or QA table as training rows."""
    raw = _load_file(path, streaming)
    columns = _column_names(raw, path)
    source_name = os.path.basename(path)
    if "conversations" in columns:
        samples = raw
    elif table_format.question in columns and table_format.answer in columns:
        generator_class = IterableDataset if streaming else Dataset
        samples = generator_class.from_generator(
            _grouped_samples, gen_kwargs={"table": raw, "table_format": table_format, "source_name": source_name}
        )
        columns = ["id", "video", "data_source", "conversations", "task_types", "table_problem"]
    else:
        raise ValueError(
            f"Data file {path!r} has columns {columns}: expected `conversations` (instruction samples) or "
            f"`{table_format.question}` and `{table_format.answer}` (a QA table; see QATableFormat)."
        )
    converted = samples.map(
        SampleConverter(video_roots, source_name, image_roots),
        batched=True,
        batch_size=CONVERSION_BATCH_SIZE,
        with_indices=True,
        remove_columns=columns,
        features=_CONVERTED_FEATURES,
    )
    if streaming:  # lazily: each row's reason is printed (or raised) as it is read
        kept = converted.filter(_keep_or_raise, input_columns=SKIP_REASON, fn_kwargs={"on_bad_sample": on_bad_sample})
        return kept.remove_columns(SKIP_REASON)
    return _apply_skip_policy(converted, path, on_bad_sample)


def _apply_skip_policy(converted: Dataset, path: str, on_bad_sample: str) -> Dataset:
    """Warn about (or raise on) each dropped sample from the `skip_reason` column, which `datasets` caches with the
    rows, so a cached conversion reports its dropped samples again; then keep the others."""
    reasons = converted[SKIP_REASON]
    kept = [index for index, reason in enumerate(reasons) if _keep_or_raise(reason, on_bad_sample)]
    dropped = len(reasons) - len(kept)
    if not kept:
        raise ValueError(f"Every sample of {path!r} was dropped ({dropped} of {dropped}; reasons above).")
    if dropped:
        logger.warning("Dropped %d of %d samples of %s (reasons above).", dropped, len(reasons), path)
        converted = converted.select(kept)
    return converted.remove_columns(SKIP_REASON)


def load_video_instruction_dataset(
    data_files: str | list[str],
    video_roots: VideoRoots,
    streaming: bool = False,
    on_bad_sample: str = "skip",
    table_format: QATableFormat = QATableFormat(),
    image_roots: ImageRoots | None = None,
) -> Dataset | IterableDataset:
    """Load VideoMarathon / LLaVA-Video-178K / LLaVA-OneVision instruction files and QA tables as one dataset of
    training rows (video, image, multi-image and text-only samples).

    Args:
        data_files: paths of `.json`, `.jsonl`, `.csv`, `.tsv` or `.parquet` files, in either format.
        video_roots: where the videos are (`VideoRoots`).
        image_roots: where the images of image samples are (`ImageRoots`); without it, image samples are dropped
            (bad samples, named).
        streaming: return a lazy `IterableDataset` (for the 3.3M-question scale) instead of a `Dataset`.
        on_bad_sample: `"skip"` (warn once per sample and drop it) or `"raise"`.
        table_format: column names of QA tables and how their questions are grouped (`QATableFormat`).
    """
    if on_bad_sample not in BAD_SAMPLE_POLICIES:
        raise ValueError(f"on_bad_sample={on_bad_sample!r} is not one of {BAD_SAMPLE_POLICIES}.")
    files = [data_files] if isinstance(data_files, str) else list(data_files)
    if not files:
        raise ValueError("No data files given.")
    parts = [_load_rows(path, video_roots, streaming, on_bad_sample, table_format, image_roots) for path in files]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def dataset_videos(dataset: Dataset | IterableDataset) -> dict[str, str]:
    """Video key -> resolved path of every video the training rows use, each once (for feature extraction)."""
    rows = dataset.select_columns(["video", "video_path"])
    return {row["video"]: row["video_path"] for row in rows if row["video"]}


__all__ = [
    "BadSampleError",
    "QATableFormat",
    "SampleConverter",
    "TRAINING_ROW_FEATURES",
    "as_text",
    "conversations_to_messages",
    "dataset_videos",
    "group_qa_rows",
    "load_video_instruction_dataset",
]
