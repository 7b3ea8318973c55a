"""The offline demo: synthetic data that says what it shows, scoring, and a miniature end-to-end run."""

import json
import random

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from hour_llava.cli import build_parser
from hour_llava.demo import DemoSettings, run_demo
from hour_llava.demo import synthetic
from hour_llava.demo.experiment import (
    MODEL_VARIANTS,
    CurriculumPhase,
    first_word,
    kept_seconds,
    prepare_seed,
    reproducible_torch,
    score,
    train_variant,
)
from hour_llava.demo.report import CHANCE, COLUMNS, markdown_table
from hour_llava.modeling import HourLlavaConfig
from hour_llava.processing import HourLlavaVideoProcessor
from hour_llava.training import VideoRoots, load_video_instruction_dataset


def closest_colour(pixel: np.ndarray) -> str:
    return min(synthetic.COLOURS, key=lambda name: np.abs(np.array(synthetic.COLOURS[name]) - pixel).sum())


def test_rendered_frames_show_what_the_answers_say():
    rng = random.Random(3)
    for index in range(20):
        video = synthetic.random_video(f"v{index}.mp4", rng.randint(16, 300), rng)
        frames = np.stack(list(video.frames())).astype(int)
        assert frames.shape == (video.seconds, synthetic.FRAME_SIZE, synthetic.FRAME_SIZE, 3)
        answers = {qa.task: qa for qa in video.questions_asked}
        flash = answers["needle"].evidence_seconds[0]
        # The flash is one frame: white bars at the top and bottom, its colour in between, nowhere else.
        bars = (frames[:, 0] == 255).all(axis=(1, 2))
        assert bars.nonzero()[0].tolist() == [flash]
        assert closest_colour(frames[flash, 16, 16]) == answers["needle"].answer
        attribute = answers["attribute"]
        for second in attribute.evidence_seconds:
            if second != flash:
                assert closest_colour(frames[second, 4, 4]) == attribute.answer
        assert answers["count"].answer == synthetic.NUMBER_WORDS[len(video.balls) - 1]
        starts = [ball.start for ball in video.balls]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
        if "order" in answers:
            assert answers["order"].answer == video.balls[0].colour != video.balls[1].colour


def test_training_samples_are_videomarathon_rows_the_loader_reads(tmp_path):
    rng = random.Random(0)
    videos = synthetic.make_videos(synthetic.SplitSpec("train", 3, 16, 20), rng)
    synthetic.write_videos(videos, tmp_path / "videos")
    samples = synthetic.training_samples(videos, rows_per_video=4, rng=rng)
    assert len(samples) == 12
    for sample in samples:
        turns = sample["conversations"]
        assert turns[0]["value"].startswith("<image>\n") and sum("<image>" in t["value"] for t in turns) == 1
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
    path = synthetic.write_json(tmp_path / "train.json", samples)
    dataset = load_video_instruction_dataset(str(path), VideoRoots(root=str(tmp_path / "videos")))
    assert len(dataset) == 12
    first = dataset[0]
    assert first["video_path"].endswith(first["video"].split("/", 1)[1])
    frames = HourLlavaVideoProcessor(size={"height": 32, "width": 32})(first["video_path"])
    video = next(v for v in videos if first["video"].endswith(v.name))
    assert int(frames["video_num_frames"][0]) == video.seconds  # 1 FPS sampling sees every frame


def test_kept_seconds_and_scoring():
    config = HourLlavaConfig(
        vision_config={"image_size": 32, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 64},
        text_config={"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "intermediate_size": 128, "num_hidden_layers": 1, "vocab_size": 100},
        video_pool_size=4, spatial_keep_tokens=4, min_video_frames=16,
    )
    kept = kept_seconds(config, 200)
    assert len(kept) == 50 and 0 in kept and 199 in kept
    assert kept_seconds(config, 8) <= set(range(8))  # short videos are upsampled first; seconds stay in range
    dropped = next(s for s in range(200) if s not in kept)
    sample = {"id": "x", "task": "needle", "seconds": 200, "evidence_seconds": [dropped],
              "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "red"}]}
    record = score(sample, " Red.", config, config)
    assert record["correct"] and record["dropped_by_forgetting"] and not record["in_llm_input"]
    assert not score(sample, "blue", config, config)["correct"]
    assert first_word("") == ""


def test_demo_command_is_registered():
    args = build_parser().parse_args(["demo", "--seed", "4", "--output-dir", "out", "--full"])
    assert args.seed == 4 and args.full and str(args.output_dir) == "out"
    assert DemoSettings.full(4).seeds == (4, 5, 6)


def test_needle_only_samples_ask_only_for_the_flash():
    rng = random.Random(1)
    videos = synthetic.make_videos(synthetic.SplitSpec("train_first", 5, 3, 8), rng)
    samples = synthetic.training_samples(videos, rows_per_video=2, rng=rng, tasks=("needle",))
    assert sorted(s["video"] for s in samples) == sorted(v.name for v in videos for _ in range(2))
    for sample in samples:
        video = next(v for v in videos if v.name == sample["video"])
        assert sample["conversations"] == [
            {"from": "human", "value": "<image>\n" + synthetic.QUESTION_TEMPLATES["needle"]},
            {"from": "gpt", "value": video.flash_colour},
        ]
    held_out = synthetic.evaluation_samples(videos, tasks=("needle", "count"))
    assert [s["task"] for s in held_out] == ["needle", "count"] * len(videos)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("models", ("hour-llava", "llava"), "DemoSettings.models"), ("models", (), "DemoSettings.models"),
     ("threads", 0, "DemoSettings.threads"), ("tasks", ("count",), "DemoSettings.tasks"),
     ("tasks", ("needle", "colour"), "DemoSettings.tasks"),
     ("attention_questions", 0, "DemoSettings.attention_questions")],
)
def test_demo_settings_refuse_unknown_models_and_threads(field, value, message):
    with pytest.raises(ValueError, match=message):
        DemoSettings(**{field: value})


def test_default_run_trains_hour_llava_and_the_model_without_memaug():
    assert [v.name for v in DemoSettings().variants()] == ["hour-llava", "no-memaug"]
    assert [v.name for v in DemoSettings.full().variants()] == [v.name for v in MODEL_VARIANTS]


def test_cpu_training_is_reproducible(tmp_path):
    """Two trainings with the same seed and settings give bit-identical losses and weights (a few hundred steps)."""
    settings = DemoSettings(
        curriculum=(
            CurriculumPhase(synthetic.SplitSpec("train_first", 40, 3, 8)),
            CurriculumPhase(synthetic.SplitSpec("train_short", 4, 8, 12), rows_per_video=40),
            CurriculumPhase(synthetic.SplitSpec("train_long", 2, 24, 32), rows_per_video=30),
        ),
        held_out=synthetic.SplitSpec("test", 1, 16, 20),
        tasks=synthetic.TASKS,
        batch_size=1,
        threads=1,
    )
    runs = []
    with reproducible_torch(settings.threads):
        prepared = prepare_seed(settings, 3, tmp_path, step=lambda message: None)
        assert len(prepared.dataset) == 260
        for attempt in range(2):
            model, _, run = train_variant(settings, 3, MODEL_VARIANTS[0], prepared, tmp_path / f"run{attempt}")
            runs.append((run.log_history, model.state_dict()))
    (history, weights), (history_again, weights_again) = runs
    assert history[-1]["step"] == 260 and len(history) > 10
    assert [h["loss"] for h in history] == [h["loss"] for h in history_again]
    assert [h["grad_norm"] for h in history] == [h["grad_norm"] for h in history_again]
    assert all(torch.equal(weights[name], weights_again[name]) for name in weights)
    assert history[0]["loss"] != history[-1]["loss"]  # it did train


def tiny_settings() -> DemoSettings:
    return DemoSettings(
        seeds=(0,),
        curriculum=(
            CurriculumPhase(synthetic.SplitSpec("train_first", 4, 3, 8)),
            CurriculumPhase(synthetic.SplitSpec("train_short", 4, 16, 20), rows_per_video=2),
            CurriculumPhase(synthetic.SplitSpec("train_long", 2, 128, 140), rows_per_video=2),
        ),
        held_out=synthetic.SplitSpec("test", 2, 128, 140),
        batch_size=4,
        models=tuple(variant.name for variant in MODEL_VARIANTS),
    )


def test_miniature_demo_end_to_end(tmp_path):
    """Every step of `hour-llava demo` on a handful of videos: data, cache, three trainings, pipeline evaluation,
    save/reload with the Auto classes, report and plots. (Too little training to say anything about accuracy.)"""
    settings = tiny_settings()
    report = run_demo(settings, tmp_path)
    text = report.read_text()
    assert "| `hour-llava`" in text and "| `no-memaug`" in text and "| `uniform-64`" in text
    for image in ("demo_accuracy_by_task.png", "demo_training_loss.png"):
        assert (tmp_path / "images" / image).read_bytes()[:4] == b"\x89PNG"
        assert f"](images/{image})" in text
    result = json.loads((tmp_path / "seed0" / "result.json").read_text())
    assert set(result["records"]) == {"hour-llava", "no-memaug", "uniform-64"}
    test_questions = json.loads((tmp_path / "seed0" / "data" / "test.json").read_text())
    for records in result["records"].values():
        assert [r["id"] for r in records] == [s["id"] for s in test_questions]
    for run in result["training"].values():
        assert run["log_history"][0]["step"] > 0
    dropped = [r for r in result["records"]["hour-llava"] if r["dropped_by_forgetting"]]
    peaks = result["flash_attention"]
    assert peaks["questions"] == min(len(dropped), settings.attention_questions)
    assert 0 <= peaks["peak_at_flash"] <= peaks["questions"]
    check = result["reload_check"]
    assert check["expected"] in synthetic.COLOURS and isinstance(check["answer"], str)
    assert (tmp_path / "hour-llava-demo" / "config.json").is_file()
    assert check["id"] == next(s["id"] for s in test_questions if s["task"] == "needle")
    # The saved processor keeps the demo's prompt: no time instruction, as in training.
    assert AutoProcessor.from_pretrained(tmp_path / "hour-llava-demo").add_time_instruction is False
    # ... and its held-out questions are an lmms-eval task folder (tests/test_lmms_eval.py runs one through lmms-eval)
    task_docs = (tmp_path / "lmms-eval-task" / "docs.jsonl").read_text().splitlines()
    assert [json.loads(doc)["id"] for doc in task_docs] == [s["id"] for s in test_questions]
    if result["timeline"] is not None:  # both test videos' flashes may have been kept
        attention = np.array(result["timeline"]["attention"])
        assert len(attention) == next(s["seconds"] for s in test_questions if s["id"] == result["timeline"]["id"])
        assert attention.sum() == pytest.approx(1.0, abs=1e-3)  # float32 softmax rows, averaged
        assert (tmp_path / "images" / "demo_memaug_attention_timeline.png").is_file()

    # A second run with the same settings reuses the results; other settings are refused, not mixed in.
    assert run_demo(settings, tmp_path) == report
    with pytest.raises(ValueError, match="other settings"):
        run_demo(DemoSettings.quick(1), tmp_path)



def test_verdict_reads_every_seed_not_the_mean():
    """Two seeds at 100% and 75% average 87.5%, but one seed misses 85%: the report must say so."""
    from hour_llava.demo.experiment import SeedResult
    from hour_llava.demo.report import _reading_notes

    def needles(correct: int, total: int) -> list[dict]:
        return [{"task": "needle", "dropped_by_forgetting": True, "correct": i < correct} for i in range(total)]

    def seed(seed: int, memaug_correct: int) -> SeedResult:
        return SeedResult(seed, {"hour-llava": needles(memaug_correct, 4), "no-memaug": needles(0, 4)}, {})

    assert "meets the target" in _reading_notes([seed(0, 4), seed(1, 4)])
    assert "does not meet the target" in _reading_notes([seed(0, 4), seed(1, 3)])


def test_seed_plot_draws_every_seed(tmp_path):
    from hour_llava.demo.experiment import SeedResult
    from hour_llava.demo.report import plot_seed_accuracy

    def needles(correct: int) -> list[dict]:
        return [{"task": "needle", "dropped_by_forgetting": True, "correct": i < correct} for i in range(4)]

    results = [SeedResult(seed, {"hour-llava": needles(4), "no-memaug": needles(seed)}, {}) for seed in range(3)]
    path = plot_seed_accuracy(results, tmp_path / "seeds.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
