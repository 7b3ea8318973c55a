# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""The `hour_llava` model of lmms-eval: Hour-LLaVA answers lmms-eval's video tasks through our pipeline.

```
pip install "hour-llava[eval]"
lmms-eval --model hour_llava --model_args pretrained=./hourllava-qwen2-7b \
    --tasks lvbench,videomme,longvideobench_val_v --batch_size 1 --log_samples --output_path results/
```

lmms-eval finds the model through the `lmms_eval.models` entry point of this package (`model_manifest` in
`hour_llava.evaluation`). It is a
chat model (lmms-eval's recommended interface): each request's `doc_to_messages` gives the task's own prompt and
video, which go to `pipeline("video-text-to-text")` as a chat, so the prompt, the time instruction and the frame
sampling are exactly what the pipeline does for the same video and question.

One encoding per video: requests are answered grouped by video, and the first request of a video encodes it (the
pipeline's `VideoFeatureCache`); its other questions reuse the pooled features. A request whose video is missing or
unreadable is answered with an empty string (scored wrong), logged with its task and doc id, and counted: the run
ends with "N of M requests failed" and `failed_requests` in the results' `throughput` section.
"""

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.models.model_utils.gen_metrics import log_metrics
from lmms_eval.protocol import ChatMessages
from loguru import logger as eval_logger
from tqdm.auto import tqdm
from transformers import GenerationConfig, pipeline
from transformers.generation.streamers import BaseStreamer

from ..pipelines import TASK
from . import MODEL_ID


# When a task sets no `max_new_tokens` (lmms-eval's chat models use the same default).
DEFAULT_MAX_NEW_TOKENS = 128
# Requests are answered video by video, so the cache only ever needs the video being answered.
DEFAULT_MAX_CACHED_VIDEOS = 1
GENERATION_FIELDS = frozenset(name for name in vars(GenerationConfig()) if not name.startswith("_"))
SAMPLING_FIELDS = frozenset({"temperature", "top_p", "top_k", "min_p", "typical_p"})


@dataclass
class PreparedRequest:
    """One lmms-eval request, ready for the pipeline: its chat, its video and its `generate` arguments."""

    index: int
    task: str
    doc_id: int
    chat: list[dict] | None = None
    video: Any = None
    generate_kwargs: dict = field(default_factory=dict)
    stop_strings: tuple[str, ...] = ()
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.task} doc {self.doc_id}"


@dataclass
class RunStatistics:
    """What one `generate_until` call did, for the log line and lmms-eval's `throughput` results."""

    requests: int = 0
    failures: list[str] = field(default_factory=list)
    videos_encoded: int = 0
    output_tokens: int = 0
    encode_seconds: float = 0.0
    generation_seconds: float = 0.0
    first_token_seconds: list[float] = field(default_factory=list)
    per_token_seconds: list[float] = field(default_factory=list)


class FirstTokenTimer(BaseStreamer):
    """Records when `generate` emits its first new token (its first `put` is the prompt), counting from `start`
    (default: now)."""

    def __init__(self, start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.first_token_time: float | None = None
        self._puts = 0

    def put(self, value) -> None:
        self._puts += 1
        if self._puts == 2:
            self.first_token_time = time.perf_counter()

    def end(self) -> None:
        pass


class HourLlavaLmms(lmms):
    """
    Hour-LLaVA for lmms-eval, through `pipeline("video-text-to-text")`.

    Model arguments (`--model_args key=value,...`):
        pretrained (`str`): checkpoint folder or Hub id (converted with `hour-llava convert`, or saved by training).
        device (`str`, *optional*): `cuda`, `cuda:1`, `cpu`, ... Default: `cuda` when available, else `cpu`; under
            `accelerate launch` each process takes its own GPU.
        dtype (`str`, *optional*): `bfloat16`, `float16`, `float32` or `auto`. Default: the checkpoint's (as the
            pipeline).
        attn_implementation (`str`, *optional*): `sdpa`, `eager`, `flash_attention_2`, ... Default: transformers'.
        fps (`float`, *optional*), max_frames (`int` or `none`, *optional*), add_time_instruction (`bool`,
            *optional*): frame sampling and the time instruction after the video. Default: the checkpoint's processor
            settings, which for converted checkpoints are the paper's (1 FPS, at least 128 frames spread over short
            videos, no frame cap, the reference's time instruction).
        max_new_tokens (`int`, *optional*): replaces the task's `max_new_tokens` (default: the task's, else 128).
        max_cached_videos (`int`, *optional*, defaults to 1): videos whose pooled features are kept; 0 encodes the
            video again for every request (the no-reuse baseline of `benchmarks/eval_throughput.py`).
        batch_size (`int`): questions about the same video answered in one `generate` call (`--batch_size`).

    Decoding is greedy unless a task asks for sampling (`temperature > 0` or `do_sample: true`); the task's
    `until` strings cut the answer.
    """

    is_simple = False

    def __init__(
        self,
        pretrained: str,
        device: str | None = None,
        dtype: str | None = None,
        attn_implementation: str | None = None,
        fps: float | str | None = None,
        max_frames: int | str | None = None,
        add_time_instruction: bool | str | None = None,
        max_new_tokens: int | str | None = None,
        max_cached_videos: int | str = DEFAULT_MAX_CACHED_VIDEOS,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,  # lmms-eval passes `--max_batch_size` (for `--batch_size auto`): unused
        **kwargs,
    ):
        super().__init__()
        if kwargs:
            raise TypeError(
                f"Unknown --model_args for {MODEL_ID}: {sorted(kwargs)}. Valid: pretrained, device, dtype, "
                "attn_implementation, fps, max_frames, add_time_instruction, max_new_tokens, max_cached_videos."
            )
        self.accelerator = Accelerator()
        self._rank = self.accelerator.process_index
        self._world_size = self.accelerator.num_processes
        self._batch_size = positive_int(batch_size, "batch_size")
        self.max_new_tokens = optional_number(max_new_tokens, "max_new_tokens", int, minimum=1)
        self.video_options = {
            name: value
            for name, value in {
                "fps": optional_number(fps, "fps", float, minimum=0, exclusive=True),
                "max_frames": optional_number(max_frames, "max_frames", int, minimum=1),
                "add_time_instruction": optional_bool(add_time_instruction, "add_time_instruction"),
            }.items()
            if value is not None
        }
        pipeline_kwargs = {"device": self.resolve_device(device)}
        if dtype is not None and str(dtype).lower() != "none":
            pipeline_kwargs["dtype"] = str(dtype)
        if attn_implementation is not None and str(attn_implementation).lower() != "none":
            pipeline_kwargs["model_kwargs"] = {"attn_implementation": str(attn_implementation)}
        cached_videos = optional_number(max_cached_videos, "max_cached_videos", int, minimum=0)
        self.pipe = pipeline(
            TASK,
            model=str(pretrained),
            max_cached_videos=DEFAULT_MAX_CACHED_VIDEOS if cached_videos is None else cached_videos,
            max_cache_bytes=None,  # bounded by the count: videos are answered one after another
            **pipeline_kwargs,
        )
        eos_token_id = self.pipe.model.generation_config.eos_token_id
        self.stop_token_ids = set(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id])
        self.log_settings(pretrained)

    # ------------------------------------------------------------------------------------------------------------------
    # lmms-eval's model interface
    # ------------------------------------------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def device(self) -> torch.device:
        return self.pipe.device

    @property
    def model(self):
        return self.pipe.model

    @property
    def tokenizer(self):
        return self.pipe.processor.tokenizer

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            f"The {MODEL_ID} model answers generate_until tasks (the paper's benchmarks); it has no loglikelihood. "
            f"Tasks asking for it: {sorted({request.task_name for request in requests})}."
        )

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            f"The {MODEL_ID} model answers single-turn generate_until tasks; multi-round generation is not supported "
            f"(tasks: {sorted({request.task_name for request in requests})})."
        )

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Answer every request, grouped by video so that each video is encoded once; results in request order."""
        prepared = [self.prepare(index, request) for index, request in enumerate(requests)]
        answers: list[GenerationResult | None] = [None] * len(prepared)
        statistics = RunStatistics(requests=len(prepared))
        progress = tqdm(total=len(prepared), desc="Model Responding", disable=self.rank != 0)
        for group in group_by_video(prepared):
            for batch, error, waiting_since in self.answerable_batches(group, statistics):
                if error is None:
                    error = self.answer_batch(batch, answers, statistics, waiting_since)
                if error is not None:
                    for item in batch:
                        self.record_failure(item, error, answers, statistics)
                progress.update(len(batch))
        progress.close()
        for request, answer in zip(requests, answers):
            context, _, gen_kwargs = request.args[:3]
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), answer.text)
        self.report(statistics)
        return answers

    # ------------------------------------------------------------------------------------------------------------------
    # Requests
    # ------------------------------------------------------------------------------------------------------------------
    def prepare(self, index: int, request: Instance) -> PreparedRequest:
        """The request's chat (the task's `doc_to_messages`), its video and its `generate` arguments.

        A task that cannot build the messages (lmms-eval's video tasks assert or `sys.exit` when a video file is
        missing) makes a failed request; media Hour-LLaVA cannot take (images, audio, several videos, clips) raise
        at once, before anything is generated.
        """
        _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
        item = PreparedRequest(index=index, task=task, doc_id=doc_id)
        try:
            messages = ChatMessages(messages=doc_to_messages(self.task_dict[task][split][doc_id])).to_hf_messages()
        except (Exception, SystemExit) as error:  # noqa: BLE001 - a bad doc must not end a run hours in
            item.error = f"the task could not build its prompt: {describe_error(error)}"
            return item
        item.chat = messages
        item.video = video_of(messages, item.name)
        item.generate_kwargs = self.generate_kwargs(gen_kwargs)
        until = gen_kwargs.get("until") or ()
        item.stop_strings = tuple(stop for stop in ([until] if isinstance(until, str) else until) if stop)
        return item

    def generate_kwargs(self, gen_kwargs: dict) -> dict:
        """`generate` arguments from a task's `generation_kwargs`: greedy unless the task asks for sampling.

        Keys that are `GenerationConfig` fields pass through (sampling ones only when sampling); others, such as
        `until`, are lmms-eval's.
        """
        temperature = float(gen_kwargs.get("temperature") or 0)
        do_sample = bool(gen_kwargs.get("do_sample")) or temperature > 0
        kwargs = {
            name: value
            for name, value in gen_kwargs.items()
            if name in GENERATION_FIELDS and (do_sample or name not in SAMPLING_FIELDS)
        }
        kwargs.update(
            max_new_tokens=self.max_new_tokens or int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
            do_sample=do_sample,
            num_beams=int(gen_kwargs.get("num_beams") or 1),
        )
        if do_sample:
            kwargs["temperature"] = temperature or 1.0
        return kwargs

    def answerable_batches(self, group: list[PreparedRequest], statistics: RunStatistics):
        """Batches of `batch_size` requests with the same `generate` arguments: `(batch, error that stops it, time its
        wait began)`.

        With caching on, the video is encoded here once (and a video that fails fails all its requests at once,
        without being decoded again for each); the first batch's wait, hence its time to first token, includes it.
        """
        for item in group:
            if item.error is not None:
                yield [item], item.error, None
        pending = [item for item in group if item.error is None]
        waiting_since = time.perf_counter()
        video_error = self.encode_once(pending[0].video, statistics) if pending else None
        by_kwargs: dict[str, list[PreparedRequest]] = {}
        for item in pending:
            by_kwargs.setdefault(repr(sorted(item.generate_kwargs.items())), []).append(item)
        for items in by_kwargs.values():
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                error = None if video_error is None else f"{describe_video(batch[0].video)}: {video_error}"
                yield batch, error, waiting_since
                waiting_since = None

    def encode_once(self, video, statistics: RunStatistics) -> str | None:
        """Encode `video` into the pipeline's cache; the error that stopped it, if any."""
        if video is None or self.pipe.video_cache.max_videos == 0:
            return None
        start, misses = time.perf_counter(), self.pipe.video_cache.misses
        try:
            self.pipe.encoded_video(video, self.video_options)
        except Exception as error:  # noqa: BLE001 - a missing or unreadable video is counted, not fatal
            return describe_error(error)
        finally:
            statistics.encode_seconds += time.perf_counter() - start
        statistics.videos_encoded += self.pipe.video_cache.misses - misses
        return None

    def answer_batch(
        self, batch: list[PreparedRequest], answers: list, statistics: RunStatistics, waiting_since: float | None = None
    ) -> str | None:
        """Generate the answers of one batch into `answers`; the error, if the batch failed.

        A failed batch of several requests is answered again one request at a time, so one bad request (say, a
        prompt longer than the context) fails alone.
        """
        timer, misses = FirstTokenTimer(waiting_since), self.pipe.video_cache.misses
        try:
            outputs = self.pipe(
                [item.chat for item in batch],
                batch_size=len(batch),
                return_tensors=True,
                streamer=timer,
                **self.video_options,
                **batch[0].generate_kwargs,
            )
        except Exception as error:  # noqa: BLE001
            if len(batch) == 1:
                return describe_error(error)
            for item in batch:
                error = self.answer_batch([item], answers, statistics)
                if error is not None:
                    self.record_failure(item, error, answers, statistics)
            return None
        seconds = time.perf_counter() - timer.start
        statistics.videos_encoded += self.pipe.video_cache.misses - misses  # without caching: one per request
        token_counts = []
        for item, [output] in zip(batch, outputs):
            token_ids = output["generated_token_ids"]
            text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
            token_counts.append(self.count_output_tokens(token_ids))
            answers[item.index] = GenerationResult(
                text=cut_at_stop_strings(text, item.stop_strings),
                token_counts=TokenCounts(output_tokens=token_counts[-1]),
            )
        self.record_timing(statistics, seconds, timer, max(token_counts))
        statistics.output_tokens += sum(token_counts)
        return None

    def count_output_tokens(self, token_ids: torch.Tensor) -> int:
        """Generated tokens up to and including the end-of-sequence token (later ones are batch padding)."""
        for position, token_id in enumerate(token_ids.tolist()):
            if token_id in self.stop_token_ids:
                return position + 1
        return len(token_ids)

    # ------------------------------------------------------------------------------------------------------------------
    # Failures, timing, reporting
    # ------------------------------------------------------------------------------------------------------------------
    def record_failure(self, item: PreparedRequest, error: str, answers: list, statistics: RunStatistics) -> None:
        eval_logger.error(f"{MODEL_ID}: {item.name} failed and is answered with an empty string: {error}")
        statistics.failures.append(f"{item.name}: {error}")
        answers[item.index] = GenerationResult(text="", token_counts=TokenCounts(output_tokens=0))

    @staticmethod
    def record_timing(statistics: RunStatistics, seconds: float, timer: FirstTokenTimer, tokens: int) -> None:
        statistics.generation_seconds += seconds
        if timer.first_token_time is None:
            return
        first_token = timer.first_token_time - timer.start
        statistics.first_token_seconds.append(first_token)
        if tokens > 1:
            statistics.per_token_seconds.append((seconds - first_token) / (tokens - 1))

    def report(self, statistics: RunStatistics) -> None:
        """Log "N of M requests failed" (all processes together) and hand the counts to lmms-eval's results."""
        failures, requests, encoded = self.gather_counts(statistics)
        message = f"{MODEL_ID}: {len(failures)} of {requests} requests failed; {encoded} video encodings."
        if failures:
            eval_logger.warning(message + " Failed requests:\n  " + "\n  ".join(failures))
        else:
            eval_logger.info(message)
        log_metrics(
            total_elapsed_time=statistics.generation_seconds,
            total_gen_tokens=statistics.output_tokens,
            avg_speed=statistics.output_tokens / statistics.generation_seconds if statistics.generation_seconds else 0,
            additional_metrics={
                "failed_requests": len(failures),
                "requests": requests,
                "videos_encoded": encoded,
                "video_encode_seconds": statistics.encode_seconds,
                **timing_metrics(statistics),
            },
        )

    def gather_counts(self, statistics: RunStatistics) -> tuple[list[str], int, int]:
        """Failures, requests and encodings of every process (each process answers its own share of the docs)."""
        local = (statistics.failures, statistics.requests, statistics.videos_encoded)
        if self.world_size == 1 or not torch.distributed.is_initialized():
            return local
        gathered: list = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, local)
        return (
            [failure for failures, _, _ in gathered for failure in failures],
            sum(requests for _, requests, _ in gathered),
            sum(encoded for _, _, encoded in gathered),
        )

    # ------------------------------------------------------------------------------------------------------------------
    # Setup
    # ------------------------------------------------------------------------------------------------------------------
    def resolve_device(self, device: str | None) -> str:
        if self.world_size > 1:  # `accelerate launch`: one GPU per process
            return f"cuda:{self.accelerator.local_process_index}"
        if device is None or str(device).lower() == "none":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return str(device)

    def log_settings(self, pretrained: str) -> None:
        processor = self.pipe.processor
        video_processor = processor.video_processor
        settings = {
            "fps": video_processor.fps,
            "min_frames": video_processor.min_frames,
            "max_frames": video_processor.max_frames,
            "add_time_instruction": processor.add_time_instruction,
            **self.video_options,
        }
        eval_logger.info(
            f"{MODEL_ID}: {pretrained} on {self.device} ({self.pipe.model.dtype}), rank {self.rank} of "
            f"{self.world_size}; video settings {settings}; max_new_tokens={self.max_new_tokens or 'the task'}"
        )


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------
def video_of(messages: Sequence[dict], request_name: str) -> Any:
    """The request's one video (a path or URL), or None; media Hour-LLaVA cannot take raise, naming the request."""
    blocks = [block for message in messages for block in message["content"] if block["type"] != "text"]
    unsupported = sorted({block["type"] for block in blocks if block["type"] != "video"})
    if unsupported:
        raise ValueError(
            f"{request_name} gives {', '.join(unsupported)} input; the {MODEL_ID} model answers about videos only."
        )
    if len(blocks) > 1:
        raise ValueError(f"{request_name} gives {len(blocks)} videos; Hour-LLaVA answers about one video per question.")
    if not blocks:
        return None
    video = blocks[0]["video"]
    if isinstance(video, dict) or "video_start" in blocks[0] or "video_end" in blocks[0]:
        raise ValueError(
            f"{request_name} asks about a clip of a video (start/end times); the {MODEL_ID} model reads whole videos."
        )
    return os.fspath(video) if isinstance(video, os.PathLike) else video


def group_by_video(prepared: list[PreparedRequest]) -> list[list[PreparedRequest]]:
    """Requests grouped by video in order of first appearance (requests without a video form one group)."""
    groups: dict[Any, list[PreparedRequest]] = {}
    for item in prepared:
        groups.setdefault(video_key(item.video), []).append(item)
    return list(groups.values())


def video_key(video: Any) -> Any:
    """One key per video: local paths resolved, URLs as they are."""
    if isinstance(video, str):
        return video if "://" in video else os.path.realpath(video)
    return video if video is None else id(video)


def cut_at_stop_strings(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to the first of the task's `until` strings."""
    for stop in stop_strings:
        text = text.split(stop, 1)[0]
    return text


def describe_video(video: Any) -> str:
    return video if isinstance(video, str) else type(video).__name__


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def timing_metrics(statistics: RunStatistics) -> dict[str, float]:
    """Mean time to first token and per output token, as lmms-eval's chat models report them (when measured)."""
    metrics = {}
    for name, values in (("ttft", statistics.first_token_seconds), ("tpot", statistics.per_token_seconds)):
        if values:
            metrics[name] = sum(values) / len(values)
    return metrics


def positive_int(value, name: str) -> int:
    number = optional_number(value, name, int, minimum=1)
    if number is None:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return number


def optional_number(value, name: str, kind: Callable, minimum: float, exclusive: bool = False):
    """`value` (a model argument, perhaps the string lmms-eval parsed) as `kind`, None for `none`/missing."""
    if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
        return None
    try:
        number = kind(value)
        if kind is int and number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        expected = "an integer" if kind is int else "a number"
        raise ValueError(f"--model_args {name}={value!r} is not {expected}.") from None
    if number < minimum or (exclusive and number == minimum):
        relation = "greater than" if exclusive else "at least"
        raise ValueError(f"--model_args {name}={value!r} must be {relation} {minimum}.")
    return number


def optional_bool(value, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("none", ""):
        return None
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"--model_args {name}={value!r} is not true or false.")


__all__ = ["HourLlavaLmms"]
