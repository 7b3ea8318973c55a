"""Synthetic VideoMarathon-format data for the training tests: small videos written with PyAV, instruction json."""

import json
from pathlib import Path

import av
import numpy as np


def write_video(path: str | Path, seconds: float = 3, fps: int = 4, size: int = 32, seed: int = 0) -> Path:
    """An mp4 of `seconds * fps` frames, each a different flat colour with some noise, `size` x `size` pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(round(seconds * fps)):
            colour = rng.integers(0, 256, size=3)
            frame = np.clip(colour + rng.normal(0, 8, size=(size, size, 3)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


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

