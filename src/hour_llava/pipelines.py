# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""`pipeline("video-text-to-text")`: questions about videos, answered by Hour-LLaVA.

```python
>>> import hour_llava  # registers the task
>>> from transformers import pipeline
>>> pipe = pipeline("video-text-to-text", model="path/to/hour-llava")
>>> pipe("match.mp4", "Who scored first?", max_new_tokens=32)
[{'input_text': 'Who scored first?', 'generated_text': '...'}]
```

A video is decoded chunk by chunk straight into the vision tower, once: its pooled features are kept in a bounded LRU
cache (`video_cache.VideoFeatureCache`) keyed by the file's identity and the sampling settings, so further questions
about it cost only the projector, MemAug and the language model.

This module is copied next to checkpoints saved with `VideoTextToTextPipeline.save_pretrained` so the pipeline loads
with `trust_remote_code=True` where hour_llava is not installed: it imports only pip packages and its sibling
`video_cache`.
"""

import enum
import os
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, GenerationConfig, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging
from transformers.utils.chat_template_utils import Chat

from .video_cache import DEFAULT_MAX_BYTES, DEFAULT_MAX_VIDEOS, VideoFeatureCache, video_cache_key
from .video_features import encode_video


logger = logging.get_logger(__name__)

TASK = "video-text-to-text"
# Keyword arguments of a call that decide which frames are decoded and how (they are part of the cache key).
DECODING_OPTIONS = ("fps", "num_frames", "min_frames", "max_frames", "do_sample_frames", "size", "video_metadata")
# Keyword arguments of a call that shape the time instruction after the video's placeholder.
TEXT_OPTIONS = ("add_time_instruction", "add_frame_timestamps")
VIDEO_OPTIONS = DECODING_OPTIONS + TEXT_OPTIONS
# What the pipeline does when an input's video (or prompt) cannot be prepared: raise, or answer the others.
ERROR_POLICIES = ("raise", "skip")
# Keyword arguments of `generate` beyond `GenerationConfig` fields.
GENERATE_ARGUMENTS = ("generation_config", "streamer", "stopping_criteria", "logits_processor", "assistant_model")


class ReturnType(enum.Enum):
    TENSORS = 0
    NEW_TEXT = 1
    FULL_TEXT = 2


@dataclass
class VideoQuestion:
    """One pipeline input outside chat mode: a video (or None) and a question, or a prompt holding `<video>`."""

    video: Any
    text: str


def check_video_token(config, processor) -> None:
    """The model's `video_token_id` must be the processor's video token, or no video would reach the model.

    Checked when the model and its processor first meet (loading the pipeline), not at the first question.
    """
    token_id, token = config.video_token_id, processor.video_token
    tokenizer_token = processor.tokenizer.convert_ids_to_tokens(token_id) if token_id < len(processor.tokenizer) else None
    if token_id != processor.video_token_id:
        found = f"is {tokenizer_token!r} in the tokenizer" if tokenizer_token is not None else "is not in the tokenizer"
        raise ValueError(
            f"The model's config.video_token_id={token_id} {found}, but the processor's video token {token!r} has "
            f"id {processor.video_token_id}; set `video_token_id` in the model's config.json to the tokenizer's id "
            "of the video token."
        )


class VideoTextToTextPipeline(Pipeline):
    """
    Answer questions about videos with an Hour-LLaVA model.

    Inputs, as in transformers' image-text-to-text pipeline:

    - `pipe(video, "question")`: a video (path, URL, `(T, H, W, 3)` array or tensor, or a list of frames) and a
      question; `generated_text` is the answer. A text that contains `<video>` is used as the prompt as is.
    - `pipe(messages)` or `pipe(text=messages)`: a chat whose user turn holds `{"type": "video", "path"|"url"|"video":
      ...}`; `generated_text` is the chat with the new assistant message (`return_full_text=False`: the answer).
    - Lists of those (`pipe([video1, video2], ["q1", "q2"])`, `pipe([chat1, chat2])`), batched with `batch_size`.

    Video options (`fps`, `num_frames`, `max_frames`, `min_frames`, `size`, `add_time_instruction`,
    `add_frame_timestamps`, ...) go to the processor; generation options (`max_new_tokens`, `do_sample`, `streamer`,
    ...) to `generate`. Construction options: `max_cached_videos` (default 8, 0 turns the cache off) and
    `max_cache_bytes` (default 4 GiB) bound the feature cache.

    `on_error="skip"` (default `"raise"`) keeps one bad input (a missing or broken video, a prompt longer than the
    context) from losing the answers to the others, as `hour-llava extract-features --on-error skip` does: its
    output is `[{"input_text": ..., "generated_text": None, "error": "<what went wrong>"}]`.

    A video is decoded chunk by chunk straight into the vision tower while its sample is prepared, so only one chunk
    of pixels is alive at a time (an hour of 384x384 float pixels would be 6.4 GB); what is kept is its pooled
    features, in the cache. This is why the pipeline prepares samples in the main process (`num_workers=0`).
    """

    _load_processor = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=256)

    def __init__(
        self,
        *args,
        max_cached_videos: int = DEFAULT_MAX_VIDEOS,
        max_cache_bytes: int | None = DEFAULT_MAX_BYTES,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        model_type = getattr(self.model.config, "model_type", None)
        if model_type != "hour_llava":
            raise ValueError(
                f"The video-text-to-text pipeline runs Hour-LLaVA checkpoints, but {self.model.name_or_path!r} is a "
                f"{model_type!r} checkpoint; convert it first (`hour-llava convert`)."
            )
        if self.processor is None or not hasattr(self.processor, "memaug_query_mask"):
            raise ValueError(
                f"No Hour-LLaVA processor was found for {self.model.name_or_path!r}; save one next to the model "
                "(`HourLlavaProcessor.from_model_config(config, tokenizer).save_pretrained(directory)`)."
            )
        check_video_token(self.model.config, self.processor)
        self.video_cache = VideoFeatureCache(max_cached_videos, max_cache_bytes)

    # ------------------------------------------------------------------------------------------------------------------
    # Arguments
    # ------------------------------------------------------------------------------------------------------------------
    def _sanitize_parameters(
        self,
        max_new_tokens=None,
        generate_kwargs=None,
        return_full_text=None,
        return_tensors=None,
        continue_final_message=None,
        skip_special_tokens=None,
        processor_kwargs=None,
        on_error=None,
        **kwargs,
    ):
        generation_fields = {key for key in vars(GenerationConfig()) if not key.startswith("_")}
        generate_kwargs = dict(generate_kwargs or {})
        video_options = dict(processor_kwargs or {})
        for key, value in kwargs.items():
            if key in VIDEO_OPTIONS:
                video_options[key] = value
            elif key in generation_fields or key in GENERATE_ARGUMENTS:
                generate_kwargs[key] = value
            else:
                raise TypeError(
                    f"VideoTextToTextPipeline got an unexpected argument {key!r}; video options are {VIDEO_OPTIONS}, "
                    "generation options are GenerationConfig fields (or pass generate_kwargs=...)."
                )
        if max_new_tokens is not None:
            generate_kwargs["max_new_tokens"] = max_new_tokens

        preprocess_params = {"video_options": video_options} if video_options else {}
        if continue_final_message is not None:
            preprocess_params["continue_final_message"] = continue_final_message
        if on_error is not None:
            if on_error not in ERROR_POLICIES:
                raise ValueError(f"on_error={on_error!r} is not one of {ERROR_POLICIES}.")
            preprocess_params["on_error"] = on_error
        forward_params = {"generate_kwargs": generate_kwargs} if generate_kwargs else {}
        postprocess_params = {}
        if return_tensors:
            postprocess_params["return_type"] = ReturnType.TENSORS
        elif return_full_text is not None:
            postprocess_params["return_type"] = ReturnType.FULL_TEXT if return_full_text else ReturnType.NEW_TEXT
        if continue_final_message is not None:
            postprocess_params["continue_final_message"] = continue_final_message
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, videos=None, text=None, **kwargs):
        """Answer `text` about `videos`; see the class docstring for the accepted forms. Returns, per input, a list
        of `{"input_text", "generated_text"}` dicts (one per returned sequence)."""
        if kwargs.get("num_workers") or self._num_workers:
            logger.warning_once("VideoTextToTextPipeline encodes videos while preparing samples; using num_workers=0.")
            kwargs["num_workers"] = 0
        if is_chat(videos) or is_chat(text):
            if videos is not None and text is not None:
                raise ValueError("Pass a chat alone: its videos go in the messages' content, not in `videos`.")
            chats = videos if text is None else text
            inputs = Chat(chats) if isinstance(chats[0], dict) else [Chat(chat) for chat in chats]
            return super().__call__(inputs, **kwargs)
        if text is None and isinstance(videos, dict):
            return super().__call__(VideoQuestion(videos.get("video"), videos["text"]), **kwargs)
        if text is None and isinstance(videos, (list, tuple)) and videos and isinstance(videos[0], dict):
            return super().__call__([VideoQuestion(item.get("video"), item["text"]) for item in videos], **kwargs)
        if text is None:
            raise ValueError("Pass a question (`text`) with the video, or a chat.")
        if isinstance(text, str):
            return super().__call__(VideoQuestion(videos, text), **kwargs)
        if videos is None or is_single_video(videos):  # several questions about one video
            videos = [videos] * len(text)
        if len(videos) != len(text):
            raise ValueError(f"Got {len(text)} questions for {len(videos)} videos; pass one video per question.")
        return super().__call__([VideoQuestion(video, question) for video, question in zip(videos, text)], **kwargs)

    # ------------------------------------------------------------------------------------------------------------------
    # Preprocessing: prompt text, tokens and the video's pooled features (cached or encoded now)
    # ------------------------------------------------------------------------------------------------------------------
    def preprocess(self, inputs, video_options=None, continue_final_message=None, on_error="raise"):
        try:
            return self.prepare(inputs, video_options, continue_final_message)
        except Exception as error:  # with "skip", one bad input must not lose the answers to the others
            if on_error == "raise":
                raise
            logger.warning("Skipping input %s: %s", describe_input(inputs), error)
            return {"input_text": inputs, "error": f"{type(error).__name__}: {error}"}

    def prepare(self, inputs, video_options=None, continue_final_message=None) -> dict:
        """Model inputs of one chat or question (with its video encoded), and the input itself as `input_text`."""
        video_options = dict(video_options or {})
        if isinstance(inputs, Chat):
            if continue_final_message is None:
                continue_final_message = inputs.messages[-1]["role"] == "assistant"
            video = video_of_chat(inputs.messages)
            prompt = self.processor.apply_chat_template(
                inputs.messages,
                tokenize=False,
                add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message,
            )
        else:
            video = inputs.video
            prompt = inputs.text if self.processor.video_token in inputs.text else self.question_prompt(inputs)
        model_inputs = self.encode(prompt, video, video_options)
        model_inputs["input_text"] = inputs
        return model_inputs

    def question_prompt(self, question: VideoQuestion) -> str:
        """The chat-templated prompt of a plain question: one user turn with the video first, then the question."""
        video_block = [{"type": "video"}] if question.video is not None else []
        content = video_block + [{"type": "text", "text": question.text}]
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )

    def encode(self, prompt: str, video: Any, video_options: dict) -> dict:
        """Token ids (with the video's placeholder expanded) and the pooled features of one sample's video.

        The video goes to the processor already encoded (from the cache, or streamed through the vision tower now),
        so the processor expands and masks the prompt exactly as for the decoded video, without pixels.
        """
        if video is None:
            encoding = self.processor(text=[prompt], return_tensors="pt")
            return self.check_context_length(dict(encoding), video_name=None)
        if isinstance(video, os.PathLike):
            video = os.fspath(video)  # one string names the video in messages and cache keys
        encoded = self.encoded_video(video, video_options)
        encoding = self.processor(text=[prompt], videos=[encoded], return_tensors="pt", **video_options)
        return self.check_context_length(dict(encoding), video_name=describe_video(video))

    def encoded_video(self, video: Any, video_options: dict):
        """The video's pooled features and metadata: from the cache, or decoded and encoded now (then cached)."""
        decoding = {name: value for name, value in video_options.items() if name in DECODING_OPTIONS}
        cache_key = video_cache_key(video, decoding)
        encoded = self.video_cache.get(cache_key)
        if encoded is None:
            with self.device_placement():
                encoded = encode_video(video, self.processor.video_processor, self.model, **decoding)
            self.video_cache.put(cache_key, encoded)
        return encoded

    def check_context_length(self, model_inputs: dict, video_name: str | None) -> dict:
        """Refuse a prompt longer than the language model's context, naming both numbers."""
        num_tokens = model_inputs["input_ids"].shape[1]
        context = self.model.config.text_config.max_position_embeddings
        if num_tokens > context:
            num_video_tokens = int((model_inputs["input_ids"] == self.model.config.video_token_id).sum())
            video_part = f", {num_video_tokens} of them video tokens for {video_name}," if video_name else ""
            raise ValueError(
                f"The prompt has {num_tokens} tokens{video_part} but the model's context "
                f"(text_config.max_position_embeddings) is {context} tokens; shorten the question or the chat."
            )
        return model_inputs

    # ------------------------------------------------------------------------------------------------------------------
    # Batching
    # ------------------------------------------------------------------------------------------------------------------
    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """As `Pipeline.get_iterator`, with our collation: left-padded tokens and the samples' videos."""
        from torch.utils.data import DataLoader
        from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:  # a generator or an iterable dataset
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
        dataloader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=self.collate)
        model_iterator = PipelineIterator(dataloader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def collate(self, items: list[dict]) -> dict:
        """Left-pad token tensors (generation continues every row at its end) and gather the videos in order; inputs
        that could not be prepared (`on_error="skip"`) only keep their place, through `errors`."""
        prepared = [item for item in items if "error" not in item]
        batch = self.collate_prepared(prepared) if prepared else {}
        batch["input_text"] = [item["input_text"] for item in items]
        batch["errors"] = [item.get("error") for item in items]
        return batch

    def collate_prepared(self, items: list[dict]) -> dict:
        length = max(item["input_ids"].shape[1] for item in items)
        pad_values = {"input_ids": self.processor.tokenizer.pad_token_id, "attention_mask": 0, "memaug_query_mask": 0}
        batch = {
            key: torch.cat([pad_left(item[key], length, value) for item in items])
            for key, value in pad_values.items()
        }
        with_video = [item for item in items if "pooled_video_features" in item]
        if with_video:
            features = [item["pooled_video_features"] for item in with_video]
            batch["pooled_video_features"] = features[0] if len(features) == 1 else torch.cat(features)
            batch["video_num_frames"] = torch.cat([item["video_num_frames"] for item in with_video])
        return batch

    # ------------------------------------------------------------------------------------------------------------------
    # Model
    # ------------------------------------------------------------------------------------------------------------------
    def _forward(self, model_inputs, generate_kwargs=None):
        if "input_text" in model_inputs and not isinstance(model_inputs["input_text"], list):  # batch_size=1 path
            model_inputs = self.collate([model_inputs])
        input_text = model_inputs.pop("input_text")
        errors = model_inputs.pop("errors", None) or [None] * len(input_text)
        prepared = [index for index, error in enumerate(errors) if error is None]
        if not prepared:
            nothing = torch.zeros(len(errors), 1, 0, dtype=torch.long)
            outputs = {"generated_sequence": nothing, "input_ids": nothing[:, 0]}
            return {**outputs, "input_text": input_text, "errors": errors}
        generate_kwargs = self._prepare_generate_kwargs(dict(generate_kwargs or {}))
        input_ids = model_inputs["input_ids"]
        sequences = self.model.generate(**model_inputs, **generate_kwargs)
        new_tokens = sequences[:, input_ids.shape[1] :]
        new_tokens = new_tokens.reshape(input_ids.shape[0], -1, new_tokens.shape[-1])  # (batch, returned, tokens)
        if len(prepared) < len(errors):  # rows of the skipped inputs, so the batch unrolls in input order
            pad = self.processor.tokenizer.pad_token_id
            new_tokens, input_ids = (scatter_rows(t, prepared, len(errors), pad) for t in (new_tokens, input_ids))
        return {"generated_sequence": new_tokens, "input_ids": input_ids, "input_text": input_text, "errors": errors}

    # ------------------------------------------------------------------------------------------------------------------
    # Outputs
    # ------------------------------------------------------------------------------------------------------------------
    def postprocess(self, model_outputs, return_type=None, continue_final_message=None, skip_special_tokens=True):
        input_text = model_outputs["input_text"]
        input_text = input_text[0] if isinstance(input_text, list) else input_text
        error = model_outputs.get("errors")
        error = error[0] if isinstance(error, list) else error
        if error is not None:
            return [{"input_text": plain(input_text), "generated_text": None, "error": error}]
        sequences = model_outputs["generated_sequence"][0]  # (returned, tokens)
        if return_type == ReturnType.TENSORS:
            return [{"input_text": plain(input_text), "generated_token_ids": ids} for ids in sequences]
        answers = self.processor.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens)
        if return_type is None:  # chats and raw prompts continue, questions are answered
            is_question = isinstance(input_text, VideoQuestion) and self.processor.video_token not in input_text.text
            return_type = ReturnType.NEW_TEXT if is_question else ReturnType.FULL_TEXT
        if return_type == ReturnType.FULL_TEXT:
            answers = [self.full_text(input_text, answer, continue_final_message) for answer in answers]
        return [{"input_text": plain(input_text), "generated_text": answer} for answer in answers]

    @staticmethod
    def full_text(input_text, answer: str, continue_final_message: bool | None):
        """The prompt continued by `answer`: a chat gains an assistant message (or its prefill is extended)."""
        if not isinstance(input_text, Chat):
            return input_text.text + answer
        messages = list(input_text.messages)
        if continue_final_message is None:
            continue_final_message = messages[-1]["role"] == "assistant"
        if not continue_final_message:
            return messages + [{"role": "assistant", "content": answer}]
        last = dict(messages[-1])
        if isinstance(last["content"], str):
            last["content"] += answer
        else:
            final_block = last["content"][-1]
            last["content"] = [*last["content"][:-1], {**final_block, "text": final_block["text"] + answer}]
        return messages[:-1] + [last]

    def save_pretrained(self, save_directory, **kwargs):
        """Save model, processor and this pipeline's code, so all three load with `trust_remote_code=True`.

        `Pipeline.save_pretrained` saves the tokenizer but not the processor, and leaves `custom_pipelines` in the
        in-memory model config; both are handled here.
        """
        previous = getattr(self.model.config, "custom_pipelines", None)
        for tokenizer in {id(t): t for t in (self.tokenizer, self.processor.tokenizer) if t is not None}.values():
            for key in ("dtype", "torch_dtype"):  # `pipeline(dtype=...)` leaks a torch.dtype that JSON cannot hold
                tokenizer.init_kwargs.pop(key, None)
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            if previous is None:
                self.model.config.__dict__.pop("custom_pipelines", None)
            else:
                self.model.config.custom_pipelines = previous
        self.processor.save_pretrained(save_directory)


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------
def is_chat(value) -> bool:
    """A chat (list of role/content dicts) or a list of chats."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    first = value[0]
    if isinstance(first, (list, tuple)) and first:
        first = first[0]
    return isinstance(first, dict) and "role" in first and "content" in first


def is_single_video(videos) -> bool:
    """One video: a path or URL, a `(T, H, W, C)` array or tensor, or a list of frames (PIL images or 3D arrays)."""
    if isinstance(videos, (str, os.PathLike)):
        return True
    if isinstance(videos, (np.ndarray, torch.Tensor)):
        return videos.ndim == 4
    if not isinstance(videos, (list, tuple)) or not videos:
        return False
    first = videos[0]
    is_image = hasattr(first, "mode") and hasattr(first, "size") and hasattr(first, "tobytes")
    return is_image or (isinstance(first, (np.ndarray, torch.Tensor)) and first.ndim == 3)


def video_of_chat(messages: Sequence[dict]) -> Any:
    """The video of a chat's content blocks (`video`, `path` or `url`), or None; Hour-LLaVA takes at most one."""
    videos = [
        next((block[key] for key in ("video", "path", "url") if block.get(key) is not None), None)
        for message in messages
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "video"
    ]
    if len(videos) > 1:
        raise ValueError(f"The chat holds {len(videos)} videos; Hour-LLaVA answers about one video per chat.")
    if videos and videos[0] is None:
        raise ValueError("A video block of the chat has no 'path', 'url' or 'video'.")
    return videos[0] if videos else None


def describe_video(video: Any) -> str:
    if isinstance(video, str):
        return video
    shape = getattr(video, "shape", None)
    return f"of shape {tuple(shape)}" if shape is not None else f"of {len(video)} frames"


def describe_input(inputs) -> str:
    """The input's video (or its question) for a log line."""
    if isinstance(inputs, Chat):
        return f"chat {str(inputs.messages)[:80]!r}"
    return repr(describe_video(inputs.video)) if inputs.video is not None else repr(inputs.text)


def scatter_rows(tensor: torch.Tensor, positions: list[int], num_rows: int, fill: int) -> torch.Tensor:
    """A `num_rows`-row tensor holding `tensor`'s rows at `positions` and `fill` elsewhere."""
    full = tensor.new_full((num_rows, *tensor.shape[1:]), fill)
    full[positions] = tensor
    return full


def plain(input_text):
    """The user's input as they gave it: chat messages, or the question/prompt string."""
    return input_text.messages if isinstance(input_text, Chat) else input_text.text


def pad_left(tensor: torch.Tensor, length: int, value: int) -> torch.Tensor:
    return torch.nn.functional.pad(tensor, (length - tensor.shape[1], 0), value=value)


def register_pipeline() -> None:
    """Make `pipeline("video-text-to-text")` build a `VideoTextToTextPipeline` (done on `import hour_llava`)."""
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=VideoTextToTextPipeline, pt_model=AutoModelForImageTextToText, type="multimodal"
    )


def save_pipeline(directory, model, processor, max_shard_size: str | int = "5GB") -> None:
    """Save `model` and `processor` with this pipeline's code (`custom_pipelines`), for remote-code loading."""
    pipe = VideoTextToTextPipeline(model=model, processor=processor, task=TASK, device=model.device)
    pipe.save_pretrained(directory, max_shard_size=max_shard_size)


__all__ = ["VideoFeatureCache", "VideoTextToTextPipeline", "register_pipeline", "save_pipeline"]
