"""Synthetic VideoMarathon-format data for the training tests: small videos, instruction json, tiny checkpoints."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hour_llava import video_writing


def write_video(path: str | Path, seconds: float = 3, fps: int = 4, size: int = 32, seed: int = 0) -> Path:
    """An mp4 of `seconds * fps` frames, each a different flat colour with some noise, `size` x `size` pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(round(seconds * fps), 1, 1, 3))
    frames = np.clip(colours + rng.normal(0, 8, size=(len(colours), size, size, 3)), 0, 255).astype(np.uint8)
    return video_writing.write_video(path, frames, fps=fps)


def instruction_sample(sample_id: str, video: str | None, qa_pairs: list[tuple[str, str]], data_source: str = "src"):
    """An authors'-format sample: `<image>` in the first human turn, alternating human/gpt turns."""
    conversations = []
    for turn, (question, answer) in enumerate(qa_pairs):
        value = f"<image>\n{question}" if turn == 0 and video is not None else question
        conversations += [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]
    sample = {"id": sample_id, "conversations": conversations}
    if video is not None:
        sample.update(video=video, data_source=data_source)
    return sample


def write_json(path: str | Path, samples: list[dict], lines: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        if lines:
            handle.writelines(json.dumps(sample) + "\n" for sample in samples)
        else:
            json.dump(samples, handle)
    return path


def tiny_processor(model, tokenizer, **video_processor_kwargs):
    """The processor of a tiny model: 32x32 frames and the model's token counts."""
    from hour_llava import HourLlavaProcessor, HourLlavaVideoProcessor

    size = model.config.vision_config.image_size
    video_processor = HourLlavaVideoProcessor(size={"height": size, "width": size}, **video_processor_kwargs)
    return HourLlavaProcessor.from_model_config(model.config, tokenizer, video_processor=video_processor)


def save_tiny_checkpoint(directory: str | Path, seed: int = 0) -> Path:
    """A tiny model and its processor saved in `directory`, as a user's checkpoint would be."""
    from hour_llava.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, seed=seed)
    model.save_pretrained(directory)
    tiny_processor(model, tokenizer).save_pretrained(directory)
    return Path(directory)


# A small VideoMarathon-format data set: two good samples, and two whose videos are missing or corrupt.
QA = {
    "red": [("What colour is the ball?", "Red."), ("Where does it go?", "Into the net.")],
    "blue": [("What colour is the car?", "Blue, and shiny.")],
}


def write_videomarathon(root: Path) -> Path:
    """`root/videos/src/{red,blue,corrupt}.mp4`, `root/good.json` (red, blue) and `root/bad.json` (missing, corrupt)."""
    write_video(root / "videos" / "src" / "red.mp4", seconds=3, seed=1)
    write_video(root / "videos" / "src" / "blue.mp4", seconds=4, seed=2)
    (root / "videos" / "src" / "corrupt.mp4").write_bytes(os.urandom(2048))
    write_json(root / "good.json", [instruction_sample(name, f"{name}.mp4", pairs) for name, pairs in QA.items()])
    bad = [instruction_sample(name, f"{name}.mp4", [("Anything?", "No.")]) for name in ("missing", "corrupt")]
    write_json(root / "bad.json", bad)
    return root


def training_rows(root: Path, name: str = "good.json", repeat: int = 1) -> list[dict]:
    """The training rows of `root/name` (see `write_videomarathon`), `repeat` times over."""
    from hour_llava.training import VideoRoots, load_video_instruction_dataset

    dataset = load_video_instruction_dataset(str(root / name), VideoRoots(str(root / "videos")))
    return [row for _ in range(repeat) for row in dataset]


# Fixtures shared by the training test modules, which import them (conftest.py stays the project's).
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_videomarathon(tmp_path_factory.mktemp("videomarathon"))


@pytest.fixture
def processor(tiny_model, tokenizer):
    return tiny_processor(tiny_model, tokenizer)
