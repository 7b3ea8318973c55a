"""Shared pieces of the app's tests: a tiny chat, synthetic videos, bad uploads and a scripted answer."""

from pathlib import Path

import av
import numpy as np
import torch
from transformers import LogitsProcessor

from hour_llava.app import VideoChat
from hour_llava.processing import HourLlavaProcessor
from hour_llava.tiny import tiny_model, tiny_tokenizer
from hour_llava.video_writing import write_video


def tiny_chat(max_new_tokens: int = 8, **kwargs) -> VideoChat:
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    processor = HourLlavaProcessor.from_model_config(model.config, tokenizer)
    return VideoChat.from_model(model, processor, max_new_tokens=max_new_tokens, **kwargs)


def colour_video(path: Path, num_frames: int = 24, size: int = 32) -> Path:
    """A 1 FPS video whose frame i is a flat colour that changes with i (so thumbnails can be told apart)."""
    frames = [np.full((size, size, 3), (10 * i % 256, 120, 255 - 8 * i % 256), np.uint8) for i in range(num_frames)]
    return write_video(path, frames, fps=1)


def audio_file(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An AAC audio-only .m4a file."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = np.zeros((1, 1024), np.float32)
        for index in range(int(seconds * rate) // 1024):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def bad_uploads(folder: Path, good_video: Path) -> dict[str, Path]:
    """Files that are not usable videos, by kind: text, audio (as .m4a and as .mp4), a truncated mp4, an empty file."""
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "notes.mp4"
    text.write_text("This is a text file with a video's name.\n" * 20)
    truncated = folder / "truncated.mp4"
    data = good_video.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    return {
        "text": text,
        "audio": audio_file(folder / "speech.m4a"),
        "audio named .mp4": audio_file(folder / "song.mp4"),
        "truncated": truncated,
        "empty": empty,
    }


class ScriptedAnswer(LogitsProcessor):
    """Forces the tokens of fixed answers (the i-th generation gets `texts[i]`, the last one repeats), then the end
    of the turn: tests the streaming plumbing and the page, not what a random tiny model happens to say."""

    def __init__(self, tokenizer, *texts: str):
        end = [tokenizer.eos_token_id]
        self.answers = [tokenizer(text, add_special_tokens=False)["input_ids"] + end for text in texts]
        self.generation = -1
        self.step = 0
        self.last_length = None

    @property
    def token_ids(self) -> list[int]:
        return self.answers[min(max(self.generation, 0), len(self.answers) - 1)]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.last_length is None or input_ids.shape[1] != self.last_length + 1:  # a new generation starts
            self.generation, self.step = self.generation + 1, 0
        self.last_length = input_ids.shape[1]
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token_ids[min(self.step, len(self.token_ids) - 1)]] = 0.0
        self.step += 1
        return forced
