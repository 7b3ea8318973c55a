"""The vLLM plugin (`hour_llava.vllm`) against our transformers model.

The plugin's torch parts (config reading, memory, forgetting, MemAug) are checked here in the base environment. The
end-to-end tests run `vllm.LLM` and `vllm serve` in vLLM's own environment (`.ci/vllm-env.sh`; vLLM pins an older
transformers), whose python `HOUR_LLAVA_VLLM_PYTHON` names; without it they are skipped.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from hour_llava import HourLlavaProcessor
from hour_llava.tiny import tiny_model
from hour_llava.video_writing import write_video
from hour_llava.vllm.configuration import HourLlavaVllmConfig
from hour_llava.vllm.memory_augmentation import MemoryAugmentation, build_video_memory


VLLM_PYTHON = os.environ.get("HOUR_LLAVA_VLLM_PYTHON")
needs_vllm = pytest.mark.skipif(
    not VLLM_PYTHON,
    reason="HOUR_LLAVA_VLLM_PYTHON is not set: build vLLM's environment with `.ci/vllm-env.sh` and set it to the "
    "python that script prints",
)
TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
# vLLM's CPU attention backend rejects head_dim 16 (the tiny default); 128 wide with 2 heads gives 64.
HEAD_DIM_64 = {"hidden_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1}
# With the default 0.02 a random tiny model answers every prompt with the same tokens, so no comparison could fail;
# weights 15x larger make the answer depend on the video and the question.
INITIALIZER_RANGE = 0.3
MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def model(tokenizer):
    text_config = {**HEAD_DIM_64, "initializer_range": INITIALIZER_RANGE}
    return tiny_model(tokenizer, text_config=text_config, initializer_range=INITIALIZER_RANGE)


@pytest.fixture(scope="module")
def processor(model, tokenizer):
    return HourLlavaProcessor.from_model_config(model.config, tokenizer)


# ----------------------------------------------------------------------------------------------------------------------
# The plugin's own torch code against the transformers model (no vLLM needed)
# ----------------------------------------------------------------------------------------------------------------------
def test_plugin_config_reads_what_the_model_saved(model, tmp_path):
    model.config.save_pretrained(tmp_path)
    config = HourLlavaVllmConfig.from_pretrained(tmp_path)
    settings = config.memaug_settings()
    for frames in (1, 15, 16, 17, 63, 64, 100, 2047, 2048, 3600, 5000):
        assert settings.num_video_tokens(frames) == model.config.num_video_tokens(frames), frames
    assert config.text_config.hidden_size == 128 and config.vision_config.image_size == 32
    assert (settings.num_attention_heads, settings.num_key_value_heads, settings.intermediate_size) == (
        model.config.memaug_num_attention_heads,
        model.config.memaug_num_key_value_heads,
        model.config.memaug_intermediate_size,
    )
    assert settings.rope_theta == model.config.memaug_rope_theta


def test_plugin_config_without_a_text_config_names_it(model):
    values = model.config.to_dict()
    del values["text_config"]
    with pytest.raises(ValueError, match="no text_config"):
        HourLlavaVllmConfig(**values)


def test_plugin_token_count_is_the_processors(model, processor):
    settings = HourLlavaVllmConfig(**model.config.to_dict()).memaug_settings()
    for frames in (1, 16, 40, 64, 2048, 3600):
        assert settings.num_video_tokens(frames) == processor.num_video_tokens(frames)


@pytest.mark.parametrize("num_frames", [5, 16, 23])
def test_plugin_memory_and_memaug_equal_the_models(model, num_frames):
    """Same weights (loaded by name), same inputs: the plugin's MemAug refines the video tokens as the model does."""
    torch.manual_seed(num_frames)
    inner = model.model
    tokens_per_frame = model.config.video_pool_size**2
    frame_tokens = torch.randn(num_frames, tokens_per_frame, model.config.text_config.hidden_size)
    settings = HourLlavaVllmConfig(**model.config.to_dict()).memaug_settings()
    plugin_memaug = MemoryAugmentation(settings)
    plugin_memaug.load_state_dict(inner.memory_augmentation.state_dict())

    expected_memory = inner.build_video_memory(frame_tokens)
    memory = build_video_memory(frame_tokens, inner.image_newline, settings)
    torch.testing.assert_close(memory.repository, expected_memory.repository, rtol=0, atol=0)
    torch.testing.assert_close(memory.decayed, expected_memory.decayed, rtol=0, atol=0)
    assert memory.decayed_position_ids.tolist() == expected_memory.decayed_position_ids.tolist()

    text = torch.randn(11, model.config.text_config.hidden_size)
    num_decayed = expected_memory.decayed.shape[0]
    sample = torch.cat([text[:7], torch.zeros(num_decayed, text.shape[1]), text[7:]])
    query_mask = torch.ones(sample.shape[0], dtype=torch.bool)
    with torch.no_grad():
        expected, _ = inner.refine_video_tokens(sample, query_mask, 7, 7 + num_decayed, expected_memory)
        refined = plugin_memaug.refine(memory, text[:7], text[7:])
    torch.testing.assert_close(refined, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# End to end in vLLM's environment
# ----------------------------------------------------------------------------------------------------------------------
def noise_video(path: Path, num_frames: int, fps: float, size: tuple[int, int] = (32, 32), seed: int = 0) -> str:
    frames = np.random.default_rng(seed).integers(0, 256, (num_frames, *size, 3), dtype=np.uint8)
    return str(write_video(path, frames, fps=fps))


@pytest.fixture(scope="module")
def checkpoint(model, processor, tmp_path_factory):
    directory = tmp_path_factory.mktemp("vllm") / "checkpoint"
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    directory = tmp_path_factory.mktemp("videos")
    return {
        # 10 s at 4 FPS: fewer than 16 one-second frames, so 16 frames spread over all 40 (upsampled in the model)
        "short": noise_video(directory / "short.mp4", 40, fps=4, seed=1),
        # 40 s at 1 FPS: 40 frames, temporal forgetting keeps 10
        "long": noise_video(directory / "long.mp4", 40, fps=1, seed=2),
        # 48x40 frames, resized to 32x32 by the decoder
        "wide": noise_video(directory / "wide.mkv", 24, fps=2, size=(40, 48), seed=3),
    }


def chat(video: str, question: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "video", "path": video}, {"type": "text", "text": question}]}]


def transformers_generate(model, processor, video: str, question: str, refined_video=None):
    """Greedy tokens of our transformers model; `refined_video` replaces MemAug's output (a stale-cache stand-in)."""
    inputs = processor.apply_chat_template(
        chat(video, question), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    captured = {}
    original = model.model.refine_video_tokens

    def refine(*args, **kwargs):
        refined, memory_attention = original(*args, **kwargs) if refined_video is None else (refined_video, None)
        captured["refined"] = refined
        return refined, memory_attention

    model.model.refine_video_tokens = refine
    try:
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    finally:
        del model.model.refine_video_tokens
    prompt_ids = inputs["input_ids"][0].tolist()
    return prompt_ids, output[0, len(prompt_ids) :].tolist(), captured["refined"]


def run_vllm(script: str, *arguments: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    return subprocess.run(
        [VLLM_PYTHON, str(TESTS / script), *arguments], capture_output=True, text=True, timeout=timeout, env=env
    )


@needs_vllm
def test_vllm_generates_the_same_tokens_as_transformers(model, processor, checkpoint, videos, tmp_path):
    cases = [
        (videos["short"], "What colour is the square?"),
        (videos["short"], "How many balls are there at the end?"),  # same video, another question, same batch
        (videos["long"], "When does the flash happen?"),
        (videos["wide"], "Describe the video."),
        (videos["short"], "What colour is the square?"),  # repeated: a processor/encoder cache hit
    ]
    expected = [transformers_generate(model, processor, video, question) for video, question in cases]

    # The test can fail: answering the second question with the first question's MemAug output (what a cache keyed
    # on the video alone would do) changes the answer, so the token comparison below would see it.
    stale = transformers_generate(model, processor, *cases[1], refined_video=expected[0][2])
    assert not torch.equal(expected[0][2], expected[1][2])
    assert stale[1] != expected[1][1]

    requests = [{"prompt": render(processor, video, question), "video": video} for video, question in cases]
    missing = str(tmp_path / "missing.mp4")
    two_videos = render(processor, videos["long"], "Compare with <video> please.")
    bad_requests = [{"prompt": requests[0]["prompt"], "video": missing}, {"prompt": two_videos, "video": videos["long"]}]
    spec = tmp_path / "requests.json"
    spec.write_text(
        json.dumps(
            {"model": str(checkpoint), "max_tokens": MAX_NEW_TOKENS, "requests": requests, "bad_requests": bad_requests}
        )
    )
    results_path = tmp_path / "results.json"
    completed = run_vllm("vllm_generate.py", str(spec), str(results_path))
    assert completed.returncode == 0, completed.stderr[-6000:]
    results = json.loads(results_path.read_text())

    for index, ((prompt_ids, answer_ids, _), result) in enumerate(zip(expected, results["answers"])):
        assert result["prompt_token_ids"] == prompt_ids, f"request {index}: vLLM's prompt differs"
        assert result["token_ids"] == answer_ids, f"request {index}: vLLM generated other tokens"
    missing_error, two_videos_error = results["errors"]
    assert missing_error is not None and f"Video file not found: {missing!r}" in missing_error
    assert two_videos_error is not None and "one video per prompt" in two_videos_error


def render(processor, video: str, question: str) -> str:
    return processor.apply_chat_template(chat(video, question), add_generation_prompt=True)


@needs_vllm
def test_vllm_serve_answers_a_video_and_survives_a_corrupt_one(model, processor, checkpoint, videos, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(Path(videos["long"]).read_bytes()[:300] + b"\0" * 2000)
    completed = run_vllm("vllm_serve_check.py", str(checkpoint), videos["long"], str(corrupt))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])

    # The server renders the chat, decodes at 1 FPS and adds the time instruction as our processor does.
    prompt_ids, answer_ids, _ = transformers_generate(model, processor, videos["long"], "What happens in the video?")
    assert report["video"]["status"] == 200, report["video"]
    assert report["video"]["prompt_tokens"] == len(prompt_ids)
    assert report["video"]["completion_tokens"] == 8
    assert 400 <= report["corrupt"]["status"] < 500 and "cannot be read" in report["corrupt"]["error"]["message"]
    assert report["after_corrupt"]["status"] == 200 and report["after_corrupt"]["text"] == report["video"]["text"]
