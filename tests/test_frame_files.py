"""A video given as a list of frame files or URLs, through the pipeline (the processor's own tests are in
test_processing.py and test_video_processing.py)."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline
from transformers.utils.chat_template_utils import Chat

from hour_llava.pipelines import TASK
from torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)
from training_helpers import save_tiny_checkpoint
from video_fixtures import level_frames, serve_directory


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return pipeline(TASK, model=str(save_tiny_checkpoint(tmp_path_factory.mktemp("frames"))), device="cpu")


def chat(video) -> list[dict]:
    return [{"role": "user", "content": [{"type": "video", "url": video}, {"type": "text", "text": "What is shown?"}]}]


def test_pipeline_reads_frame_files_as_the_frames(pipe, tmp_path):
    """The model input (pooled features, prompt) from frame files or their URLs equals that from the frames."""
    frames = level_frames(6, 32, 32, noise=20)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame_{index}.png")
    names = [f"frame_{index}.png" for index in range(6)]
    expected = pipe.preprocess(Chat(chat(np.asarray(frames))))
    other = pipe.preprocess(Chat(chat(np.asarray(frames[::-1]))))
    assert not torch.equal(other["pooled_video_features"], expected["pooled_video_features"])
    with serve_directory(tmp_path) as base_url:
        for files in ([str(tmp_path / name) for name in names], [f"{base_url}/{name}" for name in names]):
            inputs = pipe.preprocess(Chat(chat(files)))
            assert torch.equal(inputs["input_ids"], expected["input_ids"])
            torch.testing.assert_close(inputs["pooled_video_features"], expected["pooled_video_features"])
            [output] = pipe(chat(files), max_new_tokens=2, do_sample=False)
            assert output["generated_text"][-1]["role"] == "assistant"
