# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Processor of Hour-LLaVA: Qwen ChatML template, video placeholder expansion and the MemAug query mask.

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

from collections.abc import Sequence

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import MultiModalData, ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import PreTokenizedInput, TextInput
from transformers.video_utils import VideoInput

from .video_processing_hour_llava import (
    HourLlavaVideoProcessor,
    HourLlavaVideoProcessorKwargs,
    encoded_videos,
    paths_as_strings,
)


DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
VIDEO_TOKEN = "<video>"  # the placeholder that converted checkpoints and `hour_llava.tiny` tokenizers add
IMAGE_TOKEN = "<image>"  # the image placeholder, added right after VIDEO_TOKEN

# Qwen ChatML as the reference's `conv_qwen` renders it, with media first in a turn (LLaVA-OneVision's convention,
# and the reference moves `<image>` to the front) and `{% generation %}` markers for assistant-only losses.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{%- set text = message['content'] -%}"
    "{%- else -%}"
    "{%- for block in message['content'] if block['type'] == 'video' -%}{{- '<video>\\n' -}}{%- endfor -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- text + '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}"
    "{{- text + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Names of the numbers that fix how many decayed video tokens a video of T frames becomes; the model config has the
# same fields, and `HourLlavaProcessor.from_model_config` copies them.
TOKEN_COUNT_FIELDS = ("min_video_frames", "temporal_downsample", "max_kept_frames", "spatial_keep_tokens")


class HourLlavaProcessorVideosKwargs(HourLlavaVideoProcessorKwargs, total=False):
    r"""
    add_time_instruction (`bool`, *optional*):
        Follow the video placeholder with the time instruction ("The video lasts for ... seconds, and T frames are
        uniformly sampled from it. ..."). Defaults to the processor's `add_time_instruction`.
    add_frame_timestamps (`bool`, *optional*):
        Add "These frames are located at 0.00s,1.00s,..." to the time instruction. Defaults to the processor's
        `add_frame_timestamps`.
    """

    add_time_instruction: bool | None
    add_frame_timestamps: bool | None


class HourLlavaProcessorKwargs(ProcessingKwargs, total=False):
    videos_kwargs: HourLlavaProcessorVideosKwargs


class HourLlavaProcessor(ProcessorMixin):
    r"""
    Hour-LLaVA processor: a Qwen2 tokenizer and an [`HourLlavaVideoProcessor`].

    Each `<video>` in the text becomes exactly as many `<video>` tokens as the model's decayed video tokens for that
    video (`num_video_tokens`), followed by the time instruction the released checkpoints were trained with. The
    output also holds `memaug_query_mask`: which text tokens join MemAug's query.

    Args:
        tokenizer ([`Qwen2Tokenizer`]):
            Tokenizer with `<|im_start|>`, `<|im_end|>` and the video token.
        video_processor ([`HourLlavaVideoProcessor`]):
            Samples and preprocesses the videos.
        chat_template (`str`, *optional*):
            Jinja template; defaults to Qwen ChatML with video blocks rendered as `<video>\n`.
        video_token (`str`, *optional*, defaults to `"<video>"`):
            Video placeholder token (a single token of the tokenizer); the default template writes it for video
            blocks.
        add_time_instruction (`bool`, *optional*, defaults to `True`):
            Follow each video with "The video lasts for {duration:.2f} seconds, and {T} frames are uniformly sampled
            from it. Please answer the following questions related to this video." (stages 2-3 of training).
        add_frame_timestamps (`bool`, *optional*, defaults to `False`):
            Insert "These frames are located at 0.00s,1.00s,.... " before "Please answer".
        min_video_frames, temporal_downsample, max_kept_frames, spatial_keep_tokens (`int`, *optional*):
            The model's token-count fields (defaults 128, 4, 512, 16): a video of T frames gives
            `max(1, min(max_kept_frames, max(T, min_video_frames) // temporal_downsample)) * (spatial_keep_tokens + 1)`
            tokens. They must equal the model config's; `from_model_config` copies them.
    """

    valid_processor_kwargs = HourLlavaProcessorKwargs

    def __init__(
        self,
        tokenizer=None,
        video_processor=None,
        chat_template=None,
        video_token=VIDEO_TOKEN,
        add_time_instruction=True,
        add_frame_timestamps=False,
        min_video_frames=128,
        temporal_downsample=4,
        max_kept_frames=512,
        spatial_keep_tokens=16,
        **kwargs,
    ):
        if tokenizer is None:
            raise ValueError("HourLlavaProcessor needs a tokenizer.")
        # The template writes this token for video blocks, so it is taken from here, never from the tokenizer.
        self.video_token = video_token
        self.video_token_id = _single_token_id(tokenizer, self.video_token, "video_token")
        self.add_time_instruction = add_time_instruction
        self.add_frame_timestamps = add_frame_timestamps
        self.min_video_frames = min_video_frames
        self.temporal_downsample = temporal_downsample
        self.max_kept_frames = max_kept_frames
        self.spatial_keep_tokens = spatial_keep_tokens
        self._turn_start_id = _known_token_id(tokenizer, "<|im_start|>")
        self._turn_end_id = _known_token_id(tokenizer, "<|im_end|>")
        self._newline_id = _single_token_id(tokenizer, "\n", "newline")
        chat_template = chat_template or CHAT_TEMPLATE.replace(VIDEO_TOKEN, video_token)
        super().__init__(tokenizer, video_processor, chat_template=chat_template, **kwargs)

    @classmethod
    def from_model_config(cls, config, tokenizer, video_processor=None, **kwargs) -> "HourLlavaProcessor":
        """A processor whose token counts and frame size match `config` (an `HourLlavaConfig`, read duck-typed).

        The video token is the tokenizer's token for `config.video_token_id`; the frame size is the vision tower's
        `image_size`. `kwargs` go to `__init__` (e.g. `add_frame_timestamps=True`).
        """
        video_token = tokenizer.convert_ids_to_tokens(config.video_token_id)
        if video_token is None:
            raise ValueError(f"config.video_token_id={config.video_token_id} is not in the tokenizer's vocabulary.")
        if video_processor is None:
            image_size = config.vision_config.image_size
            video_processor = HourLlavaVideoProcessor(size={"height": image_size, "width": image_size})
        counts = {name: getattr(config, name) for name in TOKEN_COUNT_FIELDS}
        return cls(tokenizer, video_processor, video_token=video_token, **{**counts, **kwargs})

    # ------------------------------------------------------------------------------------------------------------------
    # Placeholder expansion
    # ------------------------------------------------------------------------------------------------------------------
    def num_video_tokens(self, num_frames: int) -> int:
        """Decayed video tokens the model makes of a video of `num_frames` decoded frames (the placeholder length).

        Short videos are upsampled to `min_video_frames`, temporal forgetting keeps one frame in
        `temporal_downsample` (at most `max_kept_frames`), and each kept frame has `spatial_keep_tokens` tokens plus
        a newline.
        """
        effective_frames = max(int(num_frames), self.min_video_frames)
        kept_frames = max(1, min(self.max_kept_frames, effective_frames // self.temporal_downsample))
        return kept_frames * (self.spatial_keep_tokens + 1)

    @staticmethod
    def time_instruction(duration: float, num_frames: int, timestamps: Sequence[float] | None = None) -> str:
        """The sentence that follows the video placeholder (reference: the streaming loader's, optionally with the
        JSON loader's frame times, here with the space before "Please" that the reference lost)."""
        text = f"The video lasts for {duration:.2f} seconds, and {num_frames} frames are uniformly sampled from it. "
        if timestamps is not None:
            text += f"These frames are located at {','.join(f'{t:.2f}s' for t in timestamps)}. "
        return text + "Please answer the following questions related to this video."

    def replace_video_token(
        self,
        video_inputs: dict,
        video_idx: int,
        add_time_instruction: bool | None = None,
        add_frame_timestamps: bool | None = None,
        **kwargs,
    ) -> str:
        """`num_video_tokens(T)` video tokens, then `"\\n" + time instruction + "\\n"`.

        With the template's `<video>\\n{question}` this renders the reference's first user turn exactly,
        `<image>\\n{TI}\\n\\n{question}` (the reference inserts `TI + "\\n"` after `<image>\\n`).
        """
        num_frames = int(video_inputs["video_num_frames"][video_idx])
        placeholder = self.video_token * self.num_video_tokens(num_frames)
        if not _default(add_time_instruction, self.add_time_instruction):
            return placeholder
        metadata = video_inputs["video_metadata"][video_idx]
        timestamps = metadata.timestamps if _default(add_frame_timestamps, self.add_frame_timestamps) else None
        return f"{placeholder}\n{self.time_instruction(metadata.duration, num_frames, timestamps)}\n"

    def _process_videos(
        self, videos, add_time_instruction: bool | None = None, add_frame_timestamps: bool | None = None, **kwargs
    ):
        """Run the video processor (always with metadata: the time instruction needs durations and timestamps;
        `ProcessorMixin.__call__` drops it from the output unless `return_metadata=True`)."""
        processed = self.video_processor(videos, **{**kwargs, "return_metadata": True})
        replacements = [
            self.replace_video_token(
                processed, index, add_time_instruction=add_time_instruction, add_frame_timestamps=add_frame_timestamps
            )
            for index in range(len(processed["video_num_frames"]))
        ]
        return processed, replacements

    def prepare_inputs_layout(self, images=None, text=None, videos=None, audio=None, **kwargs):
        images, text, videos, audio = super().prepare_inputs_layout(images, text, videos, audio, **kwargs)
        return images, text, paths_as_strings(videos), audio

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        for index, sample in enumerate(text or []):
            if sample.count(self.video_token) > 1:
                raise ValueError(
                    f"Text sample {index} has {sample.count(self.video_token)} {self.video_token} placeholders; "
                    "Hour-LLaVA takes at most one video per sample (ask several questions about it in one turn or "
                    "over several turns instead)."
                )
        encoded = encoded_videos(videos) if videos is not None else None
        if encoded is None or text is None:
            return super().validate_inputs(text=text, videos=videos, **kwargs)
        placeholders = sum(sample.count(self.video_token) for sample in text)
        if placeholders != len(encoded):  # transformers' own check cannot batch encoded videos
            raise ValueError(
                f"The text has {placeholders} {self.video_token} placeholders but {len(encoded)} encoded videos were "
                "passed; give one video per placeholder."
            )

    # ------------------------------------------------------------------------------------------------------------------
    # Call
    # ------------------------------------------------------------------------------------------------------------------
    def __call__(
        self,
        text: TextInput | PreTokenizedInput | list[TextInput] | list[PreTokenizedInput] | None = None,
        videos: VideoInput | None = None,
        **kwargs: Unpack[HourLlavaProcessorKwargs],
    ) -> BatchFeature:
        """Tokenize `text` with each `<video>` expanded and process `videos`.

        Args:
            text (`str`, `list[str]`, *optional*):
                The samples, each with at most one `<video>` placeholder (chat-templated, e.g. by
                `apply_chat_template`).
            videos (`VideoInput`, *optional*):
                One video per placeholder: paths, http(s) URLs, lists of frame files or URLs, frames in memory, or
                `EncodedVideo`s (see [`HourLlavaVideoProcessor`]).

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask`, `memaug_query_mask` (see `memaug_query_mask`), and
            for videos `pixel_values_videos` (or `pooled_video_features` for encoded videos) and `video_num_frames`
            (plus `video_metadata` with `return_metadata=True`).
        """
        # `apply_chat_template` passes every modality by name; Hour-LLaVA reads only text and videos.
        unsupported = sorted(name for name in ("images", "audio") if kwargs.pop(name, None) is not None)
        if unsupported:
            raise TypeError(f"HourLlavaProcessor takes `text` and `videos`, not {' or '.join(unsupported)}.")
        outputs = super().__call__(text=text, videos=videos, **kwargs)
        if "input_ids" in outputs:
            mask = self.memaug_query_mask(outputs["input_ids"], outputs.get("attention_mask"))
            outputs["memaug_query_mask"] = _like(outputs["input_ids"], mask)
        return outputs

    def _get_num_multimodal_tokens(self, image_sizes=None, video_sizes=None, **kwargs) -> MultiModalData:
        """Placeholder tokens per video, as transformers' tests and vLLM's transformers backend ask for them.

        Args:
            image_sizes (`list[list[int]]`, *optional*):
                Must be `None`: Hour-LLaVA takes no images.
            video_sizes (`list[list[int]]`, *optional*):
                `(num_frames, height, width)` per video, `num_frames` counting the frames given to the model (after
                sampling). The count depends on the frames only: every frame is resized to the same size and
                temporal forgetting fixes the number of tokens (`num_video_tokens`).

        Returns:
            `MultiModalData` with `num_video_tokens` (the time instruction after each placeholder is text, not
            placeholder tokens).
        """
        if image_sizes is not None:
            raise ValueError("HourLlavaProcessor takes no images, so `image_sizes` must be None.")
        if video_sizes is None:
            return MultiModalData()
        return MultiModalData(num_video_tokens=[self.num_video_tokens(num_frames) for num_frames, _, _ in video_sizes])

    @property
    def model_input_names(self) -> list[str]:
        return [*super().model_input_names, "pooled_video_features", "memaug_query_mask"]

    def memaug_query_mask(self, input_ids, attention_mask=None) -> list[list[int]]:
        """1 for the text tokens that join MemAug's query, 0 elsewhere, per sample of `input_ids` `(B, L)`.

        The released checkpoints were trained with the query made of the system and user turns' tokens minus every
        `\\n`, `<|im_start|>` and `<|im_end|>` token, and no assistant tokens at all (header, content, `<|im_end|>`).
        The same rule holds at inference, so the generation prompt `<|im_start|>assistant\\n` is left out too. Video
        placeholders and padding are 0. It is read off the tokens, so text templated by hand gets the same mask.
        A turn's role is the text between `<|im_start|>` and the first newline; a `\\n\\n` token is not the newline
        token and stays in the query, as in the reference.
        """
        input_ids = _as_rows(input_ids)
        attention_mask = _as_rows(attention_mask) if attention_mask is not None else [[1] * len(r) for r in input_ids]
        return [self._query_mask_row(ids, attended) for ids, attended in zip(input_ids, attention_mask)]

    def _query_mask_row(self, ids: list[int], attended: list[int]) -> list[int]:
        structural = {self._turn_start_id, self._turn_end_id, self._newline_id, self.video_token_id}
        mask, in_assistant_turn, position = [], False, 0
        while position < len(ids):
            if ids[position] == self._turn_start_id:
                header_end = self._turn_header_end(ids, position + 1)
                role = self.tokenizer.decode(ids[position + 1 : header_end]).split("\n", 1)[0].strip()
                in_assistant_turn = role == "assistant"
                mask.extend([0] + [int(not in_assistant_turn)] * (header_end - position - 1))
                position = header_end
                continue
            token = ids[position]
            mask.append(int(not in_assistant_turn and token not in structural))
            if token == self._turn_end_id:
                in_assistant_turn = False
            position += 1
        return [bit if attended_bit else 0 for bit, attended_bit in zip(mask, attended)]

    def _turn_header_end(self, ids: list[int], start: int) -> int:
        """Index just past the role header that starts at `start`: up to the first token holding a newline."""
        for position in range(start, len(ids)):
            if ids[position] in (self._turn_start_id, self._turn_end_id, self._newline_id):
                return position
            if "\n" in self.tokenizer.decode([ids[position]]):
                return position + 1
        return len(ids)


def _default(value, default):
    return default if value is None else value


def _known_token_id(tokenizer, token: str) -> int | None:
    token_id = tokenizer.convert_tokens_to_ids(token)
    return None if token_id is None or token_id == tokenizer.unk_token_id else token_id


def _single_token_id(tokenizer, text: str, name: str) -> int:
    """The id of `text` when the tokenizer encodes it as exactly one token (found by string, never by number)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"The tokenizer encodes the {name} {text!r} as {len(ids)} tokens {ids}; it must be one token.")
    return ids[0]


def _as_rows(values) -> list[list[int]]:
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = values.tolist()
    if values and isinstance(values[0], int):
        values = [values]
    return [list(row) for row in values]


def _like(reference, rows: list[list[int]]):
    """`rows` in the container type of `reference` (tensor, array or nested lists; unbatched stays unbatched)."""
    if isinstance(reference, torch.Tensor):
        return torch.tensor(rows, dtype=torch.long, device=reference.device).reshape(reference.shape)
    if isinstance(reference, np.ndarray):
        return np.asarray(rows, dtype=np.int64).reshape(reference.shape)
    return rows[0] if reference and isinstance(reference[0], int) else rows


__all__ = ["HourLlavaProcessor"]
