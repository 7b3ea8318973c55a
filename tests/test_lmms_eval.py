"""The `hour_llava` model of lmms-eval, through the real `lmms-eval` CLI on tiny models and local task folders.

lmms-eval exits 0 even when nothing was evaluated, so these tests read the results and samples files it writes. The
CLI tests take about a minute each (most of it lmms-eval's start-up); they need the `eval` extra.
"""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import pipeline

from hour_llava import HourLlavaProcessor
from hour_llava.evaluation.task_folder import write_task_folder
from hour_llava.pipelines import TASK
from hour_llava.tiny import tiny_model as build_tiny_model
from lmms_eval_runner import run_lmms_eval
from torch_threads import one_torch_thread, single_thread_env  # noqa: F401 (autouse fixture)
from video_fixtures import level_frames, write_video


pytest.importorskip("lmms_eval", reason="needs the eval extra: pip install -e '.[dev,eval]'")

QUESTIONS = ("What is happening?", "Which colour is it?", "How many frames?")
VIDEO_FRAMES = {"short.mp4": 20, "long.mp4": 40}
MAX_FRAMES = 8  # every video is encoded in one call of the vision tower (vision_chunk_size is 16)
VIDEO_ARGS = {"max_frames": MAX_FRAMES, "add_time_instruction": False}
GENERATION_KWARGS = {"max_new_tokens": 4, "do_sample": False, "until": ["\n\n"]}
TASK_NAME = "tiny_video_qa"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    directory = tmp_path_factory.mktemp("lmms_eval") / "hour-llava-tiny"
    model = build_tiny_model(tokenizer)
    model.save_pretrained(directory)
    HourLlavaProcessor.from_model_config(model.config, tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    """Three questions about each of two videos, then one about a video that does not exist (doc 6)."""
    root = tmp_path_factory.mktemp("task")
    docs = []
    for name, frames in VIDEO_FRAMES.items():
        video = write_video(root / name, level_frames(frames, noise=8), fps=1)
        docs += [{"video": str(video), "question": question, "answer": "red"} for question in QUESTIONS]
    docs.append({"video": str(root / "missing.mp4"), "question": QUESTIONS[0], "answer": "red"})
    folder = write_task_folder(
        root / "task", TASK_NAME, docs, "hour_llava.evaluation.task_folder", {"exact_match": "mean"}, GENERATION_KWARGS
    )
    return SimpleNamespace(folder=folder, docs=docs)


def lmms_eval_env(tmp_path: Path) -> dict:
    return single_thread_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))


def model_args(checkpoint: Path, **extra) -> str:
    values = {"pretrained": checkpoint, "device": "cpu", "dtype": "float32", **extra}
    return ",".join(f"{key}={value}" for key, value in values.items())


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, checkpoint, task_folder):
    """The same run twice with one response cache: the second must resume from the first's answers."""
    root = tmp_path_factory.mktemp("runs")
    arguments = [
        "--model", "hour_llava",
        "--model_args", model_args(checkpoint, **VIDEO_ARGS),
        "--tasks", TASK_NAME,
        "--include_path", str(task_folder.folder),
        "--batch_size", "2",
        "--log_samples",
        "--use_cache", str(root / "response_cache"),
    ]
    env = lmms_eval_env(root)
    first = run_lmms_eval(arguments, root / "first", env)
    second = run_lmms_eval(arguments, root / "second", env)
    return SimpleNamespace(first=first, second=second)


def test_cli_writes_results_with_the_tasks_metric(cli_runs, task_folder):
    run = cli_runs.first
    assert run.results is not None, run.output[-5000:]
    assert run.returncode == 0
    assert isinstance(run.results["results"][TASK_NAME]["exact_match,none"], float)
    assert [sample["doc_id"] for sample in run.samples[TASK_NAME]] == list(range(len(task_folder.docs)))
    assert "hour_llava.evaluation.lmms_eval_model.HourLlavaLmms (chat)" in run.results["config"]["model_backend"]


def test_logged_responses_equal_the_pipelines_answers(cli_runs, task_folder, checkpoint):
    pipe = pipeline(TASK, model=str(checkpoint), device="cpu", dtype="float32")
    responses = cli_runs.first.responses(TASK_NAME)
    for doc, response in zip(task_folder.docs[:-1], responses):
        [answer] = pipe(doc["video"], doc["question"], max_new_tokens=4, do_sample=False, **VIDEO_ARGS)
        assert response == answer["generated_text"].split("\n\n")[0]
        assert response  # a real answer, not the empty string of a failed request


def test_each_video_is_encoded_once_across_batches(cli_runs):
    # Three questions per video in batches of two: each video is answered in two batches, encoded once.
    assert cli_runs.first.vision_tower_frames == [MAX_FRAMES] * len(VIDEO_FRAMES)
    assert cli_runs.first.results["throughput"]["avg_videos_encoded"] == len(VIDEO_FRAMES)


def test_missing_video_is_counted_named_and_answered_empty(cli_runs, task_folder):
    run = cli_runs.first
    missing = task_folder.docs[-1]["video"]
    assert run.results["throughput"]["avg_failed_requests"] == 1
    assert f"1 of {len(task_folder.docs)} requests failed" in run.output
    assert f"{TASK_NAME} doc 6: {missing}: FileNotFoundError" in run.output
    assert run.responses(TASK_NAME)[-1] == ""
    assert run.samples[TASK_NAME][-1]["exact_match"] == 0.0


def test_use_cache_resumes_without_recomputing(cli_runs, task_folder):
    first, second = cli_runs.first, cli_runs.second
    assert second.results is not None, second.output[-5000:]
    assert second.vision_tower_frames == []  # nothing decoded or encoded again
    assert second.responses(TASK_NAME) == first.responses(TASK_NAME)
    assert f"{len(task_folder.docs) - 1}/{len(task_folder.docs)} cache hits" in second.output
    # The failed request is not cached: the resumed run tries it again, and counts it again.
    assert second.results["throughput"]["avg_failed_requests"] == 1


# ----------------------------------------------------------------------------------------------------------------------
# In-process: requests lmms-eval builds, handed to the model directly
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lmms_model(checkpoint):
    from hour_llava.evaluation.lmms_eval_model import HourLlavaLmms

    return HourLlavaLmms(pretrained=str(checkpoint), device="cpu", dtype="float32", max_frames=MAX_FRAMES)


def make_requests(model, docs: list[dict], doc_to_messages) -> list:
    from lmms_eval.api.instance import Instance

    model.task_dict = {"toy": {"test": docs}}
    return [
        Instance(
            request_type="generate_until",
            arguments=("", doc_to_messages, dict(GENERATION_KWARGS), doc_id, "toy", "test"),
            idx=0,
            metadata={"task": "toy", "doc_id": doc_id, "repeats": 1},
        )
        for doc_id in range(len(docs))
    ]


def video_question(doc: dict) -> list[dict]:
    return [{"role": "user", "content": [{"type": "video", "url": doc["video"]}, {"type": "text", "text": doc["q"]}]}]


def test_a_task_that_exits_on_a_missing_video_fails_only_that_request(lmms_model, task_folder):
    """Video-MME's `doc_to_visual` calls `sys.exit` for a missing file; LVBench's asserts."""

    def exiting_doc_to_messages(doc):
        if doc["video"] is None:
            raise SystemExit("video path:/data/videomme/data/abc.mp4 does not exist, please check")
        return video_question(doc)

    video = task_folder.docs[0]["video"]
    docs = [{"video": video, "q": "What?"}, {"video": None, "q": "What?"}, {"video": video, "q": "Why?"}]
    answers = lmms_model.generate_until(make_requests(lmms_model, docs, exiting_doc_to_messages))
    assert answers[0].text and answers[2].text
    assert answers[1].text == ""


def test_unsupported_media_and_request_types_raise(lmms_model, task_folder):
    from PIL import Image

    def image_question(doc):
        return [{"role": "user", "content": [{"type": "image", "url": Image.new("RGB", (8, 8))},
                                             {"type": "text", "text": "What?"}]}]

    with pytest.raises(ValueError, match="toy doc 0 gives image input"):
        lmms_model.generate_until(make_requests(lmms_model, [{}], image_question))

    def two_videos(doc):
        video = task_folder.docs[0]["video"]
        return [{"role": "user", "content": [{"type": "video", "url": video}, {"type": "video", "url": video},
                                             {"type": "text", "text": "What?"}]}]

    with pytest.raises(ValueError, match="toy doc 0 gives 2 videos"):
        lmms_model.generate_until(make_requests(lmms_model, [{}], two_videos))
    with pytest.raises(NotImplementedError, match="no loglikelihood"):
        lmms_model.loglikelihood(make_requests(lmms_model, [{}], two_videos))


def test_max_new_tokens_argument_replaces_the_tasks(lmms_model, task_folder):
    docs = [{"video": task_folder.docs[0]["video"], "q": "What?"}]
    lmms_model.max_new_tokens = 1
    try:
        [answer] = lmms_model.generate_until(make_requests(lmms_model, docs, video_question))
    finally:
        lmms_model.max_new_tokens = None
    assert answer.token_counts.output_tokens == 1


def test_generation_kwargs_of_tasks(lmms_model):
    # Video-MME's: greedy, so its temperature/top_p do not reach `generate`; `until` is lmms-eval's, not generate's.
    videomme = {"max_new_tokens": 16, "temperature": 0, "top_p": 1.0, "num_beams": 1, "do_sample": False,
                "until": ["\n\n"], "min_new_tokens": 2}
    assert lmms_model.generate_kwargs(videomme) == {"max_new_tokens": 16, "do_sample": False, "num_beams": 1,
                                                    "min_new_tokens": 2}
    sampled = lmms_model.generate_kwargs({"temperature": 0.7, "top_p": 0.9})
    assert sampled == {"temperature": 0.7, "top_p": 0.9, "do_sample": True, "num_beams": 1, "max_new_tokens": 128}


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"fps": "-1"}, ValueError, "fps='-1' must be greater than 0"),
        ({"max_frames": "2.5"}, ValueError, "max_frames='2.5' is not an integer"),
        ({"add_time_instruction": "maybe"}, ValueError, "add_time_instruction='maybe' is not true or false"),
        ({"num_frames": 8}, TypeError, r"Unknown --model_args for hour_llava: \['num_frames'\]"),
    ],
)
def test_bad_model_arguments_are_named(checkpoint, arguments, error, message):
    from hour_llava.evaluation.lmms_eval_model import HourLlavaLmms

    with pytest.raises(error, match=message):
        HourLlavaLmms(pretrained=str(checkpoint), device="cpu", **arguments)


def test_registered_as_a_chat_model_through_entry_points():
    from lmms_eval.models import get_model

    from hour_llava.evaluation.lmms_eval_model import HourLlavaLmms

    assert get_model("hour_llava") is HourLlavaLmms
    assert HourLlavaLmms.is_simple is False


def test_nan_free_throughput_when_nothing_was_generated(lmms_model):
    from lmms_eval.models.model_utils.gen_metrics import get_logged_metrics_history, reset_logged_metrics

    reset_logged_metrics()
    lmms_model.generate_until(make_requests(lmms_model, [{"video": "/no/such/video.mp4", "q": "?"}], video_question))
    [metrics] = get_logged_metrics_history()
    assert metrics["failed_requests"] == 1 and "ttft" not in metrics
    assert all(not (isinstance(value, float) and math.isnan(value)) for value in metrics.values())


# ----------------------------------------------------------------------------------------------------------------------
# `hour-llava demo`'s held-out questions as an lmms-eval task
# ----------------------------------------------------------------------------------------------------------------------
def small_demo_settings():
    from hour_llava.demo import DemoSettings
    from hour_llava.demo.experiment import CurriculumPhase
    from hour_llava.demo.synthetic import TASKS, SplitSpec

    return DemoSettings(
        curriculum=(CurriculumPhase(SplitSpec("train_short", 1, 8, 8)), CurriculumPhase(SplitSpec("train_long", 1, 16, 16))),
        held_out=SplitSpec("test", 3, 128, 150),
        tasks=TASKS,  # every column of the demo's table
    )


def test_demo_task_scores_exactly_as_the_demo(tmp_path):
    """The demo's own evaluation (pipeline, batches of `eval_batch_size` per video) and lmms-eval on the written task
    folder, with the same (untrained) model and questions: the same answers and the demo table's accuracies."""
    from hour_llava.demo.experiment import MODEL_VARIANTS, build_model, demo_processor, demo_tokenizer, evaluate, make_data
    from hour_llava.demo.report import COLUMNS, accuracy
    from hour_llava.evaluation.demo_task import DEMO_TASK, metric_name, write_demo_task

    settings = small_demo_settings()
    data = make_data(settings, seed=0, data_dir=tmp_path / "data")
    tokenizer = demo_tokenizer()
    model = build_model(tokenizer, MODEL_VARIANTS[0], seed=0)
    processor = demo_processor(model.config, tokenizer, settings)
    records = evaluate(model, processor, data, settings, model.config)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    folder = write_demo_task(tmp_path / "task", data.eval_samples, records, data.video_root)

    arguments = [
        "--model", "hour_llava",
        "--model_args", model_args(tmp_path / "model"),
        "--tasks", DEMO_TASK,
        "--include_path", str(folder),
        "--batch_size", str(settings.eval_batch_size),
        "--log_samples",
    ]
    run = run_lmms_eval(arguments, tmp_path / "out", lmms_eval_env(tmp_path))
    assert run.results is not None, run.output[-5000:]
    assert run.responses(DEMO_TASK) == [record["prediction"] for record in records]
    results = run.results["results"][DEMO_TASK]
    assert results["accuracy,none"] == pytest.approx(100 * sum(r["correct"] for r in records) / len(records))
    for column in COLUMNS:
        expected = 100 * accuracy(records, column)[0]
        assert results[f"{metric_name(column)},none"] == pytest.approx(expected, nan_ok=True), column


def test_demo_scoring_equals_the_demos_table_on_mixed_answers(tmp_path):
    """Half the answers right, in every column: the task's per-question scores aggregate to the demo's accuracies."""
    import json
    import random

    from hour_llava.demo import synthetic
    from hour_llava.demo.experiment import score
    from hour_llava.demo.report import COLUMNS, accuracy
    from hour_llava.evaluation.demo_task import mean_percent, metric_name, process_results, write_demo_task
    from hour_llava.tiny import tiny_config

    config = tiny_config(vocab_size=300, video_token_id=299)
    rng = random.Random(0)
    samples = synthetic.evaluation_samples(synthetic.make_videos(synthetic.SplitSpec("test", 24, 128, 300), rng))
    predictions = [
        (sample["conversations"][1]["value"] + " then more") if index % 2 else "purple-ish"
        for index, sample in enumerate(samples)
    ]
    records = [score(sample, prediction, config, config) for sample, prediction in zip(samples, predictions)]
    folder = write_demo_task(tmp_path / "task", samples, records, tmp_path / "videos")
    docs = [json.loads(line) for line in (folder / "docs.jsonl").read_text().splitlines()]
    scores = [process_results(doc, [prediction]) for doc, prediction in zip(docs, predictions)]
    for column in COLUMNS:
        expected, count = accuracy(records, column)
        assert count > 0 and 0 < expected < 1, column  # a column with right and wrong answers
        assert mean_percent([s[metric_name(column)] for s in scores]) == pytest.approx(100 * expected), column
