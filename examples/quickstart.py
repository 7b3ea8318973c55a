"""Quickstart: build a tiny Hour-LLaVA offline, write a synthetic 3-minute video, and ask a question about it.

The model is randomly initialised, so its answer is noise; what this shows is the whole path a real checkpoint
takes: 1-FPS decoding, the memory repository, forgetting, MemAug and generation. With a released checkpoint, replace
the first lines by `AutoModelForImageTextToText.from_pretrained(...)` and `AutoProcessor.from_pretrained(...)`.

    python examples/quickstart.py
"""

import tempfile
from pathlib import Path

import numpy as np
import torch

from hour_llava.processing import HourLlavaProcessor
from hour_llava.tiny import tiny_model, tiny_tokenizer
from hour_llava.video_writing import write_video


def moving_square_frames(seconds: int, size: int = 64):
    """A red square crossing a grey background, one frame per second."""
    for t in range(seconds):
        frame = np.full((size, size, 3), 90, dtype=np.uint8)
        x = (t * 3) % (size - 16)
        frame[24:40, x : x + 16] = (220, 40, 40)
        yield frame


def main() -> None:
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)

    with tempfile.TemporaryDirectory() as workdir:
        video = write_video(Path(workdir) / "square.mp4", moving_square_frames(180), fps=1)
        messages = [
            {
                "role": "user",
                "content": [{"type": "video", "path": str(video)}, {"type": "text", "text": "Where does the square go?"}],
            }
        ]
        inputs = processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        num_frames = int(inputs["video_num_frames"][0])
        config = model.config
        print(f"decoded frames: {num_frames} at 1 FPS")
        print(f"memory repository: {max(num_frames, config.min_video_frames) * config.memory_tokens_per_frame} tokens")
        print(f"decayed video tokens the LLM sees: {config.num_video_tokens(num_frames)}")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
        answer = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        print(f"answer (untrained model): {answer!r}")


if __name__ == "__main__":
    main()
