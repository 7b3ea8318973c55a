# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""vLLM's multimodal processing for Hour-LLaVA: video decoding, placeholder expansion, the MemAug query.

What `HourLlavaProcessor` does for transformers happens here for vLLM, with the same code where it matters:

* frames come from `hour_llava.processing.video_decoding` (PyAV, the first frame at or after each second, at most
  `min_video_frames` spread frames for short clips, swscale bicubic to the vision tower's size), so the pixels are the
  ones our transformers pipeline sees; they travel to the model as uint8 and are normalised there, chunk by chunk;
* the `<video>` token of the prompt becomes `HourLlavaProcessor.num_video_tokens(T)` video tokens followed by the
  reference time instruction, and the text after it is tokenized again together with that instruction, exactly as
  the transformers processor tokenizes the whole prompt;
* MemAug's query (system and user text without structural tokens) is read off the expanded prompt by
  `HourLlavaProcessor.memaug_query_mask`, and travels as a multimodal field of the video item.

Question-keyed caching: a video's embeddings depend on its question (MemAug's query holds the question's tokens).
vLLM keys its processor cache, encoder cache and prefix-cache blocks on each item's hash, which it computes from the
item's data and the processor kwargs. `HourLlavaMultiModalProcessor.apply` therefore adds the prompt's token ids to
the processor kwargs, so the hash covers video and question together: two questions about one video never share
embeddings, and the same question about the same video is a cache hit.
"""

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import torch
from transformers import BatchFeature
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.media import MediaWithBytes
from vllm.multimodal.parse import MultiModalDataItems, MultiModalDataParser, VideoProcessorItems
from vllm.multimodal.video import VideoLoader
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
    PromptUpdateDetails,
)

from ..processing.processing_hour_llava import HourLlavaProcessor
from ..processing.media_access import open_media_bytes
from ..processing.video_decoding import decode_video
from ..processing.video_processing_hour_llava import HourLlavaVideoProcessor
from .configuration import HourLlavaVllmConfig


# The prompt's token ids, added to the processor kwargs so that every cache keys on video and question together.
PROMPT_IDS_KWARG = "hour_llava_prompt_ids"
# Frames the profiling run feeds the model: an hour of video at 1 FPS, the largest input Hour-LLaVA is made for.
PROFILE_NUM_FRAMES = 3600


class EncodedVideoLoader(VideoLoader):
    """vLLM's video loader for Hour-LLaVA (registered as `"hour_llava"` for `HourLlavaVideoProcessor`).

    The OpenAI server fetches a `video_url` and hands the bytes to the model's loader. vLLM's loaders decode a fixed
    number of frames (32 by default), which Hour-LLaVA would throw away: it reads one frame per second with its own
    rule. This loader only checks that the bytes hold a video stream (so a corrupt upload is refused before it is
    queued) and passes them on undecoded; the processor decodes them.
    """

    @classmethod
    def load_bytes(cls, data: bytes, **kwargs) -> tuple[np.ndarray, dict]:
        try:
            with open_media_bytes(data) as container:
                if not container.streams.video:
                    raise ValueError("it has no video stream")
        except (av.FFmpegError, ValueError) as error:
            raise ValueError(f"The video ({len(data)} bytes) cannot be read: {error}") from error
        return np.frombuffer(data, dtype=np.uint8), {"encoded": True}


class HourLlavaVideoItems(VideoProcessorItems):
    """Videos as the processor takes them: encoded bytes (a file's or a fetched URL's) or a `(T, H, W, 3)` array.

    Files are read when the request is parsed, so the cache hash covers their content, not their path.
    """

    def get_num_frames(self, item_idx: int) -> int:
        raise NotImplementedError("Hour-LLaVA counts frames after decoding at 1 FPS; use the processor's output.")


class HourLlavaDataParser(MultiModalDataParser):
    """Accepts a path, `bytes`, a fetched video (`MediaWithBytes`, from the OpenAI server) or an array of frames."""

    def _parse_video_data(self, data):
        if data is None:
            return None
        items = data if isinstance(data, list) else [data]
        return HourLlavaVideoItems([_as_video_source(item) for item in items])


def _as_video_source(item) -> bytes | np.ndarray:
    if isinstance(item, MediaWithBytes):
        return item.original_bytes  # decode the original file, not the frames vLLM's loader sampled
    if isinstance(item, bytes):
        return item
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise ValueError(f"Video file not found: {str(item)!r}")
        return path.read_bytes()
    if isinstance(item, torch.Tensor):
        item = item.numpy()
    if isinstance(item, np.ndarray) and item.ndim == 4:
        return item
    raise ValueError(
        f"A video must be a path, bytes or a (frames, height, width, 3) array; got {type(item).__name__}."
    )


def decode_video_source(source: bytes | np.ndarray, frame_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """`(T, H, W, 3)` uint8 frames at 1 FPS and the video's duration in seconds, as our transformers processor does.

    Encoded bytes go through a temporary file because the decoder demuxes the stream twice (times, then frames).
    """
    if isinstance(source, np.ndarray):
        frames, metadata = decode_video(source, size=frame_size)
        return frames, metadata.duration
    with tempfile.NamedTemporaryFile(suffix=".video") as file:
        file.write(source)
        file.flush()
        try:
            frames, metadata = decode_video(file.name, size=frame_size)
        except (ValueError, OSError) as error:
            raise ValueError(f"Could not decode the video ({len(source)} bytes): {error}") from error
    return frames, metadata.duration


class VllmHourLlavaProcessor(HourLlavaProcessor):
    """`HourLlavaProcessor` as vLLM's environment can build it.

    Without torchvision, transformers 5.19 has no video-processor registry to check the video processor's class
    against (`ProcessorMixin.__init__` fails on it); the plugin only uses the processor's text rules and passes our
    own video processor, so that one check is skipped.
    """

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor":
            return type(argument)
        return super().check_argument_for_proper_class(argument_name, argument)


class HourLlavaProcessingInfo(BaseProcessingInfo):
    def get_hf_config(self) -> HourLlavaVllmConfig:
        return self.ctx.get_hf_config(HourLlavaVllmConfig)

    def get_hf_processor(self, **kwargs: object) -> HourLlavaProcessor:
        """Our transformers processor, built once from the model config and vLLM's tokenizer (never remote code)."""
        if getattr(self, "_processor", None) is None:
            config = self.get_hf_config()
            size = config.vision_config.image_size
            video_processor = HourLlavaVideoProcessor(size={"height": size, "width": size})
            self._processor = VllmHourLlavaProcessor.from_model_config(
                config, self.get_tokenizer(), video_processor=video_processor
            )
        return self._processor

    def get_supported_mm_processor_kwargs(self) -> dict[str, set[str]]:
        return {"text_kwargs": set(), "videos_kwargs": set()}

    def get_data_parser(self) -> MultiModalDataParser:
        return HourLlavaDataParser(expected_hidden_size=self._get_expected_hidden_size())

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"video": 1}  # one video per sample, as the model was trained

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        return {"video": self.get_hf_config().memaug_settings().num_video_tokens(PROFILE_NUM_FRAMES)}

    @property
    def frame_size(self) -> tuple[int, int]:
        size = self.get_hf_config().vision_config.image_size
        return size, size


class HourLlavaDummyInputsBuilder(BaseDummyInputsBuilder[HourLlavaProcessingInfo]):
    """Profiling input: one hour of video at 1 FPS (`PROFILE_NUM_FRAMES` frames at the vision tower's size)."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return "<|im_start|>user\n" + "<video>\n" * mm_counts.get("video", 0) + "Describe it.<|im_end|>\n"

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options):
        height, width = self.info.frame_size
        return {
            "video": self._get_dummy_videos(
                width=width,
                height=height,
                num_frames=PROFILE_NUM_FRAMES,
                num_videos=mm_counts.get("video", 0),
                overrides=mm_options.get("video") if mm_options else None,
            )
        }


class HourLlavaMultiModalProcessor(BaseMultiModalProcessor[HourLlavaProcessingInfo]):
    def apply(self, inputs, timing_ctx):
        """Add the prompt's token ids to the processor kwargs: they enter every item's hash and reach the video
        processing, which needs the text around the `<video>` token for the MemAug query."""
        prompt_ids = np.asarray(inputs.prompt, dtype=np.int64)
        kwargs = {**inputs.hf_processor_mm_kwargs, PROMPT_IDS_KWARG: prompt_ids}
        return super().apply(replace(inputs, hf_processor_mm_kwargs=kwargs), timing_ctx)

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        processor = self.info.get_hf_processor()
        prompt_ids = [int(i) for i in hf_kwargs[PROMPT_IDS_KWARG]]
        outputs = {"video_frames": [], "memaug_query_ids": [], "memaug_query_num_before": [], "prompt_suffix_ids": []}
        for source in hf_data.get("videos", []):
            frames, duration = decode_video_source(source, self.info.frame_size)
            suffix, query_ids, num_before = self._expand_prompt(processor, prompt_ids, len(frames), duration)
            outputs["video_frames"].append(torch.from_numpy(frames))
            outputs["memaug_query_ids"].append(torch.tensor(query_ids, dtype=torch.long))
            outputs["memaug_query_num_before"].append(num_before)
            outputs["prompt_suffix_ids"].append(torch.tensor(suffix, dtype=torch.long))
        outputs["memaug_query_num_before"] = torch.tensor(outputs["memaug_query_num_before"], dtype=torch.long)
        return BatchFeature(outputs)

    def _expand_prompt(
        self, processor: HourLlavaProcessor, prompt_ids: list[int], num_frames: int, duration: float
    ) -> tuple[list[int], list[int], int]:
        """The prompt from its `<video>` token on, as `HourLlavaProcessor` tokenizes it, and the MemAug query.

        Returns the new ids from the video tokens to the end, the query token ids (text before the video, then text
        after it) and how many of them come before the video.
        """
        video_token_id = processor.video_token_id
        positions = [i for i, token in enumerate(prompt_ids) if token == video_token_id]
        if len(positions) != 1:
            raise ValueError(
                f"The prompt has {len(positions)} {processor.video_token} tokens for one video; Hour-LLaVA takes one "
                "video per prompt, written once (the chat template writes it for a video content part)."
            )
        start = positions[0]
        tokenizer = processor.tokenizer
        # `<video>` is a special token, so the text before it tokenizes alone and keeps its ids.
        instruction = processor.time_instruction(duration, num_frames) if processor.add_time_instruction else None
        after = tokenizer.decode(prompt_ids[start + 1 :], skip_special_tokens=False)
        text = f"\n{instruction}\n{after}" if instruction is not None else after
        video_tokens = [video_token_id] * processor.num_video_tokens(num_frames)
        suffix = video_tokens + tokenizer.encode(text, add_special_tokens=False)
        full = prompt_ids[:start] + suffix
        mask = processor.memaug_query_mask([full])[0]
        end = start + len(video_tokens)
        before = [token for token, keep in zip(full[:start], mask[:start]) if keep]
        after_ids = [token for token, keep in zip(full[end:], mask[end:]) if keep]
        return suffix, before + after_ids, len(before)

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]):
        return {
            "video_frames": MultiModalFieldConfig.batched("video"),
            "memaug_query_ids": MultiModalFieldConfig.batched("video"),
            "memaug_query_num_before": MultiModalFieldConfig.batched("video"),
            "prompt_suffix_ids": MultiModalFieldConfig.batched("video", keep_on_cpu=True),
        }

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        """Replace the prompt from its `<video>` token to the end by the re-tokenized expansion (video tokens, time
        instruction, the rest), so token merges across the instruction's edges match the transformers processor."""
        video_token_id = self.info.get_hf_config().video_token_id
        prompt_ids = [int(i) for i in hf_processor_mm_kwargs[PROMPT_IDS_KWARG]]

        def original_suffix(item_idx: int) -> list[int]:
            return prompt_ids[prompt_ids.index(video_token_id) :]

        def expanded_suffix(item_idx: int) -> PromptUpdateDetails:
            suffix = out_mm_kwargs["video"][item_idx]["prompt_suffix_ids"].data.tolist()
            return PromptUpdateDetails.select_token_id(suffix, video_token_id)

        return [PromptReplacement(modality="video", target=original_suffix, replacement=expanded_suffix)]
