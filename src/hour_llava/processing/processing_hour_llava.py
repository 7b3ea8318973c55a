# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Processor of Hour-LLaVA: Qwen ChatML template, video and image placeholder expansion and the MemAug query mask.

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from transformers import AutoVideoProcessor
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import select_best_resolution
from transformers.image_utils import ImageInput
from transformers.processing_utils import ImagesKwargs, MultiModalData, ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import PreTokenizedInput, TextInput
from transformers.utils import is_torchvision_available
from transformers.video_utils import VideoInput

from .video_processing_hour_llava import (
    HourLlavaVideoProcessor,
    HourLlavaVideoProcessorKwargs,
    encoded_videos,
    paths_as_strings,
)


# The image processor is built on transformers' torchvision backend; the vLLM plugin's environment has no torchvision
# and uses this processor for videos only (`image_processor=None`).
if is_torchvision_available():
    from .image_processing_hour_llava import HourLlavaImageProcessor, grid_pinpoints


DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
VIDEO_TOKEN = "<video>"  # the placeholder that converted checkpoints and `hour_llava.tiny` tokenizers add
IMAGE_TOKEN = "<image>"  # the image placeholder, added right after VIDEO_TOKEN

# Qwen ChatML as the reference's `conv_qwen` renders it, with `{% generation %}` markers for assistant-only losses. A
# turn's only image or video goes first, on its own line (the reference moves a lone `<image>` to the front). Several
# images stay where they are among the text pieces, as the reference leaves several `<image>` placeholders in place;
# only images given back to back, or ahead of all text, get a newline after each (LLaVA-OneVision's `<image>\n`).
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{%- set text = message['content'] -%}"
    "{%- else -%}"
    "{%- set media = message['content'] | selectattr('type', 'in', ['image', 'video']) | list -%}"
    "{%- if media | length == 1 -%}"
    "{{- ('<image>' if media[0]['type'] == 'image' else '<video>') + '\\n' -}}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
    "{%- else -%}"
    "{%- set pieces = namespace(text='', leading=true, previous_media=false) -%}"
    "{%- for block in message['content'] -%}"
    "{%- if block['type'] == 'text' -%}"
    "{%- if pieces.previous_media and pieces.leading and block['text'][:1] != '\\n' -%}"
    "{%- set pieces.text = pieces.text + '\\n' -%}"
    "{%- endif -%}"
    "{%- set pieces.text = pieces.text + block['text'] -%}"
    "{%- set pieces.leading = false -%}"
    "{%- set pieces.previous_media = false -%}"
    "{%- else -%}"
    "{%- set pieces.text = pieces.text + ('\\n' if pieces.previous_media else '') + "
    "('<image>' if block['type'] == 'image' else '<video>') -%}"
    "{%- set pieces.previous_media = true -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set text = pieces.text + ('\\n' if pieces.previous_media and pieces.leading else '') -%}"
    "{%- endif -%}"
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

MISSING_IMAGE_TOKEN_HINT = (
    " A tokenizer made before images were supported lacks <image>: add it as a special token right after <video> "
    "(`hour-llava convert` and `hour_llava.tiny` do), or build a processor for videos only with "
    "`HourLlavaProcessor(tokenizer, video_processor, image_processor=None, ...)`."
)

# Spatial forgetting of images (spec 4.2): "uniform" keeps the `[::2, ::2]` sub-grid (what the model does when it is
# given no kept indices, and always at inference), "random" keeps `ceil(N * IMAGE_KEEP_RATIO)` tokens drawn at random.
IMAGE_KEEP_RATIO = 0.25


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


class HourLlavaProcessorImagesKwargs(ImagesKwargs, total=False):
    r"""
    image_forgetting (`str`, *optional*, defaults to `"uniform"`):
        How the model forgets image tokens, which fixes how many `<image>` tokens each placeholder becomes:
        `"uniform"` (the `[::2, ::2]` grid; inference, and whenever the model gets no kept indices) or `"random"`
        (a quarter of the tokens drawn at random, as in training with `spatial_sampling_type="random"`). With
        `"random"` the draw is made here and returned as `image_kept_indices` and `image_kept_lengths`, which the
        model must be given.
    generator (`torch.Generator`, *optional*):
        CPU generator of the random draw (default: torch's global one). The call advances it, so consecutive calls
        draw anew and a seeded generator reproduces a sequence of calls.
    """

    image_forgetting: Literal["uniform", "random"]
    generator: torch.Generator | None


class HourLlavaProcessorKwargs(ProcessingKwargs, total=False):
    images_kwargs: HourLlavaProcessorImagesKwargs
    videos_kwargs: HourLlavaProcessorVideosKwargs


class HourLlavaProcessor(ProcessorMixin):
    r"""
    Hour-LLaVA processor: a Qwen2 tokenizer, an [`HourLlavaVideoProcessor`] and an [`HourLlavaImageProcessor`].

    A sample holds one video, one image, several images, or no media. Each `<video>` in the text becomes exactly as
    many `<video>` tokens as the model's decayed video tokens for that video (`num_video_tokens`), followed by the
    time instruction the released checkpoints were trained with; each `<image>` becomes exactly as many `<image>`
    tokens as the model puts there for that image (`num_image_tokens`). The output also holds
    `memaug_query_mask`: which text tokens join MemAug's query.

    Args:
        tokenizer ([`Qwen2Tokenizer`]):
            Tokenizer with `<|im_start|>`, `<|im_end|>`, the video token and (with an image processor) the image token.
        video_processor ([`HourLlavaVideoProcessor`]):
            Samples and preprocesses the videos.
        image_processor ([`HourLlavaImageProcessor`], *optional*):
            Cuts images into crops. Without it the processor takes no images (the vLLM plugin's environment, which
            has no torchvision, builds it so); `from_model_config` and `from_pretrained` give it one.
        chat_template (`str`, *optional*):
            Jinja template; defaults to Qwen ChatML with image and video blocks rendered as `<image>\n` and
            `<video>\n` at the start of their turn, in the order given.
        video_token (`str`, *optional*, defaults to `"<video>"`):
            Video placeholder token (a single token of the tokenizer); the default template writes it for video
            blocks.
        image_token (`str`, *optional*, defaults to `"<image>"`):
            Image placeholder token (a single token of the tokenizer when there is an image processor); the default
            template writes it for image blocks.
        add_time_instruction (`bool`, *optional*, defaults to `True`):
            Follow each video with "The video lasts for {duration:.2f} seconds, and {T} frames are uniformly sampled
            from it. Please answer the following questions related to this video." (stages 2-3 of training).
        add_frame_timestamps (`bool`, *optional*, defaults to `False`):
            Insert "These frames are located at 0.00s,1.00s,.... " before "Please answer".
        min_video_frames, temporal_downsample, max_kept_frames, spatial_keep_tokens (`int`, *optional*):
            The model's token-count fields (defaults 128, 4, 512, 16): a video of T frames gives
            `max(1, min(max_kept_frames, max(T, min_video_frames) // temporal_downsample)) * (spatial_keep_tokens + 1)`
            tokens. They must equal the model config's; `from_model_config` copies them.
        image_grid_size (`int`, *optional*, defaults to 27):
            Side of the vision tower's patch grid (`image_size // patch_size`): every crop gives
            `image_grid_size**2` tokens before forgetting. Must equal the model's; `from_model_config` copies it.
        vision_aspect_ratio (`str`, *optional*, defaults to `"anyres_max_9"`):
            `anyres_max_<n>`: a single image's tile-token grid larger than about `n` crops' worth of tokens is shrunk
            by the model (spec 4.2). Must equal the model config's; `from_model_config` copies it.
    """

    valid_processor_kwargs = HourLlavaProcessorKwargs

    def __init__(
        self,
        tokenizer=None,
        video_processor=None,
        image_processor=None,
        chat_template=None,
        video_token=VIDEO_TOKEN,
        image_token=IMAGE_TOKEN,
        add_time_instruction=True,
        add_frame_timestamps=False,
        min_video_frames=128,
        temporal_downsample=4,
        max_kept_frames=512,
        spatial_keep_tokens=16,
        image_grid_size=27,
        vision_aspect_ratio="anyres_max_9",
        **kwargs,
    ):
        if tokenizer is None:
            raise ValueError("HourLlavaProcessor needs a tokenizer.")
        # The template writes these tokens for media blocks, so they are taken from here, never from the tokenizer.
        self.video_token = video_token
        self.video_token_id = _single_token_id(tokenizer, self.video_token, "video_token")
        self.image_token = image_token
        # Without an image processor no image is taken, so a tokenizer older than image support still works.
        self.image_token_id = (
            _single_token_id(tokenizer, self.image_token, "image_token")
            if image_processor is not None
            else _known_token_id(tokenizer, self.image_token)
        )
        self.add_time_instruction = add_time_instruction
        self.add_frame_timestamps = add_frame_timestamps
        self.min_video_frames = min_video_frames
        self.temporal_downsample = temporal_downsample
        self.max_kept_frames = max_kept_frames
        self.spatial_keep_tokens = spatial_keep_tokens
        self.image_grid_size = image_grid_size
        self.vision_aspect_ratio = vision_aspect_ratio
        self.max_image_tiles = _max_image_tiles(vision_aspect_ratio)
        self._turn_start_id = _known_token_id(tokenizer, "<|im_start|>")
        self._turn_end_id = _known_token_id(tokenizer, "<|im_end|>")
        self._newline_id = _single_token_id(tokenizer, "\n", "newline")
        chat_template = chat_template or CHAT_TEMPLATE.replace(VIDEO_TOKEN, video_token).replace(
            IMAGE_TOKEN, image_token
        )
        super().__init__(
            tokenizer=tokenizer,
            video_processor=video_processor,
            image_processor=image_processor,
            chat_template=chat_template,
            **kwargs,
        )

    def check_argument_for_proper_class(self, argument_name, argument):
        """transformers requires every sub-processor; the image processor may be `None` (a processor for videos)."""
        if argument_name == "image_processor" and argument is None:
            return type(None)
        return super().check_argument_for_proper_class(argument_name, argument)

    @classmethod
    def from_model_config(
        cls, config, tokenizer, video_processor=None, image_processor=None, **kwargs
    ) -> "HourLlavaProcessor":
        """A processor whose token counts and crop and frame sizes match `config` (an `HourLlavaConfig`, read
        duck-typed).

        The video and image tokens are the tokenizer's tokens for `config.video_token_id` and
        `config.image_token_id`; the frame and crop size is the vision tower's `image_size`, and the image processor
        tiles on `config.image_grid_pinpoints`. Where torchvision is missing no image processor is built (the
        processor then takes no images). `kwargs` go to `__init__` (e.g. `add_frame_timestamps=True`).
        """
        vision = config.vision_config
        if video_processor is None:
            video_processor = HourLlavaVideoProcessor(size={"height": vision.image_size, "width": vision.image_size})
        if image_processor is None and is_torchvision_available():
            pinpoints = getattr(config, "image_grid_pinpoints", None) or grid_pinpoints(vision.image_size)
            image_processor = HourLlavaImageProcessor(
                size={"height": vision.image_size, "width": vision.image_size}, image_grid_pinpoints=pinpoints
            )
        fields = {name: getattr(config, name) for name in TOKEN_COUNT_FIELDS}
        fields["video_token"] = _config_token(config, tokenizer, "video_token_id")
        # Without an image processor, or with a config saved before images were supported, the default token stays.
        if image_processor is not None and getattr(config, "image_token_id", None) is not None:
            fields["image_token"] = _config_token(config, tokenizer, "image_token_id", MISSING_IMAGE_TOKEN_HINT)
        fields["image_grid_size"] = vision.image_size // vision.patch_size
        fields["vision_aspect_ratio"] = getattr(config, "vision_aspect_ratio", "anyres_max_9")
        return cls(tokenizer, video_processor, image_processor, **{**fields, **kwargs})

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        """The tokenizer and the video and image processors of a checkpoint. One saved before images were supported
        has no image processor: it loads as a processor for videos (`image_processor=None`), as it was."""
        try:
            return super()._get_arguments_from_pretrained(pretrained_model_name_or_path, processor_dict, **kwargs)
        except OSError:
            if "image_processor" in (processor_dict or {}):
                raise
        subfolder = kwargs.pop("subfolder", "")
        tokenizer = cls._load_tokenizer_from_pretrained(
            "tokenizer", pretrained_model_name_or_path, subfolder=subfolder, **kwargs
        )
        video_processor = AutoVideoProcessor.from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        return [tokenizer, video_processor, None]

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

    # ------------------------------------------------------------------------------------------------------------------
    # Image placeholder expansion
    # ------------------------------------------------------------------------------------------------------------------
    def image_feature_grid(
        self, image_size: Sequence[int], image_grid_pinpoints: list[list[int]] | None = None
    ) -> tuple[int, int]:
        """`(height, width)` of the tile-token grid the model makes of a single image of `image_size` (height, width).

        As the model does (spec 4.2): the crops' `image_grid_size`-wide grids laid side by side for the tile grid the
        image processor chose, the rows or columns that saw only padding removed (in token units, with `int()`
        truncation and floor-halved padding, as the reference), and a grid larger than `max_image_tiles` crops'
        worth of tokens shrunk to `(int(h // times), int(w // times))` when `times > 1.1`.
        """
        image_height, image_width = (int(side) for side in image_size)
        rows, cols = self.image_tile_layout(image_size, image_grid_pinpoints)
        height, width = rows * self.image_grid_size, cols * self.image_grid_size
        if image_width / image_height > width / height:  # padded above and below
            padding = (height - int(image_height * (width / image_width))) // 2
            height -= 2 * padding
        else:  # padded left and right
            padding = (width - int(image_width * (height / image_height))) // 2
            width -= 2 * padding
        times = math.sqrt(height * width / (self.max_image_tiles * self.image_grid_size**2))
        if times > 1.1:
            return int(height // times), int(width // times)
        return height, width

    def image_tile_layout(
        self, image_size: Sequence[int], image_grid_pinpoints: list[list[int]] | None = None
    ) -> tuple[int, int]:
        """`(rows, cols)` of crops the image processor tiles a single image of `image_size` (height, width) into."""
        pinpoints = image_grid_pinpoints or self.image_processor.image_grid_pinpoints
        crop_size = self.image_processor.size["height"]
        best_height, best_width = select_best_resolution(tuple(int(side) for side in image_size), pinpoints)
        return best_height // crop_size, best_width // crop_size

    def num_image_tokens(self, tile_grid: tuple[int, int] | None) -> int:
        """Tokens the model puts at an `<image>` under uniform forgetting (`[::2, ::2]`).

        `tile_grid` is `image_feature_grid(...)` for the single image of a sample, `None` for an image of a sample
        with several: the base crop's kept tokens (196 for a 27-wide grid), then either the tile grid's kept tokens
        with a newline after each kept row, or one newline.
        """
        half = -(-self.image_grid_size // 2)
        if tile_grid is None:
            return half * half + 1
        kept_rows, kept_cols = -(-tile_grid[0] // 2), -(-tile_grid[1] // 2)
        return half * half + kept_rows * kept_cols + kept_rows

    def draw_image_kept_indices(
        self, tile_grid: tuple[int, int] | None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random forgetting of one image, as the model's training draw: the kept raster indices of its base crop's
        grid, then of its tile grid (empty for an image of a sample with several), base first.

        Each is the `ceil(N / 4)` smallest scores of `torch.rand(1, N, generator=generator)`, ascending.
        """
        base = _random_kept_indices(self.image_grid_size, self.image_grid_size, generator)
        if tile_grid is None:
            return base, torch.zeros(0, dtype=torch.long)
        return base, _random_kept_indices(*tile_grid, generator)

    @staticmethod
    def num_kept_image_tokens(
        base_kept: torch.Tensor, tile_kept: torch.Tensor, tile_grid: tuple[int, int] | None
    ) -> int:
        """Tokens the model puts at an `<image>` for a given draw: the kept base tokens, then the kept tile tokens and
        one newline per tile row that keeps a token (or, for an image of a sample with several, one newline)."""
        if tile_grid is None:
            return base_kept.numel() + 1
        kept_rows = torch.unique(torch.div(tile_kept, tile_grid[1], rounding_mode="floor")).numel()
        return base_kept.numel() + tile_kept.numel() + kept_rows

    def image_tile_grids(
        self, image_inputs: dict, image_grid_pinpoints: list[list[int]] | None = None
    ) -> list[tuple[int, int] | None]:
        """Per image of the image processor's output, in order: its tile-token grid when it is the only image of its
        sample (tiled), `None` when its sample has several (one padded crop)."""
        grids = []
        image_sizes = iter(image_inputs["image_sizes"])
        for count in image_inputs["batch_num_images"]:
            for _ in range(int(count)):
                image_size = next(image_sizes)
                grids.append(self.image_feature_grid(image_size, image_grid_pinpoints) if count == 1 else None)
        return grids

    def _process_images(
        self,
        images: list[list],
        image_forgetting: str = "uniform",
        generator: torch.Generator | None = None,
        **kwargs,
    ):
        """Run the image processor and give each image its placeholder; with random forgetting, draw which tokens
        the model keeps (the count depends on the draw) and add the draw to the output for the model."""
        processed = self.image_processor(images, **kwargs)
        grids = self.image_tile_grids(processed, kwargs.get("image_grid_pinpoints"))
        if image_forgetting == "uniform":
            counts = [self.num_image_tokens(grid) for grid in grids]
        else:
            draws = [self.draw_image_kept_indices(grid, generator) for grid in grids]
            counts = [self.num_kept_image_tokens(base, tiles, grid) for (base, tiles), grid in zip(draws, grids)]
            runs = [run for draw in draws for run in draw]
            processed["image_kept_indices"] = torch.cat(runs) if runs else torch.zeros(0, dtype=torch.long)
            lengths = [[base.numel(), tiles.numel()] for base, tiles in draws]
            processed["image_kept_lengths"] = torch.tensor(lengths, dtype=torch.long).reshape(-1, 2)
        return processed, [self.image_token * count for count in counts]

    def _merge_kwargs(self, ModelProcessorKwargs=None, tokenizer_init_kwargs=None, **kwargs):
        """transformers deep-copies the call's kwargs; the random image draw must advance the caller's own
        generator (so consecutive calls, e.g. training batches, draw anew), so it bypasses the copy."""
        images_kwargs = dict(kwargs.get("images_kwargs") or {})
        generator = kwargs.pop("generator", None) or images_kwargs.pop("generator", None)
        if "images_kwargs" in kwargs:
            kwargs["images_kwargs"] = images_kwargs
        merged = super()._merge_kwargs(ModelProcessorKwargs, tokenizer_init_kwargs=tokenizer_init_kwargs, **kwargs)
        if generator is not None:
            merged["images_kwargs"]["generator"] = generator
        return merged

    # ------------------------------------------------------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------------------------------------------------------
    def prepare_inputs_layout(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """Fetch images given by path or URL, nest them per text sample, and make video paths strings."""
        if images is not None and self.image_processor is None:
            raise ValueError(
                "This HourLlavaProcessor has no image processor, so it takes no images (build it with "
                "`from_model_config` or `from_pretrained` where torchvision is installed)."
            )
        images, text, videos, audio = super().prepare_inputs_layout(images, text, videos, audio, **kwargs)
        return _images_per_sample(images, text), text, paths_as_strings(videos), audio

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        for index, sample in enumerate(text or []):
            self._validate_sample(index, sample, images[index] if images is not None else None)
        if text is not None and images is not None:  # nested per sample; transformers' checks take a flat list
            images = [image for sample_images in images for image in sample_images] or None
        encoded = encoded_videos(videos) if videos is not None else None
        if encoded is None or text is None:
            return super().validate_inputs(images=images, text=text, videos=videos, **kwargs)
        placeholders = sum(sample.count(self.video_token) for sample in text)
        if placeholders != len(encoded):  # transformers' own check cannot batch encoded videos
            raise ValueError(
                f"The text has {placeholders} {self.video_token} placeholders but {len(encoded)} encoded videos were "
                "passed; give one video per placeholder."
            )

    def _validate_sample(self, index: int, sample: str, images: list | None) -> None:
        """One sample holds one video, one image, several images, or no media, with a placeholder for each
        (`images` is the sample's list, `None` when the call has no images)."""
        num_videos, num_images = sample.count(self.video_token), sample.count(self.image_token)
        if num_videos > 1:
            raise ValueError(
                f"Text sample {index} has {num_videos} {self.video_token} placeholders; "
                "Hour-LLaVA takes at most one video per sample (ask several questions about it in one turn or "
                "over several turns instead)."
            )
        if num_videos and (num_images or images):
            raise ValueError(
                f"Text sample {index} has a {self.video_token} and images; a sample holds one video, one image, "
                "several images, or no media."
            )
        if images is not None and num_images != len(images):
            raise ValueError(
                f"Text sample {index} has {num_images} {self.image_token} placeholders but {len(images)} images; "
                f"put one {self.image_token} in the text for each image of the sample."
            )

    # ------------------------------------------------------------------------------------------------------------------
    # Call
    # ------------------------------------------------------------------------------------------------------------------
    def __call__(
        self,
        text: TextInput | PreTokenizedInput | list[TextInput] | list[PreTokenizedInput] | None = None,
        images: ImageInput | None = None,
        videos: VideoInput | None = None,
        **kwargs: Unpack[HourLlavaProcessorKwargs],
    ) -> BatchFeature:
        """Tokenize `text` with each `<video>` and `<image>` expanded, and process `videos` and `images`.

        Args:
            text (`str`, `list[str]`, *optional*):
                The samples (chat-templated, e.g. by `apply_chat_template`), each with at most one `<video>`, or
                one `<image>` per image of the sample, or neither.
            images (`ImageInput`, *optional*):
                The images of each sample, nested per sample as transformers takes them (`[[image], [a, b], []]`);
                a flat list is one image per sample, or all the images of a single sample when `text` is one
                sample. Images are PIL images, arrays, tensors, paths or URLs. A sample's only image is tiled
                (`anyres_max_9`), each image of a sample with several is padded to one crop.
            videos (`VideoInput`, *optional*):
                One video per placeholder: paths, http(s) URLs, lists of frame files or URLs, frames in memory, or
                `EncodedVideo`s (see [`HourLlavaVideoProcessor`]).
            image_forgetting (`str`, *optional*, defaults to `"uniform"`), generator (`torch.Generator`, *optional*):
                How many tokens each `<image>` becomes depends on the model's spatial forgetting: `"uniform"` for
                inference, `"random"` (with a seeded `generator`) to train with `spatial_sampling_type="random"`;
                see [`HourLlavaProcessorImagesKwargs`].

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask`, `memaug_query_mask` (see `memaug_query_mask`); for
            videos `pixel_values_videos` (or `pooled_video_features` for encoded videos) and `video_num_frames`
            (plus `video_metadata` with `return_metadata=True`); for images `pixel_values`, `image_num_crops`,
            `image_sizes`, `batch_num_images`, and with random forgetting `image_kept_indices` (per image, the kept
            raster indices of its base grid then of its tile grid) and `image_kept_lengths` (per image, the two
            run lengths).
        """
        if kwargs.pop("audio", None) is not None:  # `apply_chat_template` passes every modality by name
            raise TypeError("HourLlavaProcessor takes `text`, `images` and `videos`, not audio.")
        outputs = super().__call__(text=text, images=images, videos=videos, **kwargs)
        if "input_ids" in outputs:
            mask = self.memaug_query_mask(outputs["input_ids"], outputs.get("attention_mask"))
            outputs["memaug_query_mask"] = _like(outputs["input_ids"], mask)
        return outputs

    def _get_num_multimodal_tokens(self, image_sizes=None, video_sizes=None, **kwargs) -> MultiModalData:
        """Placeholder tokens per image and video, as transformers' tests and vLLM's transformers backend ask for them.

        Args:
            image_sizes (`list[list[int]]`, *optional*):
                `(height, width)` per image, each the only image of its sample (tiled); uniform forgetting.
            video_sizes (`list[list[int]]`, *optional*):
                `(num_frames, height, width)` per video, `num_frames` counting the frames given to the model (after
                sampling). The count depends on the frames only: every frame is resized to the same size and
                temporal forgetting fixes the number of tokens (`num_video_tokens`).

        Returns:
            `MultiModalData` with `num_image_tokens` and `num_image_patches` (crops per image) for images and
            `num_video_tokens` for videos (the time instruction after each video placeholder is text, not
            placeholder tokens).
        """
        data = {}
        if image_sizes is not None:
            if self.image_processor is None:
                raise ValueError("This HourLlavaProcessor has no image processor, so it counts no image tokens.")
            grids = [self.image_feature_grid(image_size) for image_size in image_sizes]
            data["num_image_tokens"] = [self.num_image_tokens(grid) for grid in grids]
            layouts = [self.image_tile_layout(image_size) for image_size in image_sizes]
            data["num_image_patches"] = [1 + rows * cols for rows, cols in layouts]
        if video_sizes is not None:
            data["num_video_tokens"] = [self.num_video_tokens(num_frames) for num_frames, _, _ in video_sizes]
        return MultiModalData(**data)

    @property
    def model_input_names(self) -> list[str]:
        extra = ["pooled_video_features", "memaug_query_mask", "image_kept_indices", "image_kept_lengths"]
        return [*super().model_input_names, *extra]

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
        if self.image_token_id is not None:
            structural.add(self.image_token_id)
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


def _config_token(config, tokenizer, field: str, hint: str = "") -> str:
    """The tokenizer's token for the id in `config.<field>`, or an error naming the field and id."""
    token = tokenizer.convert_ids_to_tokens(getattr(config, field))
    if token is None:
        raise ValueError(f"config.{field}={getattr(config, field)} is not in the tokenizer's vocabulary.{hint}")
    return token


def _max_image_tiles(vision_aspect_ratio: str) -> int:
    """`n` of `"anyres_max_<n>"`, or an error naming the argument."""
    prefix = "anyres_max_"
    count = str(vision_aspect_ratio).removeprefix(prefix)
    if not str(vision_aspect_ratio).startswith(prefix) or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"vision_aspect_ratio={vision_aspect_ratio!r} must be 'anyres_max_<n>' with n >= 1 (the released "
            "checkpoints use 'anyres_max_9')."
        )
    return int(count)


def _random_kept_indices(height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
    """`ceil(height * width / 4)` random raster indices of a `height x width` grid, ascending: the reference's
    `torch.rand(1, N).topk(k, largest=False)` then a sort, on the CPU so a seed fixes the draw on every device."""
    num_tokens = height * width
    scores = torch.rand(1, num_tokens, generator=generator)
    return scores.topk(math.ceil(num_tokens * IMAGE_KEEP_RATIO), dim=1, largest=False).indices[0].sort().values


def _images_per_sample(images, text: list[str] | None):
    """`images` as one list per text sample: nested lists as they are; otherwise one image per sample, or every image
    for a single sample. Without text they stay as given (the image processor reads the same forms)."""
    if images is None or text is None:
        return images
    if getattr(images, "ndim", None) == 4:  # a batch of images as one array or tensor
        images = list(images)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if any(isinstance(sample, (list, tuple)) for sample in images):
        samples = [list(sample) if isinstance(sample, (list, tuple)) else [sample] for sample in images]
    elif len(text) == 1:
        samples = [list(images)]
    else:
        samples = [[image] for image in images]
    if len(samples) != len(text):
        raise ValueError(
            f"Got images for {len(samples)} samples but {len(text)} text samples: pass one list of images per text "
            "sample, e.g. [[image], [], [first, second]] (an empty list for a sample without images)."
        )
    return samples


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
