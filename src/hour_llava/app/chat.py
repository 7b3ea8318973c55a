# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Chat with a video: the app's model side, free of any UI so it is tested on its own with a tiny model.

A video is decoded and encoded once, chunk by chunk, through the same path as `pipeline("video-text-to-text")` and
into that pipeline's `VideoFeatureCache`; every question about it after the first costs only the projector, MemAug
and the language model. Answers stream token by token (transformers' `TextIteratorStreamer`). After each answer one
more forward pass over the prompt with `output_attentions=True` reads the model's public `video_outputs` report
(`memory_attention`, `kept_frame_indices`) for the attention timeline; no hooks.
"""

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)
from transformers.utils.chat_template_utils import Chat

from ..pipelines import TASK, VideoTextToTextPipeline
from ..processing import EncodedVideo, open_video
from ..video_cache import DEFAULT_MAX_VIDEOS, video_cache_key
from ..video_features import encode_video
from .timeline import AttentionTimeline


DEFAULT_MAX_VIDEO_BYTES = 2 * 2**30
DEFAULT_MAX_ATTENTION_BYTES = 4 * 2**30
THUMBNAIL_SIZE = 64  # pixels per side of the frames kept for the attention plot (an hour at 1 FPS: 44 MB)

# (frames decoded and encoded so far) -> None; called after each chunk of `vision_chunk_size` frames.
ProgressCallback = Callable[[int], None]


class VideoInputError(ValueError):
    """A video the app cannot use, with a message meant for the person who gave it."""


class ChatVideo(EncodedVideo):
    """An encoded video plus small thumbnails of exactly the frames the model saw (for the attention plot).

    It is what the pipeline's feature cache holds for the app; the processor takes it back as a video like any
    `EncodedVideo`.
    """

    def __init__(self, pooled_features: torch.Tensor, metadata, thumbnails: torch.Tensor):
        super().__init__(pooled_features, metadata)
        self.thumbnails = thumbnails  # (T, THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3) uint8


@dataclass
class VideoTiming:
    """How one answer got its video's features: decoded and encoded now, or from the cache."""

    seconds: float
    from_cache: bool
    num_frames: int


@dataclass
class AnswerTimings:
    video: VideoTiming
    first_token_seconds: float | None = None
    answer_seconds: float | None = None
    num_tokens: int = 0
    attention_seconds: float | None = None


@dataclass
class Answer:
    """The answer so far: `ask` yields it after every streamed piece of text, then once more with `done=True`."""

    question: str
    text: str
    timings: AnswerTimings
    timeline: AttentionTimeline | None = None
    video: ChatVideo | None = None
    done: bool = False


@dataclass
class Turn:
    question: str
    answer: str


@dataclass
class VideoChat:
    """Questions about videos, answered by an Hour-LLaVA model, with timings and MemAug's attention per answer.

    Not thread-safe: the app runs one question at a time (the model is the bottleneck anyway).

    Args:
        pipeline: a `VideoTextToTextPipeline`; its `video_cache` holds the encoded videos.
        max_new_tokens: longest answer, in tokens.
        max_video_bytes: larger files are refused before anything is read.
        max_attention_bytes: the attention plot is skipped where MemAug's eager attention would need more.
        top_k: how many most-attended frames the timeline names.
    """

    pipeline: VideoTextToTextPipeline
    max_new_tokens: int = 128
    max_video_bytes: int | None = DEFAULT_MAX_VIDEO_BYTES
    max_attention_bytes: int | None = DEFAULT_MAX_ATTENTION_BYTES
    top_k: int = 4
    generate_kwargs: dict = field(default_factory=lambda: {"do_sample": False})

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike,
        device: str | None = None,
        dtype: str | torch.dtype = "auto",
        trust_remote_code: bool = False,
        max_cached_videos: int = DEFAULT_MAX_VIDEOS,
        **kwargs,
    ) -> "VideoChat":
        """Load model and processor from a Hub id or directory; `kwargs` are `VideoChat` fields."""
        model = AutoModelForImageTextToText.from_pretrained(
            model_id, dtype=dtype, trust_remote_code=trust_remote_code
        )
        processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls.from_model(model.to(device).eval(), processor, max_cached_videos=max_cached_videos, **kwargs)

    @classmethod
    def from_model(cls, model, processor, max_cached_videos: int = DEFAULT_MAX_VIDEOS, **kwargs) -> "VideoChat":
        pipe = VideoTextToTextPipeline(
            model=model, processor=processor, task=TASK, device=model.device, max_cached_videos=max_cached_videos
        )
        return cls(pipe, **kwargs)

    @property
    def model(self):
        return self.pipeline.model

    @property
    def processor(self):
        return self.pipeline.processor

    # ------------------------------------------------------------------------------------------------------------------
    # Videos
    # ------------------------------------------------------------------------------------------------------------------
    def check_video(self, video: str | os.PathLike) -> str:
        """Refuse, with a message naming the file, what is not a readable video within the size limit.

        Opening goes through the processor's own reader (which times every frame from its packets without decoding),
        so a file that passes here is one the model can decode; returns the path as a string.
        """
        path = Path(video)
        name = path.name
        if not path.is_file():
            raise VideoInputError(f"{name}: no such file.")
        size = path.stat().st_size
        if size == 0:
            raise VideoInputError(f"{name} is empty (0 bytes).")
        if self.max_video_bytes is not None and size > self.max_video_bytes:
            raise VideoInputError(
                f"{name} is {format_bytes(size)}, more than this app's limit of {format_bytes(self.max_video_bytes)}."
            )
        try:
            source = open_video(str(path))
        except (ValueError, OSError) as error:
            raise VideoInputError(f"{name} is not a video this app can read: {error}") from error
        if len(source) == 0:
            raise VideoInputError(f"{name} has a video stream without frames.")
        return str(path)

    def prepare_video(
        self, video: str | os.PathLike, progress: ProgressCallback | None = None
    ) -> tuple[ChatVideo, VideoTiming]:
        """The video's features from the pipeline's cache, or decoded and encoded now (then cached), timed.

        Its cache key is the pipeline's own (path, size, modification time, no decoding options), so the pipeline
        finds it when the question is asked.
        """
        path = self.check_video(video)
        key = video_cache_key(path, {})
        start = time.perf_counter()
        cached = self.pipeline.video_cache.get(key)
        if isinstance(cached, ChatVideo):
            return cached, VideoTiming(time.perf_counter() - start, True, cached.num_frames)
        try:
            encoded = self.encode_video(path, progress)
        except (ValueError, OSError) as error:
            raise VideoInputError(f"{Path(path).name} could not be decoded: {error}") from error
        self.pipeline.video_cache.put(key, encoded)
        return encoded, VideoTiming(time.perf_counter() - start, False, encoded.num_frames)

    def encode_video(self, path: str, progress: ProgressCallback | None = None) -> ChatVideo:
        """Decode `path` chunk by chunk into the vision tower, keeping a thumbnail of every frame on the way."""
        thumbnails: list[torch.Tensor] = []
        encoded = encode_video(
            path,
            self.processor.video_processor,
            self.model,
            watch_chunks=lambda pixel_chunks: self.watch_chunks(pixel_chunks, thumbnails, progress),
        )
        return ChatVideo(encoded.pooled_features, encoded.metadata, torch.cat(thumbnails))

    def watch_chunks(
        self, pixel_chunks: Iterable[torch.Tensor], thumbnails: list, progress: ProgressCallback | None
    ) -> Iterator[torch.Tensor]:
        done = 0
        for chunk in pixel_chunks:
            thumbnails.append(self.thumbnails_of(chunk))
            yield chunk
            done += chunk.shape[0]  # the tower asks for the next chunk once it has encoded this one
            if progress is not None:
                progress(done)

    def thumbnails_of(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(N, 3, S, S)` normalised model pixels back to `(N, t, t, 3)` uint8 thumbnails."""
        video_processor = self.processor.video_processor
        small = torch.nn.functional.interpolate(pixel_values.float(), size=(THUMBNAIL_SIZE,) * 2, mode="area")
        if video_processor.do_normalize:
            std = torch.tensor(video_processor.image_std).view(1, 3, 1, 1)
            mean = torch.tensor(video_processor.image_mean).view(1, 3, 1, 1)
            small = small * std + mean
        if video_processor.do_rescale:
            small = small / video_processor.rescale_factor
        return small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()

    # ------------------------------------------------------------------------------------------------------------------
    # Questions
    # ------------------------------------------------------------------------------------------------------------------
    def ask(
        self,
        video: str | os.PathLike,
        question: str,
        history: Sequence[Turn] = (),
        progress: ProgressCallback | None = None,
    ) -> Iterator[Answer]:
        """Answer `question` about `video`, after the earlier `history` turns of the same chat.

        Yields the answer after each streamed piece of text, then a last time (`done=True`) with the token count,
        the timings and MemAug's attention timeline. Raises `VideoInputError` for an unusable video.
        """
        question = question.strip()
        if not question:
            raise ValueError("The question is empty.")
        encoded, video_timing = self.prepare_video(video, progress)
        answer = Answer(question, "", AnswerTimings(video_timing), video=encoded)
        model_inputs = self.model_inputs(str(video), question, history)
        start = time.perf_counter()
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        generation = Generation(self.model, model_inputs, streamer, self.max_new_tokens, self.generate_kwargs)
        try:
            for piece in streamer:  # one piece per new token, empty while the text is not printable yet
                if answer.timings.first_token_seconds is None:
                    answer.timings.first_token_seconds = time.perf_counter() - start
                if piece:
                    answer.text += piece
                    yield answer
        finally:
            generation.stop()  # a no-op once generation has ended; ends it early if the reader went away
        new_tokens = generation.result()
        answer.timings.answer_seconds = time.perf_counter() - start
        answer.timings.num_tokens = new_tokens
        start = time.perf_counter()
        answer.timeline = self.attention_timeline(model_inputs, encoded)
        answer.timings.attention_seconds = time.perf_counter() - start
        answer.done = True
        yield answer

    def model_inputs(self, video: str, question: str, history: Sequence[Turn]) -> dict:
        """The chat's tensors on the model's device, through the pipeline's preprocessing (video from the cache)."""
        model_inputs = self.pipeline.preprocess(Chat(chat_messages(video, question, history)))
        batch = self.pipeline.collate([model_inputs])
        batch.pop("input_text")
        batch.pop("errors")  # preprocess raises on a bad video here (the pipeline's default, not on_error="skip")
        return {name: value.to(self.model.device) for name, value in batch.items()}

    @torch.inference_mode()
    def attention_timeline(self, model_inputs: dict, video: ChatVideo) -> AttentionTimeline:
        """One forward pass over the prompt with `output_attentions=True`; the plot data of its `video_outputs`.

        MemAug reports its attention only when it runs eager attention (sdpa never builds the weights), so MemAug
        alone (the top-level config; the language model keeps its own) switches to eager for this pass. Eager
        attention holds heads x queries x memory tokens per block; when that would exceed `max_attention_bytes`
        (long videos) the pass is skipped and the timeline shows the kept frames only.
        """
        needed = self.attention_bytes(model_inputs, video.num_frames)
        if self.max_attention_bytes is not None and needed > self.max_attention_bytes:
            kept = self.model.config.kept_frame_indices(video.num_frames)
            note = (
                f"MemAug's attention over this video would take about {format_bytes(needed)} to compute, more than "
                f"this app's limit of {format_bytes(self.max_attention_bytes)}; only the kept frames are shown."
            )
            return AttentionTimeline(np.asarray(video.metadata.timestamps), np.asarray(kept), None, [], note)
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation({"": "eager"})
        try:
            outputs = self.model(**model_inputs, output_attentions=True, use_cache=False, logits_to_keep=1)
        finally:
            self.model.set_attn_implementation({"": previous})
        return AttentionTimeline.from_video_outputs(outputs.video_outputs, video.metadata.timestamps, top_k=self.top_k)

    def attention_bytes(self, model_inputs: dict, num_frames: int) -> int:
        """Bytes of one MemAug block's eager cross-attention weights (scores and probabilities) for this prompt."""
        config = self.model.config
        heads = config.memaug_num_attention_heads or config.text_config.num_attention_heads
        memory_tokens = config.memory_tokens_per_frame * max(num_frames, config.min_video_frames)
        queries = model_inputs["input_ids"].shape[1]
        return 2 * heads * queries * memory_tokens * self.model.dtype.itemsize


class Generation(StoppingCriteria):
    """`model.generate` in a background thread, streaming into `streamer`; `result()` waits for the token count.

    The streamer is ended even when generation fails, so the reader never waits forever; the error is raised again
    by `result()`. `stop()` ends generation early (a reader that went away).
    """

    def __init__(self, model, model_inputs: dict, streamer: TextIteratorStreamer, max_new_tokens: int, kwargs: dict):
        self.num_prompt_tokens = model_inputs["input_ids"].shape[1]
        self.sequences: torch.Tensor | None = None
        self.error: Exception | None = None
        self.streamer = streamer
        self.stopped = threading.Event()
        arguments = {
            **model_inputs,
            **kwargs,
            "streamer": streamer,
            "max_new_tokens": max_new_tokens,
            "stopping_criteria": StoppingCriteriaList([self]),
        }
        self.thread = threading.Thread(target=self.run, args=(model, arguments), daemon=True)
        self.thread.start()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.stopped.is_set(), dtype=torch.bool, device=input_ids.device)

    def stop(self) -> None:
        self.stopped.set()

    def run(self, model, arguments: dict) -> None:
        try:
            with torch.inference_mode():
                self.sequences = model.generate(**arguments)
        except Exception as error:  # re-raised in the caller's thread by `result()`
            self.error = error
            self.streamer.end()

    def result(self) -> int:
        """Number of new tokens (the end-of-turn token included), once generation has finished."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return int(self.sequences.shape[1] - self.num_prompt_tokens)


def chat_messages(video: str, question: str, history: Sequence[Turn]) -> list[dict]:
    """The chat as transformers' message dicts: the video opens the first user turn, as in training."""
    questions = [turn.question for turn in history] + [question]
    messages = []
    for index, text in enumerate(questions):
        content = [{"type": "text", "text": text}]
        if index == 0:
            content.insert(0, {"type": "video", "path": video})
        messages.append({"role": "user", "content": content})
        if index < len(history):
            messages.append({"role": "assistant", "content": [{"type": "text", "text": history[index].answer}]})
    return messages


def format_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


__all__ = [
    "Answer",
    "AnswerTimings",
    "ChatVideo",
    "Turn",
    "VideoChat",
    "VideoInputError",
    "VideoTiming",
    "chat_messages",
]
