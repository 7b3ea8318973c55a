"""The app's functions without a browser: answers, timings, the feature cache, plot data, bad input, the CLI."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from app_helpers import ScriptedAnswer, bad_uploads, colour_video, tiny_chat

from hour_llava.app import (
    AttentionTimeline,
    NoModelError,
    Turn,
    VideoInputError,
    demo_examples,
    demo_model_dir,
    render_timeline,
)
from hour_llava.app.chat import chat_messages


gr = pytest.importorskip("gradio", reason="the app's page needs the [app] extra")
from hour_llava.app.ui import ChatApp, timings_table  # noqa: E402


@pytest.fixture(scope="module")
def chat():
    return tiny_chat()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return colour_video(tmp_path_factory.mktemp("videos") / "colours.mp4", num_frames=24)


def answer_of(chat, video, question, history=(), progress=None):
    *streamed, final = chat.ask(video, question, history, progress)
    return streamed, final


# ----------------------------------------------------------------------------------------------------------------------
# Answers, streaming, timings, cache
# ----------------------------------------------------------------------------------------------------------------------
def test_answer_streams_word_by_word(tmp_path):
    chat = tiny_chat(max_new_tokens=40)
    video = colour_video(tmp_path / "v.mp4")
    scripted = ScriptedAnswer(chat.processor.tokenizer, "red then blue then green")
    chat.generate_kwargs = {"do_sample": False, "logits_processor": [scripted]}
    streamed, final = answer_of(chat, video, "What colours?")
    texts = [answer.text for answer in streamed]
    assert final.done and final.text == "red then blue then green"
    assert len(texts) >= 4, texts  # the streamer releases each word once the next one starts
    assert all(final.text.startswith(text) for text in texts)
    assert texts == sorted(texts, key=len)
    assert final.timings.num_tokens == len(scripted.token_ids)
    assert 0 < final.timings.first_token_seconds <= final.timings.answer_seconds


def test_answer_is_the_pipelines_answer(chat, video):
    """The app's own generation loop answers as `pipeline("video-text-to-text")` does for the same chat."""
    _, first = answer_of(chat, video, "What colour is the video?")
    history = [Turn(first.question, first.text)]
    _, second = answer_of(chat, video, "And at the end?", history)
    messages = chat_messages(str(video), "And at the end?", history)
    expected = chat.pipeline(messages, max_new_tokens=chat.max_new_tokens, do_sample=False, return_full_text=False)
    assert second.text == expected[0]["generated_text"]


def test_second_question_reuses_the_cached_features(tmp_path, monkeypatch):
    chat = tiny_chat()
    video = colour_video(tmp_path / "v.mp4", num_frames=20)
    tower_calls = []
    original = chat.model.get_pooled_video_features

    def counted(chunks):
        tower_calls.append(1)
        return original(chunks)

    monkeypatch.setattr(chat.model, "get_pooled_video_features", counted)
    progress = []
    _, first = answer_of(chat, video, "first?", progress=progress.append)
    _, second = answer_of(chat, video, "second?", [Turn(first.question, first.text)], progress=progress.append)
    assert not first.timings.video.from_cache and second.timings.video.from_cache
    assert first.timings.video.num_frames == second.timings.video.num_frames == 20
    assert len(tower_calls) == 1  # the vision tower ran once
    assert progress == [16, 20]  # vision_chunk_size 16: reported after each chunk, first question only
    assert second.timings.video.seconds < first.timings.video.seconds
    assert chat.pipeline.video_cache.misses == 1


def test_a_rewritten_file_is_encoded_again(tmp_path):
    chat = tiny_chat()
    video = colour_video(tmp_path / "v.mp4", num_frames=20)
    _, first = answer_of(chat, video, "q?")
    colour_video(video, num_frames=24)  # same name, new content
    _, second = answer_of(chat, video, "q?")
    assert not second.timings.video.from_cache and second.timings.video.num_frames == 24


def test_history_opens_with_the_video():
    messages = chat_messages("v.mp4", "q3", [Turn("q1", "a1"), Turn("q2", "a2")])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"][0] == {"type": "video", "path": "v.mp4"}
    assert all(block["type"] == "text" for m in messages[1:] for block in m["content"])
    assert [m["content"][-1]["text"] for m in messages] == ["q1", "a1", "q2", "a2", "q3"]


def test_thumbnails_are_the_frames_the_model_saw(chat, video):
    encoded, _ = chat.prepare_video(video)
    assert encoded.thumbnails.shape == (24, 64, 64, 3) and encoded.thumbnails.dtype == torch.uint8
    for index in (0, 7, 23):
        expected = torch.tensor([10 * index % 256, 120, 255 - 8 * index % 256]).float()
        assert (encoded.thumbnails[index].float().mean(dim=(0, 1)) - expected).abs().max() < 6


def test_empty_question_is_refused(chat, video):
    with pytest.raises(ValueError, match="question is empty"):
        next(chat.ask(video, "   "))


# ----------------------------------------------------------------------------------------------------------------------
# MemAug's attention: plot data from the model's public `video_outputs`
# ----------------------------------------------------------------------------------------------------------------------
def test_answer_reports_memaug_attention_over_the_video(chat, video):
    _, final = answer_of(chat, video, "Where is the flash?")
    timeline = final.timeline
    assert timeline.has_attention and timeline.attention.shape == (24,)
    assert timeline.attention.sum() == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(timeline.timestamps, np.arange(24.0))
    assert timeline.kept_frames.tolist() == chat.model.config.kept_frame_indices(24)
    assert timeline.top_frames[0] == int(np.argmax(timeline.attention)) and len(timeline.top_frames) == 4
    assert final.timings.attention_seconds > 0
    assert chat.model.config._attn_implementation == "sdpa"  # MemAug is eager for the attention pass only


def test_a_model_without_memaug_has_a_timeline_without_attention(tmp_path):
    from hour_llava.app import VideoChat
    from hour_llava.processing import HourLlavaProcessor
    from hour_llava.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, memaug_depth=0)
    chat = VideoChat.from_model(model, HourLlavaProcessor.from_model_config(model.config, tokenizer), max_new_tokens=2)
    _, final = answer_of(chat, colour_video(tmp_path / "v.mp4"), "q?")
    assert not final.timeline.has_attention and final.timeline.top_frames == []
    assert final.timeline.kept_frames.tolist() == model.config.kept_frame_indices(24)


def test_attention_is_skipped_where_eager_memaug_would_not_fit(tmp_path):
    chat = tiny_chat(max_attention_bytes=1000)
    _, final = answer_of(chat, colour_video(tmp_path / "v.mp4"), "q?")
    assert not final.timeline.has_attention
    assert "more than this app's limit of 1000 bytes" in final.timeline.note
    assert final.timeline.kept_frames.tolist() == chat.model.config.kept_frame_indices(24)


def fake_video_outputs(attention, kept):
    attention = None if attention is None else (torch.tensor(attention, dtype=torch.float32),)
    return SimpleNamespace(memory_attention=attention, kept_frame_indices=(torch.tensor(kept),))


def test_timeline_plot_data_from_video_outputs():
    outputs = fake_video_outputs([0.1, 0.05, 0.4, 0.05, 0.3, 0.1], [0, 2, 4])
    timeline = AttentionTimeline.from_video_outputs(outputs, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0], top_k=3)
    assert timeline.top_frames == [2, 4, 0]  # ties go to the earlier frame (0 and 5 share 0.1)
    assert timeline.peak_second() == 4.0
    assert timeline.timestamps[timeline.kept_frames].tolist() == [0.0, 4.0, 8.0]


@pytest.mark.parametrize(
    ("attention", "kept", "message"),
    [([0.5, 0.5], [0], r"memory_attention\[0\] has shape \(2,\), but the video has 3 decoded frames"),
     ([0.2, 0.3, 0.5], [0, 3], "holds frame 3, outside the video's 3 decoded frames"),
     ([0.2, 0.3, 0.5], [-1], "holds frame -1")],
)
def test_timeline_refuses_outputs_that_do_not_fit_the_video(attention, kept, message):
    with pytest.raises(ValueError, match=message):
        AttentionTimeline.from_video_outputs(fake_video_outputs(attention, kept), [0.0, 1.0, 2.0])


def test_timeline_plot_shows_the_most_attended_frames():
    attention = np.full(10, 0.05)
    attention[6] = 0.55
    timeline = AttentionTimeline.from_video_outputs(fake_video_outputs(attention, [1, 5, 9]), np.arange(10.0), top_k=2)
    thumbnails = np.zeros((10, 64, 64, 3), np.uint8)
    thumbnails[6] = (250, 0, 250)  # only the most-attended frame is magenta
    plot = np.asarray(render_timeline(timeline, thumbnails, title="q"))
    without = np.asarray(render_timeline(timeline))
    magenta = (plot[..., 0] > 230) & (plot[..., 1] < 30) & (plot[..., 2] > 230)
    assert magenta.sum() > 2000  # the thumbnail is drawn (matplotlib draws nothing magenta itself)
    assert not ((without[..., 0] > 230) & (without[..., 1] < 30) & (without[..., 2] > 230)).any()
    assert plot.shape[0] > without.shape[0] and plot.shape[2] == 3


def test_timeline_plot_without_memaug():
    timeline = AttentionTimeline.from_video_outputs(fake_video_outputs(None, [0, 4]), np.arange(8.0))
    assert render_timeline(timeline, np.zeros((8, 64, 64, 3), np.uint8)).size[0] > 0


# ----------------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "message"),
    [("text", "notes.mp4 is not a video this app can read"),
     ("audio", "speech.m4a is not a video this app can read: .*no video stream"),
     ("audio named .mp4", "song.mp4 is not a video this app can read: .*no video stream"),
     ("truncated", "truncated.mp4 is not a video this app can read"),
     ("empty", "empty.mp4 is empty")],
)
def test_bad_videos_get_a_readable_message(chat, video, tmp_path, kind, message):
    path = bad_uploads(tmp_path, video)[kind]
    with pytest.raises(VideoInputError, match=message):
        chat.check_video(path)
    with pytest.raises(VideoInputError, match=message):
        next(chat.ask(path, "q?"))


def test_missing_and_oversized_videos_are_refused(video, tmp_path):
    chat = tiny_chat(max_video_bytes=100)
    with pytest.raises(VideoInputError, match=r"colours.mp4 is \d+(\.\d)? KB, more than this app's limit of 100 bytes"):
        chat.check_video(video)
    with pytest.raises(VideoInputError, match="gone.mp4: no such file"):
        chat.check_video(tmp_path / "gone.mp4")


# ----------------------------------------------------------------------------------------------------------------------
# Page handlers (what the browser calls)
# ----------------------------------------------------------------------------------------------------------------------
def run_question(app, question, video, answers):
    return list(app.on_question(question, video, answers, progress=lambda *args, **kwargs: None))


def test_page_shows_both_timings_and_the_plot(tmp_path):
    app = ChatApp(tiny_chat())
    video = str(colour_video(tmp_path / "v.mp4"))
    path, answers, chatbot, timings, plot, status = app.on_video(video)
    assert path == video and answers == [] and "ready" in status
    *_, first = run_question(app, "first?", path, answers)
    *_, second = run_question(app, "second?", path, first[3])
    chatbot, timings, plot, answers, question_box, status = second
    assert [m["role"] for m in chatbot] == ["user", "assistant"] * 2 and question_box == ""
    assert [answer.question for answer in answers] == ["first?", "second?"]
    rows = [row for row in timings.splitlines() if row.startswith("| 1") or row.startswith("| 2")]
    assert "decoded + encoded 24 frames" in rows[0] and "from the cache" in rows[1]
    assert plot.size[0] > 0 and "MemAug looked most at" in status
    assert answers[0].timeline is None  # the state keeps text and timings, not plot data or videos


def test_page_keeps_serving_after_bad_input(tmp_path):
    app = ChatApp(tiny_chat())
    good = colour_video(tmp_path / "v.mp4")
    for kind, bad in bad_uploads(tmp_path / "bad", good).items():
        path, _, _, _, _, status = app.on_video(str(bad))
        assert path is None and status.startswith("⚠️") and bad.name in status, kind
        *_, (_, _, _, answers, _, status) = run_question(app, "q?", str(bad), [])
        assert answers == [] and status.startswith("⚠️") and bad.name in status, kind
    *_, (_, _, _, answers, _, status) = run_question(app, "q?", None, [])
    assert "Upload a video" in status
    path, *_ = app.on_video(str(good))
    *_, (chatbot, _, _, answers, _, _) = run_question(app, "q?", path, [])
    assert len(answers) == 1 and chatbot[-1]["role"] == "assistant"


def test_page_says_when_the_answer_is_empty(tmp_path):
    chat = tiny_chat()
    chat.generate_kwargs = {"do_sample": False, "logits_processor": [ScriptedAnswer(chat.processor.tokenizer, "")]}
    *_, (chatbot, timings, _, answers, _, _) = run_question(ChatApp(chat), "q?", str(colour_video(tmp_path / "v.mp4")), [])
    assert chatbot[-1]["content"] == "(the model gave an empty answer)"
    assert "| 1 token in" in timings  # the end of the turn, alone


def test_timings_table_escapes_questions():
    from hour_llava.app import Answer, AnswerTimings, VideoTiming

    answer = Answer("a|b <script>", "x", AnswerTimings(VideoTiming(0.5, False, 3), 0.1, 0.2, 4, 0.05))
    table = timings_table([answer])
    assert "a\\|b &lt;script&gt;" in table and "decoded + encoded 3 frames: 0.50 s" in table


# ----------------------------------------------------------------------------------------------------------------------
# Default model and examples (what `hour-llava demo` saved)
# ----------------------------------------------------------------------------------------------------------------------
def test_no_demo_model_says_how_to_make_one(tmp_path):
    with pytest.raises(NoModelError, match="Train one with `hour-llava demo`"):
        demo_model_dir(tmp_path / "hour-llava-demo")


def test_demo_examples_prefer_the_flash_question(tmp_path):
    data = tmp_path / "seed0" / "data"
    (data / "videos" / "synthetic" / "test").mkdir(parents=True)
    for name in ("test/test_0000.mp4", "test/test_0001.mp4"):
        colour_video(data / "videos" / "synthetic" / name, num_frames=2)
    samples = [
        {"video": video, "data_source": "synthetic", "task": task,
         "conversations": [{"from": "human", "value": f"<image>\n{task} {video}?"}, {"from": "gpt", "value": "x"}]}
        for video in ("test/test_0000.mp4", "test/test_0001.mp4", "test/missing.mp4") for task in ("count", "needle")
    ]
    (data / "test.json").write_text(json.dumps(samples))
    examples = demo_examples(tmp_path)
    assert [e.question for e in examples] == ["needle test/test_0000.mp4?", "needle test/test_0001.mp4?"]
    assert all(e.video.is_file() for e in examples)
    assert demo_examples(tmp_path / "elsewhere") == []


def test_cli_without_a_model_explains(tmp_path, monkeypatch, capsys):
    from hour_llava.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["app"]) == 1
    error = capsys.readouterr().err
    assert "no demo model in hour-llava-demo/hour-llava-demo/" in error
    assert "Train one with `hour-llava demo`" in error and "--model" in error
